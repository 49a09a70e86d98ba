/*
 * GPU memory through NVML, loaded at run time with dlopen so that memfit
 * builds and runs without NVIDIA's headers or driver. A machine without the
 * library, or where nvmlInit fails, simply has "no GPU": a state with its
 * reason, not an error.
 *
 * The few NVML types and entry points used are declared here from the
 * documented API (NVML API reference). The versioned symbol names are the
 * ones to look up (nvml.h #defines the plain names to them); memory info
 * prefers _v2 (which adds `reserved`), running processes prefer _v3, and
 * both fall back to the older entry points. The pids NVML returns are host
 * pids: the driver does not know pid namespaces.
 *
 * MEMFIT_NVML_LIBRARY overrides the library path (tests load a fake one).
 */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "sys/sys_file.h"

#define NVML_DEFAULT_LIBRARY "libnvidia-ml.so.1"

typedef int nvml_return;
enum {
    NVML_SUCCESS = 0,
    NVML_ERROR_INSUFFICIENT_SIZE = 7,
};
#define NVML_VALUE_NOT_AVAILABLE (~0ull)
#define NVML_DEVICE_NAME_BUFFER  96
#define NVML_DRIVER_BUFFER       80

typedef struct nvml_device_st *nvml_device;

/* nvmlMemory_t */
struct nvml_memory {
    unsigned long long total, free, used;
};

/* nvmlMemory_v2_t; version = sizeof | 2 << 24 (NVML_STRUCT_VERSION(Memory, 2)) */
struct nvml_memory_v2 {
    unsigned int version;
    unsigned long long total, reserved, free, used;
};

/* nvmlProcessInfo_t of _v2/_v3 (nvmlProcessInfo_v2_t) and of the original (v1) */
struct nvml_process_v2 {
    unsigned int pid;
    unsigned long long used_gpu_memory;
    unsigned int gpu_instance_id, compute_instance_id;
};
struct nvml_process_v1 {
    unsigned int pid;
    unsigned long long used_gpu_memory;
};

struct nvml_api {
    nvml_return (*init)(void);
    nvml_return (*shutdown)(void);
    nvml_return (*count)(unsigned int *);
    nvml_return (*handle)(unsigned int, nvml_device *);
    nvml_return (*name)(nvml_device, char *, unsigned int);
    nvml_return (*memory)(nvml_device, struct nvml_memory *);
    nvml_return (*memory_v2)(nvml_device, struct nvml_memory_v2 *);
    nvml_return (*procs_v2)(nvml_device, unsigned int *, struct nvml_process_v2 *); /* _v3/_v2 */
    nvml_return (*procs_v1)(nvml_device, unsigned int *, struct nvml_process_v1 *);
    nvml_return (*driver)(char *, unsigned int);
    const char *(*error_string)(nvml_return);
};

struct memfit_gpu {
    void *lib;
    bool initialised;
    struct nvml_api api;
    char state[MEMFIT_SYS_REASON_MAX]; /* why there is no GPU, when there is none */
};

/* dlsym's object pointer becomes a function pointer through memcpy, the one
 * conversion ISO C allows between the two kinds. */
#define LOAD(lib, field, name)                                                                     \
    do {                                                                                           \
        void *p_ = dlsym(lib, name);                                                               \
        memcpy(&(field), &p_, sizeof(p_));                                                         \
    } while (0)

static const char *nvml_error(const struct memfit_gpu *g, nvml_return r, char *buf, size_t size)
{
    const char *text = g->api.error_string ? g->api.error_string(r) : NULL;
    snprintf(buf, size, "%s (%d)", text ? text : "error", r);
    return buf;
}

