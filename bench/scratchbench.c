/*
 * scratchbench: the benchmark harness.
 *
 * Workload "cycle": each op puts a blob, reads it back whole (open reader,
 * read all, close) and removes the blob put `live` ops earlier, so the live
 * set stays bounded per thread.  The same ops run, in the same process and
 * interleaved repetition by repetition, against
 *   - the memory store (libscratch),
 *   - baseline "map": malloc + memcpy + one mutex-protected hash map, what a
 *     user would write by hand,
 *   - baseline "memcpy": the two copies alone into warm memory, the limit.
 * Every figure is a median over --reps timed runs after one warm-up; ratios
 * are against the baseline measured in the same run.  The machine is noisy:
 * compare ratios, not absolute rates.
 *
 *   scratchbench [--quick] [--sizes 64,4k,...] [--threads 1,2] [--live N]
 *                [--targets store,map,memcpy] [--reps R] [--ms MS]
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <scratch.h>

#include "baseline_map.h"
#include "benchutil.h"

#define MAX_THREADS 8

enum target { TARGET_STORE, TARGET_MAP, TARGET_MEMCPY, NTARGETS };
static const char *const target_names[NTARGETS] = { "store", "map", "memcpy" };

struct config {
	size_t sizes[16];
	unsigned nsizes;
	unsigned threads[8];
	unsigned nthreads;
	size_t live;
	unsigned reps;
	double seconds;
	unsigned targets; /* bit per enum target */
};

struct run {
	enum target target;
	scratch_store *store;
	struct baseline_map *map;
	size_t size, live;
	double seconds;
	_Atomic int go;
	uint64_t ops[MAX_THREADS];
	int error;
};

struct worker {
	struct run *run;
	unsigned id;
};

static void fail(struct run *run, const char *what, int err)
{
	fprintf(stderr, "scratchbench: %s: %s\n", what, scratch_strerror(err));
	run->error = 1;
}

/* One op of the store: put, read all, remove the one put `live` ago. */
static int store_op(struct run *run, const void *blob, void *buf, scratch_handle *ring, size_t slot)
{
	scratch_reader *r;
	scratch_handle h;
	int err = scratch_put(run->store, blob, run->size, &h);

	if (err)
		return fail(run, "put", err), err;
	err = scratch_read(run->store, h, &r);
	if (err)
		return fail(run, "read", err), err;
	while (scratch_reader_read(r, buf, run->size) > 0)
		;
	scratch_reader_close(r);
	if (ring[slot] && (err = scratch_remove(run->store, ring[slot])))
		return fail(run, "remove", err), err;
	ring[slot] = h;
	return 0;
}

static int map_op(struct run *run, const void *blob, void *buf, uint64_t *ring, size_t slot)
{
	uint64_t key;

	if (baseline_put(run->map, blob, run->size, &key))
		return fail(run, "baseline put", -ENOMEM), -ENOMEM;
	if (baseline_read(run->map, key, buf, run->size) < 0)
		return fail(run, "baseline read", SCRATCH_ENOTFOUND), -1;
	if (ring[slot] && baseline_remove(run->map, ring[slot]))
		return fail(run, "baseline remove", SCRATCH_ENOTFOUND), -1;
	ring[slot] = key;
	return 0;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct run *run = w->run;
	unsigned char *blob = malloc(run->size ? run->size : 1);
	unsigned char *buf = malloc(run->size ? run->size : 1);
	unsigned char *copy = malloc(run->size ? run->size : 1);
	uint64_t *ring = calloc(run->live, sizeof(*ring));
	uint64_t count = 0;

	if (!blob || !buf || !copy || !ring) {
		fail(run, "allocating buffers", -ENOMEM);
		goto out;
	}
	memset(blob, 0x5a, run->size);
	memset(buf, 0, run->size);
	memset(copy, 0, run->size);
	while (!atomic_load(&run->go))
		;
	double end = bench_now() + run->seconds;

	do {
		for (unsigned k = 0; k < 16 && !run->error; k++, count++) {
			size_t slot = count % run->live;

			switch (run->target) {
			case TARGET_STORE:
				store_op(run, blob, buf, ring, slot);
				break;
			case TARGET_MAP:
				map_op(run, blob, buf, ring, slot);
				break;
			case TARGET_MEMCPY:
				memcpy(copy, blob, run->size);
				memcpy(buf, copy, run->size);
				__asm__ volatile("" : : "r"(buf), "r"(copy) : "memory");
				break;
			case NTARGETS:
				break;
			}
		}
	} while (!run->error && bench_now() < end);
	for (size_t i = 0; i < run->live && run->target != TARGET_MEMCPY; i++) {
		if (!ring[i])
			continue;
		if (run->target == TARGET_STORE)
			scratch_remove(run->store, ring[i]);
		else
			baseline_remove(run->map, ring[i]);
	}
out:
	run->ops[w->id] = count;
	free(blob);
	free(buf);
	free(copy);
	free(ring);
	return NULL;
}

/* Runs one timed repetition; returns ops/s, or a negative value on error. */
static double measure(struct run *run, unsigned threads)
{
	pthread_t tid[MAX_THREADS];
	struct worker w[MAX_THREADS];
	uint64_t total = 0;

	atomic_store(&run->go, 0);
	for (unsigned i = 0; i < threads; i++) {
		w[i] = (struct worker){ run, i };
		if (pthread_create(&tid[i], NULL, worker_main, &w[i])) {
			fprintf(stderr, "scratchbench: cannot start threads\n");
			exit(1);
		}
	}
	double start = bench_now();

	atomic_store(&run->go, 1);
	for (unsigned i = 0; i < threads; i++) {
		pthread_join(tid[i], NULL);
		total += run->ops[i];
	}
	return run->error ? -1 : (double)total / (bench_now() - start);
}

