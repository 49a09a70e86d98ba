/*
 * jansson set up to allocate through the memfit wrapper, so JSON memory is
 * counted and fault-injectable like the rest. The switch happens when the
 * library is loaded (a constructor) and again, harmlessly, in mf_json_init();
 * so strings jansson returns (json_dumps) are freed with memfit_free, never
 * free(). jansson reports a failed allocation as a syntax error: a parser
 * clears the flag below before a json_loadb and checks it on failure to
 * answer E_NOMEM rather than E_FORMAT.
 */
#ifndef MF_CORE_JSON_H
#define MF_CORE_JSON_H

#include <jansson.h>
#include <stdbool.h>

#include "memfit/core.h"

void mf_json_init(void);

/* The thread's "a jansson allocation failed" flag. */
void mf_json_clear_alloc_failure(void);
bool mf_json_alloc_failed(void);

/* Sets obj[key] to a size, or to null when it is MEMFIT_SYS_UNKNOWN-like
 * (UINT64_MAX). Returns false on allocation failure. */
bool mf_json_set_u64(json_t *obj, const char *key, uint64_t value);

/* Sets obj[key] to a new value, taking ownership of it (NULL = failure). */
bool mf_json_set_new(json_t *obj, const char *key, json_t *value);

/* Writes the RFC 3339 UTC time with milliseconds ("2026-11-23T19:40:00.123Z"). */
void mf_format_rfc3339(uint64_t wall_ns, char *buf, size_t size);

#endif
