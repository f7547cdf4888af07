/*
 * runtime/clock.h — one monotonic clock for every timing in loom.
 */
#ifndef LOOM_CLOCK_H
#define LOOM_CLOCK_H

#include <time.h>

/* Seconds on CLOCK_MONOTONIC (differences only; never goes back). */
static inline double loom_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#endif