static int bench_cycle(const struct config *cfg, size_t size, unsigned threads)
{
	struct baseline_map map;
	struct run run[NTARGETS];
	double rate[NTARGETS][BENCH_MAX_REPS], med[NTARGETS];
	scratch_store *store;
	int err = scratch_memory_new(&store);

	if (err || baseline_map_init(&map)) {
		fprintf(stderr, "scratchbench: cannot make a store: %s\n", scratch_strerror(err));
		return 1;
	}
	for (unsigned t = 0; t < NTARGETS; t++)
		run[t] = (struct run){ .target = t, .store = store, .map = &map, .size = size,
				       .live = cfg->live, .seconds = cfg->seconds };
	/* Warm-up, then repetitions with the targets interleaved so that a
	 * noisy moment hurts all of them alike. */
	for (unsigned r = 0; r <= cfg->reps; r++) {
		for (unsigned t = 0; t < NTARGETS; t++) {
			if (!(cfg->targets & 1u << t))
				continue;
			double v = measure(&run[t], threads);

			if (v < 0)
				return 1;
			if (r > 0)
				rate[t][r - 1] = v;
		}
	}
	for (unsigned t = 0; t < NTARGETS; t++)
		med[t] = cfg->targets & 1u << t ? bench_median(rate[t], cfg->reps) : 0;
	for (unsigned t = 0; t < NTARGETS; t++) {
		if (!(cfg->targets & 1u << t))
			continue;
		printf("%-6s %-7s %9zu %7u %14.0f %10.1f", "cycle", target_names[t], size, threads, med[t],
		       med[t] * (double)size * 2 / 1e6);
		if (t == TARGET_STORE && med[TARGET_MAP] > 0 && med[TARGET_MEMCPY] > 0)
			printf("   %5.2fx map  %5.2fx memcpy\n", med[t] / med[TARGET_MAP], med[t] / med[TARGET_MEMCPY]);
		else
			printf("\n");
	}
	scratch_store_close(store);
	baseline_map_fini(&map);
	return 0;
}

static void usage(const char *argv0)
{
	fprintf(stderr,
		"usage: %s [--quick] [--sizes 64,4k,1M] [--threads 1,2] [--targets store,map,memcpy]\n"
		"       [--live N] [--reps R] [--ms MS]\n"
		"sizes take k/M suffixes (powers of 1024)\n",
		argv0);
	exit(2);
}

/* "store,map" -> a bit per target; 0 on an unknown name. */
static unsigned parse_targets(const char *s)
{
	unsigned bits = 0;

	while (*s) {
		size_t len = strcspn(s, ",");
		unsigned t = 0;

		while (t < NTARGETS && (strlen(target_names[t]) != len || strncmp(s, target_names[t], len)))
			t++;
		if (t == NTARGETS)
			return 0;
		bits |= 1u << t;
		s += len + (s[len] == ',');
	}
	return bits;
}

int main(int argc, char **argv)
{
	struct config cfg = {
		.sizes = { 64, 4096, 65536, 1 << 20 }, .nsizes = 4,
		.threads = { 1, 2 }, .nthreads = 2,
		.live = 1000, .reps = 5, .seconds = 0.3, .targets = (1u << NTARGETS) - 1,
	};

	for (int i = 1; i < argc; i++) {
		const char *next = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(argv[i], "--quick")) {
			cfg.sizes[0] = 64, cfg.sizes[1] = 4096, cfg.sizes[2] = 1 << 20, cfg.nsizes = 3;
			cfg.reps = 3, cfg.seconds = 0.2;
		} else if (!strcmp(argv[i], "--sizes") && next) {
			cfg.nsizes = bench_parse_list_bytes(next, cfg.sizes, 16), i++;
		} else if (!strcmp(argv[i], "--threads") && next) {
			cfg.nthreads = bench_parse_list_unsigned(next, cfg.threads, 8, MAX_THREADS), i++;
		} else if (!strcmp(argv[i], "--live") && next) {
			size_t v[1];

			cfg.live = bench_parse_list_size(next, v, 1) ? v[0] : 0, i++;
		} else if (!strcmp(argv[i], "--targets") && next) {
			cfg.targets = parse_targets(next), i++;
		} else if (!strcmp(argv[i], "--reps") && next) {
			cfg.reps = (unsigned)strtoul(next, NULL, 10), i++;
		} else if (!strcmp(argv[i], "--ms") && next) {
			cfg.seconds = strtod(next, NULL) / 1000, i++;
		} else {
			usage(argv[0]);
		}
	}
	if (!cfg.nsizes || !cfg.nthreads || !cfg.targets || !cfg.live || !cfg.reps || cfg.reps > BENCH_MAX_REPS ||
	    !(cfg.seconds > 0))
		usage(argv[0]);

	printf("# cycle = put + read all + remove, %zu live per thread; medians of %u runs of %.0f ms\n",
	       cfg.live, cfg.reps, cfg.seconds * 1000);
	printf("%-6s %-7s %9s %7s %14s %10s   %s\n", "work", "target", "bytes", "threads", "ops/s", "MB/s",
	       "store vs baselines");
	for (unsigned s = 0; s < cfg.nsizes; s++)
		for (unsigned t = 0; t < cfg.nthreads; t++)
			if (bench_cycle(&cfg, cfg.sizes[s], cfg.threads[t]))
				return 1;
	return 0;
}
