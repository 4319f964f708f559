/*
 * test_uring.c: the write path alone, on io_uring and on pwritev, with the
 * fault seam making completions short, retryable or failed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "testutil.h"
#include "uring.h"

#define MIB (1u << 20)

static int tmpfile_fd(void)
{
	char name[] = "/tmp/test_uring.XXXXXX";
	int fd = mkstemp(name);

	ck_assert_int_ge(fd, 0);
	unlink(name);
	return fd;
}

static void expect_file(int fd, uint64_t off, const unsigned char *want, size_t n)
{
	unsigned char *got = malloc(n);

	ck_assert_int_eq(pread(fd, got, n, (off_t)off), (ssize_t)n);
	ck_assert(memcmp(got, want, n) == 0);
	free(got);
}

static int calls;
static int fault_short(int fd, int res)
{
	(void)fd;
	return res > 1 ? res / 2 : res; /* the kernel wrote it all; we redo the rest */
}
static int fault_retry(int fd, int res)
{
	(void)fd;
	return calls++ % 2 ? res : (calls % 4 ? -EAGAIN : -EINTR);
}
static int fault_fail(int fd, int res)
{
	(void)fd, (void)res;
	return -EIO;
}

/* One background buffer and one foreground write of many iovecs (more
 * than a submission holds), checked on disk. */
static void write_both(bool uring, int (*fault)(int, int))
{
	struct wio w;
	int fd = tmpfile_fd(), err = wio_init(&w, uring);

	if (uring && err) {
		printf("io_uring unavailable (%s): checking the pwrite path only\n", strerror(-err));
		uring = false;
	}
	ck_assert(w.uring == uring);
	unsigned char *bg = malloc(MIB), *fg = malloc(3 * MIB);
	struct iovec iov[100];

	fill(bg, MIB, 1);
	fill(fg, 3 * MIB, 2);
	for (int i = 0; i < 100; i++)
		iov[i] = (struct iovec){ fg + i * (3 * MIB / 100), 3 * MIB / 100 };
	calls = 0;
	wio_fault = fault;
	ck_assert_int_eq(wio_start(&w, fd, bg, MIB, 0, false), 0);
	ck_assert_int_eq(wio_writev(&w, fd, iov, 100, MIB), 0);
	ck_assert_int_eq(wio_wait(&w), 0);
	ck_assert_int_eq(wio_wait(&w), 0); /* nothing in flight */
	wio_fault = NULL;
	expect_file(fd, 0, bg, MIB);
	expect_file(fd, MIB, fg, 3 * MIB / 100 * 100);
	wio_fini(&w);
	free(bg);
	free(fg);
	close(fd);
}

START_TEST(test_writes)
{
	write_both(_i, NULL);
}
END_TEST

START_TEST(test_short_writes_resubmitted)
{
	write_both(_i, fault_short);
}
END_TEST

START_TEST(test_eagain_eintr_retried)
{
	write_both(_i, fault_retry);
}
END_TEST

START_TEST(test_errors_reported)
{
	struct wio w;
	int fd = tmpfile_fd();
	unsigned char buf[8192] = { 1 };
	struct iovec iov = { buf, sizeof(buf) };

	(void)wio_init(&w, _i);
	wio_fault = fault_fail;
	ck_assert_int_eq(wio_start(&w, fd, buf, sizeof(buf), 0, false), w.uring ? 0 : -EIO);
	ck_assert_int_eq(wio_wait(&w), -EIO);
	ck_assert_int_eq(wio_writev(&w, fd, &iov, 1, 0), -EIO);
	wio_fault = NULL;
	/* The channel still works after a failure. */
	ck_assert_int_eq(wio_writev(&w, fd, &iov, 1, 0), 0);
	wio_fini(&w);
	close(fd);
}
END_TEST

START_TEST(test_bad_fd)
{
	struct wio w;
	unsigned char buf[16] = { 0 };

	(void)wio_init(&w, _i);
	ck_assert_int_eq(wio_start(&w, 12345, buf, sizeof(buf), 0, false), w.uring ? 0 : -EBADF);
	ck_assert_int_eq(wio_wait(&w), -EBADF);
	wio_fini(&w);
}
END_TEST

/* io_uring_enter refused after the ring was made: the write on the ring
 * fails (its buffer may still be the kernel's), the channel goes on with
 * pwritev. */
START_TEST(test_ring_failure)
{
	struct wio w;
	int fd = tmpfile_fd();
	unsigned char *buf = malloc(MIB);
	struct iovec iov = { buf, MIB };

	fill(buf, MIB, 5);
	if (wio_init(&w, true) || !deny_syscall(__NR_io_uring_enter, EIO)) {
		printf("io_uring or seccomp unavailable: case not run\n");
		free(buf);
		return;
	}
	ck_assert_int_eq(wio_start(&w, fd, buf, MIB, 0, false), -EIO);
	ck_assert(!w.uring);
	ck_assert_int_eq(wio_wait(&w), -EIO);
	ck_assert_int_eq(wio_writev(&w, fd, &iov, 1, MIB), 0);
	ck_assert_int_eq(wio_start(&w, fd, buf, MIB, 0, false), 0);
	ck_assert_int_eq(wio_wait(&w), 0);
	expect_file(fd, 0, buf, MIB);
	expect_file(fd, MIB, buf, MIB);
	wio_fini(&w);
	free(buf);
	close(fd);
}
END_TEST

static Suite *uring_suite(void)
{
	Suite *s = suite_create("uring");
	TCase *tc = tcase_create("writes");

	/* Loop index 0: pwritev, 1: io_uring. */
	tcase_add_loop_test(tc, test_writes, 0, 2);
	tcase_add_loop_test(tc, test_short_writes_resubmitted, 0, 2);
	tcase_add_loop_test(tc, test_eagain_eintr_retried, 0, 2);
	tcase_add_loop_test(tc, test_errors_reported, 0, 2);
	tcase_add_loop_test(tc, test_bad_fd, 0, 2);
	tcase_add_test(tc, test_ring_failure);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return run_suite(uring_suite());
}
