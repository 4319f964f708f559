/*
 * test_memory.c: the memory store through the public API only.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include <scratch.h>

static scratch_store *store_new(void)
{
	scratch_store *s = NULL;

	require(scratch_memory_new(&s) == 0);
	require(s != NULL);
	return s;
}

START_TEST(test_round_trip_sizes)
{
	static const size_t sizes[] = { 1, 7, 64, 4096, 16384, 16385, 65536, 1 << 20 };
	scratch_store *s = store_new();
	scratch_handle h[8];
	unsigned char *buf = malloc(1 << 20);

	for (unsigned i = 0; i < 8; i++) {
		fill(buf, sizes[i], i);
		require(scratch_put(s, buf, sizes[i], &h[i]) == 0);
		require(h[i] != SCRATCH_INVALID_HANDLE);
	}
	memset(buf, 0, 1 << 20); /* the store copied: the caller may reuse p */
	for (unsigned i = 0; i < 8; i++) {
		fill(buf, sizes[i], i);
		expect_bytes(s, h[i], buf, sizes[i]);
	}
	for (unsigned i = 0; i < 8; i++) {
		require(scratch_remove(s, h[i]) == 0);
		scratch_reader *r = (scratch_reader *)buf;

		require(scratch_read(s, h[i], &r) == SCRATCH_ENOTFOUND);
		require(r == NULL);
		require(scratch_remove(s, h[i]) == SCRATCH_ENOTFOUND);
	}
	scratch_store_close(s);
	free(buf);
}
END_TEST

START_TEST(test_empty_blob)
{
	scratch_store *s = store_new();
	scratch_handle h, h2;
	scratch_reader *r;
	char c = 'x';

	require(scratch_put(s, NULL, 0, &h) == 0);
	require(scratch_put(s, &c, 0, &h2) == 0);
	require(h != h2);
	require(scratch_read(s, h, &r) == 0);
	require(scratch_reader_size(r) == 0);
	require(scratch_reader_data(r) != NULL);
	require(scratch_reader_read(r, &c, 1) == 0);
	require(scratch_reader_seek(r, 0, SEEK_END) == 0);
	require(scratch_reader_close(r) == 0);
	require(scratch_remove(s, h) == 0);
	scratch_store_close(s);
}
END_TEST

START_TEST(test_large_blob)
{
	const size_t n = 64u << 20;
	scratch_store *s = store_new();
	unsigned char *buf = malloc(n);
	scratch_handle h;
	scratch_reader *r;

	fill(buf, n, 64);
	require(scratch_put(s, buf, n, &h) == 0);
	expect_bytes(s, h, buf, n);
	require(scratch_read(s, h, &r) == 0);
	require(scratch_reader_read(r, NULL, 0) == 0); /* allowed: no bytes asked */
	require(scratch_reader_seek(r, -4096, SEEK_END) == (int64_t)(n - 4096));
	unsigned char tail[8192];

	require(scratch_reader_read(r, tail, sizeof(tail)) == 4096);
	ck_assert_mem_eq(tail, buf + n - 4096, 4096);
	scratch_reader_close(r);
	scratch_store_close(s);
	free(buf);
}
END_TEST

static int cmp_handle(const void *a, const void *b)
{
	scratch_handle x = *(const scratch_handle *)a, y = *(const scratch_handle *)b;

	return x < y ? -1 : x > y;
}

START_TEST(test_many_handles_unique)
{
	enum { N = 100000 };
	scratch_store *s = store_new();
	scratch_handle *h = malloc(N * sizeof(*h));

	for (uint32_t i = 0; i < N; i++)
		require(scratch_put(s, &i, sizeof(i), &h[i]) == 0);
	for (uint32_t i = 0; i < N; i += 97)
		expect_bytes(s, h[i], &i, sizeof(i));
	/* Remove half; the rest stay; new handles are all new. */
	for (uint32_t i = 0; i < N; i += 2)
		require(scratch_remove(s, h[i]) == 0);
	for (uint32_t i = 1; i < N; i += 97 * 2)
		expect_bytes(s, h[i], &i, sizeof(i));
	scratch_handle *all = malloc(2 * N * sizeof(*h));

	memcpy(all, h, N * sizeof(*h));
	for (uint32_t i = 0; i < N; i++)
		require(scratch_put(s, &i, sizeof(i), &all[N + i]) == 0);
	qsort(all, 2 * N, sizeof(*all), cmp_handle);
	require(all[0] != SCRATCH_INVALID_HANDLE);
	for (size_t i = 1; i < 2 * N; i++)
		require(all[i - 1] != all[i]);
	scratch_store_close(s);
	free(h);
	free(all);
}
END_TEST

