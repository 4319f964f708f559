/*
 * scratchbench: the benchmark harness.  Both stores against what a user
 * would write by hand, every figure a ratio against a baseline run in the
 * same process, alternating rep by rep.
 *
 * Targets (stores):
 *   memory         scratch_memory_new
 *   store-uring    scratch_filesystem_new, SCRATCH_IO=uring (the default
 *                  write path), in its own directory
 *   store-pwrite   the same with SCRATCH_IO=pwrite (set before the store is
 *                  made; the library reads it at store creation)
 *   observed       a memory store observed with metrics (scratch_observe):
 *                  against memory, what counting costs.  Only when asked
 *                  for with --targets.
 * Baselines (bench/baseline_map.h, bench/baseline_files.h):
 *   map            malloc + memcpy + a chained hash map behind one mutex
 *   files          a file per blob, Loki's way: open(O_CREAT|O_EXCL) +
 *                  write + close to put, open + read + close to read, unlink
 *   seq-pwrite     the same bytes pwritten blob after blob into one file per
 *                  thread, no preallocation: the disk-write limit
 *   seq-uring      the same through io_uring, each write waited for before
 *                  the next (a put must be done with the caller's buffer
 *                  before it returns): the limit of a direct io_uring write
 *   memcpy         the same bytes copied to and from warm memory: the
 *                  memory limit
 *   plain-file     one plain file holding the loki blob: open + lseek + read
 *                  + close
 * A store is compared with its kind's baselines (memory_baselines[] and
 * fs_baselines[] below); a baseline with the first baseline that ran.
 *
 * Workloads:
 *   put    Each thread puts blobs of one size (the same warm buffer each
 *          time) until --ms has passed or the rep's byte budget (--put-bytes,
 *          shared by the threads) is used up; then scratch_store_flush.
 *          Timed: from the first put to the end of the flush.  Removing the
 *          blobs follows, untimed.  memcpy: a copy into one warm buffer.
 *   read   A live set of N = min(--live, --set-bytes / size) blobs is put
 *          and flushed once, untimed, split between the threads.  An op opens
 *          a reader on one blob, reads it whole into a buffer and closes it;
 *          a rep makes passes over the thread's blobs (--shared: thread 0's)
 *          until --ms has passed.
 *   view   The same, but an op touches one word of every cache line of the
 *          reader's zero-copy view (scratch_reader_data) instead of copying.
 *   remove Each rep first puts N blobs (untimed), then removes them all.
 *   mixed  The live set of N blobs is kept at that size: an op puts a blob,
 *          reads it back whole (open, read, close), makes --reads - 1 more
 *          such reads of the thread's live blobs drawn at random, and
 *          removes the thread's oldest blob.  memcpy: a copy into warm
 *          memory and --reads copies out of it.
 *   loki   One 128 MiB blob and a 4 KiB metadata blob are put and flushed,
 *          untimed.  An op (a cycle) is scratch_read + scratch_reader_seek to
 *          a random offset + read 64 KiB + scratch_reader_close; a rep is
 *          --cycles cycles shared by the threads, offsets drawn from a fixed
 *          seed, the same for every target.  --sizes and --live do not
 *          apply.  memcpy copies the same 64 KiB out of a heap copy of the
 *          blob: no store can copy faster.
 *
 * Each line compares one target with one baseline, for one workload, size,
 * thread count and live set.  Fields (table columns, JSON keys, CSV columns):
 *   workload, target, baseline  names as above
 *   bytes      blob size (loki: 65536, the bytes a cycle reads)
 *   threads    threads running the workload at once
 *   live       blobs in the live set, all threads together (0: no live set)
 *   reads      mixed: reads per op (--reads); other workloads: 0
 *   shared     read, view: 1 if the threads read the same blobs (--shared);
 *              else 0.  reads and shared: JSON and CSV only (the CSV's last
 *              columns)
 *   ops_per_s  median, over --reps timed reps after one untimed warm-up, of
 *              ops per second of the timed region, all threads together
 *   mb_per_s   ops_per_s x bytes, MB = 10^6 bytes
 *   p50_ns, p99_ns, p999_ns  per-op latency in ns, nearest rank over all
 *              threads' ops of a rep, median over reps.  put: every target,
 *              in its timed reps (put reads the clock after every op
 *              anyway).  Other workloads: the store targets, in one extra rep
 *              each whose every op reads the clock (its cost, printed in the
 *              header, is part of every sample), so that ops/s come from reps
 *              that do not.  Absent (table: "-") where not sampled.
 *   ratio      target ops/s / baseline ops/s; above 1 the target is faster
 *   baseline_ops_per_s, baseline_mb_per_s, reps   (JSON and CSV only)
 * The machine is noisy: compare ratios, not absolute rates.  On ext4,
 * creating files slows down after many recent deletes (MACHINE.md), and the
 * files baseline deletes what it made: its figures are a busy Loki's steady
 * state, well below a fresh filesystem's.
 *
 * Flags:
 *   --sizes 64,4k,1M   blob sizes, k/M/G = powers of 1024 (default 64,4k,1M)
 *   --threads 1,2      thread counts (default 1,2; at most 8)
 *   --live 1k,10M      live-set sizes, k/M = powers of 1000 (default 1k)
 *   --reads R          mixed: reads per put and remove, 0 to 1000 (default 1)
 *   --shared           read, view: every thread reads thread 0's blobs, so
 *                      threads read the same blobs at once (default: each
 *                      its own)
 *   --workloads put,read,view,remove,mixed,loki    (default all)
 *   --targets memory,store-uring,store-pwrite,map,...  stores and baselines
 *                      to run (default all but observed; at least one store)
 *   --reps R           timed reps (default 5)
 *   --ms MS            time budget of a put, read, view or mixed rep
 *                      (default 300)
 *   --put-bytes B      byte budget of a put rep (default 512M)
 *   --set-bytes B      cap on a live set's bytes (default 1G)
 *   --cycles N         loki cycles per rep (default 20k)
 *   --dir DIR          run in a new DIR/scratchbench.XXXXXX (default under
 *                      /tmp); it is removed at the end, also on error or signal
 *   --quick            sizes 64,4k,1M, 3 reps of 50 ms, small budgets: well
 *                      under a minute
 *   --no-latency       no percentiles, no extra reps for them
 *   --json             one JSON object per line, with the fields above
 *   --csv              the same fields, comma-separated, after a header line
 * In JSON and CSV modes notes go to stderr, so stdout holds only results.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <scratch.h>

#include "baseline_files.h"
#include "baseline_map.h"
#include "benchutil.h"

#define MAX_THREADS 8
#define MAX_PUT_OPS (2u << 20)   /* per put rep: bounds handle and sample arrays */
#define MAX_SAMPLES (1u << 20)   /* read samples per rep, all threads */
#define LOKI_BLOB (128u << 20)
#define LOKI_META 4096u
#define LOKI_READ (64u << 10)
#define LOKI_FILE_ID (1ull << 60)

