/*
 * test_filesystem.c: the filesystem store through the public API, one store
 * at a time, with nothing going wrong.
 *
 * Covers: creating and opening stores (paths, modes, bad arguments); round
 * trips of many sizes before and after scratch_store_flush, and seek rules;
 * the store's files (mode 0600, gone after close, neighbours untouched);
 * readers outliving remove and close; handle rules; disk space released by
 * remove; fd and file leaks over many cycles; SCRATCH_IO=pwrite;
 * multi-threaded stress; writers, putv and batches.
 * Other stores and failures: test_filesystem_faults.c; a full disk:
 * test_filesystem_enospc.c.  Helpers: fs_testutil.h.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs_testutil.h"

/* -------------------------------------------------- round trips, seeks */

static const size_t rt_sizes[] = { 0, 1, 64, 4095, 4096, 65536, 65537, MiB, 5 * MiB, 64 * MiB };
enum { NRT = sizeof(rt_sizes) / sizeof(rt_sizes[0]) };

/* Every size, read back before and after a flush, then again put after it. */
static void round_trips(scratch_store *s)
{
	struct blob b[2 * NRT];

	for (unsigned i = 0; i < NRT; i++)
		b[i] = put_seeded(s, 100 + i, rt_sizes[i]);
	expect_blobs(s, b, NRT); /* staged or written: reads work either way */
	require(scratch_store_flush(s) == 0);
	expect_blobs(s, b, NRT);
	for (unsigned i = 0; i < NRT; i++)
		b[NRT + i] = put_seeded(s, 200 + i, rt_sizes[i]);
	expect_blobs(s, b, 2 * NRT);
	require(scratch_store_flush(s) == 0);
	expect_blobs(s, b, 2 * NRT);
	for (unsigned i = 0; i < 2 * NRT; i++)
		require(scratch_remove(s, b[i].h) == 0);
}

static void seek_rules(scratch_store *s, const struct blob *b)
{
	const int64_t n = (int64_t)b->n;
	unsigned char *want = malloc(b->n), c[16];
	scratch_reader *r;

	require(n > 200 && want);
	fill(want, b->n, b->seed);
	require(scratch_read(s, b->h, &r) == 0);
	require(scratch_reader_seek(r, 100, SEEK_SET) == 100);
	require(scratch_reader_read(r, c, 10) == 10 && memcmp(c, want + 100, 10) == 0);
	require(scratch_reader_seek(r, -50, SEEK_CUR) == 60);
	require(scratch_reader_read(r, c, 1) == 1 && c[0] == want[60]);
	require(scratch_reader_seek(r, -1, SEEK_END) == n - 1);
	require(scratch_reader_read(r, c, sizeof(c)) == 1 && c[0] == want[n - 1]);
	require(scratch_reader_read(r, c, sizeof(c)) == 0);
	require(scratch_reader_seek(r, 10, SEEK_END) == n + 10);
	require(scratch_reader_read(r, c, sizeof(c)) == 0);
	require(scratch_reader_seek(r, n + 1000, SEEK_SET) == n + 1000);
	require(scratch_reader_read(r, c, sizeof(c)) == 0);
	require(scratch_reader_seek(r, -1, SEEK_CUR) == n + 999);
	/* Bad results give -EINVAL and leave the offset where it was. */
	require(scratch_reader_seek(r, 7, SEEK_SET) == 7);
	require(scratch_reader_seek(r, -1, SEEK_SET) == -EINVAL);
	require(scratch_reader_seek(r, -8, SEEK_CUR) == -EINVAL);
	require(scratch_reader_seek(r, -n - 1, SEEK_END) == -EINVAL);
	require(scratch_reader_seek(r, INT64_MAX, SEEK_CUR) == -EINVAL);
	require(scratch_reader_seek(r, 0, 42) == -EINVAL);
	require(scratch_reader_seek(r, 0, SEEK_CUR) == 7);
	require(scratch_reader_read(r, c, 1) == 1 && c[0] == want[7]);
	require(scratch_reader_close(r) == 0);
	free(want);
}

/* ------------------------------------------------ multi-threaded stress */

enum { MT_THREADS = 4, MT_LIVE = 24, MT_SMALL = 256 * 1024 };
#define MT_BIG (5 * MiB)

