/*
 * Pressure stall information (Documentation/accounting/psi.rst): the share
 * of wall time tasks waited for memory, from /proc/pressure/memory or a
 * cgroup's memory.pressure. Lines are
 *   some avg10=0.00 avg60=0.00 avg300=0.00 total=0
 *   full avg10=0.00 avg60=0.00 avg300=0.00 total=0
 * A kernel without PSI (or booted with psi=0) has no file or refuses the
 * read with EOPNOTSUPP: that is "not present", not an error.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sys/sys_file.h"

/* Parses "avg10=X avg60=Y avg300=Z total=T" after the line's kind word. */
static bool parse_line(const char *p, double avg[3], uint64_t *total)
{
    static const char *const names[3] = {"avg10=", "avg60=", "avg300="};
    for (int i = 0; i < 3; i++) {
        while (*p == ' ')
            p++;
        size_t n = strlen(names[i]);
        if (strncmp(p, names[i], n) != 0)
            return false;
        p += n;
        if (!(*p >= '0' && *p <= '9'))
            return false;
        char *end;
        avg[i] = strtod(p, &end);
        if (end == p || !isfinite(avg[i]) || avg[i] < 0 || avg[i] > 100)
            return false;
        p = end;
    }
    while (*p == ' ')
        p++;
    if (strncmp(p, "total=", 6) != 0)
        return false;
    p += 6;
    if (!mf_sys_parse_u64(&p, total))
        return false;
    while (*p == ' ')
        p++;
    return *p == '\0' || *p == '\n';
}

enum memfit_status memfit_psi_read(const char *path, struct memfit_psi *out)
{
    if (!path || !out)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_psi_read: NULL argument");
    struct memfit_psi psi;
    memset(&psi, 0, sizeof(psi));
    psi.some_avg10 = psi.some_avg60 = psi.some_avg300 = NAN;
    psi.full_avg10 = psi.full_avg60 = psi.full_avg300 = NAN;
    psi.some_total_us = psi.full_total_us = MEMFIT_SYS_UNKNOWN;

    char text[512];
    int err = mf_sys_read_text(path, text, sizeof(text), NULL);
    if (err == ENOENT || err == EOPNOTSUPP || err == ENOTDIR) {
        *out = psi;
        return MEMFIT_OK;
    }
    if (err == E2BIG)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: longer than a pressure file can be", path);
    if (err)
        return memfit_fail(MEMFIT_E_IO, "%s: %s", path, strerror(err));

    bool some = false;
    const char *line = text;
    while (*line) {
        const char *eol = strchr(line, '\n');
        double avg[3];
        uint64_t total;
        if (strncmp(line, "some ", 5) == 0 && !some && parse_line(line + 5, avg, &total)) {
            psi.some_avg10 = avg[0], psi.some_avg60 = avg[1], psi.some_avg300 = avg[2];
            psi.some_total_us = total;
            some = true;
        } else if (strncmp(line, "full ", 5) == 0 && parse_line(line + 5, avg, &total)) {
            psi.full_avg10 = avg[0], psi.full_avg60 = avg[1], psi.full_avg300 = avg[2];
            psi.full_total_us = total;
        } else {
            size_t n = eol ? (size_t)(eol - line) : strlen(line);
            return memfit_fail(MEMFIT_E_FORMAT, "%s: unexpected line '%.*s'", path,
                               (int)(n > 80 ? 80 : n), line);
        }
        if (!eol)
            break;
        line = eol + 1;
    }
    if (!some)
        return memfit_fail(MEMFIT_E_FORMAT, "%s: no 'some' line", path);
    psi.present = true;
    *out = psi;
    return MEMFIT_OK;
}
