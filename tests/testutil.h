/*
 * testutil.h: helpers shared by the Check programs.
 *
 * A passing ck_assert writes a mark point to Check's pipe under a lock, so
 * millions of them in a stress loop measure Check, not the library.  Loops
 * use require(), which calls into Check only when the condition fails; so
 * do the blob helpers below, which the stress threads call.
 *
 * - Seeded bytes (fill) and blobs made of them (put_seeded, expect_blob):
 *   content derives from a seed, so a blob is checked without keeping a
 *   copy.  expect_bytes checks a blob against given bytes.
 */
#ifndef SCRATCH_TESTUTIL_H
#define SCRATCH_TESTUTIL_H

#include <check.h>
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>

#include <scratch.h>

#define MiB ((size_t)1 << 20)

#define require(cond)                                                              \
	do {                                                                        \
		if (__builtin_expect(!(cond), 0))                                   \
			ck_abort_msg("%s:%d: failed: %s", __FILE__, __LINE__, #cond); \
	} while (0)

/* Skips the whole program (exit 77, which meson reports as SKIP). */
#define skip_all(...)                                                              \
	do {                                                                        \
		printf("SKIP: " __VA_ARGS__);                                       \
		putchar('\n');                                                      \
		exit(77);                                                           \
	} while (0)

/* Makes system call nr fail with err in this process from now on, as a
 * container's seccomp profile does.  Check runs each case in a child of
 * its own, so this ends with the case.  False if seccomp is unavailable. */
static inline bool deny_syscall(int nr, int err)
{
	struct sock_filter filter[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((unsigned)err & SECCOMP_RET_DATA)),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { sizeof(filter) / sizeof(filter[0]), filter };

	return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
	       prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0;
}

/* Runs suite s and returns main's exit status. */
static inline int run_suite(Suite *s)
{
	SRunner *sr = srunner_create(s);

	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);

	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* ----------------------------------------------------------- seeded blobs */

/*
 * Deterministic bytes, made a word at a time (byte by byte, 100 MiB took
 * seconds under TSan).  Every 8-byte word differs from every other word
 * of the same fill and from the word at the same place under any other
 * seed, so a misplaced word or a wrong blob shows.  A prefix of fill(n) is
 * fill of the shorter size.
 */
static inline void fill(unsigned char *p, size_t n, uint64_t seed)
{
	uint64_t x = seed * 0x9E3779B97F4A7C15ull;

	for (size_t i = 0; i < n; i += 8) {
		uint64_t z = (x += 0x9E3779B97F4A7C15ull);

		z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
		z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
		z ^= z >> 31;
		memcpy(p + i, &z, n - i < 8 ? n - i : 8);
	}
}

struct blob {
	scratch_handle h;
	size_t n;
	uint64_t seed;
};

/* Reads r from the start in uneven chunks into got (n + 1 bytes), compares
 * with want, then compares the zero-copy view. */
static inline void verify_reader(scratch_reader *r, const unsigned char *want, size_t n,
				 unsigned char *got)
{
	static const size_t chunk[] = { 1, 4093, 7, 65537, MiB + 3, 333 };
	size_t at = 0;
	ssize_t k;

	require(scratch_reader_size(r) == n);
	require(scratch_reader_seek(r, 0, SEEK_SET) == 0);
	for (unsigned i = 0; (k = scratch_reader_read(r, got + at, chunk[i % 6])) > 0; i++) {
		at += (size_t)k;
		require(at <= n);
	}
	require(k == 0);
	require(at == n);
	require(n == 0 || memcmp(got, want, n) == 0);
	require(scratch_reader_data(r) != NULL);
	require(n == 0 || memcmp(scratch_reader_data(r), want, n) == 0);
}

static inline void verify_seeded(scratch_reader *r, uint64_t seed, size_t n)
{
	unsigned char *want = malloc(n + 1), *got = malloc(n + 1);

	require(want && got);
	fill(want, n, seed);
	verify_reader(r, want, n, got);
	free(want);
	free(got);
}

/* h's blob is the n bytes at want, by read and by the zero-copy view. */
static inline void expect_bytes(scratch_store *s, scratch_handle h, const void *want, size_t n)
{
	unsigned char *got = malloc(n + 1);
	scratch_reader *r = NULL;
	int err = scratch_read(s, h, &r);

	if (err)
		ck_abort_msg("read of a %zu-byte blob: %s", n, scratch_strerror(err));
	require(got != NULL);
	verify_reader(r, want, n, got);
	require(scratch_reader_close(r) == 0);
	free(got);
}

static inline void expect_blob(scratch_store *s, const struct blob *b)
{
	unsigned char *want = malloc(b->n + 1);

	require(want != NULL);
	fill(want, b->n, b->seed);
	expect_bytes(s, b->h, want, b->n);
	free(want);
}

static inline void expect_blobs(scratch_store *s, const struct blob *b, size_t count)
{
	for (size_t i = 0; i < count; i++)
		expect_blob(s, &b[i]);
}

static inline int put_seeded_rc(scratch_store *s, uint64_t seed, size_t n, struct blob *b)
{
	unsigned char *p = malloc(n + 1);
	int err;

	if (!p)
		return -ENOMEM;
	fill(p, n, seed);
	*b = (struct blob){ .n = n, .seed = seed };
	err = scratch_put(s, p, n, &b->h);
	memset(p, 0xee, n); /* the store copied: p may be reused at once */
	free(p);
	return err;
}

static inline struct blob put_seeded(scratch_store *s, uint64_t seed, size_t n)
{
	struct blob b;
	int err = put_seeded_rc(s, seed, n, &b);

	if (err)
		ck_abort_msg("put of %zu bytes: %s", n, scratch_strerror(err));
	require(b.h != SCRATCH_INVALID_HANDLE);
	return b;
}

#endif