struct mt_run {
	scratch_store *s;
	unsigned rounds;
	unsigned flush_every; /* 0: never */
	struct {
		pthread_mutex_t mu;
		struct blob b; /* the thread's latest, for the others to read */
	} slot[MT_THREADS];
};

struct mt_arg {
	struct mt_run *run;
	unsigned id;
};

static uint64_t rng_next(uint64_t *x)
{
	*x ^= *x >> 12, *x ^= *x << 25, *x ^= *x >> 27;
	return *x * 0x2545F4914F6CDD1Dull;
}

static void mt_check(scratch_store *s, const struct blob *b, unsigned char *want,
		     unsigned char *got)
{
	scratch_reader *r;

	require(scratch_read(s, b->h, &r) == 0);
	fill(want, b->n, b->seed);
	verify_reader(r, want, b->n, got);
	require(scratch_reader_close(r) == 0);
}

static void *mt_thread(void *p)
{
	const struct mt_arg *a = p;
	struct mt_run *run = a->run;
	struct blob live[MT_LIVE];
	unsigned nlive = 0;
	uint64_t rng = 0x9E3779B97F4A7C15ull * (a->id + 1);
	unsigned char *want = malloc(MT_BIG), *got = malloc(MT_BIG + 1);

	require(want && got);
	for (unsigned r = 0; r < run->rounds; r++) {
		struct blob b = { .seed = (uint64_t)a->id << 32 | r };

		b.n = rng_next(&rng) % 48 == 0 ? MT_BIG : rng_next(&rng) % (MT_SMALL + 1);
		fill(want, b.n, b.seed);
		require(scratch_put(run->s, want, b.n, &b.h) == 0);
		mt_check(run->s, &b, want, got);
		if (nlive == MT_LIVE) { /* a bounded live set: drop one at random */
			unsigned k = (unsigned)(rng_next(&rng) % nlive);

			mt_check(run->s, &live[k], want, got);
			require(scratch_remove(run->s, live[k].h) == 0);
			live[k] = live[--nlive];
		}
		live[nlive++] = b;
		pthread_mutex_lock(&run->slot[a->id].mu);
		run->slot[a->id].b = b;
		pthread_mutex_unlock(&run->slot[a->id].mu);

		/* Another thread's latest blob: it may be removed under us. */
		unsigned o = (a->id + 1 + r % (MT_THREADS - 1)) % MT_THREADS;
		struct blob ob;
		scratch_reader *rd;

		pthread_mutex_lock(&run->slot[o].mu);
		ob = run->slot[o].b;
		pthread_mutex_unlock(&run->slot[o].mu);
		if (ob.h) {
			int err = scratch_read(run->s, ob.h, &rd);

			require(err == 0 || err == SCRATCH_ENOTFOUND);
			if (err == 0) {
				fill(want, ob.n, ob.seed);
				verify_reader(rd, want, ob.n, got);
				require(scratch_reader_close(rd) == 0);
			}
		}
		if (run->flush_every && r % run->flush_every == 0)
			require(scratch_store_flush(run->s) == 0);
	}
	while (nlive--) {
		mt_check(run->s, &live[nlive], want, got);
		require(scratch_remove(run->s, live[nlive].h) == 0);
	}
	free(want);
	free(got);
	return NULL;
}

static void stress(scratch_store *s, unsigned flush_every)
{
	struct mt_run run = { .s = s, .rounds = scaled(300), .flush_every = flush_every };
	struct mt_arg args[MT_THREADS];
	pthread_t t[MT_THREADS];

	for (unsigned i = 0; i < MT_THREADS; i++)
		pthread_mutex_init(&run.slot[i].mu, NULL);
	for (unsigned i = 0; i < MT_THREADS; i++) {
		args[i] = (struct mt_arg){ &run, i };
		require(pthread_create(&t[i], NULL, mt_thread, &args[i]) == 0);
	}
	for (unsigned i = 0; i < MT_THREADS; i++)
		require(pthread_join(t[i], NULL) == 0);
	for (unsigned i = 0; i < MT_THREADS; i++)
		pthread_mutex_destroy(&run.slot[i].mu);
}

/* --------------------------------------------------------------- cases */

