/*
 * test_reader.c: readers' read, seek, size and data rules (API.md).
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include <scratch.h>

static scratch_store *store;
static scratch_reader *reader;
static const char digits[] = "0123456789";

static void setup(void)
{
	scratch_handle h;

	ck_assert_int_eq(scratch_memory_new(&store), 0);
	ck_assert_int_eq(scratch_put(store, digits, 10, &h), 0);
	ck_assert_int_eq(scratch_read(store, h, &reader), 0);
}

static void teardown(void)
{
	ck_assert_int_eq(scratch_reader_close(reader), 0);
	scratch_store_close(store);
}

START_TEST(test_read_in_pieces)
{
	char buf[16];

	ck_assert_uint_eq(scratch_reader_size(reader), 10);
	ck_assert_int_eq(scratch_reader_read(reader, buf, 4), 4);
	ck_assert_mem_eq(buf, "0123", 4);
	ck_assert_int_eq(scratch_reader_read(reader, buf, 0), 0);
	ck_assert_int_eq(scratch_reader_read(reader, buf, sizeof(buf)), 6);
	ck_assert_mem_eq(buf, "456789", 6);
	ck_assert_int_eq(scratch_reader_read(reader, buf, sizeof(buf)), 0);
	ck_assert_int_eq(scratch_reader_read(reader, NULL, 0), 0);
}
END_TEST

START_TEST(test_seek_whence)
{
	char c;

	ck_assert_int_eq(scratch_reader_seek(reader, 3, SEEK_SET), 3);
	ck_assert_int_eq(scratch_reader_read(reader, &c, 1), 1);
	ck_assert_int_eq(c, '3');
	ck_assert_int_eq(scratch_reader_seek(reader, 2, SEEK_CUR), 6);
	ck_assert_int_eq(scratch_reader_read(reader, &c, 1), 1);
	ck_assert_int_eq(c, '6');
	ck_assert_int_eq(scratch_reader_seek(reader, -1, SEEK_END), 9);
	ck_assert_int_eq(scratch_reader_read(reader, &c, 1), 1);
	ck_assert_int_eq(c, '9');
	ck_assert_int_eq(scratch_reader_seek(reader, 0, SEEK_CUR), 10);
}
END_TEST

START_TEST(test_seek_past_end)
{
	char c;

	ck_assert_int_eq(scratch_reader_seek(reader, 1000, SEEK_SET), 1000);
	ck_assert_int_eq(scratch_reader_read(reader, &c, 1), 0);
	ck_assert_int_eq(scratch_reader_seek(reader, 5, SEEK_END), 15);
	ck_assert_int_eq(scratch_reader_read(reader, &c, 1), 0);
	ck_assert_int_eq(scratch_reader_seek(reader, -14, SEEK_CUR), 1);
	ck_assert_int_eq(scratch_reader_read(reader, &c, 1), 1);
	ck_assert_int_eq(c, '1');
}
END_TEST

START_TEST(test_seek_rejects)
{
	ck_assert_int_eq(scratch_reader_seek(reader, 4, SEEK_SET), 4);
	ck_assert_int_eq(scratch_reader_seek(reader, -1, SEEK_SET), -EINVAL);
	ck_assert_int_eq(scratch_reader_seek(reader, -5, SEEK_CUR), -EINVAL);
	ck_assert_int_eq(scratch_reader_seek(reader, -11, SEEK_END), -EINVAL);
	ck_assert_int_eq(scratch_reader_seek(reader, 0, 42), -EINVAL);
	ck_assert_int_eq(scratch_reader_seek(reader, INT64_MAX, SEEK_END), -EINVAL);
	ck_assert_int_eq(scratch_reader_seek(reader, INT64_MIN, SEEK_SET), -EINVAL);
	/* Each rejection left the offset where it was. */
	ck_assert_int_eq(scratch_reader_seek(reader, 0, SEEK_CUR), 4);
	ck_assert_int_eq(scratch_reader_seek(reader, INT64_MAX, SEEK_SET), INT64_MAX);
	ck_assert_int_eq(scratch_reader_seek(reader, 1, SEEK_CUR), -EINVAL);
}
END_TEST

