/*
 * parallel/watchdog.h — turns a stalled or dead peer into a clear error.
 *
 * MPI notices a process that died (mpirun then ends the job) but not one
 * that stopped answering (SIGSTOP, a hung node, a cut link): its peers would
 * wait forever. The watchdog is a thread on every rank that sends a
 * heartbeat to every other rank on its own communicator every timeout/4
 * seconds and checks theirs. A peer silent for `timeout` seconds makes the
 * rank print "rank R: rank P (host H) stopped answering ..." and abort the
 * job (MPI_Abort), so every rank exits within about timeout + a few seconds.
 *
 * Needs MPI_THREAD_MULTIPLE; without it start() fails and says so.
 */
#ifndef LOOM_WATCHDOG_H
#define LOOM_WATCHDOG_H

#include <mpi.h>

#include "runtime/status.h"

typedef struct loom_watchdog loom_watchdog;

/* hosts: world host names for messages (may be NULL). */
loom_status loom_watchdog_start(MPI_Comm world, double timeout_s, const char *const *hosts,
                                loom_watchdog **out) LOOM_MUST_USE;
/* Seconds since the most silent peer was last heard from (0 for NULL or
 * one rank). Thread-safe. */
double loom_watchdog_silence(const loom_watchdog *w);
/* Stops the thread. Call after a barrier so no rank sees another go quiet. */
void loom_watchdog_stop(loom_watchdog *w);

#endif