START_TEST(test_create_and_open)
{
	char dir[PATH_MAX], path[PATH_MAX + 16], file[PATH_MAX + 16];
	scratch_store *s, *bogus = (scratch_store *)&s;
	struct stat st;

	case_dir(dir);
	umask(022);
	snprintf(path, sizeof(path), "%s/a/b/c", dir);
	s = fs_new(NULL, path); /* NULL logger: logs nothing */
	require(stat(path, &st) == 0 && S_ISDIR(st.st_mode));
	ck_assert_uint_eq(st.st_mode & 07777, 0700);
	snprintf(file, sizeof(file), "%s/a/b", dir);
	require(stat(file, &st) == 0 && S_ISDIR(st.st_mode));
	struct blob b = put_seeded(s, 1, 100);

	expect_blob(s, &b);
	require(scratch_store_flush(s) == 0);
	require(count_files(path) >= 1);
	scratch_store_close(s);
	require(count_files(path) == 0);

	/* scratch_open on an existing directory: a filesystem store. */
	s = NULL;
	require(scratch_open(NULL, path, &s) == 0 && s != NULL);
	b = put_seeded(s, 2, 100);
	require(scratch_store_flush(s) == 0);
	expect_blob(s, &b);
	require(count_files(path) >= 1);
	scratch_store_close(s);
	require(count_files(path) == 0);

	/* Missing: -ENOENT, and nothing created; not a directory: -ENOTDIR. */
	snprintf(path, sizeof(path), "%s/missing", dir);
	s = bogus;
	require(scratch_open(NULL, path, &s) == -ENOENT && s == NULL);
	require(stat(path, &st) == -1 && errno == ENOENT);
	snprintf(file, sizeof(file), "%s/plain", dir);
	write_file(file, "x");
	s = bogus;
	require(scratch_open(NULL, file, &s) == -ENOTDIR && s == NULL);
	s = bogus;
	require(scratch_filesystem_new(NULL, file, &s) == -ENOTDIR && s == NULL);
	snprintf(path, sizeof(path), "%s/plain/sub", dir);
	s = bogus;
	require(scratch_filesystem_new(NULL, path, &s) == -ENOTDIR && s == NULL);
	expect_file(file, "x");

	/* NULL or "": a memory store, which has nothing to flush. */
	for (int i = 0; i < 2; i++) {
		s = NULL;
		require(scratch_open(NULL, i ? "" : NULL, &s) == 0 && s != NULL);
		b = put_seeded(s, 3, 5000);
		require(scratch_store_flush(s) == 0);
		expect_blob(s, &b);
		scratch_store_close(s);
	}

	/* Bad arguments. */
	s = bogus;
	require(scratch_filesystem_new(NULL, NULL, &s) == -EINVAL && s == NULL);
	s = bogus;
	require(scratch_filesystem_new(NULL, "", &s) == -EINVAL && s == NULL);
	require(scratch_filesystem_new(NULL, dir, NULL) == -EINVAL);
	require(scratch_open(NULL, dir, NULL) == -EINVAL);
	require(scratch_store_flush(NULL) == -EINVAL);
	require(count_files(dir) == 0);
	rm_rf(dir);
}
END_TEST

START_TEST(test_round_trips_and_seek)
{
	char dir[PATH_MAX];
	scratch_store *s;

	case_dir(dir);
	s = fs_new(NULL, dir);
	round_trips(s);
	struct blob mid = put_seeded(s, 7, 65537), big = put_seeded(s, 8, 5 * MiB);

	seek_rules(s, &mid); /* staged */
	seek_rules(s, &big);
	require(scratch_store_flush(s) == 0);
	seek_rules(s, &mid); /* written */
	seek_rules(s, &big);
	scratch_store_close(s);
	require(count_files(dir) == 0);
	rm_rf(dir);
}
END_TEST

/* Reads of 256 KiB and more (reader.c reads them from the segment's file
 * with pread) from every offset kind, of blobs staged, written straight
 * into a shared segment, and in a file of their own, also after their
 * remove; each compared byte for byte. */
static void expect_large_reads(scratch_store *s, const struct blob *b)
{
	static const size_t from[] = { 0, 1, 4096, 12345 };
	unsigned char *want = malloc(b->n), *got = malloc(b->n);
	scratch_reader *r;

	require(want && got);
	fill(want, b->n, b->seed);
	require(scratch_read(s, b->h, &r) == 0);
	for (unsigned i = 0; i < sizeof(from) / sizeof(from[0]); i++) {
		size_t n = b->n - from[i];

		memset(got, 0, b->n);
		require(scratch_reader_seek(r, (int64_t)from[i], SEEK_SET) == (int64_t)from[i]);
		require(scratch_reader_read(r, got, n) == (ssize_t)n);
		require(memcmp(got, want + from[i], n) == 0);
		require(scratch_reader_read(r, got, n) == 0);
	}
	require(scratch_remove(s, b->h) == 0);
	require(scratch_reader_seek(r, 7, SEEK_SET) == 7);
	require(scratch_reader_read(r, got, b->n) == (ssize_t)(b->n - 7));
	require(memcmp(got, want + 7, b->n - 7) == 0);
	require(scratch_reader_close(r) == 0);
	free(want);
	free(got);
}