START_TEST(test_readers_outlive_remove_and_close)
{
	scratch_store *s = store_new();
	const char msg[] = "still here after the store is gone";
	scratch_handle h;
	scratch_reader *r1, *r2, *r3;
	char buf[64];

	require(scratch_put(s, msg, sizeof(msg), &h) == 0);
	require(scratch_read(s, h, &r1) == 0);
	require(scratch_read(s, h, &r2) == 0);
	require(scratch_remove(s, h) == 0);
	require(scratch_read(s, h, &r3) == SCRATCH_ENOTFOUND);
	require(scratch_reader_read(r1, buf, sizeof(buf)) == sizeof(msg));
	ck_assert_str_eq(buf, msg);
	require(scratch_reader_close(r1) == 0);

	scratch_handle h2;

	require(scratch_put(s, "x", 1, &h2) == 0);
	require(scratch_read(s, h2, &r3) == 0);
	scratch_store_close(s);
	ck_assert_str_eq(scratch_reader_data(r2), msg);
	require(scratch_reader_read(r2, buf, sizeof(buf)) == sizeof(msg));
	require(scratch_reader_close(r2) == 0);
	require(scratch_reader_read(r3, buf, 1) == 1);
	require(buf[0] == 'x');
	require(scratch_reader_close(r3) == 0);
}
END_TEST

START_TEST(test_putv_and_batch)
{
	scratch_store *s = store_new();
	struct iovec iov[3] = { { "abc", 3 }, { NULL, 0 }, { "defg", 4 } };
	scratch_handle h, hb[3];

	require(scratch_putv(s, iov, 3, &h) == 0);
	expect_bytes(s, h, "abcdefg", 7);
	require(scratch_putv(s, NULL, 0, &h) == 0);
	expect_bytes(s, h, "", 0);
	require(scratch_put_batch(s, iov, 3, hb) == 0);
	expect_bytes(s, hb[0], "abc", 3);
	expect_bytes(s, hb[1], "", 0);
	expect_bytes(s, hb[2], "defg", 4);
	require(hb[0] != hb[1]);
	require(scratch_put_batch(s, NULL, 0, NULL) == 0);
	/* A bad blob anywhere: nothing stored, every out cleared. */
	struct iovec bad[2] = { { "ok", 2 }, { NULL, 5 } };

	hb[0] = hb[1] = 42;
	require(scratch_put_batch(s, bad, 2, hb) == -EINVAL);
	require(hb[0] == SCRATCH_INVALID_HANDLE);
	require(hb[1] == SCRATCH_INVALID_HANDLE);
	scratch_store_close(s);
}
END_TEST

START_TEST(test_writer)
{
	scratch_store *s = store_new();
	scratch_writer *w;
	scratch_handle h;
	unsigned char *want = malloc(1 << 20);

	fill(want, 1 << 20, 9);
	require(scratch_writer_open(s, &w) == 0);
	for (size_t at = 0; at < (1 << 20); at += 1000) {
		size_t n = (1 << 20) - at < 1000 ? (1 << 20) - at : 1000;

		require(scratch_writer_write(w, want + at, n) == (ssize_t)n);
	}
	require(scratch_writer_write(w, NULL, 0) == 0);
	require(scratch_writer_commit(w, &h) == 0);
	expect_bytes(s, h, want, 1 << 20);

	require(scratch_writer_open(s, &w) == 0);
	require(scratch_writer_commit(w, &h) == 0);
	expect_bytes(s, h, "", 0);

	/* Small ones (kept in the table, like small puts) and the first big. */
	static const size_t small[] = { 1, 7, 63, 64, 65 };

	for (size_t i = 0; i < sizeof(small) / sizeof(small[0]); i++) {
		require(scratch_writer_open(s, &w) == 0);
		require(scratch_writer_write(w, want, small[i] / 2) == (ssize_t)(small[i] / 2));
		require(scratch_writer_write(w, want + small[i] / 2, small[i] - small[i] / 2) ==
			(ssize_t)(small[i] - small[i] / 2));
		require(scratch_writer_commit(w, &h) == 0);
		expect_bytes(s, h, want, small[i]);
		require(scratch_remove(s, h) == 0);
		require(scratch_remove(s, h) == SCRATCH_ENOTFOUND);
	}

	require(scratch_writer_open(s, &w) == 0);
	require(scratch_writer_write(w, "gone", 4) == 4);
	scratch_writer_abort(w);
	scratch_writer_abort(NULL);
	require(scratch_writer_open(s, &w) == 0);
	require(scratch_writer_write(w, "x", 1) == 1);
	require(scratch_writer_commit(w, NULL) == -EINVAL); /* frees w */
	scratch_store_close(s);
	free(want);
}
END_TEST

