#include "parallel/watchdog.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "parallel/comm_mpi.h"
#include "runtime/clock.h"

#define TAG_HEARTBEAT 1

struct loom_watchdog {
    MPI_Comm comm;
    int rank, size;
    double timeout_s;
    const char *const *hosts;
    pthread_t thread;
    atomic_int stop;
    _Atomic double *last_seen; /* (size) read by loom_watchdog_silence() from other threads */
    uint8_t *in;            /* (size) receive buffers */
    MPI_Request *recv_req;  /* (size) */
};


static void *watch(void *arg) {
    loom_watchdog *w = arg;
    static const uint8_t beat = 1;
    double period = w->timeout_s / 4 < 1.0 ? w->timeout_s / 4 : 1.0;
    double next_beat = 0;
    while (!atomic_load(&w->stop)) {
        double t = loom_now_s();
        if (t >= next_beat) {
            for (int p = 0; p < w->size; p++) {
                if (p == w->rank) continue;
                MPI_Request r;
                if (MPI_Isend(&beat, 1, MPI_UINT8_T, p, TAG_HEARTBEAT, w->comm, &r) == MPI_SUCCESS)
                    MPI_Request_free(&r);
            }
            next_beat = t + period;
        }
        for (int p = 0; p < w->size; p++) {
            if (p == w->rank) continue;
            int done = 0;
            while (MPI_Test(&w->recv_req[p], &done, MPI_STATUS_IGNORE) == MPI_SUCCESS && done) {
                w->last_seen[p] = loom_now_s();
                MPI_Irecv(&w->in[p], 1, MPI_UINT8_T, p, TAG_HEARTBEAT, w->comm, &w->recv_req[p]);
                done = 0;
            }
            double silent = loom_now_s() - w->last_seen[p];
            if (silent > w->timeout_s) {
                const char *h = w->hosts && w->hosts[p] ? w->hosts[p] : "?";
                fprintf(stderr,
                        "loom: rank %d: rank %d (host %s) stopped answering: no heartbeat for %.1f s "
                        "(watchdog timeout %.1f s); stopping the job\n",
                        w->rank, p, h, silent, w->timeout_s);
                fflush(stderr);
                MPI_Abort(MPI_COMM_WORLD, 70);
            }
        }
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

loom_status loom_watchdog_start(MPI_Comm world, double timeout_s, const char *const *hosts, loom_watchdog **out) {
    *out = NULL;
    if (loom_mpi_thread_level() < MPI_THREAD_MULTIPLE)
        return loom_error(LOOM_ERR_UNSUPPORTED,
                          "the watchdog needs MPI_THREAD_MULTIPLE, but this MPI library granted level %d",
                          loom_mpi_thread_level());
    if (!(timeout_s > 0)) return loom_error(LOOM_ERR_INVALID, "watchdog timeout %g s must be positive", timeout_s);
    loom_watchdog *w = calloc(1, sizeof *w);
    if (!w) return loom_error(LOOM_ERR_NOMEM, "out of memory starting the watchdog");
    MPI_Comm_dup(world, &w->comm);
    MPI_Comm_rank(w->comm, &w->rank);
    MPI_Comm_size(w->comm, &w->size);
    w->timeout_s = timeout_s;
    w->hosts = hosts;
    w->last_seen = malloc((size_t)w->size * sizeof *w->last_seen);
    w->in = calloc((size_t)w->size, 1);
    w->recv_req = calloc((size_t)w->size, sizeof *w->recv_req);
    if (!w->last_seen || !w->in || !w->recv_req) {
        MPI_Comm_free(&w->comm);
        free(w->last_seen);
        free(w->in);
        free(w->recv_req);
        free(w);
        return loom_error(LOOM_ERR_NOMEM, "out of memory starting the watchdog");
    }
    double t = loom_now_s();
    for (int p = 0; p < w->size; p++) {
        w->last_seen[p] = t;
        w->recv_req[p] = MPI_REQUEST_NULL;
        if (p != w->rank) MPI_Irecv(&w->in[p], 1, MPI_UINT8_T, p, TAG_HEARTBEAT, w->comm, &w->recv_req[p]);
    }
    if (pthread_create(&w->thread, NULL, watch, w)) {
        for (int p = 0; p < w->size; p++)
            if (w->recv_req[p] != MPI_REQUEST_NULL) {
                MPI_Cancel(&w->recv_req[p]);
                MPI_Request_free(&w->recv_req[p]);
            }
        MPI_Comm_free(&w->comm);
        free(w->last_seen);
        free(w->in);
        free(w->recv_req);
        free(w);
        return loom_error(LOOM_ERR_NOMEM, "cannot start the watchdog thread");
    }
    *out = w;
    return NULL;
}

void loom_watchdog_stop(loom_watchdog *w) {
    if (!w) return;
    atomic_store(&w->stop, 1);
    pthread_join(w->thread, NULL);
    for (int p = 0; p < w->size; p++)
        if (w->recv_req[p] != MPI_REQUEST_NULL) {
            MPI_Cancel(&w->recv_req[p]);
            MPI_Wait(&w->recv_req[p], MPI_STATUS_IGNORE);
        }
    MPI_Comm_free(&w->comm);
    free(w->last_seen);
    free(w->in);
    free(w->recv_req);
    free(w);
}

double loom_watchdog_silence(const loom_watchdog *w) {
    if (!w) return 0;
    double now = loom_now_s(), worst = 0;
    for (int p = 0; p < w->size; p++)
        if (p != w->rank && now - w->last_seen[p] > worst) worst = now - w->last_seen[p];
    return worst;
}