START_TEST(test_large_reads)
{
	char dir[PATH_MAX];
	scratch_store *s;

	case_dir(dir);
	s = fs_new(NULL, dir);
	struct blob staged = put_seeded(s, 1, 600 * 1024), shared = put_seeded(s, 2, MiB + 5),
		    own = put_seeded(s, 3, 5 * MiB);
	struct blob again = put_seeded(s, 4, 600 * 1024);

	expect_large_reads(s, &staged); /* maybe still in a buffer */
	require(scratch_store_flush(s) == 0);
	expect_large_reads(s, &again); /* written */
	expect_large_reads(s, &shared);
	expect_large_reads(s, &own);
	scratch_store_close(s);
	require(count_files(dir) == 0);
	rm_rf(dir);
}
END_TEST

START_TEST(test_files)
{
	char dir[PATH_MAX], path[PATH_MAX + 32];
	struct blob b[54];
	size_t total = 0;
	struct files f;
	scratch_store *s;

	case_dir(dir);
	snprintf(path, sizeof(path), "%s/keep.txt", dir);
	write_file(path, "keep me");
	snprintf(path, sizeof(path), "%s/notes.lokiscratch.txt", dir);
	write_file(path, "not mine");
	snprintf(path, sizeof(path), "%s/sub", dir);
	require(mkdir(path, 0700) == 0);
	snprintf(path, sizeof(path), "%s/sub/inner.txt", dir);
	write_file(path, "inner");

	s = fs_new(NULL, dir);
	for (unsigned i = 0; i < 54; i++) {
		size_t n = i < 50 ? 1000 : i < 53 ? 65536 : 5 * MiB;

		b[i] = put_seeded(s, i, n);
		total += n;
	}
	require(scratch_store_flush(s) == 0);
	list_files(dir, &f); /* checks regular files, mode 0600 */
	/* Small blobs share segments; the 5 MiB one has a file of its own. */
	ck_assert_uint_ge(f.n, 2);
	ck_assert_uint_ge(f.bytes, total);
	files_free(&f);
	expect_blobs(s, b, 54);
	scratch_store_close(s);
	require(count_files(dir) == 0);

	snprintf(path, sizeof(path), "%s/keep.txt", dir);
	expect_file(path, "keep me");
	snprintf(path, sizeof(path), "%s/notes.lokiscratch.txt", dir);
	expect_file(path, "not mine");
	snprintf(path, sizeof(path), "%s/sub/inner.txt", dir);
	expect_file(path, "inner");
	rm_rf(dir);
}
END_TEST

START_TEST(test_readers_outlive_remove_and_close)
{
	char dir[PATH_MAX];
	scratch_reader *r[6];
	scratch_store *s;

	case_dir(dir);
	s = fs_new(NULL, dir);
	struct blob small = put_seeded(s, 1, 3000), big = put_seeded(s, 2, 5 * MiB);
	struct blob staged = put_seeded(s, 3, 777);

	require(scratch_read(s, staged.h, &r[0]) == 0); /* opened before the flush */
	require(scratch_store_flush(s) == 0);
	require(scratch_read(s, small.h, &r[1]) == 0);
	require(scratch_read(s, small.h, &r[2]) == 0);
	require(scratch_read(s, big.h, &r[3]) == 0);
	require(scratch_read(s, big.h, &r[4]) == 0);
	require(scratch_remove(s, small.h) == 0);
	require(scratch_remove(s, big.h) == 0);
	require(scratch_remove(s, staged.h) == 0);
	scratch_reader *none = r[0];

	require(scratch_read(s, small.h, &none) == SCRATCH_ENOTFOUND && none == NULL);
	verify_seeded(r[1], small.seed, small.n);
	verify_seeded(r[3], big.seed, big.n);
	require(scratch_reader_close(r[1]) == 0);
	require(scratch_reader_close(r[3]) == 0);

	struct blob late = put_seeded(s, 4, 9000);

	require(scratch_read(s, late.h, &r[5]) == 0);
	require(scratch_store_flush(s) == 0);
	scratch_store_close(s);
	/* The files are gone; open readers keep their bytes. */
	require(count_files(dir) == 0);
	verify_seeded(r[0], staged.seed, staged.n);
	verify_seeded(r[2], small.seed, small.n);
	verify_seeded(r[4], big.seed, big.n);
	verify_seeded(r[5], late.seed, late.n);
	for (int i = 0; i < 6; i += 2)
		require(scratch_reader_close(r[i]) == 0);
	require(scratch_reader_close(r[5]) == 0);
	rm_rf(dir);
}
END_TEST