START_TEST(test_data_view)
{
	char c;

	ck_assert_mem_eq(scratch_reader_data(reader), digits, 10);
	/* The view is independent of the offset. */
	ck_assert_int_eq(scratch_reader_read(reader, &c, 1), 1);
	ck_assert_mem_eq(scratch_reader_data(reader), digits, 10);
}
END_TEST

START_TEST(test_null_reader)
{
	char c;

	ck_assert_int_eq(scratch_reader_read(NULL, &c, 1), -EINVAL);
	ck_assert_int_eq(scratch_reader_read(reader, NULL, 1), -EINVAL);
	ck_assert_int_eq(scratch_reader_read(reader, NULL, 0), 0); /* no bytes asked */
	ck_assert_int_eq(scratch_reader_seek(NULL, 0, SEEK_SET), -EINVAL);
	ck_assert_uint_eq(scratch_reader_size(NULL), 0);
	ck_assert_ptr_null(scratch_reader_data(NULL));
	ck_assert_int_eq(scratch_reader_close(NULL), 0);
}
END_TEST

/* A thread reuses the reader it closed last: each open starts afresh. */
START_TEST(test_reopen_starts_afresh)
{
	static char big[1000];
	scratch_handle small_h, big_h;
	scratch_reader *a, *b;
	char c;

	memset(big, 'b', sizeof(big));
	ck_assert_int_eq(scratch_memory_new(&store), 0);
	ck_assert_int_eq(scratch_put(store, digits, 10, &small_h), 0);
	ck_assert_int_eq(scratch_put(store, big, sizeof(big), &big_h), 0);
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(scratch_read(store, small_h, &a), 0);
		ck_assert_int_eq(scratch_reader_seek(a, 4, SEEK_SET), 4);
		ck_assert_int_eq(scratch_reader_close(a), 0);
		ck_assert_int_eq(scratch_read(store, big_h, &a), 0);
		ck_assert_int_eq(scratch_read(store, small_h, &b), 0);
		ck_assert_ptr_ne(a, b);
		ck_assert_uint_eq(scratch_reader_size(a), sizeof(big));
		ck_assert_int_eq(scratch_reader_read(a, &c, 1), 1);
		ck_assert_int_eq(c, 'b');
		ck_assert_mem_eq(scratch_reader_data(a), big, sizeof(big));
		ck_assert_int_eq(scratch_reader_read(b, &c, 1), 1);
		ck_assert_int_eq(c, '0');
		ck_assert_int_eq(scratch_reader_close(b), 0);
		ck_assert_int_eq(scratch_reader_close(a), 0);
	}
	ck_assert_int_eq(scratch_remove(store, big_h), 0);
	ck_assert_int_eq(scratch_read(store, big_h, &a), SCRATCH_ENOTFOUND);
	ck_assert_ptr_null(a);
	scratch_store_close(store);
}
END_TEST

static void *read_and_exit(void *arg)
{
	scratch_handle h = *(scratch_handle *)arg;
	scratch_reader *r;

	require(scratch_read(store, h, &r) == 0);
	require(scratch_reader_close(r) == 0);
	return NULL;
}

/* The reader a thread keeps goes with the thread (under ASan, a leak
 * otherwise). */
START_TEST(test_threads_leave_no_reader)
{
	scratch_handle h;
	pthread_t t;

	ck_assert_int_eq(scratch_memory_new(&store), 0);
	ck_assert_int_eq(scratch_put(store, digits, 10, &h), 0);
	for (int i = 0; i < 50; i++) {
		ck_assert_int_eq(pthread_create(&t, NULL, read_and_exit, &h), 0);
		pthread_join(t, NULL);
	}
	scratch_store_close(store);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("reader");
	TCase *tc = tcase_create("rules");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_read_in_pieces);
	tcase_add_test(tc, test_seek_whence);
	tcase_add_test(tc, test_seek_past_end);
	tcase_add_test(tc, test_seek_rejects);
	tcase_add_test(tc, test_data_view);
	tcase_add_test(tc, test_null_reader);
	suite_add_tcase(s, tc);
	tc = tcase_create("reuse");
	tcase_add_test(tc, test_reopen_starts_afresh);
	tcase_add_test(tc, test_threads_leave_no_reader);
	suite_add_tcase(s, tc);

	return run_suite(s);
}