enum workload { W_PUT, W_READ, W_VIEW, W_REMOVE, W_MIXED, W_LOKI, NWORKLOADS };
static const char *const workload_names[NWORKLOADS] = { "put", "read", "view", "remove", "mixed",
							"loki" };
/* Workloads over a set of live blobs, whose size --live sets. */
#define LIVE_WORKLOADS (1u << W_READ | 1u << W_VIEW | 1u << W_REMOVE | 1u << W_MIXED)

enum target { T_MAP, T_FILES, T_SEQ, T_SEQ_URING, T_MEMCPY, T_PLAIN, T_MEMORY, T_URING, T_SPWRITE,
	      T_OBSERVED, NTARGETS };
static const char *const target_names[NTARGETS] = { "map", "files", "seq-pwrite", "seq-uring",
						    "memcpy", "plain-file", "memory", "store-uring",
						    "store-pwrite", "observed" };
#define BIT(t) (1u << (t))
#define FS_TARGETS (BIT(T_URING) | BIT(T_SPWRITE))
#define MEMORY_TARGETS (BIT(T_MEMORY) | BIT(T_OBSERVED))
#define STORE_TARGETS (MEMORY_TARGETS | FS_TARGETS)
#define IS_STORE(t) ((t) >= T_MEMORY)

/* Each workload's baselines for the memory store and for the filesystem
 * store: a store's lines compare it with each baseline of its kind. */
static const unsigned memory_baselines[NWORKLOADS] = {
	[W_PUT] = BIT(T_MAP) | BIT(T_MEMCPY), [W_READ] = BIT(T_MAP) | BIT(T_MEMCPY),
	[W_VIEW] = BIT(T_MEMCPY), [W_REMOVE] = BIT(T_MAP), [W_MIXED] = BIT(T_MAP) | BIT(T_MEMCPY),
	[W_LOKI] = BIT(T_PLAIN) | BIT(T_MEMCPY),
};
static const unsigned fs_baselines[NWORKLOADS] = {
	[W_PUT] = BIT(T_FILES) | BIT(T_SEQ) | BIT(T_SEQ_URING), [W_READ] = BIT(T_FILES) | BIT(T_MEMCPY),
	[W_VIEW] = BIT(T_MEMCPY), [W_REMOVE] = BIT(T_FILES), [W_MIXED] = BIT(T_FILES) | BIT(T_MEMCPY),
	[W_LOKI] = BIT(T_PLAIN) | BIT(T_MEMCPY),
};

static unsigned baselines_of(enum workload w, enum target t)
{
	return BIT(t) & MEMORY_TARGETS ? memory_baselines[w] : fs_baselines[w];
}

enum output { OUT_TABLE, OUT_JSON, OUT_CSV };

struct config {
	size_t sizes[16];
	unsigned nsizes, threads[8], nthreads;
	unsigned workloads, targets; /* bit per enum workload / enum target */
	unsigned reps;
	double seconds;
	size_t live[8];
	unsigned nlive;
	size_t put_bytes, set_bytes, cycles;
	unsigned reads; /* mixed: per op */
	bool shared;    /* read, view: every thread reads thread 0's blobs */
	bool latency;
	enum output out;
	const char *dir;
};

/* One target in one configuration (workload, size, threads). */
struct target_run {
	enum target target;
	scratch_store *store;
	scratch_handle *handles[MAX_THREADS]; /* the thread's blobs: handles or map keys */
	size_t count[MAX_THREADS];            /* how many of them */
	uint64_t next_id[MAX_THREADS];        /* mixed, files: the next file number */
	struct baseline_map *map;
	struct baseline_seq seq[MAX_THREADS];
	unsigned char *src[MAX_THREADS];      /* memcpy: the thread's blobs' bytes */
	scratch_handle loki;
	double rate[BENCH_MAX_REPS];
	double p50[BENCH_MAX_REPS], p99[BENCH_MAX_REPS], p999[BENCH_MAX_REPS];
	unsigned nsampled;                    /* reps with percentiles */
};

struct bench {
	const struct config *cfg;
	enum workload w;
	size_t size;       /* blob size; loki: the read size */
	unsigned threads;
	size_t per_thread; /* put: op limit; live workloads: blobs; loki: cycles */
	struct baseline_files files;
	unsigned char *blob[MAX_THREADS], *buf[MAX_THREADS];
	unsigned char *loki_src; /* loki_bytes: the run's, not freed here */
	uint64_t *samples; /* threads slices of samplecap */
	size_t samplecap, nsamples[MAX_THREADS];
	struct target_run *run;
	bool sampling;     /* all but put: this rep times each op */
	uint64_t deadline_ns;
	_Atomic int error;
	uint64_t ops[MAX_THREADS];
	/* The worker threads (pool_start) and the job they are given. */
	struct worker {
		struct bench *b;
		unsigned id;
		pthread_t tid;
	} workers[MAX_THREADS];
	unsigned started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	enum job { JOB_FILL, JOB_REP, JOB_EXIT } job;
	unsigned gen, pending;
};

static volatile sig_atomic_t interrupted;
static char run_dir[4096];
static atomic_uint nlog, nwarn;
/* The loki blob's bytes, made by the first loki configuration and kept for
 * the others (one per thread count), which would each remake the same 128 MiB;
 * main frees them. */
static unsigned char *loki_bytes;

static size_t min_size(size_t a, size_t b)
{
	return a < b ? a : b;
}

__attribute__((format(printf, 2, 3)))
static void note(const struct config *cfg, const char *fmt, ...)
{
	va_list ap;
	FILE *f = cfg->out == OUT_TABLE ? stdout : stderr;

	va_start(ap, fmt);
	fputs("# ", f);
	vfprintf(f, fmt, ap);
	fputc('\n', f);
	va_end(ap);
}

static int fail(struct bench *b, const char *what, int err)
{
	if (!interrupted) /* else main says so, once */
		fprintf(stderr, "scratchbench: %s%s%s: %s\n", b->run ? target_names[b->run->target] : "",
			b->run ? " " : "", what, scratch_strerror(err));
	atomic_store(&b->error, 1);
	return err;
}

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	remove(path);
	return 0;
}

