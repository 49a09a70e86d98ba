/*
 * Status codes (generated from MEMFIT_STATUS_LIST) and the thread-local
 * detailed message of the last failure.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "memfit/core.h"

#define ERROR_CAPACITY 1024

static _Thread_local char last_error[ERROR_CAPACITY];

const char *memfit_version(void)
{
    return MEMFIT_VERSION_STRING;
}

const char *memfit_status_message(enum memfit_status status)
{
    switch (status) {
#define STATUS_MESSAGE(name, value, message)                                                       \
    case MEMFIT_##name:                                                                            \
        return message;
        MEMFIT_STATUS_LIST(STATUS_MESSAGE)
#undef STATUS_MESSAGE
    }
    return "unknown status";
}

const char *memfit_status_name(enum memfit_status status)
{
    switch (status) {
#define STATUS_NAME(name, value, message)                                                          \
    case MEMFIT_##name:                                                                            \
        return "MEMFIT_" #name;
        MEMFIT_STATUS_LIST(STATUS_NAME)
#undef STATUS_NAME
    }
    return "MEMFIT_UNKNOWN";
}

const char *memfit_last_error(void)
{
    return last_error;
}

void memfit_clear_error(void)
{
    last_error[0] = '\0';
}

enum memfit_status memfit_fail(enum memfit_status status, const char *fmt, ...)
{
    /* Format into a scratch buffer first: fmt's arguments may point into
     * last_error itself (wrapping a deeper message with context). */
    char scratch[ERROR_CAPACITY];
    if (fmt && fmt[0]) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(scratch, sizeof(scratch), fmt, ap);
        va_end(ap);
    } else {
        snprintf(scratch, sizeof(scratch), "%s", memfit_status_message(status));
    }
    memcpy(last_error, scratch, sizeof(last_error));
    return status;
}
