/*
 * Libraries loaded on first use with dlopen, as NVML already is.
 *
 * Why: every program that links libmemfit would otherwise map and relocate
 * libzip's libcrypto, libcurl's TLS and HTTP/2 stacks and more at start-up,
 * which costs each `memfit monitor` or `memfit report` about 1.5 MB of RSS
 * per heavy library for code it never calls. A layer that needs one declares
 * a table of the symbols it uses and calls mf_dl_load() before using them.
 */
#ifndef MF_CORE_DYNLIB_H
#define MF_CORE_DYNLIB_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "memfit/core.h"

struct mf_dl_symbol {
    const char *name;
    void *slot; /* address of the function pointer to fill */
};

struct mf_dl_library {
    const char *soname;  /* e.g. "libzip.so.4" */
    const char *package; /* the Debian package that ships it, for the message */
    const char *purpose; /* "to read .pth files" */
    const struct mf_dl_symbol *symbols;
    size_t n_symbols;
    /* state, zero-initialised; guarded by `lock` */
    pthread_mutex_t lock;
    int state; /* 0 not tried, 1 loaded, -1 failed */
    char error[256];
};

#define MF_DL_LIBRARY(so, pkg, why, table)                                                         \
    {                                                                                              \
        .soname = (so), .package = (pkg), .purpose = (why), .symbols = (table),                    \
        .n_symbols = sizeof(table) / sizeof((table)[0]), .lock = PTHREAD_MUTEX_INITIALIZER         \
    }

/*
 * Loads the library and fills every symbol slot, once; later calls return
 * the first outcome. E_UNSUPPORTED with a message naming the library, the
 * package and what it is needed for, when it or a symbol is missing.
 */
enum memfit_status mf_dl_load(struct mf_dl_library *lib);

/*
 * Gives back the resident pages of code a loaded library brought in but the
 * process will not run: every page of the read-only mappings (code, constant
 * data) of the libraries whose file name starts with one of `prefixes` that
 * is still an unmodified page of the file is dropped with MADV_DONTNEED
 * (pages the loader wrote, such as relocated read-only data, are kept:
 * /proc/self/pagemap tells them apart). Should a dropped page be needed
 * after all, it is faulted back in from the page cache.
 *
 * Why: Debian's libmicrohttpd links GnuTLS, whose start-up touches ~2 MB of
 * the TLS stack (gnutls, p11-kit, nettle, gmp, ...) that a plain-HTTP server
 * never calls again. Returns the bytes released (0 when /proc is not
 * readable; never fails).
 */
size_t mf_dl_release_clean_pages(const char *const *prefixes, size_t n_prefixes);

#endif