static void remove_run_dir(void)
{
	if (run_dir[0])
		nftw(run_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	run_dir[0] = 0;
}

static void log_line(void *ctx, enum scratch_log_level level, const char *line)
{
	static const char *const names[] = { "debug", "info", "warn", "error" };

	if (level < SCRATCH_LOG_INFO)
		return;
	if (level >= SCRATCH_LOG_WARN)
		atomic_fetch_add(&nwarn, 1);
	unsigned k = atomic_fetch_add(&nlog, 1);

	if (k < 20)
		fprintf(stderr, "scratchbench: %s: %s %s\n", (const char *)ctx, names[level], line);
	else if (k == 20)
		fprintf(stderr, "scratchbench: further store log lines not shown\n");
}

/* A store for target t; a filesystem store in its own directory under run_dir. */
static int store_new(enum target t, scratch_store **out)
{
	scratch_logger logger = { log_line, (void *)target_names[t] };
	char path[sizeof(run_dir) + 32];

	if (t == T_OBSERVED) {
		scratch_metrics *m;
		scratch_store *s;
		int err = scratch_metrics_new(&m);

		if (!err && !(err = scratch_memory_new(&s)) && (err = scratch_observe(m, s, out)))
			scratch_store_close(s);
		scratch_metrics_free(m); /* the store keeps it until it closes */
		return err;
	}
	if (t == T_MEMORY)
		return scratch_memory_new(out);
	snprintf(path, sizeof(path), "%s/%s", run_dir, target_names[t]);
	/* Read when the store is made; only the bench's stores read it. */
	setenv("SCRATCH_IO", t == T_URING ? "uring" : "pwrite", 1);
	return scratch_filesystem_new(&logger, path, out);
}

/* File ids: workload in the top bits, then thread, then blob number. */
static uint64_t file_id(enum workload w, unsigned thread, size_t n)
{
	return (uint64_t)w << 56 | (uint64_t)thread << 48 | n;
}

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
	return *s * 0x2545f4914f6cdd1dull;
}

/* The loki blob's bytes, made on first use from a fixed seed; NULL if out
 * of memory. */
static unsigned char *get_loki_bytes(void)
{
	uint64_t s = 88172645463325252ull;

	if (loki_bytes || !(loki_bytes = malloc(LOKI_BLOB)))
		return loki_bytes;
	for (size_t i = 0; i < LOKI_BLOB / 8; i++) {
		uint64_t v = xorshift(&s);

		memcpy(loki_bytes + i * 8, &v, 8);
	}
	return loki_bytes;
}

/* Reads a store blob through a reader: open, seek if off, read n, close. */
static ssize_t store_read(scratch_store *s, scratch_handle h, int64_t off, void *buf, size_t n)
{
	scratch_reader *r;
	size_t done = 0;
	ssize_t k = scratch_read(s, h, &r);

	if (k)
		return k;
	if (off && (k = scratch_reader_seek(r, off, SEEK_SET)) != off)
		k = k < 0 ? k : -EIO;
	else
		k = 0;
	while (!k && done < n && (k = scratch_reader_read(r, (char *)buf + done, n - done)) > 0)
		done += (size_t)k, k = 0;
	scratch_reader_close(r);
	return k < 0 ? k : (ssize_t)done;
}

/* Opens a reader on h and sums one word of every cache line of its view. */
static ssize_t store_view(scratch_store *s, scratch_handle h, uint64_t *sum)
{
	scratch_reader *r;
	ssize_t k = scratch_read(s, h, &r);

	if (k)
		return k;
	const unsigned char *p = scratch_reader_data(r);
	size_t n = (size_t)scratch_reader_size(r);
	uint64_t v = 0, word;

	for (size_t off = 0; off + 8 <= n; off += 64) {
		memcpy(&word, p + off, 8);
		v += word;
	}
	*sum += v + (n ? p[0] + p[n - 1] : 0);
	__asm__ volatile("" : : "r"(*sum)); /* the sum is used: the loads stay */
	scratch_reader_close(r);
	return (ssize_t)n;
}

/*
 * memcpy: where a thread's blob n lives in its src[].  read and view keep
 * the whole live set, a slot a blob, and copy out of it as a store reads
 * its blobs; put and mixed copy into one warm slot (mixed reads it back).
 */
static size_t memcpy_offset(const struct bench *b, uint64_t n)
{
	return b->w == W_READ || b->w == W_VIEW ? n * b->size : 0;
}

/* Keeps blob n of the thread's; the key goes to *key (map, store). */
static int keep_blob(struct bench *b, unsigned id, uint64_t n, uint64_t *key)
{
	struct target_run *run = b->run;

	switch (run->target) {
	case T_MAP:
		return baseline_put(run->map, b->blob[id], b->size, key);
	case T_FILES:
		return baseline_file_put(&b->files, file_id(b->w, id, n), b->blob[id], b->size);
	case T_SEQ:
	case T_SEQ_URING:
		return baseline_seq_append(&run->seq[id], b->blob[id], b->size);
	case T_MEMCPY:
		memcpy(run->src[id] + memcpy_offset(b, n), b->blob[id], b->size);
		__asm__ volatile("" : : "r"(run->src[id]) : "memory");
		return 0;
	default:
		return scratch_put(run->store, b->blob[id], b->size, key);
	}
}

/* Reads blob n of thread owner's whole into thread id's buffer and checks
 * its ends. */
static int read_blob(struct bench *b, unsigned id, unsigned owner, uint64_t n, uint64_t key)
{
	struct target_run *run = b->run;
	unsigned char *buf = b->buf[id];
	const unsigned char *blob = b->blob[owner];
	uint64_t sum = 0;
	ssize_t got;

	switch (run->target) {
	case T_MAP:
		got = baseline_read(run->map, key, buf, b->size);
		break;
	case T_FILES:
		got = baseline_file_read(&b->files, file_id(b->w, owner, n), 0, buf, b->size);
		break;
	case T_MEMCPY:
		memcpy(buf, run->src[owner] + memcpy_offset(b, n), b->size);
		__asm__ volatile("" : : "r"(buf) : "memory");
		got = (ssize_t)b->size;
		break;
	default:
		if (b->w == W_VIEW)
			return store_view(run->store, key, &sum) == (ssize_t)b->size ? 0 : -EIO;
		got = store_read(run->store, key, 0, buf, b->size);
		break;
	}
	if (got >= 0 && (got != (ssize_t)b->size ||
			 (b->size && (buf[0] != blob[0] || buf[b->size - 1] != blob[b->size - 1]))))
		got = -EIO;
	return got < 0 ? (int)got : 0;
}

static int drop_blob(struct bench *b, unsigned id, uint64_t n, uint64_t key)
{
	struct target_run *run = b->run;

	switch (run->target) {
	case T_MAP:
		return baseline_remove(run->map, key) ? SCRATCH_ENOTFOUND : 0;
	case T_FILES:
		return baseline_file_remove(&b->files, file_id(b->w, id, n));
	case T_MEMCPY:
	case T_SEQ:
	case T_SEQ_URING:
	case T_PLAIN:
		return 0;
	default:
		return scratch_remove(run->store, key);
	}
}