enum memfit_status memfit_gpu_open(memfit_gpu **out)
{
    if (!out)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_gpu_open: out is NULL");
    memfit_gpu *g = memfit_calloc_in(MEMFIT_ALLOC_SYS, 1, sizeof(*g));
    if (!g)
        return MEMFIT_E_NOMEM;
    const char *path = memfit_config_get("MEMFIT_NVML_LIBRARY");
    if (!path || !path[0])
        path = NVML_DEFAULT_LIBRARY;
    g->lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!g->lib) {
        snprintf(g->state, sizeof(g->state), "no GPU: %s not found", path);
        const char *why = dlerror();
        memfit_log(MEMFIT_LOG_DEBUG, "gpu: dlopen %s: %s", path, why ? why : "?");
        *out = g;
        return MEMFIT_OK;
    }
    struct nvml_api *a = &g->api;
    LOAD(g->lib, a->init, "nvmlInit_v2");
    LOAD(g->lib, a->shutdown, "nvmlShutdown");
    LOAD(g->lib, a->count, "nvmlDeviceGetCount_v2");
    LOAD(g->lib, a->handle, "nvmlDeviceGetHandleByIndex_v2");
    LOAD(g->lib, a->name, "nvmlDeviceGetName");
    LOAD(g->lib, a->memory, "nvmlDeviceGetMemoryInfo");
    LOAD(g->lib, a->memory_v2, "nvmlDeviceGetMemoryInfo_v2");
    LOAD(g->lib, a->procs_v2, "nvmlDeviceGetComputeRunningProcesses_v3");
    if (!a->procs_v2)
        LOAD(g->lib, a->procs_v2, "nvmlDeviceGetComputeRunningProcesses_v2");
    LOAD(g->lib, a->procs_v1, "nvmlDeviceGetComputeRunningProcesses");
    LOAD(g->lib, a->driver, "nvmlSystemGetDriverVersion");
    LOAD(g->lib, a->error_string, "nvmlErrorString");
    if (!a->init || !a->shutdown || !a->count || !a->handle || (!a->memory && !a->memory_v2)) {
        snprintf(g->state, sizeof(g->state), "no GPU: %s lacks the NVML entry points", path);
        *out = g;
        return MEMFIT_OK;
    }
    nvml_return r = a->init();
    if (r != NVML_SUCCESS) {
        char err[96];
        snprintf(g->state, sizeof(g->state), "no GPU: nvmlInit_v2 failed: %s",
                 nvml_error(g, r, err, sizeof(err)));
        *out = g;
        return MEMFIT_OK;
    }
    g->initialised = true;
    *out = g;
    return MEMFIT_OK;
}

/* Memory of one device: _v2 first (it has `reserved`), then the original. */
static bool read_memory(const memfit_gpu *g, nvml_device dev, struct memfit_gpu_device *d)
{
    if (g->api.memory_v2) {
        struct nvml_memory_v2 m;
        memset(&m, 0, sizeof(m));
        m.version = (unsigned int)sizeof(m) | 2u << 24;
        if (g->api.memory_v2(dev, &m) == NVML_SUCCESS) {
            d->total_bytes = m.total, d->used_bytes = m.used, d->free_bytes = m.free;
            d->reserved_bytes = m.reserved;
            return true;
        }
    }
    struct nvml_memory m;
    if (g->api.memory && g->api.memory(dev, &m) == NVML_SUCCESS) {
        d->total_bytes = m.total, d->used_bytes = m.used, d->free_bytes = m.free;
        return true;
    }
    return false;
}

static void add_process(struct memfit_gpu_info *info, unsigned device, unsigned pid,
                        unsigned long long used)
{
    if (info->n_processes >= MEMFIT_GPU_MAX_PROCESSES)
        return;
    struct memfit_gpu_process *p = &info->processes[info->n_processes++];
    p->device = device;
    p->pid = (pid_t)pid;
    p->used_bytes = used == NVML_VALUE_NOT_AVAILABLE ? MEMFIT_SYS_UNKNOWN : used;
}

