/* baseline_files.c: see baseline_files.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include <stdlib.h>

#include <liburing.h>

#include "baseline_files.h"

static void file_name(char name[24], uint64_t id)
{
	snprintf(name, 24, "%016llx", (unsigned long long)id);
}

int baseline_files_open(struct baseline_files *f, const char *dir)
{
	f->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return f->dirfd < 0 ? -errno : 0;
}

void baseline_files_close(struct baseline_files *f)
{
	if (f->dirfd >= 0)
		close(f->dirfd);
	f->dirfd = -1;
}

int baseline_file_put(const struct baseline_files *f, uint64_t id, const void *p, size_t n)
{
	char name[24];
	int fd, err = 0;

	file_name(name, id);
	fd = openat(f->dirfd, name, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	for (size_t done = 0; done < n;) {
		ssize_t k = write(fd, (const char *)p + done, n - done);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			err = k < 0 ? -errno : -EIO;
			break;
		}
		done += (size_t)k;
	}
	if (close(fd) && !err)
		err = -errno;
	return err;
}

ssize_t baseline_file_read(const struct baseline_files *f, uint64_t id, off_t off, void *buf,
			   size_t n)
{
	char name[24];
	size_t done = 0;
	int fd, err = 0;

	file_name(name, id);
	fd = openat(f->dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (off && lseek(fd, off, SEEK_SET) < 0)
		err = -errno;
	while (!err && done < n) {
		ssize_t k = read(fd, (char *)buf + done, n - done);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			err = -errno;
		if (k <= 0)
			break;
		done += (size_t)k;
	}
	close(fd);
	return err ? err : (ssize_t)done;
}

int baseline_file_remove(const struct baseline_files *f, uint64_t id)
{
	char name[24];

	file_name(name, id);
	return unlinkat(f->dirfd, name, 0) ? -errno : 0;
}

int baseline_seq_open(struct baseline_seq *s, const struct baseline_files *f, uint64_t id,
		      bool uring)
{
	char name[24];
	int err;

	file_name(name, id);
	*s = (struct baseline_seq){ f, id, -1, 0, NULL };
	s->fd = openat(f->dirfd, name, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
	if (s->fd < 0)
		return -errno;
	if (!uring)
		return 0;
	if (!(s->ring = malloc(sizeof(*s->ring))))
		return -ENOMEM;
	if ((err = io_uring_queue_init(2, s->ring, 0))) {
		free(s->ring);
		s->ring = NULL;
	}
	return err;
}

/* One write through the ring, waited for: bytes written or -errno. */
static ssize_t uring_write(struct io_uring *ring, int fd, const void *p, size_t n, off_t off)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
	struct io_uring_cqe *cqe;
	int err;

	io_uring_prep_write(sqe, fd, p, (unsigned)n, (uint64_t)off);
	if ((err = io_uring_submit(ring)) < 0)
		return err;
	while ((err = io_uring_wait_cqe(ring, &cqe)) == -EINTR)
		;
	if (err)
		return err;
	err = cqe->res;
	io_uring_cqe_seen(ring, cqe);
	return err == -EAGAIN ? -EINTR : err;
}

int baseline_seq_append(struct baseline_seq *s, const void *p, size_t n)
{
	for (size_t done = 0; done < n;) {
		const char *at = (const char *)p + done;
		ssize_t k = s->ring ? uring_write(s->ring, s->fd, at, n - done, s->end)
				    : pwrite(s->fd, at, n - done, s->end);

		if (k < 0 && !s->ring)
			k = -errno;
		if (k == -EINTR)
			continue;
		if (k <= 0)
			return k < 0 ? (int)k : -EIO;
		done += (size_t)k;
		s->end += k;
	}
	return 0;
}

int baseline_seq_reset(struct baseline_seq *s)
{
	s->end = 0;
	return ftruncate(s->fd, 0) ? -errno : 0;
}

void baseline_seq_close(struct baseline_seq *s)
{
	if (!s->files || s->fd < 0)
		return;
	close(s->fd);
	baseline_file_remove(s->files, s->id);
	s->fd = -1;
	if (s->ring) {
		io_uring_queue_exit(s->ring);
		free(s->ring);
		s->ring = NULL;
	}
}
