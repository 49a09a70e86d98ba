/*
 * Test helper: prints the size memfit_store_head() finds for a source, so
 * the integration tests can check HEAD / Range 0-0 against real servers.
 * Usage: store_head SOURCE   (exit 1 with the error on failure)
 */
#include <stdio.h>

#include "memfit/memfit.h"

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: store_head SOURCE\n");
        return 2;
    }
    memfit_store *store;
    enum memfit_status st = memfit_store_open(NULL, &store);
    uint64_t size = 0;
    if (st == MEMFIT_OK)
        st = memfit_store_head(store, argv[1], &size);
    memfit_store_close(store);
    if (st != MEMFIT_OK) {
        fprintf(stderr, "store_head: %s\n", memfit_last_error());
        return 1;
    }
    printf("%llu\n", (unsigned long long)size);
    return 0;
}
