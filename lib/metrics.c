/*
 * metrics.c: the metrics of observed stores, and their registry.
 *
 * Counters.  Every operation counts into a stripe: its bucket of the
 * latency histogram, its summed nanoseconds and, for puts and removes, the
 * two gauges.  A thread owns a stripe of its own (one of OWNED, handed out
 * on its first count and back at its exit), so it counts with plain loads
 * and stores: a locked add costs more here than all the rest of the
 * counting (perf: the four adds of an observed 64 B put took three
 * quarters of metrics_count).  Threads beyond OWNED, and every thread of
 * a forked child, whose mapping of the counters is its parent's, share the
 * last stripe with atomic adds.  A snapshot sums the stripes.  Buckets
 * hold their own counts; the exposition makes them cumulative, and an
 * operation's count is the sum of its buckets, so a scrape never sees a
 * count that its buckets disagree with.
 *
 * Time.  An operation is timed with two reads of the TSC where the kernel
 * keeps its time with it (its clocksource is "tsc": then the TSC runs at a
 * constant rate and agrees across CPUs), turned into nanoseconds with a
 * rate measured against CLOCK_MONOTONIC over CALIBRATE_NS when the first
 * metrics object is made; elsewhere with clock_gettime.  scratchbench
 * read 64 B, observed against plain, three rounds: 46 ns more per read
 * with clock_gettime, 28 ns with the TSC (14.6-15.1M reads/s to
 * 19.4-20.4M); the 64 B put, read and remove cycle 5.0-5.1M to 6.6-6.8M.
 *
 * Registry.  The counters live in a file of the registry directory
 * ($SCRATCH_METRICS_DIR, else /dev/shm), made with O_TMPFILE: it has no
 * name, and goes when the object does, until scratch_metrics_register
 * links it under one.  Other processes map that file read-only
 * (scratch_metrics_attach) and see the counters move.  So registering
 * copies nothing and costs the counting nothing.  The file is a struct
 * metrics_shared: a header that says what follows, then the stripes.  Where
 * no such file can be made, the counters live in anonymous memory and only
 * registering fails.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "metrics.h"

#define OWNED 64
#define STRIPES (OWNED + 1) /* the last is shared */
#define BUCKETS 22 /* finite upper bounds; one more bucket counts the rest */
#define NOPS 3
#define NRESULTS 2
#define NAME_MAX_LEN 64
#define CALIBRATE_NS 250000 /* 0.25 ms: a rate good to about 1e-4 */
#define MAGIC "SCRATCHM"
#define VERSION 1

static const uint64_t bucket_ns[BUCKETS] = {
	1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
	1000000, 2500000, 5000000, 10000000, 25000000, 50000000, 100000000, 250000000, 500000000,
	1000000000, 2500000000, 5000000000, 10000000000,
};

struct stripe {
	_Atomic uint64_t handles, bytes; /* two's complement: a stripe's share may be negative */
	_Atomic uint64_t ns[NOPS][NRESULTS];
	_Atomic uint64_t count[NOPS][NRESULTS][BUCKETS + 1];
} __attribute__((aligned(64)));

/* The layout of a registry file; its fields are fixed while VERSION is. */
struct metrics_shared {
	char magic[8];
	uint32_t version, stripes, buckets, stripe_size;
	int32_t pid;            /* of the process that registered it */
	char name[NAME_MAX_LEN + 1];
	uint64_t bucket_ns[BUCKETS];
	struct stripe stripe[STRIPES];
};

struct scratch_metrics {
	struct metrics_shared *shared; /* mapped: the registry file or anonymous */
	size_t size;
	int fd;                        /* the registry file, or -1 */
	int dir;                       /* the registry directory, or -1 */
	bool read_only;                /* attached */
	_Atomic unsigned refs;         /* the caller's, and each observed store's */
	pthread_mutex_t lock;          /* registration */
	char file[NAME_MAX_LEN + 32];  /* the registered name, or "" */
};

bool metrics_tsc;
static uint64_t tsc_mult; /* nanoseconds per tick, 32.32 fixed point */
static pthread_once_t clock_once = PTHREAD_ONCE_INIT;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static bool clocksource_is_tsc(void)
{
	FILE *f = fopen("/sys/devices/system/clocksource/clocksource0/current_clocksource", "re");
	char name[32] = "";

	if (!f)
		return false;
	if (!fgets(name, sizeof(name), f))
		name[0] = '\0';
	fclose(f);
	return strcmp(name, "tsc\n") == 0;
}

static void clock_init(void)
{
#if defined(__x86_64__)
	uint64_t t0, t1, c0, c1;

	if (!clocksource_is_tsc())
		return;
	t0 = now_ns();
	c0 = __rdtsc();
	do
		t1 = now_ns();
	while (t1 - t0 < CALIBRATE_NS);
	c1 = __rdtsc();
	if (c1 <= c0)
		return;
	tsc_mult = ((t1 - t0) << 32) / (c1 - c0);
	metrics_tsc = tsc_mult != 0;
#endif
}

