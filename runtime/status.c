#include "runtime/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct loom_status_s {
    loom_code code;
    int is_static;
    char *msg;
};

static struct loom_status_s oom_status = {LOOM_ERR_NOMEM, 1, "out of memory while reporting an error"};
static int status_rank = -1;

void loom_status_set_rank(int rank) { status_rank = rank; }
int loom_status_rank(void) { return status_rank; }

loom_status loom_verror(loom_code code, const char *fmt, va_list ap) {
    char prefix[32] = "";
    if (status_rank >= 0) snprintf(prefix, sizeof prefix, "rank %d: ", status_rank);
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) n = 0;
    size_t plen = strlen(prefix);
    loom_status s = malloc(sizeof *s);
    char *msg = malloc(plen + (size_t)n + 1);
    if (!s || !msg) {
        free(s);
        free(msg);
        return &oom_status;
    }
    memcpy(msg, prefix, plen);
    vsnprintf(msg + plen, (size_t)n + 1, fmt, ap);
    s->code = code;
    s->is_static = 0;
    s->msg = msg;
    return s;
}

loom_status loom_error(loom_code code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    loom_status s = loom_verror(code, fmt, ap);
    va_end(ap);
    return s;
}

loom_status loom_error_wrap(loom_status inner, const char *fmt, ...) {
    if (!inner || inner->is_static) return inner;
    char ctx[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx, sizeof ctx, fmt, ap);
    va_end(ap);
    /* keep the rank prefix in front: "rank N: ctx: rest" */
    const char *rest = inner->msg;
    char prefix[32] = "";
    if (status_rank >= 0) {
        snprintf(prefix, sizeof prefix, "rank %d: ", status_rank);
        size_t pl = strlen(prefix);
        if (strncmp(rest, prefix, pl) == 0) rest += pl;
    }
    size_t n = strlen(prefix) + strlen(ctx) + 2 + strlen(rest) + 1;
    char *msg = malloc(n);
    if (!msg) return inner;
    snprintf(msg, n, "%s%s: %s", prefix, ctx, rest);
    free(inner->msg);
    inner->msg = msg;
    return inner;
}

loom_code loom_status_code(loom_status s) { return s ? s->code : LOOM_OK; }
const char *loom_status_message(loom_status s) { return s ? s->msg : "ok"; }

void loom_status_free(loom_status s) {
    if (!s || s->is_static) return;
    free(s->msg);
    free(s);
}