/* Files the latency of the op that ends now, if this rep samples; false
 * when the sample buffer is full, which ends the rep. */
static bool sample(struct bench *b, uint64_t *lat, size_t *nlat, uint64_t *t0)
{
	if (!lat)
		return true;
	uint64_t t1 = bench_now_ns();

	lat[(*nlat)++] = t1 - *t0;
	*t0 = t1;
	return *nlat < b->samplecap;
}

/* Where this thread's latencies go, NULL if this rep does not sample; the
 * clock starts at *t0. */
static uint64_t *op_samples(struct bench *b, unsigned id, uint64_t *t0)
{
	uint64_t *lat = b->sampling ? b->samples + id * b->samplecap : NULL;

	*t0 = lat ? bench_now_ns() : 0;
	return lat;
}

static int loop_done(struct bench *b, unsigned id, size_t n, size_t nlat)
{
	b->ops[id] = n;
	b->nsamples[id] = nlat;
	return 0;
}

/* Is the rep over at time now? */
static bool rep_over(struct bench *b, uint64_t now)
{
	return now >= b->deadline_ns || interrupted ||
	       atomic_load_explicit(&b->error, memory_order_relaxed);
}

/* Puts until the time or byte budget is spent; every op is timed. */
static int put_loop(struct bench *b, unsigned id)
{
	struct target_run *run = b->run;
	uint64_t *lat = b->cfg->latency ? b->samples + id * b->samplecap : NULL;
	uint64_t t0 = bench_now_ns();
	size_t n = 0;
	int err = 0;

	while (n < b->per_thread) {
		if ((err = keep_blob(b, id, n, &run->handles[id][n])))
			break;
		uint64_t t1 = bench_now_ns();

		if (lat)
			lat[n] = t1 - t0;
		t0 = t1;
		n++;
		if (rep_over(b, t1))
			break;
	}
	run->count[id] = b->ops[id] = b->nsamples[id] = n;
	return err ? fail(b, "put", err) : 0;
}

/* read, view: passes over the thread's blobs (--shared: thread 0's) until
 * the time is up. */
static int read_loop(struct bench *b, unsigned id)
{
	struct target_run *run = b->run;
	unsigned owner = b->cfg->shared ? 0 : id;
	const uint64_t *keys = run->handles[owner];
	uint64_t t0, *lat = op_samples(b, id, &t0);
	size_t n = 0, nlat = 0, j = 0, count = run->count[owner];
	int err;

	do {
		for (unsigned k = 0; k < 16; k++, n++) {
			if ((err = read_blob(b, id, owner, j, keys[j])))
				return fail(b, workload_names[b->w], err);
			j = j + 1 == count ? 0 : j + 1;
			if (!sample(b, lat, &nlat, &t0))
				goto out;
		}
	} while (!rep_over(b, bench_now_ns()));
out:
	return loop_done(b, id, n, nlat);
}

/* remove: removes every blob the rep's fill made. */
static int remove_loop(struct bench *b, unsigned id)
{
	struct target_run *run = b->run;
	uint64_t t0, *lat = op_samples(b, id, &t0);
	size_t n, nlat = 0;
	int err;

	for (n = 0; n < run->count[id] && !interrupted; n++) {
		if ((err = drop_blob(b, id, n, run->handles[id][n])))
			return fail(b, "remove", err);
		sample(b, lat, &nlat, &t0);
	}
	run->count[id] = 0;
	return loop_done(b, id, n, nlat);
}

/* mixed: each op puts a blob, reads it back whole, reads --reads - 1 live
 * blobs drawn at random and removes the oldest of the thread's ring of live
 * blobs, which stays at its size. */
static int mixed_loop(struct bench *b, unsigned id)
{
	struct target_run *run = b->run;
	uint64_t t0, *lat = op_samples(b, id, &t0), *ring = run->handles[id];
	uint64_t rng = 0x9e3779b97f4a7c15ull * (id + 1);
	/* A local copy: next_id[] is one line for all threads, and a store to
	 * it on every op made 2 threads' ops cross between cores. */
	uint64_t next = run->next_id[id];
	size_t n = 0, nlat = 0, live = run->count[id];
	size_t slot = next % live; /* where blob next - live is; steps with next */
	int err = 0;

	do {
		for (unsigned k = 0; k < 16; k++, n++) {
			uint64_t key = 0, fid = next;

			if ((err = keep_blob(b, id, fid, &key)))
				goto out;
			for (unsigned r = 0; r < b->cfg->reads && !err; r++) {
				/* Ring slot j holds blob fid - live + (j - slot) % live. */
				size_t j = (size_t)(xorshift(&rng) % live);

				err = r == 0 ? read_blob(b, id, id, fid, key)
					     : read_blob(b, id, id, fid - live + (j + live - slot) % live, ring[j]);
			}
			if (err || (err = drop_blob(b, id, fid - live, ring[slot])))
				goto out; /* the new blob is not in the ring: cleanup misses it */
			ring[slot] = key;
			next = fid + 1;
			slot = slot + 1 == live ? 0 : slot + 1;
			if (!sample(b, lat, &nlat, &t0))
				goto out;
		}
	} while (!rep_over(b, bench_now_ns()));
out:
	run->next_id[id] = next;
	return err ? fail(b, "mixed", err) : loop_done(b, id, n, nlat);
}

static int loki_loop(struct bench *b, unsigned id)
{
	struct target_run *run = b->run;
	unsigned char *buf = b->buf[id];
	uint64_t t0, *lat = op_samples(b, id, &t0);
	uint64_t rng = 0x9e3779b97f4a7c15ull * (id + 1);
	size_t n, nlat = 0;

	for (n = 0; n < b->per_thread && !interrupted; n++) {
		off_t off = (off_t)(xorshift(&rng) % (LOKI_BLOB - LOKI_READ + 1));
		ssize_t got;

		if (run->target == T_PLAIN)
			got = baseline_file_read(&b->files, LOKI_FILE_ID, off, buf, LOKI_READ);
		else if (run->target == T_MEMCPY)
			got = (ssize_t)LOKI_READ, memcpy(buf, b->loki_src + off, LOKI_READ);
		else
			got = store_read(run->store, run->loki, off, buf, LOKI_READ);
		if (got >= 0 && (got != LOKI_READ || memcmp(buf, b->loki_src + off, 8)))
			got = -EIO;
		if (got < 0)
			return fail(b, "loki cycle", (int)got);
		sample(b, lat, &nlat, &t0);
	}
	return loop_done(b, id, n, nlat);
}

static void fill_thread(struct bench *b, unsigned id);