static int cmp_handle(const void *a, const void *b)
{
	scratch_handle x = *(const scratch_handle *)a, y = *(const scratch_handle *)b;

	return x < y ? -1 : x > y;
}

START_TEST(test_handles)
{
	enum { N = 100000 };
	char dir[PATH_MAX];
	scratch_handle *h = malloc(2 * N * sizeof(*h));
	scratch_reader *r = (scratch_reader *)h;
	scratch_store *s;

	require(h != NULL);
	case_dir(dir);
	s = fs_new(NULL, dir);
	for (unsigned i = 0; i < 2; i++) {
		struct blob b = put_seeded(s, i, i ? 5 * MiB : 10);

		require(scratch_store_flush(s) == 0);
		require(scratch_remove(s, b.h) == 0);
		require(scratch_remove(s, b.h) == SCRATCH_ENOTFOUND);
		require(scratch_remove(s, b.h) == SCRATCH_ENOTFOUND);
		require(scratch_read(s, b.h, &r) == SCRATCH_ENOTFOUND && r == NULL);
	}
	require(scratch_remove(s, SCRATCH_INVALID_HANDLE) == SCRATCH_ENOTFOUND);
	require(scratch_remove(s, UINT64_MAX) == SCRATCH_ENOTFOUND);

	for (uint32_t i = 0; i < N; i++) {
		require(scratch_put(s, &i, sizeof(i), &h[i]) == 0);
		if (i == N / 2)
			require(scratch_store_flush(s) == 0);
	}
	for (uint32_t i = 0; i < N; i += 2)
		require(scratch_remove(s, h[i]) == 0);
	for (uint32_t i = 1; i < N; i += 2 * 97) {
		uint32_t v = ~i;

		require(scratch_read(s, h[i], &r) == 0);
		require(scratch_reader_read(r, &v, sizeof(v)) == sizeof(v) && v == i);
		require(scratch_reader_close(r) == 0);
	}
	for (uint32_t i = 0; i < N; i++)
		require(scratch_put(s, &i, sizeof(i), &h[N + i]) == 0);
	qsort(h, 2 * N, sizeof(*h), cmp_handle);
	require(h[0] != SCRATCH_INVALID_HANDLE);
	for (size_t i = 1; i < 2 * N; i++)
		require(h[i - 1] != h[i]);
	scratch_store_close(s);
	require(count_files(dir) == 0);
	free(h);
	rm_rf(dir);
}
END_TEST

START_TEST(test_space_released)
{
	enum { N = 64 };
	char dir[PATH_MAX];
	struct blob b[N];
	uint64_t before, after;
	scratch_store *s;

	case_dir(dir);
	s = fs_new(NULL, dir);
	for (unsigned i = 0; i < N; i++)
		b[i] = put_seeded(s, i, MiB);
	require(scratch_store_flush(s) == 0);
	before = disk_bytes(dir);
	ck_assert_uint_ge(before, N * MiB); /* flushed: every byte is on disk */
	expect_blobs(s, b, N);
	for (unsigned i = 0; i < N; i++)
		require(scratch_remove(s, b[i].h) == 0);
	/* No reader is open: the space goes (allow a moment for deferred work). */
	for (int tries = 0; (after = disk_bytes(dir)) >= before / 4 && tries < 100; tries++)
		msleep(10);
	if (after >= before / 4)
		ck_abort_msg("disk use %llu bytes after removing all, %llu before",
			     (unsigned long long)after, (unsigned long long)before);
	scratch_store_close(s);
	rm_rf(dir);
}
END_TEST

