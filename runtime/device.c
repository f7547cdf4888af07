/* runtime/device.c — device kinds, the CUDA entry points (or what stands in
 * for them in a build without CUDA), and the convenience wrappers of
 * device.h. */
#include "runtime/device.h"

#include <string.h>

#ifdef LOOM_HAVE_CUDA
/* runtime/cuda/device_cuda.cu */
int loom_cuda_impl_count(const char **why);
loom_status loom_cuda_impl_info(int ordinal, loom_gpu_info *out);
loom_status loom_cuda_impl_create(int ordinal, loom_device **out);
#endif

static const char *const kind_names[] = {"auto", "cpu", "cuda", "host"};

const char *loom_device_kind_name(loom_device_kind k) {
    return (unsigned)k < sizeof kind_names / sizeof kind_names[0] ? kind_names[k] : NULL;
}

loom_status loom_device_kind_parse(const char *s, loom_device_kind *out) {
    for (unsigned i = 0; i < sizeof kind_names / sizeof kind_names[0]; i++)
        if (s && strcmp(s, kind_names[i]) == 0) {
            *out = (loom_device_kind)i;
            return NULL;
        }
    return loom_error(LOOM_ERR_INVALID, "device '%s' is not one of auto, cpu, cuda, host", s ? s : "(null)");
}

bool loom_cuda_built(void) {
#ifdef LOOM_HAVE_CUDA
    return true;
#else
    return false;
#endif
}

int loom_cuda_device_count(const char **why) {
#ifdef LOOM_HAVE_CUDA
    return loom_cuda_impl_count(why);
#else
    if (why) *why = "this loom was built without CUDA (configure with nvcc on PATH and -DLOOM_CUDA=ON)";
    return 0;
#endif
}

loom_status loom_cuda_device_info(int ordinal, loom_gpu_info *out) {
    memset(out, 0, sizeof *out);
#ifdef LOOM_HAVE_CUDA
    return loom_cuda_impl_info(ordinal, out);
#else
    (void)ordinal;
    return loom_error(LOOM_ERR_UNSUPPORTED, "this loom was built without CUDA");
#endif
}

loom_device_kind loom_device_resolve(loom_device_kind k) {
    if (k != LOOM_DEVICE_AUTO) return k;
    return loom_cuda_device_count(NULL) > 0 ? LOOM_DEVICE_CUDA : LOOM_DEVICE_CPU;
}

loom_status loom_device_create_cuda(int ordinal, loom_device **out) {
    *out = NULL;
#ifdef LOOM_HAVE_CUDA
    return loom_cuda_impl_create(ordinal, out);
#else
    (void)ordinal;
    return loom_error(LOOM_ERR_UNSUPPORTED,
                      "--device cuda: this loom was built without CUDA (configure with nvcc on PATH and -DLOOM_CUDA=ON)");
#endif
}

void loom_device_free(loom_device *d) {
    if (d) d->vt->destroy(d);
}

loom_status loom_device_alloc(loom_device *d, size_t bytes, const char *what, void **out) {
    loom_status st = d->vt->alloc(d, bytes ? bytes : 1, out);
    if (st) return loom_error_wrap(st, "%s (%zu bytes)", what, bytes);
    return NULL;
}

loom_status loom_device_upload(loom_device *d, void *dst, const void *src, size_t bytes) {
    if (!bytes) return NULL;
    return d->vt->copy(d, dst, src, bytes, LOOM_COPY_H2D, NULL);
}

loom_status loom_device_download(loom_device *d, void *dst, const void *src, size_t bytes) {
    if (bytes) LOOM_TRY(d->vt->copy(d, dst, src, bytes, LOOM_COPY_D2H, NULL));
    return d->vt->sync(d, NULL);
}

loom_status loom_device_sync(loom_device *d) { return d->vt->sync(d, NULL); }
