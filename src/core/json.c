/* jansson through the allocator wrapper, and small helpers for JSON output. */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <time.h>

#include "core/json.h"

static _Thread_local bool alloc_failed;

static void *json_alloc(size_t size)
{
    void *p = memfit_malloc_in(MEMFIT_ALLOC_GENERAL, size);
    if (!p)
        alloc_failed = true;
    return p;
}

static void set_funcs(void)
{
    json_set_alloc_funcs(json_alloc, memfit_free);
}

void mf_json_init(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, set_funcs);
}

/* Also at load time: a jansson object allocated with malloc before the switch
 * and freed after it would go to the wrong free. */
__attribute__((constructor)) static void json_setup(void)
{
    mf_json_init();
}

void mf_json_clear_alloc_failure(void)
{
    alloc_failed = false;
}

bool mf_json_alloc_failed(void)
{
    return alloc_failed;
}

bool mf_json_set_new(json_t *obj, const char *key, json_t *value)
{
    return value && json_object_set_new(obj, key, value) == 0;
}

bool mf_json_set_u64(json_t *obj, const char *key, uint64_t value)
{
    if (value == UINT64_MAX || value > (uint64_t)INT64_MAX)
        return mf_json_set_new(obj, key, json_null());
    return mf_json_set_new(obj, key, json_integer((json_int_t)value));
}

void mf_format_rfc3339(uint64_t wall_ns, char *buf, size_t size)
{
    time_t secs = (time_t)(wall_ns / 1000000000u);
    unsigned ms = (unsigned)(wall_ns / 1000000u % 1000u);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char base[32];
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, size, "%s.%03uZ", base, ms);
}
