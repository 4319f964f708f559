/*
 * test_memory_backend.c: the memory backend's own promises, seen through
 * the internal stats call: blob bytes are counted in the store's heap (its
 * jemalloc arena) and go back when blobs are removed.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "backend.h"
#include "testutil.h"

START_TEST(test_heap_follows_blobs)
{
	enum { N = 64, SIZE = 256 * 1024 };
	scratch_store *s;
	scratch_handle h[N];
	struct scratch_store_stats st;
	unsigned char *buf = calloc(1, SIZE);

	ck_assert_int_eq(scratch_memory_new(&s), 0);
	ck_assert_int_eq(scratch_store_stats(s, &st), 0);
	ck_assert_uint_eq(st.handles, 0);
	ck_assert_uint_eq(st.bytes, 0);
	uint64_t empty_heap = st.heap_bytes;

	for (int i = 0; i < N; i++)
		require(scratch_put(s, buf, SIZE, &h[i]) == 0);
	ck_assert_int_eq(scratch_store_stats(s, &st), 0);
	ck_assert_uint_eq(st.handles, N);
	ck_assert_uint_eq(st.bytes, (uint64_t)N * SIZE);
	ck_assert_uint_ge(st.heap_bytes, empty_heap + (uint64_t)N * SIZE);
	ck_assert_uint_gt(st.table_bytes, 0);
	for (int i = 0; i < N; i++)
		require(scratch_remove(s, h[i]) == 0);
	ck_assert_int_eq(scratch_store_stats(s, &st), 0);
	ck_assert_uint_eq(st.handles, 0);
	ck_assert_uint_eq(st.bytes, 0);
	ck_assert_uint_lt(st.heap_bytes, empty_heap + SIZE);
	ck_assert_int_eq(scratch_store_stats(NULL, &st), -EINVAL);
	ck_assert_int_eq(scratch_store_stats(s, NULL), -EINVAL);
	scratch_store_close(s);
	free(buf);
}
END_TEST

/* Small blobs go through the caches (a shard's, a put group's), large ones
 * around them; all kinds, put from several shards, read back intact. */
START_TEST(test_small_and_large_round_trip)
{
	static const size_t sizes[] = { 1, 100, 16 * 1024, 16 * 1024 + 1, 100000 };
	scratch_store *s;
	unsigned char *buf = malloc(100000);

	ck_assert_int_eq(scratch_memory_new(&s), 0);
	for (int round = 0; round < 300; round++) {
		size_t n = sizes[round % 5];
		scratch_handle h;

		memset(buf, round, n);
		require(scratch_put(s, buf, n, &h) == 0);
		expect_bytes(s, h, buf, n);
		if (round % 2)
			require(scratch_remove(s, h) == 0);
	}
	scratch_store_close(s);
	free(buf);
}
END_TEST

/* Past 64 MiB of blobs of 1 MiB or more, such blobs are copied with
 * streaming stores (memory.c: copy_stream): 96 of them, from sources at
 * every alignment, with odd tails, and putv parts of both kinds, all come
 * back intact, before and after the first ones are removed. */
START_TEST(test_large_blobs_streamed)
{
	enum { N = 96, BIG = 1 << 20 };
	struct blob b[N], bv = { .n = 3 * BIG + 17, .seed = N };
	unsigned char *src = malloc(3 * BIG + 64);
	scratch_store *s;

	require(src != NULL);
	ck_assert_int_eq(scratch_memory_new(&s), 0);
	for (unsigned i = 0; i < N; i++) {
		unsigned char *p = src + i % 16;

		b[i] = (struct blob){ .n = BIG + i * 17, .seed = i };
		fill(p, b[i].n, b[i].seed);
		require(scratch_put(s, p, b[i].n, &b[i].h) == 0);
	}
	/* Parts of 1 MiB + 3, 5 and 2 MiB + 9 bytes: the last lands unaligned. */
	struct iovec iov[3] = { { src + 1, BIG + 3 }, { src + BIG + 4, 5 }, { src + BIG + 9, 2 * BIG + 9 } };

	fill(src + 1, bv.n, bv.seed);
	require(scratch_putv(s, iov, 3, &bv.h) == 0);
	expect_blobs(s, b, N);
	expect_blob(s, &bv);
	for (unsigned i = 0; i < N / 2; i++)
		require(scratch_remove(s, b[i].h) == 0);
	for (unsigned i = 0; i < N / 2; i++) {
		b[i] = (struct blob){ .n = BIG + 1, .seed = i + 1000 };
		fill(src + 3, b[i].n, b[i].seed);
		require(scratch_put(s, src + 3, b[i].n, &b[i].h) == 0);
	}
	expect_blobs(s, b, N);
	scratch_store_close(s);
	free(src);
}
END_TEST

/* copy_stream itself, at every source and destination alignment and with
 * every tail length, plus one long copy: exactly the bytes asked for. */