static uint64_t ns_of(uint64_t ticks)
{
	return metrics_tsc ? (uint64_t)((unsigned __int128)ticks * tsc_mult >> 32) : ticks;
}

/* Bit i set: stripe i is some live thread's.  my_stripe is the index + 1
 * (0: none yet). */
static _Atomic uint64_t stripes_owned;
static __thread unsigned my_stripe __attribute__((tls_model("initial-exec")));
static pthread_key_t stripe_key;
static pthread_once_t stripe_once = PTHREAD_ONCE_INIT;
static bool stripe_key_made;
static bool forked; /* in a child: set before its only thread goes on */

static void stripe_release(void *unused)
{
	(void)unused;
	if (my_stripe && my_stripe <= OWNED)
		atomic_fetch_and_explicit(&stripes_owned, ~(1ull << (my_stripe - 1)), memory_order_release);
	my_stripe = 0;
}

static void after_fork(void)
{
	forked = true;
}

static void stripe_init(void)
{
	stripe_key_made = pthread_key_create(&stripe_key, stripe_release) == 0;
	(void)pthread_atfork(NULL, NULL, after_fork);
}

/* Claims a free stripe for this thread, or settles for the shared one. */
static unsigned stripe_claim(void)
{
	uint64_t owned;

	(void)pthread_once(&stripe_once, stripe_init);
	if (!stripe_key_made || pthread_setspecific(stripe_key, &stripe_key))
		return STRIPES;
	owned = atomic_load_explicit(&stripes_owned, memory_order_relaxed);
	while (~owned) {
		unsigned i = (unsigned)__builtin_ctzll(~owned);

		/* Acquire: the last owner's counts came before its release. */
		if (atomic_compare_exchange_weak_explicit(&stripes_owned, &owned, owned | 1ull << i,
							  memory_order_acquire, memory_order_relaxed))
			return i + 1;
	}
	return STRIPES;
}

static struct stripe *stripe_of(scratch_metrics *m)
{
	unsigned i = my_stripe;

	if (__builtin_expect(i == 0, 0))
		my_stripe = i = stripe_claim();
	return &m->shared->stripe[forked ? STRIPES - 1 : i - 1];
}

/* Adds v to a counter of stripe st: a plain read and write if st is the
 * thread's own, an atomic add if it is shared. */
static void add(scratch_metrics *m, const struct stripe *st, _Atomic uint64_t *c, uint64_t v)
{
	if (__builtin_expect(st == &m->shared->stripe[STRIPES - 1], 0))
		atomic_fetch_add_explicit(c, v, memory_order_relaxed);
	else
		atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v,
				      memory_order_relaxed);
}

/* The first bucket whose bound is at least ns (Prometheus' "le"); most
 * operations take a microsecond or less. */
static unsigned bucket_of(uint64_t ns)
{
	unsigned b = 0;

	while (b < BUCKETS && ns > bucket_ns[b])
		b++;
	return b;
}

void metrics_count(scratch_metrics *m, enum scratch_op op, int err, uint64_t ticks, uint64_t n)
{
	struct stripe *st = stripe_of(m);
	int res = err ? SCRATCH_RESULT_ERROR : SCRATCH_RESULT_SUCCESS;
	uint64_t ns = ns_of(ticks);

	if (n == 0)
		return;
	add(m, st, &st->count[op][res][bucket_of(ns / n)], n);
	add(m, st, &st->ns[op][res], ns);
}

void metrics_gauges(scratch_metrics *m, int64_t handles, int64_t bytes)
{
	struct stripe *st = stripe_of(m);

	add(m, st, &st->handles, (uint64_t)handles);
	add(m, st, &st->bytes, (uint64_t)bytes);
}

bool metrics_writable(const scratch_metrics *m)
{
	return !m->read_only;
}

void metrics_hold(scratch_metrics *m)
{
	atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
}

void metrics_drop(scratch_metrics *m)
{
	if (atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) != 1)
		return;
	if (m->shared)
		munmap(m->shared, m->size);
	if (m->fd >= 0)
		close(m->fd);
	if (m->dir >= 0)
		close(m->dir);
	pthread_mutex_destroy(&m->lock);
	free(m);
}

static size_t shared_size(void)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);

	return (sizeof(struct metrics_shared) + page - 1) / page * page;
}

/* Maps fresh counters into an unnamed file of the registry directory, or
 * into anonymous memory if that cannot be had. */
