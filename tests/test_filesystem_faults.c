/*
 * test_filesystem_faults.c: a filesystem store among other stores and when
 * things go wrong, through the public API only.
 *
 * Covers: two stores on one directory, in one process and across fork, each
 * leaving the other's files alone; a SIGKILLed process's leftovers, removed
 * by the next store to start there (and nothing else: not other files, not
 * subdirectories, not symlinks, not a live store's files); the memory
 * fallback, with a WARN line, when the directory is deleted under a live
 * store and when file descriptors run out (RLIMIT_NOFILE).
 * Helpers: fs_testutil.h.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fs_testutil.h"

START_TEST(test_stores_share_a_directory)
{
	char dir[PATH_MAX];
	struct blob ba[21], bb[21];
	struct files fa;
	scratch_store *a, *b;

	case_dir(dir);
	a = fs_new(NULL, dir);
	for (unsigned i = 0; i < 21; i++)
		ba[i] = put_seeded(a, i, i < 20 ? 3000 : 5 * MiB);
	require(scratch_store_flush(a) == 0);
	list_files(dir, &fa);
	ck_assert_uint_ge(fa.n, 1);

	/* B's start-up cleanup must leave A's live files alone. */
	b = fs_new(NULL, dir);
	expect_files(dir, &fa, false);
	expect_blobs(a, ba, 21);
	for (unsigned i = 0; i < 21; i++)
		bb[i] = put_seeded(b, 100 + i, i < 20 ? 2000 : 5 * MiB);
	require(scratch_store_flush(b) == 0);
	ck_assert_uint_gt(count_files(dir), fa.n);
	expect_blobs(b, bb, 21);
	expect_blobs(a, ba, 21);
	scratch_store_close(b); /* removes B's files only */
	expect_files(dir, &fa, true);
	expect_blobs(a, ba, 21);

	/* A child process: its store starts, works and closes beside A's. */
	pid_t pid = fork();

	require(pid >= 0);
	if (pid == 0) {
		scratch_store *c = NULL;
		struct blob bc[3];

		child_require(scratch_filesystem_new(NULL, dir, &c) == 0);
		for (unsigned i = 0; i < 3; i++)
			child_require(put_seeded_rc(c, 200 + i, i < 2 ? 4096 : 5 * MiB, &bc[i]) == 0);
		child_require(scratch_store_flush(c) == 0);
		for (unsigned i = 0; i < 3; i++)
			child_require(blob_matches(c, &bc[i]));
		scratch_store_close(c);
		_exit(0);
	}
	wait_child_ok(pid);
	expect_files(dir, &fa, true);
	expect_blobs(a, ba, 21);
	files_free(&fa);
	scratch_store_close(a);
	require(count_files(dir) == 0);
	rm_rf(dir);
}
END_TEST

START_TEST(test_killed_child_leftovers)
{
	char dir[PATH_MAX], path[PATH_MAX + 32], outside[PATH_MAX + 16];
	struct files live_files, all;
	struct blob lb[10];
	struct stat st;
	int p[2];
	char c;

	case_dir(dir);
	snprintf(path, sizeof(path), "%s/keep.txt", dir);
	write_file(path, "keep");
	snprintf(path, sizeof(path), "%s/sub", dir);
	require(mkdir(path, 0700) == 0);
	snprintf(path, sizeof(path), "%s/sub/x.lokiscratch", dir);
	write_file(path, "in a subdirectory");
	snprintf(outside, sizeof(outside), "%s-outside", dir);
	write_file(outside, "outside");
	snprintf(path, sizeof(path), "%s/link.lokiscratch", dir);
	require(symlink(outside, path) == 0);

	scratch_store *live = fs_new(NULL, dir); /* a live store: must survive too */

	for (unsigned i = 0; i < 10; i++)
		lb[i] = put_seeded(live, i, 2000);
	require(scratch_store_flush(live) == 0);
	list_files(dir, &live_files);

	require(pipe(p) == 0);
	pid_t pid = fork();

	require(pid >= 0);
	if (pid == 0) {
		scratch_store *s = NULL;
		struct blob b[32];

		close(p[0]);
		child_require(scratch_filesystem_new(NULL, dir, &s) == 0);
		for (unsigned i = 0; i < 32; i++)
			child_require(put_seeded_rc(s, 50 + i, i < 30 ? 4096 : 5 * MiB, &b[i]) == 0);
		child_require(scratch_store_flush(s) == 0);
		for (unsigned i = 0; i < 32; i++)
			child_require(blob_matches(s, &b[i]));
		child_require(write(p[1], "r", 1) == 1);
		for (;;)
			pause();
	}
	close(p[1]);
	if (read(p[0], &c, 1) != 1)
		ck_abort_msg("the child died before it was ready; see its stderr");
	close(p[0]);
	require(kill(pid, SIGKILL) == 0);
	int wst;

	require(waitpid(pid, &wst, 0) == pid);
	require(WIFSIGNALED(wst) && WTERMSIG(wst) == SIGKILL);

	/* The dead child's files remain: two of their own, one segment at least. */
	list_files(dir, &all);
	ck_assert_uint_ge(all.n, live_files.n + 3);

	scratch_store *fresh = fs_new(NULL, dir);

	for (size_t i = 0; i < all.n; i++) {
		if (files_has(&live_files, all.names[i]))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, all.names[i]);
		if (lstat(path, &st) == 0)
			ck_abort_msg("%s, left by a dead store, was not removed", path);
	}
	expect_files(dir, &live_files, false);
	expect_blobs(live, lb, 10);
	snprintf(path, sizeof(path), "%s/keep.txt", dir);
	expect_file(path, "keep");
	snprintf(path, sizeof(path), "%s/sub/x.lokiscratch", dir);
	expect_file(path, "in a subdirectory");
	snprintf(path, sizeof(path), "%s/link.lokiscratch", dir);
	require(lstat(path, &st) == 0 && S_ISLNK(st.st_mode));
	expect_file(outside, "outside");

	struct blob fb = put_seeded(fresh, 99, 5000);

	expect_blob(fresh, &fb);
	scratch_store_close(fresh);
	scratch_store_close(live);
	require(count_files(dir) == 0);
	require(lstat(path, &st) == 0 && S_ISLNK(st.st_mode));
	expect_file(outside, "outside");
	files_free(&live_files);
	files_free(&all);
	rm_rf(dir);
	unlink(outside);
}
END_TEST

