/*
 * metrics.h: metrics objects (metrics.c: counting, snapshots, exposition;
 * registry.c: the counters' file, registering, attaching), and what an
 * observed store (observe.c) counts into them.
 */
#ifndef SCRATCH_METRICS_H
#define SCRATCH_METRICS_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#if defined(__x86_64__)
#include <x86intrin.h>
#endif

#include "scratch.h"

#define METRICS_OWNED 64                     /* stripes a thread may own */
#define METRICS_STRIPES (METRICS_OWNED + 1)  /* the last is shared */
#define METRICS_BUCKETS 22 /* finite upper bounds; one more bucket counts the rest */
#define METRICS_NOPS 3
#define METRICS_NRESULTS 2
#define METRICS_NAME_MAX 64

struct metrics_stripe {
	_Atomic uint64_t handles, bytes; /* two's complement: a stripe's share may be negative */
	_Atomic uint64_t ns[METRICS_NOPS][METRICS_NRESULTS];
	_Atomic uint64_t count[METRICS_NOPS][METRICS_NRESULTS][METRICS_BUCKETS + 1];
} __attribute__((aligned(64)));

/* The layout of a counters file; its fields are fixed while its version
 * is (registry.c checks the header of a file it attaches). */
struct metrics_shared {
	char magic[8];
	uint32_t version, stripes, buckets, stripe_size;
	int32_t pid;            /* of the process that registered it */
	char name[METRICS_NAME_MAX + 1];
	uint64_t bucket_ns[METRICS_BUCKETS];
	struct metrics_stripe stripe[METRICS_STRIPES];
};

struct scratch_metrics {
	struct metrics_shared *shared; /* mapped counters; NULL in a view */
	size_t size;                   /* of the mapping */
	pid_t pid;                     /* the process that made it (fork) */
	int fd;                        /* the counters' file (a view's too), or -1 */
	int dir;                       /* the registry directory, or -1 */
	bool view;                     /* attached: read-only, read with pread */
	_Atomic unsigned refs;         /* the caller's, and each observed store's */
	pthread_mutex_t lock;          /* registration */
	char file[METRICS_NAME_MAX + 40];   /* its registered name, or "" */
	char hidden[METRICS_NAME_MAX + 40]; /* its name once unregistered, or "" */
};

extern const uint64_t metrics_bucket_ns[METRICS_BUCKETS];

/* This process's pid, kept up to date across fork. */
extern pid_t metrics_process;

/* Set once by the first scratch_metrics_new, before any store is observed:
 * timestamps are TSC ticks (metrics.c). */
extern bool metrics_tsc;

static inline uint64_t monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A timestamp for timing an operation, in ticks that metrics_count turns
 * into nanoseconds: the TSC where the kernel keeps its own time with it,
 * else the monotonic clock's nanoseconds.  Here rdtsc takes 7 ns and
 * clock_gettime 17, and an observed operation reads the clock twice. */
static inline uint64_t metrics_ticks(void)
{
#if defined(__x86_64__)
	if (__builtin_expect(metrics_tsc, 1))
		return __rdtsc();
#endif
	return monotonic_ns();
}

/* Counts n operations (none: 0) that took `ticks` in all, each succeeding
 * if err is 0, and moves the gauges by handles and bytes. */
void metrics_count(scratch_metrics *m, enum scratch_op op, int err, uint64_t ticks, uint64_t n,
		   int64_t handles, int64_t bytes);

/* A zeroed object with one reference and no counters yet. */
scratch_metrics *metrics_alloc(void);

/* An observed store holds a reference on its metrics. */
void metrics_hold(scratch_metrics *m);
void metrics_drop(scratch_metrics *m);

/* registry.c */
/* Maps m's fresh counters: into an unnamed file of the registry directory,
 * or, where none can be made, into anonymous shared memory.  0, -ENOMEM. */
int registry_map(scratch_metrics *m);
/* The counters of a view, read now into a malloc'd copy.  0, -EIO (the
 * file shrank), -ENOMEM. */
int registry_read(const scratch_metrics *m, struct metrics_shared **copy);
/* Unlinks m's name, if this process gave it one. */
void registry_forget(scratch_metrics *m);

#endif