/* Processes of one device into info; false when the driver refused. */
static bool read_processes(const memfit_gpu *g, nvml_device dev, unsigned index,
                           struct memfit_gpu_info *info)
{
    unsigned int count = MEMFIT_GPU_MAX_PROCESSES;
    if (g->api.procs_v2) {
        struct nvml_process_v2 procs[MEMFIT_GPU_MAX_PROCESSES];
        nvml_return r = g->api.procs_v2(dev, &count, procs);
        if (r == NVML_SUCCESS) {
            for (unsigned i = 0; i < count && i < MEMFIT_GPU_MAX_PROCESSES; i++)
                add_process(info, index, procs[i].pid, procs[i].used_gpu_memory);
            return true;
        }
        if (r == NVML_ERROR_INSUFFICIENT_SIZE)
            return false;
    }
    count = MEMFIT_GPU_MAX_PROCESSES;
    if (g->api.procs_v1) {
        struct nvml_process_v1 procs[MEMFIT_GPU_MAX_PROCESSES];
        if (g->api.procs_v1(dev, &count, procs) == NVML_SUCCESS) {
            for (unsigned i = 0; i < count && i < MEMFIT_GPU_MAX_PROCESSES; i++)
                add_process(info, index, procs[i].pid, procs[i].used_gpu_memory);
            return true;
        }
    }
    return false;
}

enum memfit_status memfit_gpu_read(memfit_gpu *gpu, struct memfit_gpu_info *out)
{
    if (!gpu || !out)
        return memfit_fail(MEMFIT_E_MISUSE, "memfit_gpu_read: NULL argument");
    memset(out, 0, sizeof(*out));
    if (!gpu->initialised) {
        mf_sys_copy(out->state, sizeof(out->state), gpu->state);
        return MEMFIT_OK;
    }
    const struct nvml_api *a = &gpu->api;
    if (a->driver && a->driver(out->driver_version, sizeof(out->driver_version)) != NVML_SUCCESS)
        out->driver_version[0] = '\0';
    out->driver_version[sizeof(out->driver_version) - 1] = '\0';
    unsigned int count = 0;
    nvml_return r = a->count(&count);
    if (r != NVML_SUCCESS) {
        char err[96];
        snprintf(out->state, sizeof(out->state), "no GPU: nvmlDeviceGetCount_v2 failed: %s",
                 nvml_error(gpu, r, err, sizeof(err)));
        return MEMFIT_OK;
    }
    if (count == 0) {
        snprintf(out->state, sizeof(out->state), "no GPU: NVML reports no device");
        return MEMFIT_OK;
    }
    unsigned n_failed = 0, n_procs_failed = 0;
    for (unsigned i = 0; i < count && out->n_devices < MEMFIT_GPU_MAX_DEVICES; i++) {
        nvml_device dev;
        if (a->handle(i, &dev) != NVML_SUCCESS) {
            n_failed++;
            continue;
        }
        struct memfit_gpu_device *d = &out->devices[out->n_devices];
        memset(d, 0, sizeof(*d));
        d->index = i;
        d->reserved_bytes = MEMFIT_SYS_UNKNOWN;
        if (!a->name || a->name(dev, d->name, sizeof(d->name)) != NVML_SUCCESS)
            mf_sys_copy(d->name, sizeof(d->name), "unknown");
        d->name[sizeof(d->name) - 1] = '\0';
        if (!read_memory(gpu, dev, d)) {
            n_failed++;
            continue;
        }
        out->n_devices++;
        if (!read_processes(gpu, dev, i, out))
            n_procs_failed++;
    }
    out->available = out->n_devices > 0;
    int len =
        snprintf(out->state, sizeof(out->state), "%s%u device%s",
                 out->available ? "" : "no GPU: ", out->n_devices, out->n_devices == 1 ? "" : "s");
    if (n_failed && len > 0 && (size_t)len < sizeof(out->state))
        len += snprintf(out->state + len, sizeof(out->state) - (size_t)len, ", %u unreadable",
                        n_failed);
    if (n_procs_failed && len > 0 && (size_t)len < sizeof(out->state))
        snprintf(out->state + len, sizeof(out->state) - (size_t)len, ", processes unreadable on %u",
                 n_procs_failed);
    return MEMFIT_OK;
}

void memfit_gpu_close(memfit_gpu *gpu)
{
    if (!gpu)
        return;
    if (gpu->initialised)
        gpu->api.shutdown();
    if (gpu->lib)
        dlclose(gpu->lib);
    memfit_free(gpu);
}
