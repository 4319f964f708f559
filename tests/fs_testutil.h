/*
 * fs_testutil.h: helpers shared by the filesystem store's Check programs
 * (test_filesystem*.c), on top of testutil.h.  Public API only.
 *
 * - A per-program root directory (fs_root_init/fs_root_remove) holding one
 *   fresh directory per case (case_dir): main removes the root at the end,
 *   also after a failed case (Check runs each case in a child).
 * - Seeded blobs (fill, put_seeded, expect_blob: testutil.h) checked from
 *   forked children (blob_matches), and opening a store (fs_new).
 * - The store's files as the directory shows them (list_files and friends):
 *   every .lokiscratch regular file must be mode 0600.
 * - A logger capturing WARN lines, descriptor counts, forked children.
 * Include after the system headers, with _GNU_SOURCE defined.
 */
#ifndef SCRATCH_FS_TESTUTIL_H
#define SCRATCH_FS_TESTUTIL_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#include <scratch.h>

#define SUFFIX ".lokiscratch"

/* In a forked child, where Check must not be called. */
#define child_require(cond)                                                          \
	do {                                                                          \
		if (!(cond)) {                                                        \
			fprintf(stderr, "child %d: %s:%d: failed: %s\n", (int)getpid(), \
				__FILE__, __LINE__, #cond);                            \
			_exit(1);                                                     \
		}                                                                     \
	} while (0)

/* ------------------------------------------------------ directories, time */

static char fs_root[256];

static inline int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st, (void)flag, (void)f;
	return remove(p) && errno != ENOENT ? -1 : 0;
}

static inline void rm_rf(const char *path)
{
	nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Creates /tmp/<name>-XXXXXX; exits on failure (called from main). */
static inline void fs_root_init(const char *name)
{
	snprintf(fs_root, sizeof(fs_root), "/tmp/%s-XXXXXX", name);
	if (!mkdtemp(fs_root)) {
		perror("mkdtemp");
		exit(EXIT_FAILURE);
	}
}

static inline void fs_root_remove(void)
{
	rm_rf(fs_root);
}

/* A fresh directory for one case; out has room for PATH_MAX bytes. */
static inline void case_dir(char *out)
{
	snprintf(out, PATH_MAX, "%s/case-XXXXXX", fs_root);
	require(mkdtemp(out) != NULL);
}

static inline void msleep(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* SCRATCH_TEST_SCALE (a factor, default 1) scales stress loops. */
static inline unsigned scaled(unsigned n)
{
	const char *e = getenv("SCRATCH_TEST_SCALE");
	double v = n * (e ? atof(e) : 1.0);

	return v < 1 ? 1 : (unsigned)v;
}

static inline void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	require(f != NULL);
	require(fputs(text, f) >= 0);
	require(fclose(f) == 0);
}

static inline void expect_file(const char *path, const char *text)
{
	char buf[256] = "";
	FILE *f = fopen(path, "r");

	if (!f)
		ck_abort_msg("%s is gone: %s", path, strerror(errno));
	require(fgets(buf, sizeof(buf), f) != NULL);
	fclose(f);
	ck_assert_str_eq(buf, text);
}

/* ------------------------------------------- seeded blobs (testutil.h) */

/* For children: the whole blob, by read and by the zero-copy view. */
static inline bool blob_matches(scratch_store *s, const struct blob *b)
{
	unsigned char *want = malloc(b->n + 1), *got = malloc(b->n + 1);
	scratch_reader *r = NULL;
	bool ok = want && got && scratch_read(s, b->h, &r) == 0;

	if (ok) {
		size_t at = 0;
		ssize_t k = 0;

		fill(want, b->n, b->seed);
		while (at <= b->n && (k = scratch_reader_read(r, got + at, b->n + 1 - at)) > 0)
			at += (size_t)k;
		ok = k == 0 && at == b->n && scratch_reader_size(r) == b->n &&
		     memcmp(got, want, b->n) == 0 &&
		     memcmp(scratch_reader_data(r), want, b->n) == 0;
		scratch_reader_close(r);
	}
	free(want);
	free(got);
	return ok;
}

static inline scratch_store *fs_new(const scratch_logger *log, const char *dir)
{
	scratch_store *s = NULL;
	int err = scratch_filesystem_new(log, dir, &s);

	if (err)
		ck_abort_msg("scratch_filesystem_new(%s): %s", dir, scratch_strerror(err));
	require(s != NULL);
	return s;
}

/* ---------------------------------------------------------- a store's files */

/* The .lokiscratch regular files directly in a directory; each must be
 * mode 0600.  Symlinks so named are planted by tests and skipped. */
struct files {
	size_t n;
	char **names;
	uint64_t bytes;  /* sum of st_size */
	uint64_t blocks; /* sum of st_blocks, 512-byte units */
};

static inline void list_files(const char *dir, struct files *f)
{
	const size_t sl = sizeof(SUFFIX) - 1;
	DIR *d = opendir(dir);
	struct dirent *e;
	struct stat st;

	memset(f, 0, sizeof(*f));
	if (!d)
		ck_abort_msg("opendir %s: %s", dir, strerror(errno));
	while ((e = readdir(d))) {
		size_t len = strlen(e->d_name);

		if (len < sl || strcmp(e->d_name + len - sl, SUFFIX) != 0)
			continue;
		if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW))
			continue; /* removed meanwhile */
		if (S_ISLNK(st.st_mode))
			continue;
		if (!S_ISREG(st.st_mode) || (st.st_mode & 07777) != 0600)
			ck_abort_msg("%s/%s: mode %o, want a regular file 0600", dir, e->d_name,
				     (unsigned)st.st_mode);
		require(len > sl); /* a random name before the extension */
		f->names = realloc(f->names, (f->n + 1) * sizeof(*f->names));
		require(f->names != NULL);
		f->names[f->n++] = strdup(e->d_name);
		f->bytes += (uint64_t)st.st_size;
		f->blocks += (uint64_t)st.st_blocks;
	}
	closedir(d);
}

