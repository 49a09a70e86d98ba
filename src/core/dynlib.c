/* Loading a library and its symbols on first use (see dynlib.h). */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "core/dynlib.h"

static int load(struct mf_dl_library *lib)
{
    void *handle = dlopen(lib->soname, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        snprintf(lib->error, sizeof(lib->error), "%s not found (install %s %s)", lib->soname,
                 lib->package, lib->purpose);
        return -1;
    }
    for (size_t i = 0; i < lib->n_symbols; i++) {
        void *fn = dlsym(handle, lib->symbols[i].name);
        if (!fn) {
            snprintf(lib->error, sizeof(lib->error), "%s: symbol %s missing (%s too old?)",
                     lib->soname, lib->symbols[i].name, lib->package);
            dlclose(handle);
            return -1;
        }
        /* POSIX guarantees a function pointer survives the trip through void *. */
        memcpy(lib->symbols[i].slot, &fn, sizeof(fn));
    }
    return 1; /* the handle stays open for the life of the process */
}

enum memfit_status mf_dl_load(struct mf_dl_library *lib)
{
    pthread_mutex_lock(&lib->lock);
    if (lib->state == 0)
        lib->state = load(lib);
    int state = lib->state;
    pthread_mutex_unlock(&lib->lock);
    if (state < 0)
        return memfit_fail(MEMFIT_E_UNSUPPORTED, "%s", lib->error);
    return MEMFIT_OK;
}
