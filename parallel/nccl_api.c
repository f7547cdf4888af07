/* parallel/nccl_api.c — NCCL loaded at run time (contract in nccl_api.h). */
#include "parallel/nccl_api.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static loom_nccl_api api;
static char load_error[512];
static int loaded; /* 1 ok, -1 failed */
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load(void) {
    const char *env = getenv("LOOM_NCCL_LIB");
    const char *lib = env && *env ? env : "libnccl.so.2";
    void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(load_error, sizeof load_error,
                 "cannot load NCCL (%s): %s; set LOOM_NCCL_LIB to libnccl.so.2's path, or use the staged backend "
                 "(LOOM_COMM=staged)",
                 lib, dlerror());
        loaded = -1;
        return;
    }
    struct {
        const char *sym;
        void **dst;
        int optional;
    } syms[] = {
        {"ncclGetVersion", (void **)&api.get_version, 0},
        {"ncclGetUniqueId", (void **)&api.get_unique_id, 0},
        {"ncclCommInitRank", (void **)&api.comm_init_rank, 0},
        {"ncclCommDestroy", (void **)&api.comm_destroy, 0},
        {"ncclCommAbort", (void **)&api.comm_abort, 0},
        {"ncclCommGetAsyncError", (void **)&api.comm_get_async_error, 0},
        {"ncclGetErrorString", (void **)&api.get_error_string, 0},
        {"ncclGetLastError", (void **)&api.get_last_error, 1},
        {"ncclAllReduce", (void **)&api.all_reduce, 0},
        {"ncclBroadcast", (void **)&api.broadcast, 0},
        {"ncclAllGather", (void **)&api.all_gather, 0},
        {"ncclSend", (void **)&api.send, 0},
        {"ncclRecv", (void **)&api.recv, 0},
        {"ncclGroupStart", (void **)&api.group_start, 0},
        {"ncclGroupEnd", (void **)&api.group_end, 0},
    };
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        void *p = dlsym(h, syms[i].sym);
        if (!p && !syms[i].optional) {
            snprintf(load_error, sizeof load_error, "%s has no %s (NCCL 2.7 or newer is needed)", lib, syms[i].sym);
            dlclose(h);
            memset(&api, 0, sizeof api);
            loaded = -1;
            return;
        }
        memcpy(syms[i].dst, &p, sizeof p); /* object pointer to function pointer, as POSIX allows */
    }
    int v = 0;
    api.get_version(&v);
    /* 2.9+: major*10000 + minor*100 + patch; before: major*1000 + minor*100 + patch */
    const int major = v >= 10000 ? v / 10000 : v / 1000, minor = v >= 10000 ? v / 100 % 100 : v / 100 % 10;
    snprintf(api.name, sizeof api.name, "%s (NCCL %d.%d.%d)", lib, major, minor, v % 100);
    loaded = 1; /* the handle stays open until exit */
}

loom_status loom_nccl_load(const loom_nccl_api **out) {
    *out = NULL;
    pthread_once(&once, load);
    if (loaded != 1) return loom_error(LOOM_ERR_UNSUPPORTED, "%s", load_error);
    *out = &api;
    return NULL;
}