/* Small blobs share segment files: once the last of them is gone (and
 * the last reader of one closed), a flush lets the files go, though their
 * lanes had room left in them; the next remove does if they were three
 * quarters used (fs_reclaim). */
START_TEST(test_small_blobs_space_released)
{
	enum { N = 700 }; /* 24.5 MB */
	char dir[PATH_MAX];
	struct blob b[N];
	scratch_reader *r;
	scratch_store *s;

	case_dir(dir);
	s = fs_new(NULL, dir);
	for (unsigned i = 0; i < N; i++)
		b[i] = put_seeded(s, i, 1000 + 97 * i); /* 1 KB to 59 KB: staged */
	require(scratch_store_flush(s) == 0);
	ck_assert_uint_gt(count_files(dir), 0);
	require(scratch_read(s, b[N / 2].h, &r) == 0);
	for (unsigned i = 0; i < N; i++)
		require(scratch_remove(s, b[i].h) == 0);
	verify_seeded(r, b[N / 2].seed, b[N / 2].n); /* its segment stays for its reader */
	ck_assert_uint_gt(count_files(dir), 0);
	require(scratch_reader_close(r) == 0);
	require(scratch_store_flush(s) == 0); /* or the next remove */
	ck_assert_uint_eq(count_files(dir), 0);
	ck_assert_uint_eq(disk_bytes(dir), 0);
	/* The store goes on: new blobs get new segments, which a blob put
	 * and removed at once does not use up. */
	b[0] = put_seeded(s, 7, 5000);
	require(scratch_store_flush(s) == 0);
	expect_blob(s, &b[0]);
	require(scratch_remove(s, b[0].h) == 0);
	ck_assert_uint_eq(count_files(dir), 1);
	scratch_store_close(s);
	rm_rf(dir);
}
END_TEST

/*
 * Blobs removed in any order give their segment's space back in runs of a
 * MiB, not only with the segment: once the segment has been left for a
 * second (segment.c's REAP_AGE_NS), a flush or a new segment punches it,
 * and the few blobs that stay (and a reader on a removed one) keep little
 * more than their own pages and read back whole, punched pages all around.
 */
START_TEST(test_dead_runs_released)
{
	enum { N = 3200, KEEP = 400 }; /* 2 KB to 42 KB: staged; ~70 MB */
	char dir[PATH_MAX];
	static struct blob b[N];
	static unsigned order[N];
	scratch_reader *r;
	scratch_store *s;
	uint64_t rnd = 12345;

	case_dir(dir);
	s = fs_new(NULL, dir);
	for (unsigned i = 0; i < N; i++) {
		b[i] = put_seeded(s, i, 2000 + 25 * (i % 1600));
		order[i] = i;
	}
	require(scratch_store_flush(s) == 0);
	uint64_t full = disk_bytes(dir);

	for (unsigned i = N - 1; i > 0; i--) { /* shuffled */
		rnd ^= rnd << 13, rnd ^= rnd >> 7, rnd ^= rnd << 17;
		unsigned j = (unsigned)(rnd % (i + 1)), t = order[i];

		order[i] = order[j];
		order[j] = t;
	}
	require(scratch_read(s, b[1].h, &r) == 0);
	for (unsigned i = 0; i < N; i++)
		if (order[i] % KEEP != 0)
			require(scratch_remove(s, b[order[i]].h) == 0);
	struct timespec aged = { 1, 200 * 1000 * 1000 };

	require(scratch_store_flush(s) == 0); /* a segment left with no blob goes */
	uint64_t young = disk_bytes(dir);

	require(young <= full);

	require(scratch_store_flush(s) == 0); /* the others are too young yet */
	require(disk_bytes(dir) == young);
	nanosleep(&aged, NULL);
	require(scratch_store_flush(s) == 0);
	uint64_t left = disk_bytes(dir);

	verify_seeded(r, b[1].seed, b[1].n);
	require(scratch_reader_close(r) == 0);
	for (unsigned i = 0; i < N; i += KEEP)
		expect_blob(s, &b[i]);
	/* The segments left keep a blob each, so none could go whole.  Of
	 * ~70 MB of blobs, the ones in the segments the lanes left (at least
	 * 32 MiB) go but for the eight kept, each holding at most a MiB on
	 * either side. */
	ck_assert_msg(young - left >= 8 * MiB, "%llu of %llu bytes still on disk",
		      (unsigned long long)left, (unsigned long long)young);
	for (unsigned i = 0; i < N; i += KEEP)
		require(scratch_remove(s, b[i].h) == 0);
	require(scratch_store_flush(s) == 0);
	ck_assert_uint_eq(count_files(dir), 0);
	scratch_store_close(s);
	rm_rf(dir);
}
END_TEST

