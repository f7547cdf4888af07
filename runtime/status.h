/*
 * runtime/status.h — the one error type of loom.
 *
 * A loom_status is NULL on success. On failure it is an owned object holding
 * an error code and a message that names the rank (when known), the file or
 * request, and what was expected. Library code returns it and never exits;
 * callers either pass it up (optionally wrapped with more context) or free it.
 * Only main() turns a status into an exit code.
 *
 * Allocation failure while building a status yields a static "out of memory"
 * status, which loom_status_free() ignores, so error paths never fail.
 */
#ifndef LOOM_STATUS_H
#define LOOM_STATUS_H

#include <stdarg.h>

typedef enum {
    LOOM_OK = 0,
    LOOM_ERR_INVALID,      /* bad argument or bad user input */
    LOOM_ERR_IO,           /* open/read/mmap failed */
    LOOM_ERR_FORMAT,       /* a file or message is malformed */
    LOOM_ERR_UNSUPPORTED,  /* well-formed but not handled (type, architecture) */
    LOOM_ERR_NOMEM,        /* allocation failed */
    LOOM_ERR_KV_FULL,      /* the KV cache has no free block */
    LOOM_ERR_CONTEXT,      /* a sequence does not fit in the context */
    LOOM_ERR_COMM,         /* a communicator call failed */
    LOOM_ERR_TIMEOUT,      /* a peer stopped answering */
    LOOM_ERR_PLAN,         /* an impossible parallel plan was requested */
    LOOM_ERR_PEER,         /* another rank failed and reports why; this one stays quiet */
} loom_code;

typedef struct loom_status_s *loom_status;

#if defined(__GNUC__)
#define LOOM_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define LOOM_MUST_USE __attribute__((warn_unused_result))
#else
#define LOOM_PRINTF(a, b)
#define LOOM_MUST_USE
#endif

/* Builds an error status; the message is prefixed with "rank N: " once
 * loom_status_set_rank() was called. Never returns NULL. */
loom_status loom_error(loom_code code, const char *fmt, ...) LOOM_PRINTF(2, 3);
loom_status loom_verror(loom_code code, const char *fmt, va_list ap);

/* Prepends "context: " to the message of `inner` (keeps its code) and
 * returns it. Returns NULL (success) when inner is NULL. */
loom_status loom_error_wrap(loom_status inner, const char *fmt, ...) LOOM_PRINTF(2, 3);

loom_code loom_status_code(loom_status s);       /* LOOM_OK for NULL */
const char *loom_status_message(loom_status s);  /* "ok" for NULL */
void loom_status_free(loom_status s);

/* Sets the rank named in every later message; -1 (the default) names none. */
void loom_status_set_rank(int rank);
int loom_status_rank(void);

#define LOOM_TRY(expr)                      \
    do {                                    \
        loom_status loom_try_s_ = (expr);   \
        if (loom_try_s_) return loom_try_s_; \
    } while (0)

#endif