START_TEST(test_directory_deleted)
{
	struct capture cap = { .mu = PTHREAD_MUTEX_INITIALIZER };
	const scratch_logger log = { capture_log, &cap };
	char dir[PATH_MAX];
	struct blob b[232];
	unsigned n = 0;
	scratch_reader *r;
	scratch_store *s;

	case_dir(dir);
	s = fs_new(&log, dir);
	for (; n < 21; n++)
		b[n] = put_seeded(s, n, n < 20 ? 3000 : 5 * MiB);
	require(scratch_store_flush(s) == 0);
	require(scratch_read(s, b[20].h, &r) == 0);

	rm_rf(dir);
	require(access(dir, F_OK) == -1);
	/* New files cannot be made: blobs > 4 MiB need one each. */
	for (; n < 232; n++)
		b[n] = put_seeded(s, n, n < 24 ? 5 * MiB : n < 32 ? MiB : 4096);
	require(scratch_store_flush(s) == 0);
	if (warnings(&cap) == 0)
		ck_abort_msg("no WARN line with err= after the directory was deleted");
	expect_blobs(s, b, n);
	verify_seeded(r, b[20].seed, b[20].n);
	require(scratch_reader_close(r) == 0);
	scratch_store_close(s);
	rm_rf(dir);
}
END_TEST

START_TEST(test_out_of_descriptors)
{
	char dir[PATH_MAX];

	case_dir(dir);
	pid_t pid = fork(); /* keeps the lowered limit out of this process */

	require(pid >= 0);
	if (pid == 0) {
		struct capture cap = { .mu = PTHREAD_MUTEX_INITIALIZER };
		const scratch_logger log = { capture_log, &cap };
		scratch_store *s = NULL;
		struct blob b[61];
		unsigned n = 0;
		struct rlimit rl;
		int max;

		child_require(scratch_filesystem_new(&log, dir, &s) == 0);
		child_require(put_seeded_rc(s, n, 100, &b[n]) == 0);
		n++;
		child_require(scratch_store_flush(s) == 0);
		fd_scan(&max);
		child_require(getrlimit(RLIMIT_NOFILE, &rl) == 0);
		rl.rlim_cur = (rlim_t)max + 1 + 3;
		child_require(setrlimit(RLIMIT_NOFILE, &rl) == 0);
		for (; n < 7; n++)
			child_require(put_seeded_rc(s, n, 5 * MiB, &b[n]) == 0);
		/* A backend may close a file once it is mapped: take every slot left. */
		while (open("/dev/null", O_RDONLY) >= 0)
			;
		child_require(errno == EMFILE);
		for (; n < 61; n++)
			child_require(put_seeded_rc(s, n, n < 11 ? 5 * MiB : 4096, &b[n]) == 0);
		child_require(scratch_store_flush(s) == 0);
		if (warnings(&cap) == 0) {
			fprintf(stderr, "no WARN line with err= when out of descriptors\n");
			_exit(1);
		}
		for (unsigned i = 0; i < n; i++)
			child_require(blob_matches(s, &b[i]));
		scratch_store_close(s);
		_exit(0);
	}
	wait_child_ok(pid);
	require(count_files(dir) == 0);
	rm_rf(dir);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("filesystem_faults");
	TCase *tc = tcase_create("other stores and failures");
	int rc;

	fs_root_init("scratch-fs-faults");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_stores_share_a_directory);
	tcase_add_test(tc, test_killed_child_leftovers);
	tcase_add_test(tc, test_directory_deleted);
	tcase_add_test(tc, test_out_of_descriptors);
	suite_add_tcase(s, tc);

	rc = run_suite(s);
	fs_root_remove();
	return rc;
}