static void run_job(struct bench *b, unsigned id)
{
	if (b->job == JOB_FILL) {
		fill_thread(b, id);
		return;
	}
	switch (b->w) {
	case W_PUT: put_loop(b, id); break;
	case W_READ:
	case W_VIEW: read_loop(b, id); break;
	case W_REMOVE: remove_loop(b, id); break;
	case W_MIXED: mixed_loop(b, id); break;
	default: loki_loop(b, id); break;
	}
}

/*
 * The workers live as long as their configuration and do its fills as well
 * as its reps, as a pipeline's threads would: the library keeps state per
 * thread (the shards a thread puts into), which threads made anew for each
 * rep would never let settle.
 */
static void *worker_main(void *arg)
{
	struct worker *wk = arg;
	struct bench *b = wk->b;
	unsigned seen = 0;

	pthread_mutex_lock(&b->mu);
	for (;;) {
		while (b->gen == seen)
			pthread_cond_wait(&b->cv, &b->mu);
		seen = b->gen;
		if (b->job == JOB_EXIT)
			break;
		pthread_mutex_unlock(&b->mu);
		if (!atomic_load(&b->error))
			run_job(b, wk->id);
		pthread_mutex_lock(&b->mu);
		if (--b->pending == 0)
			pthread_cond_broadcast(&b->cv);
	}
	pthread_mutex_unlock(&b->mu);
	return NULL;
}

/* Runs job on every worker and waits for all of them. */
static void dispatch(struct bench *b, enum job job)
{
	pthread_mutex_lock(&b->mu);
	b->job = job;
	b->pending = b->started;
	b->gen++;
	pthread_cond_broadcast(&b->cv);
	while (job != JOB_EXIT && b->pending)
		pthread_cond_wait(&b->cv, &b->mu);
	pthread_mutex_unlock(&b->mu);
}

static int pool_start(struct bench *b)
{
	for (; b->started < b->threads; b->started++) {
		struct worker *wk = &b->workers[b->started];

		*wk = (struct worker){ .b = b, .id = b->started };
		if (pthread_create(&wk->tid, NULL, worker_main, wk))
			return fail(b, "starting threads", -EAGAIN);
	}
	return 0;
}

static void pool_stop(struct bench *b)
{
	dispatch(b, JOB_EXIT);
	for (unsigned i = 0; i < b->started; i++)
		pthread_join(b->workers[i].tid, NULL);
}

/* The k-th smallest of v[0..n), left at v[k] with smaller ones before it. */
static uint64_t select_kth(uint64_t *v, size_t n, size_t k)
{
	ptrdiff_t lo = 0, hi = (ptrdiff_t)n - 1;

	while (lo < hi) {
		uint64_t pivot = v[lo + (hi - lo) / 2], t;
		ptrdiff_t i = lo, j = hi;

		while (i <= j) {
			while (v[i] < pivot)
				i++;
			while (v[j] > pivot)
				j--;
			if (i <= j)
				t = v[i], v[i++] = v[j], v[j--] = t;
		}
		if ((ptrdiff_t)k <= j)
			hi = j;
		else if ((ptrdiff_t)k >= i)
			lo = i;
		else
			break;
	}
	return v[k];
}

/* Gathers the threads' samples and files this rep's percentiles under slot.
 * Each selection leaves smaller samples before it, so the next, lower
 * percentile is selected among those alone. */
static void percentiles(struct bench *b, struct target_run *run, unsigned slot)
{
	size_t n = 0;

	if (!b->samples)
		return;
	for (unsigned i = 0; i < b->threads; i++) {
		memmove(b->samples + n, b->samples + i * b->samplecap, b->nsamples[i] * sizeof(*b->samples));
		n += b->nsamples[i];
	}
	if (!n)
		return;
	size_t k999 = (n * 999 + 999) / 1000 - 1, k99 = (n * 99 + 99) / 100 - 1, k50 = (n + 1) / 2 - 1;

	run->p999[slot] = (double)select_kth(b->samples, n, k999);
	run->p99[slot] = (double)select_kth(b->samples, k999 + 1, k99);
	run->p50[slot] = (double)select_kth(b->samples, k99 + 1, k50);
	run->nsampled = slot + 1;
}

/* Untimed: gives back what a put rep made. */
static int put_cleanup(struct bench *b, struct target_run *run)
{
	int err = 0;

	for (unsigned i = 0; i < b->threads; i++) {
		for (size_t j = 0; j < run->count[i] && !err; j++)
			err = drop_blob(b, i, j, run->handles[i][j]);
		if ((run->target == T_SEQ || run->target == T_SEQ_URING) && !err)
			err = baseline_seq_reset(&run->seq[i]);
		run->count[i] = 0;
	}
	return err ? fail(b, "cleanup", err) : 0;
}

/* Untimed, on worker id: keeps per_thread blobs for it, numbered from 0. */
static void fill_thread(struct bench *b, unsigned id)
{
	struct target_run *run = b->run;
	int err = 0;

	for (size_t j = 0; j < b->per_thread && !err && !interrupted; j++) {
		err = keep_blob(b, id, j, &run->handles[id][j]);
		run->count[id] += !err;
	}
	run->next_id[id] = run->count[id];
	if (err)
		fail(b, "filling the live set", err);
}

/* Untimed: fills every worker's live set, each on its own thread. */
static int fill(struct bench *b, struct target_run *run)
{
	int err = 0;

	b->run = run;
	dispatch(b, JOB_FILL);
	if (atomic_load(&b->error))
		return -1;
	if (IS_STORE(run->target))
		err = scratch_store_flush(run->store);
	if (!err && interrupted)
		err = -EINTR;
	return err ? fail(b, "filling the live set", err) : 0;
}

/* One rep of run; returns ops/s, or -1 on error.  rep 0 is the warm-up;
 * the percentiles of rep r go to slot r - 1. */
static double measure(struct bench *b, struct target_run *run, unsigned rep)
{
	uint64_t total = 0;

	b->run = run;
	if (b->w == W_REMOVE && fill(b, run))
		return -1;
	memset(b->nsamples, 0, sizeof(b->nsamples));
	memset(b->ops, 0, sizeof(b->ops));
	uint64_t start = bench_now_ns();

	b->deadline_ns = start + (uint64_t)(b->cfg->seconds * 1e9);
	dispatch(b, JOB_REP);
	for (unsigned i = 0; i < b->started; i++)
		total += b->ops[i];
	if (b->w == W_PUT && IS_STORE(run->target) && !atomic_load(&b->error)) {
		int err = scratch_store_flush(run->store);

		if (err)
			fail(b, "flush", err);
	}
	double seconds = (double)(bench_now_ns() - start) * 1e-9;

	if (rep > 0 && !atomic_load(&b->error))
		percentiles(b, run, rep - 1);
	if (b->w == W_PUT)
		put_cleanup(b, run);
	if (interrupted)
		atomic_store(&b->error, 1);
	return atomic_load(&b->error) ? -1 : (double)total / seconds;
}