static inline void files_free(struct files *f)
{
	for (size_t i = 0; i < f->n; i++)
		free(f->names[i]);
	free(f->names);
}

static inline bool files_has(const struct files *f, const char *name)
{
	for (size_t i = 0; i < f->n; i++)
		if (strcmp(f->names[i], name) == 0)
			return true;
	return false;
}

static inline size_t count_files(const char *dir)
{
	struct files f;

	list_files(dir, &f);
	files_free(&f);
	return f.n;
}

/* Bytes allocated to the store files (st_blocks). */
static inline uint64_t disk_bytes(const char *dir)
{
	struct files f;

	list_files(dir, &f);
	files_free(&f);
	return f.blocks * 512;
}

/* Every file of f still exists in dir, and (if only) nothing else does. */
static inline void expect_files(const char *dir, const struct files *f, bool only)
{
	struct files now;

	list_files(dir, &now);
	for (size_t i = 0; i < f->n; i++)
		if (!files_has(&now, f->names[i]))
			ck_abort_msg("%s/%s was removed", dir, f->names[i]);
	for (size_t i = 0; only && i < now.n; i++)
		if (!files_has(f, now.names[i]))
			ck_abort_msg("%s/%s should be gone", dir, now.names[i]);
	files_free(&now);
}

/* ------------------------------------------------- logs, fds, children */

/* Counts WARN lines carrying err= (and those naming ENOSPC); keeps the first. */
struct capture {
	pthread_mutex_t mu;
	unsigned warn_err, enospc;
	char first[512];
};

static inline void capture_log(void *ctx, enum scratch_log_level level, const char *line)
{
	struct capture *c = ctx;

	if (level != SCRATCH_LOG_WARN || !line || !strstr(line, "err="))
		return;
	pthread_mutex_lock(&c->mu);
	if (c->warn_err++ == 0)
		snprintf(c->first, sizeof(c->first), "%s", line);
	if (strcasestr(line, "no space") || strstr(line, "ENOSPC") || strstr(line, "err=-28") ||
	    strstr(line, "err=28"))
		c->enospc++;
	pthread_mutex_unlock(&c->mu);
}

static inline unsigned warnings(struct capture *c)
{
	pthread_mutex_lock(&c->mu);
	unsigned n = c->warn_err;

	pthread_mutex_unlock(&c->mu);
	return n;
}

/* Open descriptors, and the highest one, not counting the scan's own. */
static inline int fd_scan(int *max)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	require(d != NULL);
	*max = -1;
	while ((e = readdir(d))) {
		int fd = atoi(e->d_name);

		if (e->d_name[0] == '.' || fd == dirfd(d))
			continue;
		n++;
		*max = fd > *max ? fd : *max;
	}
	closedir(d);
	return n;
}

static inline void wait_child_ok(pid_t pid)
{
	int st;

	require(waitpid(pid, &st, 0) == pid);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		ck_abort_msg("child failed (wait status %#x); see its stderr", (unsigned)st);
}

#endif