START_TEST(test_copy_stream_exact)
{
	enum { MAX = 64 + 127, LONG = (1 << 20) + 77 };
	unsigned char src[MAX + 16], dst[MAX + 32], want[MAX + 32];
	unsigned char *lsrc = malloc(LONG + 16), *ldst = malloc(LONG + 16);

	require(lsrc && ldst);
	fill(src, sizeof(src), 1);
	for (unsigned so = 0; so < 16; so++)
		for (unsigned d = 0; d < 16; d++)
			for (size_t n = 16; n <= MAX; n += n < 64 ? 16 : 1) {
				memset(dst, 0xa5, sizeof(dst));
				memset(want, 0xa5, sizeof(want));
				memcpy(want + 8 + d, src + so, n);
				copy_stream(dst + 8 + d, src + so, n);
				if (memcmp(dst, want, sizeof(dst)) != 0)
					ck_abort_msg("src +%u, dst +%u, %zu bytes", so, d, n);
			}
	fill(lsrc, LONG + 16, 2);
	memset(ldst, 0, LONG + 16);
	copy_stream(ldst + 3, lsrc + 5, LONG);
	require(memcmp(ldst + 3, lsrc + 5, LONG) == 0);
	require(ldst[0] == 0 && ldst[LONG + 3] == 0);
	free(lsrc);
	free(ldst);
}
END_TEST

#if SCRATCH_WITH_JEMALLOC
static long minor_faults(void)
{
	struct rusage u;

	require(getrusage(RUSAGE_SELF, &u) == 0);
	return u.ru_minflt;
}

/* Puts n blobs of size bytes, then removes them all. */
static void put_remove_all(scratch_store *s, const unsigned char *buf, int n, size_t size)
{
	scratch_handle *h = calloc((size_t)n, sizeof(*h));

	require(h != NULL);
	for (int i = 0; i < n; i++)
		require(scratch_put(s, buf, size, &h[i]) == 0);
	for (int i = 0; i < n; i++)
		require(scratch_remove(s, h[i]) == 0);
	free(h);
}

/* Blobs freed side by side are reused in place by the next ones of their
 * size: jemalloc merged such neighbours into one free extent too big to
 * carve from, so every cycle mapped (and faulted in) fresh memory and the
 * arena grew without end. */
START_TEST(test_freed_blobs_reused)
{
	enum { N = 128, SIZE = 1 << 20 };
	unsigned char *buf = malloc(SIZE);
	scratch_store *s;

	require(buf != NULL);
	memset(buf, 7, SIZE);
	ck_assert_int_eq(scratch_memory_new(&s), 0);
	put_remove_all(s, buf, N, SIZE);
	put_remove_all(s, buf, N, SIZE);
	long before = minor_faults();

	put_remove_all(s, buf, N, SIZE);
	/* Copying into fresh memory would fault once per 4 KiB page. */
	ck_assert_int_lt(minor_faults() - before, (long)N * SIZE / 4096 / 10);
	scratch_store_close(s);
	free(buf);
}
END_TEST

/* A heap that jemalloc cannot give all its caches runs without any and
 * gives back those it got: once the heaps that hold caches close, a new
 * heap has them again. */
START_TEST(test_heap_caches_run_out)
{
	enum { HEAPS = 200 }; /* x HEAP_CACHES > jemalloc's 4096 tcaches */
	struct heap *h = calloc(HEAPS, sizeof(*h));
	unsigned with = 0;

	require(h != NULL);
	for (unsigned i = 0; i < HEAPS; i++) {
		require(heap_open(&h[i]) == 0);
		require(h[i].ncaches == 0 || h[i].ncaches == HEAP_CACHES);
		with += h[i].ncaches != 0;
		void *p = heap_alloc(&h[i], heap_cache(0, 4096), 4096);

		require(p != NULL);
		memset(p, 1, 4096);
		heap_free(&h[i], heap_cache(0, 4096), p);
	}
	ck_assert_uint_gt(with, 0);
	ck_assert_uint_lt(with, HEAPS);
	for (unsigned i = 0; i < HEAPS; i++)
		heap_close(&h[i]);
	struct heap again = { 0 };

	require(heap_open(&again) == 0);
	ck_assert_uint_eq(again.ncaches, HEAP_CACHES);
	heap_close(&again);
	free(h);
}
END_TEST
#endif

int main(void)
{
	Suite *s = suite_create("memory backend");
	TCase *tc = tcase_create("arena");

	tcase_set_timeout(tc, 120); /* sanitizer builds copy 100 MiB slowly */
	tcase_add_test(tc, test_heap_follows_blobs);
	tcase_add_test(tc, test_small_and_large_round_trip);
	tcase_add_test(tc, test_copy_stream_exact);
	tcase_add_test(tc, test_large_blobs_streamed);
#if SCRATCH_WITH_JEMALLOC
	tcase_add_test(tc, test_freed_blobs_reused);
	tcase_add_test(tc, test_heap_caches_run_out);
#endif
	suite_add_tcase(s, tc);
	return run_suite(s);
}
