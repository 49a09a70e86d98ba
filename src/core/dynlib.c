/* Loading a library and its symbols on first use (see dynlib.h). */
#include <dlfcn.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

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

static bool name_matches(const char *path, const char *const *prefixes, size_t n)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    for (size_t i = 0; i < n; i++)
        if (strncmp(base, prefixes[i], strlen(prefixes[i])) == 0)
            return true;
    return false;
}

/* pagemap entry bits (Documentation/admin-guide/mm/pagemap.rst) */
#define PM_PRESENT (UINT64_C(1) << 63)
#define PM_FILE    (UINT64_C(1) << 61)

/* Drops the present, unmodified file pages of [start, end); returns the bytes. */
static size_t release_range(int pagemap, uintptr_t start, uintptr_t end, size_t page)
{
    size_t released = 0;
    uint64_t entries[512];
    for (uintptr_t at = start; at < end;) {
        size_t n = (end - at) / page;
        if (n > 512)
            n = 512;
        ssize_t got = pread(pagemap, entries, n * sizeof(entries[0]), (off_t)(at / page * 8));
        if (got <= 0)
            return released;
        n = (size_t)got / sizeof(entries[0]);
        for (size_t i = 0; i < n;) {
            size_t j = i;
            while (j < n && (entries[j] & (PM_PRESENT | PM_FILE)) == (PM_PRESENT | PM_FILE))
                j++;
            if (j > i && madvise((void *)(at + i * page), (j - i) * page, MADV_DONTNEED) == 0)
                released += (j - i) * page;
            i = j + 1;
        }
        at += n * page;
    }
    return released;
}

size_t mf_dl_release_clean_pages(const char *const *prefixes, size_t n_prefixes)
{
    FILE *maps = fopen("/proc/self/maps", "re");
    if (!maps)
        return 0;
    int pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (pagemap < 0) {
        fclose(maps);
        return 0;
    }
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t released = 0;
    char line[4096];
    while (fgets(line, sizeof(line), maps)) {
        unsigned long start, end;
        char perms[5];
        int path_at = 0;
        if (sscanf(line, "%lx-%lx %4s %*s %*s %*s %n", &start, &end, perms, &path_at) != 3 ||
            path_at == 0)
            continue;
        char *path = line + path_at;
        path[strcspn(path, "\n")] = '\0';
        /* Only mappings nobody may write: a page dropped there can only be
         * an untouched copy of the file. */
        if (perms[1] != '-' || path[0] != '/' || !name_matches(path, prefixes, n_prefixes))
            continue;
        released += release_range(pagemap, start, end, page);
    }
    close(pagemap);
    fclose(maps);
    return released;
}
