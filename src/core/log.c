/*
 * Logging: the library formats a message only when its level is enabled and
 * hands it to the sink the program installed. No sink, no output: the
 * library itself never writes to stdout or stderr.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <strings.h>

#include "memfit/core.h"

static _Atomic int log_level = MEMFIT_LOG_WARN;
static memfit_log_sink _Atomic log_sink;
static void *_Atomic log_user;

static const char *const level_names[] = {"error", "warn", "info", "debug", "trace"};

void memfit_log_set_sink(memfit_log_sink sink, void *user)
{
    atomic_store(&log_user, user);
    atomic_store(&log_sink, sink);
}

void memfit_log_set_level(enum memfit_log_level level)
{
    atomic_store(&log_level, (int)level);
}

enum memfit_log_level memfit_log_get_level(void)
{
    return (enum memfit_log_level)atomic_load(&log_level);
}

const char *memfit_log_level_name(enum memfit_log_level level)
{
    if ((unsigned)level > MEMFIT_LOG_TRACE)
        return "unknown";
    return level_names[level];
}

enum memfit_status memfit_log_level_parse(const char *text, enum memfit_log_level *out)
{
    for (int i = 0; i <= MEMFIT_LOG_TRACE; i++) {
        if (strcasecmp(text, level_names[i]) == 0) {
            *out = (enum memfit_log_level)i;
            return MEMFIT_OK;
        }
    }
    if (strcasecmp(text, "warning") == 0) {
        *out = MEMFIT_LOG_WARN;
        return MEMFIT_OK;
    }
    return memfit_fail(MEMFIT_E_RANGE,
                       "unknown log level '%s' (expected error, warn, info, debug or trace)", text);
}

enum memfit_status memfit_log_level_from_config(void)
{
    const char *text = memfit_config_get("MEMFIT_LOG_LEVEL");
    if (!text || !text[0])
        return MEMFIT_OK;
    enum memfit_log_level level;
    enum memfit_status st = memfit_log_level_parse(text, &level);
    if (st != MEMFIT_OK)
        return memfit_fail(st, "MEMFIT_LOG_LEVEL: unknown log level '%s'", text);
    memfit_log_set_level(level);
    return MEMFIT_OK;
}

void memfit_log(enum memfit_log_level level, const char *fmt, ...)
{
    if ((int)level > atomic_load(&log_level))
        return;
    memfit_log_sink sink = atomic_load(&log_sink);
    if (!sink)
        return;
    char message[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    sink(level, message, atomic_load(&log_user));
}