/* Untimed: makes what the target needs before its reps. */
static int setup(struct bench *b, struct target_run *run)
{
	enum target t = run->target;
	bool live = LIVE_WORKLOADS & BIT(b->w);
	int err = 0;

	b->run = run;
	if (IS_STORE(t) && (err = store_new(t, &run->store)))
		return fail(b, "creating the store", err);
	if (t == T_MAP && (!(run->map = malloc(sizeof(*run->map))) || baseline_map_init(run->map))) {
		free(run->map);
		run->map = NULL;
		return fail(b, "creating the map", -ENOMEM);
	}
	for (unsigned i = 0; i < b->threads && !err; i++) {
		if (t == T_SEQ || t == T_SEQ_URING)
			err = baseline_seq_open(&run->seq[i], &b->files, file_id(W_PUT, i, SIZE_MAX >> 16),
						t == T_SEQ_URING);
		if (b->w != W_LOKI &&
		    !(run->handles[i] = calloc(b->per_thread, sizeof(scratch_handle))))
			err = -ENOMEM;
		/* memcpy: room up to the end of the thread's last blob. */
		if (t == T_MEMCPY && b->w != W_LOKI &&
		    !(run->src[i] = malloc(memcpy_offset(b, b->per_thread - 1) + b->size + 1)))
			err = -ENOMEM;
	}
	if (err)
		return fail(b, "setting up", err);
	if (live && b->w != W_REMOVE)
		return fill(b, run);
	if (b->w == W_LOKI) {
		scratch_handle meta;

		if (t == T_PLAIN)
			err = baseline_file_put(&b->files, LOKI_FILE_ID, b->loki_src, LOKI_BLOB);
		else if (IS_STORE(t) && !(err = scratch_put(run->store, b->loki_src, LOKI_BLOB, &run->loki)))
			err = scratch_put(run->store, b->loki_src, LOKI_META, &meta);
		if (!err && IS_STORE(t))
			err = scratch_store_flush(run->store);
	}
	return err ? fail(b, "setting up", err) : 0;
}

static void teardown(struct bench *b, struct target_run *run)
{
	b->run = run;
	for (unsigned i = 0; i < b->threads; i++) {
		/* The files of a live set, which the store and map would free. */
		size_t first = run->next_id[i] - run->count[i];

		for (size_t j = 0; run->target == T_FILES && j < run->count[i]; j++)
			baseline_file_remove(&b->files, file_id(b->w, i, first + j));
		baseline_seq_close(&run->seq[i]);
		free(run->handles[i]);
		free(run->src[i]);
	}
	if (run->target == T_PLAIN)
		baseline_file_remove(&b->files, LOKI_FILE_ID);
	if (run->map) {
		baseline_map_fini(run->map);
		free(run->map);
	}
	scratch_store_close(run->store);
}

static void print_line(const struct bench *b, struct target_run *t, struct target_run *base)
{
	const struct config *cfg = b->cfg;
	double ops = bench_median(t->rate, cfg->reps), bops = bench_median(base->rate, cfg->reps);
	double mb = ops * (double)b->size / 1e6, bmb = bops * (double)b->size / 1e6;
	double ratio = bops > 0 ? ops / bops : 0;
	double p50 = t->nsampled ? bench_median(t->p50, t->nsampled) : -1;
	double p99 = t->nsampled ? bench_median(t->p99, t->nsampled) : -1;
	double p999 = t->nsampled ? bench_median(t->p999, t->nsampled) : -1;
	const char *w = workload_names[b->w], *tn = target_names[t->target], *bn = target_names[base->target];
	size_t live = LIVE_WORKLOADS & BIT(b->w) ? b->per_thread * b->threads : 0;
	unsigned reads = b->w == W_MIXED ? cfg->reads : 0;
	int shared = (b->w == W_READ || b->w == W_VIEW) && cfg->shared;

	if (cfg->out == OUT_JSON) {
		printf("{\"workload\":\"%s\",\"target\":\"%s\",\"baseline\":\"%s\",\"bytes\":%zu,"
		       "\"threads\":%u,\"live\":%zu,\"reads\":%u,\"shared\":%d,\"ops_per_s\":%.1f,\"mb_per_s\":%.3f,"
		       "\"ratio\":%.4f,\"baseline_ops_per_s\":%.1f,\"baseline_mb_per_s\":%.3f,\"reps\":%u",
		       w, tn, bn, b->size, b->threads, live, reads, shared, ops, mb, ratio, bops, bmb, cfg->reps);
		if (p50 >= 0)
			printf(",\"p50_ns\":%.0f,\"p99_ns\":%.0f,\"p999_ns\":%.0f", p50, p99, p999);
		printf("}\n");
	} else if (cfg->out == OUT_CSV) {
		printf("%s,%s,%s,%zu,%u,%zu,%.1f,%.3f,%.4f,%.1f,%.3f,%u,", w, tn, bn, b->size, b->threads, live,
		       ops, mb, ratio, bops, bmb, cfg->reps);
		if (p50 >= 0)
			printf("%.0f,%.0f,%.0f,%u,%d\n", p50, p99, p999, reads, shared);
		else
			printf(",,,%u,%d\n", reads, shared);
	} else {
		char l50[24] = "-", l99[24] = "-", l999[24] = "-";

		if (p50 >= 0) {
			snprintf(l50, sizeof(l50), "%.0f", p50);
			snprintf(l99, sizeof(l99), "%.0f", p99);
			snprintf(l999, sizeof(l999), "%.0f", p999);
		}
		printf("%-6s %8zu %3u %8zu  %-12s %10.0f %8.1f %8s %8s %8s  %-10s %10.0f %7.2fx\n", w,
		       b->size, b->threads, live, tn, ops, mb, l50, l99, l999, bn, bops, ratio);
	}
	fflush(stdout);
}