static int map_counters(scratch_metrics *m)
{
	const char *dir = getenv("SCRATCH_METRICS_DIR");
	void *p = MAP_FAILED;

	m->size = shared_size();
	m->dir = open(dir && *dir ? dir : "/dev/shm", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (m->dir >= 0)
		m->fd = openat(m->dir, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	/* Allocated in full now, so that a reader's page faults (scratchstat)
	 * do not allocate it bit by bit. */
	if (m->fd >= 0 && (fallocate(m->fd, 0, 0, (off_t)m->size) == 0 ||
			   ftruncate(m->fd, (off_t)m->size) == 0))
		p = mmap(NULL, m->size, PROT_READ | PROT_WRITE, MAP_SHARED, m->fd, 0);
	if (p == MAP_FAILED) {
		if (m->fd >= 0)
			close(m->fd);
		m->fd = -1;
		p = mmap(NULL, m->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			return -ENOMEM;
	}
	m->shared = p;
	memcpy(m->shared->magic, MAGIC, sizeof(m->shared->magic));
	m->shared->version = VERSION;
	m->shared->stripes = STRIPES;
	m->shared->buckets = BUCKETS;
	m->shared->stripe_size = sizeof(struct stripe);
	memcpy(m->shared->bucket_ns, bucket_ns, sizeof(bucket_ns));
	return 0;
}

static scratch_metrics *metrics_alloc(void)
{
	scratch_metrics *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	m->fd = m->dir = -1;
	atomic_init(&m->refs, 1);
	pthread_mutex_init(&m->lock, NULL);
	return m;
}

int scratch_metrics_new(scratch_metrics **out)
{
	scratch_metrics *m;
	int err;

	if (!out)
		return -EINVAL;
	*out = NULL;
	(void)pthread_once(&clock_once, clock_init);
	m = metrics_alloc();
	if (!m)
		return -ENOMEM;
	err = map_counters(m);
	if (err) {
		metrics_drop(m);
		return err;
	}
	*out = m;
	return 0;
}

void scratch_metrics_free(scratch_metrics *m)
{
	if (!m)
		return;
	if (!m->read_only)
		(void)scratch_metrics_unregister(m);
	metrics_drop(m);
}

static bool name_ok(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > NAME_MAX_LEN)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == '-'))
			return false;
	}
	return true;
}

/* Gives the unnamed file a name: by its descriptor where the kernel lets
 * us (it asks for CAP_DAC_READ_SEARCH), else through /proc. */
static int link_file(scratch_metrics *m, const char *file)
{
	char proc[64];

	if (linkat(m->fd, "", m->dir, file, AT_EMPTY_PATH) == 0)
		return 0;
	if (errno == EEXIST)
		return -EEXIST;
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", m->fd);
	return linkat(AT_FDCWD, proc, m->dir, file, AT_SYMLINK_FOLLOW) ? -errno : 0;
}

int scratch_metrics_register(scratch_metrics *m, const char *name)
{
	int err = 0;

	if (!m || !name || m->read_only || !name_ok(name))
		return -EINVAL;
	if (m->fd < 0)
		return -ENOTSUP;
	pthread_mutex_lock(&m->lock);
	if (m->file[0]) {
		err = -EBUSY;
	} else {
		char file[sizeof(m->file)];
		int pid = (int)getpid();

		snprintf(file, sizeof(file), "scratch-%d-%s.metrics", pid, name);
		m->shared->pid = pid;
		snprintf(m->shared->name, sizeof(m->shared->name), "%s", name);
		err = link_file(m, file);
		if (!err)
			memcpy(m->file, file, sizeof(file));
	}
	pthread_mutex_unlock(&m->lock);
	return err;
}

int scratch_metrics_unregister(scratch_metrics *m)
{
	int err = 0;

	if (!m || m->read_only)
		return -EINVAL;
	pthread_mutex_lock(&m->lock);
	if (!m->file[0])
		err = -EINVAL;
	else if (unlinkat(m->dir, m->file, 0) && errno != ENOENT)
		err = -errno; /* gone already: someone cleaned it up */
	else
		m->file[0] = '\0';
	pthread_mutex_unlock(&m->lock);
	return err;
}

static bool shared_ok(const struct metrics_shared *s)
{
	return !memcmp(s->magic, MAGIC, sizeof(s->magic)) && s->version == VERSION &&
	       s->stripes == STRIPES && s->buckets == BUCKETS &&
	       s->stripe_size == sizeof(struct stripe) &&
	       !memcmp(s->bucket_ns, bucket_ns, sizeof(bucket_ns));
}

