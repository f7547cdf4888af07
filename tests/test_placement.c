/* tests/test_placement.c — which GPU each rank takes (parallel/placement.h),
 * from fabricated records: local rank on a node of several GPUs, the one
 * GPU of a rank that sees one, a rank with no GPU or too many local ranks,
 * two ranks on one GPU refused with both ranks, the host and the GPU named
 * (and allowed with LOOM_SHARE_GPU), and the same ordinal on two hosts or
 * two UUIDs through CUDA_VISIBLE_DEVICES accepted; plus the device kinds. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "parallel/placement.h"
#include "runtime/device.h"
#include "runtime/dynlib.h"

static loom_place_rank rec(const char *host, int local, int gpus, const char *uuid) {
    loom_place_rank r;
    memset(&r, 0, sizeof r);
    snprintf(r.host, sizeof r.host, "%s", host);
    r.local_rank = local, r.n_gpus = gpus, r.ordinal = -1;
    snprintf(r.uuid, sizeof r.uuid, "%s", uuid);
    return r;
}

Test(placement, pick) {
    int o;
    loom_place_rank r = rec("node1", 3, 8, "");
    cr_assert(!loom_place_pick(&r, 11, &o));
    cr_assert_eq(o, 3, "local rank 3 of a node with 8 GPUs takes GPU 3");
    r = rec("node1", 3, 1, "");
    cr_assert(!loom_place_pick(&r, 11, &o));
    cr_assert_eq(o, 0, "a rank that sees one GPU takes it");
    r = rec("node2", 4, 4, "");
    loom_status st = loom_place_pick(&r, 9, &o);
    cr_assert(st);
    cr_assert(strstr(loom_status_message(st), "rank 9 is local rank 4 on host node2, which has 4 GPUs"), "%s",
              loom_status_message(st));
    loom_status_free(st);
    r = rec("node3", 0, 0, "");
    st = loom_place_pick(&r, 2, &o);
    cr_assert(st && strstr(loom_status_message(st), "rank 2 (host node3) sees no GPU"), "%s", loom_status_message(st));
    loom_status_free(st);
}

Test(placement, two_ranks_on_one_gpu_are_refused) {
    loom_place_rank all[4] = {rec("a", 0, 1, "GPU-0"), rec("a", 1, 1, "GPU-1"), rec("a", 2, 1, "GPU-0"),
                              rec("b", 0, 1, "GPU-0")};
    for (int i = 0; i < 4; i++) all[i].ordinal = 0;
    cr_assert(!loom_place_check(all, 4, 1, false), "its own GPU");
    cr_assert(!loom_place_check(all, 4, 3, false), "the same UUID on another host is another GPU");
    loom_status st = loom_place_check(all, 4, 2, false);
    cr_assert(st);
    cr_assert(strstr(loom_status_message(st), "ranks 0 and 2 would share GPU GPU-0 on host a"), "%s",
              loom_status_message(st));
    loom_status_free(st);
    st = loom_place_check(all, 4, 0, false);
    cr_assert(st && strstr(loom_status_message(st), "ranks 0 and 2"), "%s", loom_status_message(st));
    loom_status_free(st);
    cr_assert(!loom_place_check(all, 4, 2, true), "LOOM_SHARE_GPU=1 allows it");
}

Test(placement, device_kinds) {
    loom_device_kind k;
    cr_assert(!loom_device_kind_parse("cuda", &k) && k == LOOM_DEVICE_CUDA);
    cr_assert(!loom_device_kind_parse("cpu", &k) && k == LOOM_DEVICE_CPU);
    cr_assert(!loom_device_kind_parse("auto", &k) && k == LOOM_DEVICE_AUTO);
    loom_status st = loom_device_kind_parse("tpu", &k);
    cr_assert(!loom_device_kind_parse("host", &k) && k == LOOM_DEVICE_HOST);
    cr_assert(st && strstr(loom_status_message(st), "'tpu' is not one of auto, cpu, cuda, host"));
    loom_status_free(st);
    const char *why = NULL;
    const int n = loom_cuda_device_count(&why);
    cr_assert(n > 0 || (why && *why), "no GPU, and no reason given");
    cr_assert_eq(loom_device_resolve(LOOM_DEVICE_AUTO), n > 0 ? LOOM_DEVICE_CUDA : LOOM_DEVICE_CPU);
    if (!loom_cuda_built()) { /* --device cuda says how to get CUDA */
        loom_device *d = NULL;
        st = loom_device_create_cuda(0, &d);
        cr_assert(st && strstr(loom_status_message(st), "built without CUDA"), "%s", loom_status_message(st));
        loom_status_free(st);
    }
}

/* NCCL and cuBLAS are opened through loom_dynlib_open: libm stands in */
Test(placement, dynlib_open) {
    double (*cosine)(double) = NULL, (*absent)(double) = (double (*)(double))1;
    loom_dynsym ok[] = {{"cos", &cosine, false}, {"loom_no_such_symbol", &absent, true}};
    loom_status st = loom_dynlib_open("libm.so.6", ok, 2);
    cr_assert(!st, "%s", loom_status_message(st));
    cr_assert(cosine && cosine(0.0) == 1.0 && absent == NULL, "required resolved, optional missing is NULL");

    double (*sine)(double) = NULL;
    loom_dynsym bad[] = {{"sin", &sine, false}, {"loom_no_such_symbol", &absent, false}};
    st = loom_dynlib_open("libm.so.6", bad, 2);
    cr_assert(st && strstr(loom_status_message(st), "libm.so.6 has no loom_no_such_symbol"), "%s", loom_status_message(st));
    cr_assert(sine == NULL, "a failed open stores nothing");
    loom_status_free(st);

    st = loom_dynlib_open("libloom-absent.so.9", bad, 2);
    cr_assert(st && strstr(loom_status_message(st), "cannot open libloom-absent.so.9"), "%s", loom_status_message(st));
    loom_status_free(st);
}
