/*
 * metrics.h: what an observed store (observe.c) counts into a metrics
 * object (metrics.c).
 */
#ifndef SCRATCH_METRICS_H
#define SCRATCH_METRICS_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "scratch.h"

#if defined(__x86_64__)
#include <x86intrin.h>
#endif

/* Set once by the first scratch_metrics_new, before any store is observed:
 * timestamps are TSC ticks (metrics.c). */
extern bool metrics_tsc;

/* A timestamp for timing an operation, in ticks that metrics_count turns
 * into nanoseconds: the TSC where the kernel keeps its own time with it,
 * else the monotonic clock's nanoseconds.  Here rdtsc takes 7 ns and
 * clock_gettime 17, and an observed operation reads the clock twice. */
static inline uint64_t metrics_ticks(void)
{
	struct timespec ts;

#if defined(__x86_64__)
	if (__builtin_expect(metrics_tsc, 1))
		return __rdtsc();
#endif
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Counts n operations that took `ticks` in all, each succeeding if err is
 * 0. */
void metrics_count(scratch_metrics *m, enum scratch_op op, int err, uint64_t ticks, uint64_t n);

/* Moves the gauges by handles and bytes. */
void metrics_gauges(scratch_metrics *m, int64_t handles, int64_t bytes);

/* False for a read-only view (scratch_metrics_attach). */
bool metrics_writable(const scratch_metrics *m);

/* An observed store holds a reference on its metrics. */
void metrics_hold(scratch_metrics *m);
void metrics_drop(scratch_metrics *m);

#endif