/* One configuration: set up, alternate the targets rep by rep, print. */
static int bench_config(const struct config *cfg, enum workload w, size_t size, unsigned threads,
			size_t live)
{
	struct bench b = { .cfg = cfg, .w = w, .size = size, .threads = threads,
			   .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };
	struct target_run runs[NTARGETS];
	unsigned n = 0, ready = 0, bases = 0;
	size_t total;
	int err = 0;
	char files_dir[sizeof(run_dir) + 8];

	for (enum target t = T_MEMORY; t < NTARGETS; t++)
		if (cfg->targets & BIT(t))
			bases |= baselines_of(w, t);
	for (enum target t = 0; t < NTARGETS; t++)
		if (cfg->targets & (bases | STORE_TARGETS) & BIT(t))
			runs[n++] = (struct target_run){ .target = t };
	if (w == W_PUT)
		total = min_size(cfg->put_bytes / size, MAX_PUT_OPS);
	else if (LIVE_WORKLOADS & BIT(w))
		total = min_size(cfg->set_bytes / size, live);
	else
		total = cfg->cycles;
	b.per_thread = total / threads ? total / threads : 1;
	b.samplecap = w == W_READ || w == W_VIEW || w == W_MIXED ? MAX_SAMPLES / threads : b.per_thread;
	snprintf(files_dir, sizeof(files_dir), "%s/files", run_dir);
	if ((err = baseline_files_open(&b.files, files_dir)))
		return fail(&b, "opening the bench directory", err);
	if (cfg->latency && !(b.samples = malloc(threads * b.samplecap * sizeof(*b.samples))))
		err = -ENOMEM;
	if (!err && w == W_LOKI && !(b.loki_src = get_loki_bytes()))
		err = -ENOMEM;
	for (unsigned i = 0; i < threads && !err; i++) {
		size_t bufsize = size > LOKI_READ ? size : LOKI_READ;

		if (!(b.blob[i] = malloc(size)) || !(b.buf[i] = malloc(bufsize)))
			err = -ENOMEM;
		for (size_t k = 0; !err && k < size; k++)
			b.blob[i][k] = (unsigned char)(k * 131 + i * 7 + 1);
		if (!err)
			memset(b.buf[i], 0, bufsize);
	}
	if (err) {
		fail(&b, "allocating buffers", err);
		goto out;
	}
	err = pool_start(&b);
	for (; ready < n && !err; ready++)
		err = setup(&b, &runs[ready]);
	/* Rep 0 warms up; the targets alternate so noise hurts them alike. */
	for (unsigned r = 0; r <= cfg->reps && !err; r++) {
		for (unsigned t = 0; t < n && !err; t++) {
			double v = measure(&b, &runs[t], r);

			if (v < 0)
				err = -1;
			else if (r > 0)
				runs[t].rate[r - 1] = v;
		}
	}
	/* All but put: the percentiles' own rep, its ops/s not counted. */
	for (unsigned t = 0; t < n && !err && w != W_PUT && cfg->latency; t++) {
		b.sampling = IS_STORE(runs[t].target);
		if (b.sampling && measure(&b, &runs[t], 1) < 0)
			err = -1;
		b.sampling = false;
	}
	/* A store against each baseline of its kind; a baseline against the
	 * first that ran. */
	for (unsigned t = 0; t < n && !err; t++) {
		if (!IS_STORE(runs[t].target)) {
			print_line(&b, &runs[t], &runs[0]);
			continue;
		}
		unsigned printed = 0;

		for (unsigned k = 0; k < n; k++)
			if (baselines_of(w, runs[t].target) & BIT(runs[k].target))
				print_line(&b, &runs[t], &runs[k]), printed++;
		if (!printed) /* its baselines were left out: the store alone */
			print_line(&b, &runs[t], &runs[t]);
	}
out:
	pool_stop(&b);
	for (unsigned t = 0; t < ready; t++)
		teardown(&b, &runs[t]);
	for (unsigned i = 0; i < threads; i++)
		free(b.blob[i]), free(b.buf[i]);
	free(b.samples);
	baseline_files_close(&b.files);
	return err ? -1 : 0;
}

static void usage(const char *argv0)
{
	fprintf(stderr,
		"usage: %s [--quick] [--sizes 64,4k,1M] [--threads 1,2] [--live 1k,10M]\n"
		"       [--workloads put,read,view,remove,mixed,loki] [--targets memory,store-uring,...]\n"
		"       [--reps R] [--ms MS] [--put-bytes B] [--set-bytes B] [--cycles N] [--reads R]\n"
		"       [--shared] [--dir DIR] [--no-latency] [--json | --csv]\n"
		"sizes and bytes take k/M/G (powers of 1024), counts k/M (powers of 1000);\n"
		"what each figure means: the comment at the top of bench/scratchbench.c\n",
		argv0);
	exit(2);
}

/* "a,b" -> a bit per name found in names[0..n); 0 on an unknown name. */
static unsigned parse_names(const char *s, const char *const *names, unsigned n)
{
	unsigned bits = 0;

	while (*s) {
		size_t len = strcspn(s, ",");
		unsigned i = 0;

		while (i < n && (strlen(names[i]) != len || strncmp(s, names[i], len)))
			i++;
		if (i == n)
			return 0;
		bits |= 1u << i;
		s += len + (s[len] == ',');
	}
	return bits;
}

static size_t parse_one(const char *s, bool bytes)
{
	size_t v[1];

	return (bytes ? bench_parse_list_bytes(s, v, 1) : bench_parse_list_size(s, v, 1)) ? v[0] : 0;
}

static void parse_args(int argc, char **argv, struct config *cfg)
{
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick")) {
			cfg->reps = 3, cfg->seconds = 0.05;
			cfg->sizes[0] = 64, cfg->sizes[1] = 4096, cfg->sizes[2] = 1 << 20, cfg->nsizes = 3;
			cfg->put_bytes = 64 << 20, cfg->set_bytes = 32 << 20, cfg->cycles = 2000;
		}
	}
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *next = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--quick"))
			continue;
		else if (!strcmp(a, "--no-latency"))
			cfg->latency = false;
		else if (!strcmp(a, "--shared"))
			cfg->shared = true;
		else if (!strcmp(a, "--json"))
			cfg->out = OUT_JSON;
		else if (!strcmp(a, "--csv"))
			cfg->out = OUT_CSV;
		else if (!next)
			usage(argv[0]);
		else if (i++, !strcmp(a, "--sizes"))
			cfg->nsizes = bench_parse_list_bytes(next, cfg->sizes, 16);
		else if (!strcmp(a, "--threads"))
			cfg->nthreads = bench_parse_list_unsigned(next, cfg->threads, 8, MAX_THREADS);
		else if (!strcmp(a, "--live"))
			cfg->nlive = bench_parse_list_size(next, cfg->live, 8);
		else if (!strcmp(a, "--workloads"))
			cfg->workloads = parse_names(next, workload_names, NWORKLOADS);
		else if (!strcmp(a, "--targets"))
			cfg->targets = parse_names(next, target_names, NTARGETS);
		else if (!strcmp(a, "--reps"))
			cfg->reps = (unsigned)strtoul(next, NULL, 10);
		else if (!strcmp(a, "--ms"))
			cfg->seconds = strtod(next, NULL) / 1000;
		else if (!strcmp(a, "--put-bytes"))
			cfg->put_bytes = parse_one(next, true);
		else if (!strcmp(a, "--set-bytes"))
			cfg->set_bytes = parse_one(next, true);
		else if (!strcmp(a, "--cycles"))
			cfg->cycles = parse_one(next, false);
		else if (!strcmp(a, "--reads"))
			cfg->reads = (unsigned)strtoul(next, NULL, 10);
		else if (!strcmp(a, "--dir"))
			cfg->dir = next;
		else
			usage(argv[0]);
	}
	for (unsigned i = 0; i < cfg->nsizes; i++)
		if (!cfg->sizes[i])
			cfg->nsizes = 0;
	for (unsigned i = 0; i < cfg->nthreads; i++)
		if (!cfg->threads[i])
			cfg->nthreads = 0;
	/* Naming only baselines would leave nothing to compare. */
	if (!cfg->nsizes || !cfg->nthreads || !cfg->nlive || !cfg->workloads || !cfg->reps ||
	    cfg->reps > BENCH_MAX_REPS || !(cfg->seconds > 0) || !cfg->put_bytes || !cfg->set_bytes ||
	    !cfg->cycles || cfg->reads > 1000 || !(cfg->targets & STORE_TARGETS))
		usage(argv[0]);
}

