/*
 * htab_bench: lookups per second of the handle table, by live-set size and
 * thread count, and the table's bytes per live handle.
 *
 * A lookup is what scratch_read does to the table: htab_acquire (lock-free
 * probe + reference CAS) and later htab_put (reference drop).  Handles are
 * drawn at random from the live set, so a large table misses the caches as
 * a real one would.  Each figure is the median of --reps timed runs.
 *
 *   htab_bench [--live N[,N...]] [--threads T[,T...]] [--reps R] [--ms MS]
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "benchutil.h"
#include "htab.h"

static void no_release(void *ctx, struct htab_entry *e, unsigned shard)
{
	(void)ctx, (void)e, (void)shard;
}

static void no_destroy(void *ctx)
{
	htab_fini(ctx);
}

static const struct htab_ops ops = { .release = no_release, .destroy = no_destroy };

struct run {
	struct htab *t;
	const uint64_t *handles;
	size_t n;
	double seconds;
	_Atomic int go;
	uint64_t ops[8];
};

struct worker {
	struct run *run;
	unsigned id;
};

static void *lookup_thread(void *arg)
{
	struct worker *w = arg;
	struct run *run = w->run;
	uint64_t x = 0x9e3779b97f4a7c15ull * (w->id + 1), count = 0;

	while (!atomic_load(&run->go))
		;
	double end = bench_now() + run->seconds;

	do {
		for (int k = 0; k < 1024; k++) {
			struct htab_entry *e;

			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			if (htab_acquire(run->t, run->handles[x % run->n], &e) != 0)
				abort();
			htab_put(run->t, e);
		}
		count += 1024;
	} while (bench_now() < end);
	run->ops[w->id] = count;
	return NULL;
}

static double measure(struct run *run, unsigned threads)
{
	pthread_t tid[8];
	struct worker w[8];
	uint64_t total = 0;

	atomic_store(&run->go, 0);
	for (unsigned i = 0; i < threads; i++) {
		w[i] = (struct worker){ run, i };
		pthread_create(&tid[i], NULL, lookup_thread, &w[i]);
	}
	double start = bench_now();

	atomic_store(&run->go, 1);
	for (unsigned i = 0; i < threads; i++) {
		pthread_join(tid[i], NULL);
		total += run->ops[i];
	}
	return (double)total / (bench_now() - start);
}

int main(int argc, char **argv)
{
	size_t lives[8] = { 1000, 10000000 }, nlives = 2;
	unsigned threads[8] = { 1, 2 }, nthreads = 2, reps = 5;
	double ms = 300;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--live") && i + 1 < argc)
			nlives = bench_parse_list_size(argv[++i], lives, 8);
		else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
			nthreads = bench_parse_list_unsigned(argv[++i], threads, 8, 8);
		else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
			reps = (unsigned)strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--ms") && i + 1 < argc)
			ms = strtod(argv[++i], NULL);
		else {
			fprintf(stderr, "usage: %s [--live N,..] [--threads T,..] [--reps R] [--ms MS]\n", argv[0]);
			return 2;
		}
	}
	if (!nlives || !nthreads || !reps || reps > BENCH_MAX_REPS || ms <= 0) {
		fprintf(stderr, "%s: bad arguments\n", argv[0]);
		return 2;
	}
	printf("%-10s %-7s %14s %14s %12s %12s\n", "live", "threads", "lookups/s", "vs 1 thread",
	       "slot B/h", "entry B/h");
	for (unsigned l = 0; l < nlives; l++) {
		struct htab *t = aligned_alloc(64, sizeof(*t));
		uint64_t *handles = malloc(lives[l] * sizeof(*handles));
		struct htab_stats st;
		double first = 0;

		if (!t || !handles || htab_init(t, &ops, t)) {
			fprintf(stderr, "out of memory\n");
			return 1;
		}
		for (size_t i = 0; i < lives[l]; i++) {
			struct htab_entry *e;

			if (htab_reserve(t, &e)) {
				fprintf(stderr, "out of memory at %zu handles\n", i);
				return 1;
			}
			handles[i] = e->handle;
			htab_publish(t, e);
		}
		htab_stats(t, &st);
		struct run run = { .t = t, .handles = handles, .n = lives[l], .seconds = ms / 1000 };

		for (unsigned k = 0; k < nthreads; k++) {
			double rate[BENCH_MAX_REPS];

			measure(&run, threads[k]); /* warm-up */
			for (unsigned r = 0; r < reps; r++)
				rate[r] = measure(&run, threads[k]);
			double med = bench_median(rate, reps);

			if (k == 0)
				first = med;
			printf("%-10zu %-7u %14.0f %13.2fx %12.1f %12.1f\n", lives[l], threads[k], med,
			       med / first, (double)st.slot_bytes / (double)lives[l],
			       (double)st.entry_bytes / (double)lives[l]);
		}
		htab_close(t);
		free(handles);
	}
	return 0;
}
