/* parallel/nccl_api.c — NCCL loaded at run time (contract in nccl_api.h). */
#include "parallel/nccl_api.h"

#include "runtime/dynlib.h"

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
    const loom_dynsym syms[] = {
        {"ncclGetVersion", &api.get_version, false},
        {"ncclGetUniqueId", &api.get_unique_id, false},
        {"ncclCommInitRank", &api.comm_init_rank, false},
        {"ncclCommDestroy", &api.comm_destroy, false},
        {"ncclCommAbort", &api.comm_abort, false},
        {"ncclCommGetAsyncError", &api.comm_get_async_error, false},
        {"ncclGetErrorString", &api.get_error_string, false},
        {"ncclGetLastError", &api.get_last_error, true},
        {"ncclAllReduce", &api.all_reduce, false},
        {"ncclBroadcast", &api.broadcast, false},
        {"ncclAllGather", &api.all_gather, false},
        {"ncclSend", &api.send, false},
        {"ncclRecv", &api.recv, false},
        {"ncclGroupStart", &api.group_start, false},
        {"ncclGroupEnd", &api.group_end, false},
    };
    loom_status st = loom_dynlib_open(lib, syms, sizeof syms / sizeof syms[0]);
    if (st) {
        snprintf(load_error, sizeof load_error,
                 "cannot load NCCL: %s (NCCL 2.7 or newer is needed); set LOOM_NCCL_LIB to libnccl.so.2's path, or "
                 "use the staged backend (LOOM_COMM=staged)",
                 loom_status_message(st));
        loom_status_free(st);
        loaded = -1;
        return;
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