static const char *fs_name(const char *path)
{
	struct statfs st;

	if (statfs(path, &st))
		return "?";
	switch ((unsigned long)st.f_type) {
	case 0xEF53: return "ext4";
	case 0x01021994: return "tmpfs";
	case 0x58465342: return "xfs";
	case 0x9123683E: return "btrfs";
	default: return "other";
	}
}

/* Makes each filesystem target's store once, so that a directory it cannot
 * use is reported before any figure. */
static int probe_stores(const struct config *cfg)
{
	for (enum target t = T_URING; t <= T_SPWRITE; t++) {
		scratch_store *s;
		int err;

		if (!(cfg->targets & BIT(t)))
			continue;
		if ((err = store_new(t, &s))) {
			fprintf(stderr, "scratchbench: cannot make a %s store in %s: %s\n", target_names[t], run_dir,
				scratch_strerror(err));
			return -1;
		}
		scratch_store_close(s);
	}
	return 0;
}

static void print_header(const struct config *cfg)
{
	uint64_t t0 = bench_now_ns();

	for (int i = 0; i < 1000; i++)
		(void)bench_now_ns();
	note(cfg, "scratchbench in %s (%s); medians of %u reps after a warm-up; %.0f ms per timed rep",
	     run_dir, fs_name(run_dir), cfg->reps, cfg->seconds * 1000);
	note(cfg, "put: puts until the time or %zu MiB budget, then flush; read: open + read all + close;",
	     cfg->put_bytes >> 20);
	note(cfg, "view: open + touch the zero-copy view + close; remove: remove the live set;");
	note(cfg, "mixed: put + %u read(s) (the new blob, then random live ones) + remove the oldest live blob;",
	     cfg->reads);
	note(cfg, "live sets capped at %zu MiB;%s", cfg->set_bytes >> 20,
	     cfg->shared ? " read, view: every thread reads thread 0's blobs (--shared);" : "");
	note(cfg, "loki: read + seek (random) + read 64 KiB + close of a 128 MiB blob, %zu cycles",
	     cfg->cycles);
	note(cfg, "p50/p99/p999: per-op ns%s (clock_gettime: %.0f ns a call); ratio: target/baseline ops/s",
	     cfg->latency ? "" : ", off", (double)(bench_now_ns() - t0) / 1000);
}

static void print_columns(const struct config *cfg)
{
	if (cfg->out == OUT_TABLE)
		printf("%-6s %8s %3s %8s  %-12s %10s %8s %8s %8s %8s  %-10s %10s %8s\n", "work", "bytes", "thr",
		       "live", "target", "ops/s", "MB/s", "p50_ns", "p99_ns", "p999_ns", "baseline", "ops/s",
		       "ratio");
	else if (cfg->out == OUT_CSV)
		printf("workload,target,baseline,bytes,threads,live,ops_per_s,mb_per_s,ratio,baseline_ops_per_s,"
		       "baseline_mb_per_s,reps,p50_ns,p99_ns,p999_ns,reads,shared\n");
	fflush(stdout);
}

int main(int argc, char **argv)
{
	struct config cfg = {
		.sizes = { 64, 4096, 1 << 20 }, .nsizes = 3, .threads = { 1, 2 }, .nthreads = 2,
		.live = { 1000 }, .nlive = 1, .workloads = (1u << NWORKLOADS) - 1,
		.targets = ((1u << NTARGETS) - 1) & ~BIT(T_OBSERVED), .reps = 5, .seconds = 0.3, .put_bytes = (size_t)512 << 20,
		.set_bytes = (size_t)1 << 30, .cycles = 20000, .reads = 1, .latency = true, .out = OUT_TABLE,
	};
	/* A second SIGINT/SIGTERM/SIGHUP kills at once; SIGPIPE never does. */
	struct sigaction sa = { .sa_handler = on_signal, .sa_flags = SA_RESETHAND };
	struct sigaction pipe_sa = { .sa_handler = on_signal };
	char files_dir[sizeof(run_dir) + 8];
	int status = 0;

	parse_args(argc, argv, &cfg);
	snprintf(run_dir, sizeof(run_dir), "%s/scratchbench.XXXXXX", cfg.dir ? cfg.dir : "/tmp");
	if (!mkdtemp(run_dir)) {
		fprintf(stderr, "scratchbench: cannot make a directory %s: %s\n", run_dir, strerror(errno));
		return 1;
	}
	atexit(remove_run_dir);
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigemptyset(&pipe_sa.sa_mask);
	sigaction(SIGPIPE, &pipe_sa, NULL);
	snprintf(files_dir, sizeof(files_dir), "%s/files", run_dir);
	if (mkdir(files_dir, 0700)) {
		fprintf(stderr, "scratchbench: cannot make %s: %s\n", files_dir, strerror(errno));
		return 1;
	}
	print_header(&cfg);
	if (probe_stores(&cfg))
		return 1;
	print_columns(&cfg);
	for (enum workload w = 0; w < NWORKLOADS && !status; w++) {
		if (!(cfg.workloads & 1u << w))
			continue;
		for (unsigned s = 0; s < (w == W_LOKI ? 1 : cfg.nsizes) && !status; s++)
			for (unsigned l = 0; l < (LIVE_WORKLOADS & BIT(w) ? cfg.nlive : 1) && !status; l++)
				for (unsigned t = 0; t < cfg.nthreads && !status; t++)
					status = bench_config(&cfg, w, w == W_LOKI ? LOKI_READ : cfg.sizes[s],
							      cfg.threads[t], cfg.live[l]);
	}
	if (atomic_load(&nwarn))
		note(&cfg, "%u store warnings (see stderr): some blobs may have gone to the memory fallback",
		     atomic_load(&nwarn));
	free(loki_bytes);
	if (interrupted)
		fprintf(stderr, "scratchbench: interrupted\n");
	return interrupted ? 130 : status ? 1 : 0;
}