/* Threads put, read, verify and remove their own blobs, and read each
 * other's, which may be removed under them: what they get must be whole.
 * Sizes cover every way a blob is kept (in its entry, a shard's cache, a
 * put group's cache), and there are more threads than put groups, so
 * threads share the group caches. */
enum { MT_THREADS = 6, MT_ROUNDS = 20000 };
static scratch_store *mt_store;
static _Atomic scratch_handle mt_recent[MT_THREADS];

static void *mt_thread(void *arg)
{
	unsigned id = (unsigned)(uintptr_t)arg;
	unsigned char buf[6000], got[6000];

	for (unsigned r = 0; r < MT_ROUNDS; r++) {
		size_t n = 1 + (r * 37 + id) % sizeof(buf);
		scratch_handle h;
		scratch_reader *rd;

		memset(buf, (int)n, n); /* content derived from size */
		require(scratch_put(mt_store, buf, n, &h) == 0);
		atomic_store(&mt_recent[id], h);
		expect_bytes(mt_store, h, buf, n);
		scratch_handle other = atomic_load(&mt_recent[(id + 1) % MT_THREADS]);

		if (other && scratch_read(mt_store, other, &rd) == 0) {
			size_t m = scratch_reader_size(rd);

			require((size_t)scratch_reader_read(rd, got, sizeof(got)) == m);
			for (size_t i = 0; i < m; i++)
				require(got[i] == (unsigned char)m);
			scratch_reader_close(rd);
		}
		if (r % 3)
			require(scratch_remove(mt_store, h) == 0);
	}
	return NULL;
}

/* More stores than jemalloc has thread caches for (36 a store, 4096 in
 * all) all work: the later ones go without caches. */
START_TEST(test_many_stores)
{
	enum { STORES = 300 };
	static const size_t sizes[] = { 100, 4096 };
	scratch_store **s = calloc(STORES, sizeof(*s));

	require(s != NULL);
	for (unsigned i = 0; i < STORES; i++)
		ck_assert_int_eq(scratch_memory_new(&s[i]), 0);
	for (unsigned i = 0; i < STORES; i++) {
		for (unsigned k = 0; k < 2; k++) {
			struct blob b = put_seeded(s[i], i * 2 + k, sizes[k]);

			expect_blob(s[i], &b);
			ck_assert_int_eq(scratch_remove(s[i], b.h), 0);
		}
	}
	for (unsigned i = 0; i < STORES; i++)
		scratch_store_close(s[i]);
	free(s);
}
END_TEST

/* A handle is only good in the store that issued it: in another, where
 * the same sequence may be live, it is not found. */
START_TEST(test_foreign_handles)
{
	scratch_store *a = store_new(), *b = store_new();
	scratch_reader *r;

	for (unsigned i = 0; i < 100; i++) {
		struct blob x = put_seeded(a, i, 10 + i), y = put_seeded(b, 1000 + i, 20 + i);

		ck_assert_int_eq(scratch_read(b, x.h, &r), SCRATCH_ENOTFOUND);
		ck_assert_int_eq(scratch_read(a, y.h, &r), SCRATCH_ENOTFOUND);
		ck_assert_int_eq(scratch_remove(b, x.h), SCRATCH_ENOTFOUND);
		expect_blob(a, &x);
		expect_blob(b, &y);
	}
	scratch_store_close(a);
	scratch_store_close(b);
}
END_TEST

START_TEST(test_threads)
{
	pthread_t t[MT_THREADS];

	mt_store = store_new();
	for (uintptr_t i = 0; i < MT_THREADS; i++)
		require(pthread_create(&t[i], NULL, mt_thread, (void *)i) == 0);
	for (unsigned i = 0; i < MT_THREADS; i++)
		pthread_join(t[i], NULL);
	scratch_store_close(mt_store);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("memory");
	TCase *tc = tcase_create("public API");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_round_trip_sizes);
	tcase_add_test(tc, test_empty_blob);
	tcase_add_test(tc, test_large_blob);
	tcase_add_test(tc, test_many_handles_unique);
	tcase_add_test(tc, test_readers_outlive_remove_and_close);
	tcase_add_test(tc, test_putv_and_batch);
	tcase_add_test(tc, test_writer);
	tcase_add_test(tc, test_many_stores);
	tcase_add_test(tc, test_foreign_handles);
	tcase_add_test(tc, test_threads);
	suite_add_tcase(s, tc);

	return run_suite(s);
}
