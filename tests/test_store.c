/*
 * test_store.c: the dispatch layer: argument checks, error names,
 * scratch_open's choice of store, and what is not built yet.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

#include <scratch.h>

START_TEST(test_strerror)
{
	ck_assert_str_eq(scratch_strerror(SCRATCH_ENOTFOUND), "handle not found");
	ck_assert_str_eq(scratch_strerror(-ENOMEM), strerror(ENOMEM));
	ck_assert_str_eq(scratch_strerror(-EINVAL), strerror(EINVAL));
	ck_assert_ptr_nonnull(scratch_strerror(0));
	ck_assert_ptr_nonnull(scratch_strerror(12345));
	ck_assert_ptr_nonnull(scratch_strerror(-99999));
	ck_assert_int_lt(SCRATCH_ENOTFOUND, -4095);
}
END_TEST

START_TEST(test_null_arguments)
{
	scratch_store *s;
	scratch_handle h = 7;
	scratch_reader *r = (scratch_reader *)&h;
	scratch_writer *w = (scratch_writer *)&h;
	struct iovec iov = { "x", 1 };

	ck_assert_int_eq(scratch_memory_new(NULL), -EINVAL);
	ck_assert_int_eq(scratch_memory_new(&s), 0);

	ck_assert_int_eq(scratch_put(NULL, "x", 1, &h), -EINVAL);
	ck_assert_uint_eq(h, SCRATCH_INVALID_HANDLE);
	ck_assert_int_eq(scratch_put(s, "x", 1, NULL), -EINVAL);
	ck_assert_int_eq(scratch_put(s, NULL, 1, &h), -EINVAL);
	ck_assert_int_eq(scratch_putv(NULL, &iov, 1, &h), -EINVAL);
	ck_assert_int_eq(scratch_putv(s, &iov, -1, &h), -EINVAL);
	ck_assert_int_eq(scratch_putv(s, NULL, 1, &h), -EINVAL);
	ck_assert_int_eq(scratch_putv(s, &iov, 1, NULL), -EINVAL);
	struct iovec huge[2] = { { "x", SIZE_MAX }, { "y", 2 } };

	ck_assert_int_eq(scratch_putv(s, huge, 2, &h), -EINVAL);
	ck_assert_int_eq(scratch_put_batch(NULL, &iov, 1, &h), -EINVAL);
	ck_assert_int_eq(scratch_put_batch(s, &iov, 1, NULL), -EINVAL);
	ck_assert_int_eq(scratch_put_batch(s, NULL, 1, &h), -EINVAL);

	ck_assert_int_eq(scratch_read(NULL, 1, &r), -EINVAL);
	ck_assert_ptr_null(r);
	ck_assert_int_eq(scratch_read(s, 1, NULL), -EINVAL);
	ck_assert_int_eq(scratch_read(s, SCRATCH_INVALID_HANDLE, &r), SCRATCH_ENOTFOUND);
	ck_assert_int_eq(scratch_read(s, UINT64_MAX, &r), SCRATCH_ENOTFOUND);
	ck_assert_int_eq(scratch_remove(NULL, 1), -EINVAL);
	ck_assert_int_eq(scratch_remove(s, SCRATCH_INVALID_HANDLE), SCRATCH_ENOTFOUND);
	ck_assert_int_eq(scratch_remove(s, 12345), SCRATCH_ENOTFOUND);

	ck_assert_int_eq(scratch_writer_open(NULL, &w), -EINVAL);
	ck_assert_ptr_null(w);
	ck_assert_int_eq(scratch_writer_open(s, NULL), -EINVAL);
	ck_assert_int_eq(scratch_writer_write(NULL, "x", 1), -EINVAL);
	ck_assert_int_eq(scratch_writer_commit(NULL, &h), -EINVAL);
	ck_assert_int_eq(scratch_writer_open(s, &w), 0);
	ck_assert_int_eq(scratch_writer_write(w, NULL, 1), -EINVAL);
	scratch_writer_abort(w);

	ck_assert_int_eq(scratch_open(NULL, NULL, NULL), -EINVAL);
	scratch_store *fs = s;

	ck_assert_int_eq(scratch_filesystem_new(NULL, NULL, &fs), -EINVAL);
	ck_assert_ptr_null(fs);
	scratch_store_close(NULL);
	scratch_store_close(s);
}
END_TEST

START_TEST(test_open_chooses)
{
	scratch_store *s = NULL;
	scratch_handle h;
	char file[] = "/tmp/scratch-test-XXXXXX";
	int fd = mkstemp(file);

	ck_assert_int_eq(scratch_open(NULL, NULL, &s), 0);
	ck_assert_int_eq(scratch_put(s, "m", 1, &h), 0);
	scratch_store_close(s);
	ck_assert_int_eq(scratch_open(NULL, "", &s), 0);
	ck_assert_int_eq(scratch_put(s, "m", 1, &h), 0);
	scratch_store_close(s);
	ck_assert_int_eq(scratch_open(NULL, "/nonexistent/scratch/dir", &s), -ENOENT);
	ck_assert_ptr_null(s);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(scratch_open(NULL, file, &s), -ENOTDIR);
	ck_assert_ptr_null(s);
	close(fd);
	unlink(file);
}
END_TEST

START_TEST(test_observe_passthrough)
{
	scratch_store *s, *o = NULL;

	ck_assert_int_eq(scratch_memory_new(&s), 0);
	ck_assert_int_eq(scratch_observe(NULL, s, &o), 0);
	ck_assert_ptr_eq(o, s);
	ck_assert_int_eq(scratch_observe(NULL, s, NULL), -EINVAL);
	ck_assert_int_eq(scratch_metrics_snapshot(NULL, NULL), -EINVAL);
	ck_assert_int_eq(scratch_metrics_write_prometheus(NULL, 1), -EINVAL);
	scratch_metrics_free(NULL);
	scratch_store_close(o);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("store");
	TCase *tc = tcase_create("dispatch");

	tcase_add_test(tc, test_strerror);
	tcase_add_test(tc, test_null_arguments);
	tcase_add_test(tc, test_open_chooses);
	tcase_add_test(tc, test_observe_passthrough);
	suite_add_tcase(s, tc);

	return run_suite(s);
}