START_TEST(test_no_leaks)
{
	const unsigned cycles = 20000;
	unsigned char want[4096], got[4097];
	char dir[PATH_MAX];
	int max, fds0, fds1 = 0, fds2;
	scratch_store *s;

	case_dir(dir);
	fds0 = fd_scan(&max);
	s = fs_new(NULL, dir);
	for (unsigned i = 0; i < cycles + 100; i++) {
		scratch_handle h;
		scratch_reader *r;

		fill(want, sizeof(want), i);
		require(scratch_put(s, want, sizeof(want), &h) == 0);
		require(scratch_read(s, h, &r) == 0);
		verify_reader(r, want, sizeof(want), got);
		require(scratch_reader_close(r) == 0);
		require(scratch_remove(s, h) == 0);
		if (i % 1000 == 99)
			require(scratch_store_flush(s) == 0);
		if (i == 99)
			fds1 = fd_scan(&max); /* warmed up */
	}
	require(scratch_store_flush(s) == 0);
	fds2 = fd_scan(&max);
	/* 80 MiB went through with nothing left live: a few segments at most. */
	if (fds2 > fds1 + 4 || count_files(dir) > 16)
		ck_abort_msg("after %u cycles: %d fds (%d when warm), %zu files", cycles, fds2,
			     fds1, count_files(dir));
	scratch_store_close(s);
	require(count_files(dir) == 0);
	ck_assert_int_le(fd_scan(&max), fds0);
	rm_rf(dir);
}
END_TEST

START_TEST(test_pwrite_forced)
{
	char dir[PATH_MAX];
	scratch_store *s;

	case_dir(dir);
	require(setenv("SCRATCH_IO", "pwrite", 1) == 0);
	s = fs_new(NULL, dir);
	round_trips(s);
	stress(s, 8);
	scratch_store_close(s);
	require(count_files(dir) == 0);
	unsetenv("SCRATCH_IO");
	rm_rf(dir);
}
END_TEST

START_TEST(test_stress)
{
	char dir[PATH_MAX];
	scratch_store *s;

	case_dir(dir);
	s = fs_new(NULL, dir);
	stress(s, _i ? 8 : 0); /* loop test: 0 without flushes, 1 with */
	scratch_store_close(s);
	require(count_files(dir) == 0);
	rm_rf(dir);
}
END_TEST

