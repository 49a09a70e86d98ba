/*
 * Test helper: writes the bytes memfit_store_read_range() (or, with a
 * negative OFFSET -N, memfit_store_read_tail() of N bytes) reads from a
 * source to stdout, and "offset=O size=S" to stderr, so the integration
 * tests can compare them with the file and look at what the server sent.
 * Usage: store_range SOURCE OFFSET LENGTH | store_range SOURCE -N
 * Exit 1 with the error on failure, 3 for E_UNSUPPORTED (Range ignored).
 */
#include <stdio.h>
#include <stdlib.h>

#include "memfit/memfit.h"

int main(int argc, char **argv)
{
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: store_range SOURCE OFFSET LENGTH | store_range SOURCE -N\n");
        return 2;
    }
    long long off = strtoll(argv[2], NULL, 10);
    size_t len = argc == 4 ? (size_t)strtoull(argv[3], NULL, 10) : (size_t)-off;
    void *buf = memfit_malloc(len ? len : 1);
    memfit_store *store = NULL;
    enum memfit_status st = buf ? memfit_store_open(NULL, &store) : MEMFIT_E_NOMEM;
    size_t got = 0;
    uint64_t at = (uint64_t)off, size = 0;
    if (st == MEMFIT_OK && off < 0)
        st = memfit_store_read_tail(store, argv[1], len, buf, &got, &at, &size);
    else if (st == MEMFIT_OK)
        st = memfit_store_read_range(store, argv[1], at, len, buf, &got, &size);
    memfit_store_close(store);
    if (st != MEMFIT_OK) {
        fprintf(stderr, "store_range: %s\n", memfit_last_error());
        memfit_free(buf);
        return st == MEMFIT_E_UNSUPPORTED ? 3 : 1;
    }
    fwrite(buf, 1, got, stdout);
    fprintf(stderr, "offset=%llu size=%llu\n", (unsigned long long)at, (unsigned long long)size);
    memfit_free(buf);
    return 0;
}
