/*
 * Strict parsers for the numbers people type on command lines and in
 * configuration: sizes ("512MiB"), durations ("100ms"), percentages, whole
 * numbers. Anything not fully understood is an error that quotes the text.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "memfit/core.h"

struct unit {
    const char *name;
    double scale;
};

/* A non-negative decimal number: digits with an optional fraction, no sign,
 * no exponent, no hex, no inf/nan. Sets *end past it. */
static bool parse_number(const char *text, double *out, const char **end)
{
    const char *p = text;
    bool digits = false;
    while (isdigit((unsigned char)*p)) {
        p++;
        digits = true;
    }
    if (*p == '.') {
        p++;
        while (isdigit((unsigned char)*p)) {
            p++;
            digits = true;
        }
    }
    if (!digits)
        return false;
    char buf[64];
    size_t len = (size_t)(p - text);
    if (len >= sizeof(buf))
        return false;
    memcpy(buf, text, len);
    buf[len] = '\0';
    errno = 0;
    *out = strtod(buf, NULL);
    if (errno != 0 || !isfinite(*out))
        return false;
    *end = p;
    return true;
}

static bool parse_with_units(const char *text, const struct unit *units, size_t n_units,
                             double default_scale, double *out)
{
    if (!text)
        return false;
    while (*text == ' ')
        text++;
    double value;
    const char *p;
    if (!parse_number(text, &value, &p))
        return false;
    while (*p == ' ')
        p++;
    if (*p == '\0') {
        *out = value * default_scale;
        return true;
    }
    for (size_t i = 0; i < n_units; i++) {
        if (strcasecmp(p, units[i].name) == 0) {
            *out = value * units[i].scale;
            return true;
        }
    }
    return false;
}

enum memfit_status memfit_parse_size(const char *text, uint64_t *out_bytes)
{
    static const struct unit units[] = {
        {"b", 1},
        {"k", 1024.0},
        {"kb", 1e3},
        {"kib", 1024.0},
        {"m", 1048576.0},
        {"mb", 1e6},
        {"mib", 1048576.0},
        {"g", 1073741824.0},
        {"gb", 1e9},
        {"gib", 1073741824.0},
        {"t", 1099511627776.0},
        {"tb", 1e12},
        {"tib", 1099511627776.0},
    };
    double v;
    if (!parse_with_units(text, units, sizeof(units) / sizeof(units[0]), 1.0, &v) ||
        v >= 18446744073709551616.0)
        return memfit_fail(MEMFIT_E_RANGE,
                           "invalid size '%s' (expected e.g. 4096, 512MB, 512MiB, 1.5GB)",
                           text ? text : "");
    *out_bytes = (uint64_t)llround(v);
    return MEMFIT_OK;
}

enum memfit_status memfit_parse_duration(const char *text, uint64_t *out_ns)
{
    static const struct unit units[] = {
        {"ns", 1}, {"us", 1e3}, {"ms", 1e6}, {"s", 1e9}, {"m", 60e9}, {"h", 3600e9}, {"d", 86400e9},
    };
    double v;
    if (!parse_with_units(text, units, sizeof(units) / sizeof(units[0]), 1e9, &v) ||
        v >= 18446744073709551616.0)
        return memfit_fail(MEMFIT_E_RANGE,
                           "invalid duration '%s' (expected seconds or e.g. 100ms, 5s, 5m, 1h)",
                           text ? text : "");
    *out_ns = (uint64_t)llround(v);
    return MEMFIT_OK;
}

enum memfit_status memfit_parse_percent(const char *text, double *out_percent)
{
    static const struct unit units[] = {{"%", 1}};
    double v;
    if (!parse_with_units(text, units, 1, 1.0, &v) || v > 100.0)
        return memfit_fail(MEMFIT_E_RANGE, "invalid percentage '%s' (expected 0 to 100)",
                           text ? text : "");
    *out_percent = v;
    return MEMFIT_OK;
}

enum memfit_status memfit_parse_int(const char *text, long long min, long long max, long long *out)
{
    if (!text || !*text || isspace((unsigned char)*text))
        return memfit_fail(MEMFIT_E_RANGE, "invalid number '%s'", text ? text : "");
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno != 0 || *end != '\0')
        return memfit_fail(MEMFIT_E_RANGE, "invalid number '%s'", text);
    if (v < min || v > max)
        return memfit_fail(MEMFIT_E_RANGE, "number %s out of range [%lld, %lld]", text, min, max);
    *out = v;
    return MEMFIT_OK;
}

char *memfit_format_size(uint64_t bytes, char *buf, size_t size)
{
    static const char *const names[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)bytes;
    int i = 0;
    while (v >= 1024.0 && i < 5) {
        v /= 1024.0;
        i++;
    }
    if (i == 0)
        snprintf(buf, size, "%llu B", (unsigned long long)bytes);
    else if (v >= 100.0)
        snprintf(buf, size, "%.0f %s", v, names[i]);
    else if (v >= 10.0)
        snprintf(buf, size, "%.1f %s", v, names[i]);
    else
        snprintf(buf, size, "%.2f %s", v, names[i]);
    return buf;
}
