/*
 * Internal helpers of the sys layer: building paths under a root directory
 * (so fixture trees and the live machine run the same code), reading small
 * kernel files with open/read into the caller's buffer (no stdio, no heap:
 * the monitor calls these every 100 ms), parsing "key value" files such as
 * /proc/meminfo and memory.stat in one pass, and the `reason` strings.
 */
#ifndef MF_SYS_FILE_H
#define MF_SYS_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "memfit/sys.h"

/* Room for one /proc or cgroup file the readers parse whole. */
#define MF_SYS_SMALL_FILE 4096
#define MF_SYS_STAT_FILE  16384

/*
 * Writes ROOT + the formatted path into out. A NULL, empty or "/" root means
 * the live machine (no prefix). Returns false when it does not fit.
 */
bool mf_sys_path(char *out, size_t size, const char *root, const char *fmt, ...)
    MEMFIT_PRINTF(4, 5);

/*
 * Reads a whole file into buf (NUL-terminated) with open/read. Returns 0, or
 * an errno value: the open/read error, or E2BIG when the file did not fit —
 * buf then holds its complete lines only, and is still usable.
 */
int mf_sys_read_text(const char *path, char *buf, size_t size, size_t *len);

/*
 * Calls fn on each line (without the newline, NUL-terminated, writable) of a
 * file of any size, through a fixed stack buffer; lines longer than that are
 * skipped. fn returns false to stop. Returns 0 or an errno value.
 */
typedef bool (*mf_sys_line_fn)(char *line, size_t len, void *ctx);
int mf_sys_read_lines(const char *path, mf_sys_line_fn fn, void *ctx);

/*
 * Parses an unsigned decimal at *p (leading blanks skipped); on success
 * stores it, moves *p past it and returns true. Overflow is false.
 */
bool mf_sys_parse_u64(const char **p, uint64_t *out);

/*
 * Reads a file holding one number (memory.current) or the literal "max".
 * Returns 0 with *out set (MEMFIT_SYS_UNKNOWN and *is_max for "max"), an
 * errno value when unreadable, or EINVAL when the content is not a number.
 */
int mf_sys_read_u64(const char *path, uint64_t *out, bool *is_max);

/* One wanted key of a "key value [kB]" file; found values are stored in *dst. */
struct mf_sys_kv {
    const char *key;
    uint64_t *dst;
};

/*
 * Parses "key value" / "key: value kB" lines (kB values become bytes) and
 * stores the values of the listed keys; unlisted keys are ignored and other
 * fields keep their value. Returns how many listed keys had a malformed
 * value; the first one's name goes to *bad_key.
 */
unsigned mf_sys_kv_parse(const char *text, const struct mf_sys_kv *fields, size_t n_fields,
                         const char **bad_key);

/* The value of "key:\tvalue" (e.g. "Name" in /proc/PID/status) copied into
 * out; false when the key is absent. */
bool mf_sys_find_string(const char *text, const char *key, char *out, size_t size);

/* Appends "; " and the formatted text to a reason buffer, truncating. */
void mf_sys_reason_add(char *reason, const char *fmt, ...) MEMFIT_PRINTF(2, 3);

/* Appends the reason for a file that could not be read: "memory.peak missing"
 * for ENOENT, "memory.stat: Permission denied" otherwise. */
void mf_sys_reason_errno(char *reason, const char *name, int err);

/* a - b floored at 0, UNKNOWN when either is. */
uint64_t mf_sys_sub_floor(uint64_t a, uint64_t b);

/* Copies text into a fixed field, truncating. */
void mf_sys_copy(char *out, size_t size, const char *text);

#endif
