/*
 * baseline_files.h: what a user would write by hand instead of the
 * filesystem store.  scratchbench runs these beside the store, same bytes.
 *
 * - File per blob, the way Loki's scratch store does it: a put creates a
 *   new file (O_CREAT|O_EXCL), writes the blob and closes it; a read opens
 *   it, reads (after an lseek, for a read in the middle) and closes it; a
 *   remove unlinks it.  Files are named by a number the caller chooses.
 * - One sequential file: blob after blob pwritten at the end of one file,
 *   no preallocation: the most a buffered write path can hope for.  Or the
 *   same through io_uring, one write submitted and waited for at a time, as
 *   a user would write it: the most an io_uring write of a caller's buffer
 *   that must be done before the call returns can hope for.
 *
 * Every function returns 0 (or a byte count) or -errno, and retries EINTR
 * and short transfers itself.  They may be called from many threads at
 * once on one struct baseline_files; a struct baseline_seq has one owner.
 */
#ifndef SCRATCH_BASELINE_FILES_H
#define SCRATCH_BASELINE_FILES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct baseline_files {
	int dirfd;
};

/* Opens the directory dir (which must exist) for the files below. */
int baseline_files_open(struct baseline_files *f, const char *dir);
void baseline_files_close(struct baseline_files *f);

/* Creates file `id` (-EEXIST if it exists) holding p[0..n). */
int baseline_file_put(const struct baseline_files *f, uint64_t id, const void *p, size_t n);
/* Reads up to n bytes of file `id` from offset off into buf; returns the
 * count.  off == 0 skips the lseek. */
ssize_t baseline_file_read(const struct baseline_files *f, uint64_t id, off_t off, void *buf,
			   size_t n);
int baseline_file_remove(const struct baseline_files *f, uint64_t id);

struct io_uring;

struct baseline_seq {
	const struct baseline_files *files;
	uint64_t id;
	int fd;
	off_t end;
	struct io_uring *ring; /* NULL: pwrite */
};

/* Creates (or truncates) the sequential file `id`, to be written with
 * pwrite or, if uring, io_uring. */
int baseline_seq_open(struct baseline_seq *s, const struct baseline_files *f, uint64_t id,
		      bool uring);
/* Writes p[0..n) at the end of the file. */
int baseline_seq_append(struct baseline_seq *s, const void *p, size_t n);
/* Truncates the file to nothing, giving its space back. */
int baseline_seq_reset(struct baseline_seq *s);
/* Closes and unlinks the file; a closed or never opened s is a no-op. */
void baseline_seq_close(struct baseline_seq *s);

#endif
