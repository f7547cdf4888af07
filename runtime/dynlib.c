/* runtime/dynlib.c — shared libraries opened at run time (dynlib.h). */
#include "runtime/dynlib.h"

#include <dlfcn.h>
#include <string.h>

loom_status loom_dynlib_open(const char *lib, const loom_dynsym *syms, size_t n) {
    void *found[64];
    if (n > sizeof found / sizeof found[0]) return loom_error(LOOM_ERR_INVALID, "%s: more than 64 symbols", lib);
    void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    if (!h) return loom_error(LOOM_ERR_UNSUPPORTED, "cannot open %s: %s", lib, dlerror());
    for (size_t i = 0; i < n; i++) {
        found[i] = dlsym(h, syms[i].name);
        if (!found[i] && !syms[i].optional) {
            dlclose(h);
            return loom_error(LOOM_ERR_UNSUPPORTED, "%s has no %s", lib, syms[i].name);
        }
    }
    /* object pointer to function pointer, as POSIX allows */
    for (size_t i = 0; i < n; i++) memcpy(syms[i].dst, &found[i], sizeof found[i]);
    return NULL;
}