int scratch_metrics_attach(const char *path, scratch_metrics **out)
{
	struct stat st;
	scratch_metrics *m;
	void *p;
	int fd, err = -EINVAL;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!path)
		return -EINVAL;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st)) {
		err = -errno;
	} else if (S_ISREG(st.st_mode) && (uint64_t)st.st_size >= sizeof(struct metrics_shared)) {
		p = mmap(NULL, sizeof(struct metrics_shared), PROT_READ, MAP_SHARED, fd, 0);
		if (p == MAP_FAILED)
			err = -errno;
		else if (!shared_ok(p))
			munmap(p, sizeof(struct metrics_shared));
		else if (!(m = metrics_alloc()))
			err = -ENOMEM, munmap(p, sizeof(struct metrics_shared));
		else {
			m->shared = p;
			m->size = sizeof(struct metrics_shared);
			m->read_only = true;
			*out = m;
			err = 0;
		}
	}
	close(fd);
	return err;
}

int scratch_metrics_snapshot(const scratch_metrics *m, struct scratch_metrics_snapshot *out)
{
	uint64_t handles = 0, bytes = 0;

	if (!m || !out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	for (unsigned i = 0; i < STRIPES; i++) {
		const struct stripe *st = &m->shared->stripe[i];

		handles += atomic_load_explicit(&st->handles, memory_order_relaxed);
		bytes += atomic_load_explicit(&st->bytes, memory_order_relaxed);
		for (unsigned op = 0; op < NOPS; op++) {
			for (unsigned res = 0; res < NRESULTS; res++) {
				out->seconds[op][res] +=
					(double)atomic_load_explicit(&st->ns[op][res], memory_order_relaxed) / 1e9;
				for (unsigned b = 0; b <= BUCKETS; b++)
					out->ops[op][res] += atomic_load_explicit(&st->count[op][res][b],
										  memory_order_relaxed);
			}
		}
	}
	/* A stripe's share may be negative (a thread removed what another
	 * put); the sums are not, save for a store used past its wrapper. */
	out->handles = (int64_t)handles > 0 ? handles : 0;
	out->bytes = (int64_t)bytes > 0 ? bytes : 0;
	return 0;
}

static void write_histogram(FILE *f, const scratch_metrics *m)
{
	static const char *const ops[NOPS] = { "Put", "Read", "Remove" };
	static const char *const results[NRESULTS] = { "success", "error" };

	fputs("# HELP loki_scratch_store_requests_seconds Time taken to perform operations on the scratch store\n"
	      "# TYPE loki_scratch_store_requests_seconds histogram\n", f);
	for (unsigned op = 0; op < NOPS; op++) {
		for (unsigned res = 0; res < NRESULTS; res++) {
			uint64_t count[BUCKETS + 1] = { 0 }, ns = 0, total = 0;

			for (unsigned i = 0; i < STRIPES; i++) {
				const struct stripe *st = &m->shared->stripe[i];

				ns += atomic_load_explicit(&st->ns[op][res], memory_order_relaxed);
				for (unsigned b = 0; b <= BUCKETS; b++)
					count[b] += atomic_load_explicit(&st->count[op][res][b], memory_order_relaxed);
			}
			for (unsigned b = 0; b <= BUCKETS; b++) {
				char le[32];

				total += count[b];
				if (b < BUCKETS)
					snprintf(le, sizeof(le), "%g", (double)bucket_ns[b] / 1e9);
				else
					snprintf(le, sizeof(le), "+Inf");
				fprintf(f, "loki_scratch_store_requests_seconds_bucket{operation=\"%s\",result=\"%s\",le=\"%s\"} %llu\n",
					ops[op], results[res], le, (unsigned long long)total);
			}
			fprintf(f, "loki_scratch_store_requests_seconds_sum{operation=\"%s\",result=\"%s\"} %.17g\n",
				ops[op], results[res], (double)ns / 1e9);
			fprintf(f, "loki_scratch_store_requests_seconds_count{operation=\"%s\",result=\"%s\"} %llu\n",
				ops[op], results[res], (unsigned long long)total);
		}
	}
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t k = write(fd, p, n);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

int scratch_metrics_write_prometheus(const scratch_metrics *m, int fd)
{
	struct scratch_metrics_snapshot snap;
	char *text = NULL;
	size_t len = 0;
	FILE *f;
	int err;

	if (!m || fd < 0)
		return -EINVAL;
	f = open_memstream(&text, &len);
	if (!f)
		return -ENOMEM;
	(void)scratch_metrics_snapshot(m, &snap);
	fprintf(f, "# HELP loki_scratch_store_handles Current number of handles in the scratch store\n"
		   "# TYPE loki_scratch_store_handles gauge\n"
		   "loki_scratch_store_handles %llu\n"
		   "# HELP loki_scratch_store_bytes Current number of bytes stored in the scratch store\n"
		   "# TYPE loki_scratch_store_bytes gauge\n"
		   "loki_scratch_store_bytes %llu\n",
		(unsigned long long)snap.handles, (unsigned long long)snap.bytes);
	write_histogram(f, m);
	err = ferror(f) ? -ENOMEM : 0;
	if (fclose(f) && !err)
		err = -ENOMEM;
	if (!err)
		err = write_all(fd, text, len);
	free(text);
	return err;
}