START_TEST(test_writer_putv_batch)
{
	static const size_t chunk[] = { 1, 4093, 65537, 1000003, 7, 333333 };
	const size_t big = 10 * MiB;
	unsigned char *buf = malloc(16 * MiB);
	char dir[PATH_MAX];
	scratch_writer *w;
	scratch_store *s;
	struct blob b;

	require(buf != NULL);
	case_dir(dir);
	s = fs_new(NULL, dir);

	/* 10 MiB in odd chunks; then a small one and an empty one. */
	fill(buf, big, 1);
	require(scratch_writer_open(s, &w) == 0);
	for (size_t at = 0, i = 0, k; at < big; at += k, i++) {
		k = chunk[i % 6] < big - at ? chunk[i % 6] : big - at;
		require(scratch_writer_write(w, buf + at, k) == (ssize_t)k);
	}
	b = (struct blob){ .n = big, .seed = 1 };
	require(scratch_writer_commit(w, &b.h) == 0 && b.h != SCRATCH_INVALID_HANDLE);
	expect_blob(s, &b);
	require(scratch_store_flush(s) == 0);
	expect_blob(s, &b);
	for (unsigned i = 0; i < 2; i++) {
		size_t n = i ? 0 : 3000;

		fill(buf, n, 2);
		require(scratch_writer_open(s, &w) == 0);
		require(scratch_writer_write(w, buf, n) == (ssize_t)n);
		b = (struct blob){ .n = n, .seed = 2 };
		require(scratch_writer_commit(w, &b.h) == 0);
		expect_blob(s, &b);
	}

	/* A writer goes to disk as it is written; abort gives the space back. */
	require(scratch_store_flush(s) == 0);
	uint64_t before = disk_bytes(dir), during, after;

	fill(buf, 16 * MiB, 3);
	require(scratch_writer_open(s, &w) == 0);
	for (size_t at = 0, k; at < 16 * MiB; at += k) {
		k = 16 * MiB - at < 65537 ? 16 * MiB - at : 65537;
		require(scratch_writer_write(w, buf + at, k) == (ssize_t)k);
	}
	during = disk_bytes(dir);
	if (during < before + 8 * MiB)
		ck_abort_msg("16 MiB written to an open writer, disk use %llu -> %llu bytes",
			     (unsigned long long)before, (unsigned long long)during);
	scratch_writer_abort(w);
	require(scratch_store_flush(s) == 0);
	for (int tries = 0; (after = disk_bytes(dir)) > before + 4 * MiB && tries < 100; tries++)
		msleep(10);
	if (after > before + 4 * MiB)
		ck_abort_msg("an aborted 16 MiB writer left %llu bytes on disk (%llu before)",
			     (unsigned long long)after, (unsigned long long)before);

	/* putv: slices of one seeded buffer, so the concatenation is fill(total). */
	static const size_t big_cuts[] = { 0, 5 * MiB, 5 * MiB, 5 * MiB + 1, 5 * MiB + 3073 };
	static const size_t small_cuts[] = { 0, 1, 1, 100, 3000 };

	for (unsigned k = 0; k < 2; k++) {
		const size_t *cut = k ? small_cuts : big_cuts;
		struct iovec iov[4];

		fill(buf, cut[4], 4 + k);
		for (unsigned i = 0; i < 4; i++)
			iov[i] = (struct iovec){ buf + cut[i], cut[i + 1] - cut[i] };
		b = (struct blob){ .n = cut[4], .seed = 4 + k };
		require(scratch_putv(s, iov, 4, &b.h) == 0);
		memset(buf, 0, cut[4]);
		expect_blob(s, &b);
	}

	/* put_batch: mixed sizes, empty ones and one > 4 MiB. */
	enum { NB = 40 };
	struct iovec blobs[NB];
	scratch_handle out[NB];
	struct blob bb[NB];

	for (unsigned i = 0, at = 0; i < NB; i++) {
		size_t n = i == 17 ? 5 * MiB : i % 9 == 0 ? 0 : (i * 7919) % 70000;

		bb[i] = (struct blob){ .n = n, .seed = 500 + i };
		fill(buf + at, n, bb[i].seed);
		blobs[i] = (struct iovec){ buf + at, n };
		at += (unsigned)n;
	}
	require(scratch_put_batch(s, blobs, NB, out) == 0);
	for (unsigned i = 0; i < NB; i++) {
		require(out[i] != SCRATCH_INVALID_HANDLE);
		bb[i].h = out[i];
	}
	expect_blobs(s, bb, NB);
	require(scratch_store_flush(s) == 0);
	expect_blobs(s, bb, NB);
	blobs[5].iov_base = NULL; /* a bad blob: nothing stored, every out cleared */
	blobs[5].iov_len = 1;
	require(scratch_put_batch(s, blobs, NB, out) == -EINVAL);
	for (unsigned i = 0; i < NB; i++)
		require(out[i] == SCRATCH_INVALID_HANDLE);

	scratch_store_close(s);
	require(count_files(dir) == 0);
	free(buf);
	rm_rf(dir);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("filesystem");
	TCase *tc = tcase_create("filesystem store");
	int rc;

	fs_root_init("scratch-fs-test");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_create_and_open);
	tcase_add_test(tc, test_round_trips_and_seek);
	tcase_add_test(tc, test_files);
	tcase_add_test(tc, test_readers_outlive_remove_and_close);
	tcase_add_test(tc, test_handles);
	tcase_add_test(tc, test_space_released);
	tcase_add_test(tc, test_small_blobs_space_released);
	tcase_add_test(tc, test_large_reads);
	tcase_add_test(tc, test_dead_runs_released);
	tcase_add_test(tc, test_no_leaks);
	tcase_add_test(tc, test_pwrite_forced);
	tcase_add_loop_test(tc, test_stress, 0, 2);
	tcase_add_test(tc, test_writer_putv_batch);
	suite_add_tcase(s, tc);

	rc = run_suite(s);
	fs_root_remove();
	return rc;
}
