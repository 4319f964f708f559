/*
 * test_filesystem_enospc.c: a filesystem store on a full disk.
 *
 * Each case mounts a tmpfs of 8 MiB, puts about 50 MiB on it and checks that
 * every put succeeds, that a WARN line names the error (ENOSPC), that every
 * blob reads back whole (no SIGBUS from a mapping over a hole), and that once
 * most blobs are removed new puts go to disk again.  Run with the default
 * write path (io_uring where the kernel allows it) and with SCRATCH_IO=pwrite.
 *
 * mount(2) needs root or CAP_SYS_ADMIN: where it is refused (EPERM/EACCES,
 * e.g. an unprivileged container) the whole program is skipped (exit 77).
 * Mounts live under one mkdtemp root; main detaches and removes them at the
 * end even when a case failed (Check runs each case in a child).  Helpers:
 * fs_testutil.h.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs_testutil.h"

#define DISK_SIZE (8 * MiB)

static const char *const io_modes[] = { NULL, "pwrite" }; /* NULL: SCRATCH_IO unset */

static void mount_point(char *out, unsigned variant)
{
	snprintf(out, PATH_MAX, "%s/%s", fs_root, io_modes[variant] ? io_modes[variant] : "default");
}

static void unmount(const char *mnt)
{
	/* A ring's teardown may drop its file references a moment later. */
	for (int tries = 0; umount2(mnt, 0) != 0; tries++) {
		if (errno != EBUSY || tries == 100)
			ck_abort_msg("umount %s: %s (a file of the closed store still open?)", mnt,
				     strerror(errno));
		msleep(20);
	}
	require(rmdir(mnt) == 0);
}

/* --------------------------------------------------------------- cases */

START_TEST(test_full_disk)
{
	enum { MAX_BLOBS = 32 * 65 + 2 + 108 };
	struct capture cap = { .mu = PTHREAD_MUTEX_INITIALIZER };
	const scratch_logger log = { capture_log, &cap };
	const char *io = io_modes[_i];
	struct blob *b = calloc(MAX_BLOBS, sizeof(*b));
	size_t n = 0, total = 0;
	uint64_t full, before, after;
	char mnt[PATH_MAX];
	scratch_store *s = NULL;
	int err;

	require(b != NULL);
	mount_point(mnt, (unsigned)_i);
	require(mkdir(mnt, 0700) == 0);
	if (mount("tmpfs", mnt, "tmpfs", 0, "size=8m"))
		ck_abort_msg("mount tmpfs on %s: %s", mnt, strerror(errno));
	if (io)
		require(setenv("SCRATCH_IO", io, 1) == 0);
	else
		require(unsetenv("SCRATCH_IO") == 0);
	err = scratch_filesystem_new(&log, mnt, &s);
	if (err)
		ck_abort_msg("scratch_filesystem_new(%s): %s", mnt, scratch_strerror(err));

	/* ~50 MiB onto 8 MiB: 1 MiB and 4 KiB blobs, and two of 5 MiB (a file
	 * each).  Every put succeeds: what the disk cannot take stays in memory. */
	for (unsigned i = 0; i < 32; i++) {
		b[n] = put_seeded(s, n, MiB);
		total += b[n++].n;
		for (unsigned j = 0; j < 64; j++, n++)
			total += (b[n] = put_seeded(s, n, 4096)).n;
		if (i == 10 || i == 20) {
			b[n] = put_seeded(s, n, 5 * MiB);
			total += b[n++].n;
		}
		if (i % 4 == 3)
			require(scratch_store_flush(s) == 0);
	}
	require(scratch_store_flush(s) == 0);
	pthread_mutex_lock(&cap.mu); /* the logger may run on the library's threads */
	unsigned warn_err = cap.warn_err, enospc = cap.enospc;

	pthread_mutex_unlock(&cap.mu);
	if (warn_err == 0)
		ck_abort_msg("%zu MiB put on an %zu MiB disk and no WARN line with err=",
			     total / MiB, DISK_SIZE / MiB);
	if (enospc == 0)
		ck_abort_msg("no WARN line names ENOSPC; the first was: %s", cap.first);
	full = disk_bytes(mnt);
	if (full == 0 || full > DISK_SIZE)
		ck_abort_msg("%llu bytes on an %zu MiB disk", (unsigned long long)full,
			     DISK_SIZE / MiB);
	expect_blobs(s, b, n);

	/* Free most of it; past the retry delay, new puts go to disk again. */
	size_t kept = 0;

	for (size_t i = 0; i < n; i++) {
		if (i % 16 == 0)
			b[kept++] = b[i];
		else
			require(scratch_remove(s, b[i].h) == 0);
	}
	n = kept;
	msleep(50);
	require(scratch_store_flush(s) == 0);
	before = disk_bytes(mnt);
	for (unsigned i = 0; i < 8; i++)
		b[n++] = put_seeded(s, 100000 + i, 256 * 1024);
	for (unsigned i = 0; i < 100; i++)
		b[n++] = put_seeded(s, 200000 + i, 4096);
	require(scratch_store_flush(s) == 0);
	after = disk_bytes(mnt);
	if (after < before + MiB)
		ck_abort_msg("space was freed, yet 2.4 MiB of new puts took %lld bytes of disk "
			     "(%llu before, %llu after; %llu when full)",
			     (long long)(after - before), (unsigned long long)before,
			     (unsigned long long)after, (unsigned long long)full);
	expect_blobs(s, b, n);

	scratch_store_close(s);
	ck_assert_uint_eq(count_files(mnt), 0);
	unmount(mnt);
	unsetenv("SCRATCH_IO");
	free(b);
}
END_TEST

int main(void)
{
	char path[PATH_MAX];
	int rc;

	fs_root_init("scratch-enospc-test");
	/* Probe once here: a skip must end the whole program, not one case. */
	snprintf(path, sizeof(path), "%s/probe", fs_root);
	if (mkdir(path, 0700) == 0 && mount("tmpfs", path, "tmpfs", 0, "size=8m") != 0) {
		int e = errno;

		fs_root_remove();
		if (e == EPERM || e == EACCES)
			skip_all("cannot mount a tmpfs (%s): mount(2) needs root or CAP_SYS_ADMIN, "
				 "which this user or container lacks",
				 strerror(e));
		fprintf(stderr, "mount tmpfs on %s: %s\n", path, strerror(e));
		return EXIT_FAILURE;
	}
	umount2(path, 0);
	rmdir(path);

	Suite *s = suite_create("filesystem_enospc");
	TCase *tc = tcase_create("full disk");

	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, test_full_disk, 0, 2);
	suite_add_tcase(s, tc);
	rc = run_suite(s);

	for (unsigned i = 0; i < 2; i++) { /* cases that failed left their mounts */
		mount_point(path, i);
		umount2(path, MNT_DETACH);
	}
	fs_root_remove();
	return rc;
}
