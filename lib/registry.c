/*
 * registry.c: where a metrics object's counters live, and how other
 * processes find them.
 *
 * The counters are a struct metrics_shared in a file of the registry
 * directory ($SCRATCH_METRICS_DIR, else /dev/shm), made with O_TMPFILE:
 * it has no name, and goes when the object does, unless it is registered.
 * scratch_metrics_register links it as scratch-<pid>-<name>.metrics, so
 * registering copies nothing and costs the counting nothing; unregistering
 * renames it to .scratch-<pid>-<n>.metrics, out of sight (the kernel links
 * an O_TMPFILE file once only, so a name it loses for good cannot be
 * given back), and registering again renames it back; the object's end
 * unlinks whichever name it has.  A process that dies leaves its names,
 * which scratchstat --clean removes once the pid is gone.  Only the process
 * that made the object names or unnames it: a forked child has a copy of
 * the object, not of the names.
 *
 * The file is allocated in full when it is made: a hole of a shared
 * mapping is allocated when touched, which on a full tmpfs is a SIGBUS,
 * and a reader's faults would allocate it bit by bit.  Where no such file
 * can be made (no directory, no O_TMPFILE, no room), the counters live in
 * anonymous shared memory and only registering fails.
 *
 * Another process's view (scratch_metrics_attach) reads the file with
 * pread, never a mapping, so a file truncated under it gives -EIO, not a
 * SIGBUS in the reader.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "metrics.h"

#define MAGIC "SCRATCHM"
#define VERSION 1

static _Atomic unsigned hidden_seq; /* numbers this process's hidden names */

static size_t shared_size(void)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);

	return (sizeof(struct metrics_shared) + page - 1) / page * page;
}

/* An unnamed file of the registry directory, allocated in full; -1 if
 * none can be had. */
static int counters_file(scratch_metrics *m)
{
	const char *dir = getenv("SCRATCH_METRICS_DIR");
	int fd;

	m->dir = open(dir && *dir ? dir : "/dev/shm", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (m->dir < 0)
		return -1;
	fd = openat(m->dir, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	if (fallocate(fd, 0, 0, (off_t)m->size) == 0)
		return fd;
	/* A filesystem that cannot allocate ahead will have to do, sparse;
	 * a full one will not. */
	if ((errno == EOPNOTSUPP || errno == ENOSYS) && ftruncate(fd, (off_t)m->size) == 0)
		return fd;
	close(fd);
	return -1;
}

int registry_map(scratch_metrics *m)
{
	void *p = MAP_FAILED;

	m->size = shared_size();
	m->fd = counters_file(m);
	if (m->fd >= 0)
		p = mmap(NULL, m->size, PROT_READ | PROT_WRITE, MAP_SHARED, m->fd, 0);
	if (p == MAP_FAILED) {
		if (m->fd >= 0)
			close(m->fd);
		m->fd = -1;
		/* Shared all the same: a forked child counts into it too. */
		p = mmap(NULL, m->size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			return -ENOMEM;
	}
	m->shared = p;
	memcpy(m->shared->magic, MAGIC, sizeof(m->shared->magic));
	m->shared->version = VERSION;
	m->shared->stripes = METRICS_STRIPES;
	m->shared->buckets = METRICS_BUCKETS;
	m->shared->stripe_size = sizeof(struct metrics_stripe);
	memcpy(m->shared->bucket_ns, metrics_bucket_ns, sizeof(metrics_bucket_ns));
	return 0;
}

static bool name_ok(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > METRICS_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == '-'))
			return false;
	}
	return true;
}

/* Gives m's file the name file: its first by its descriptor (where the
 * kernel lets us: it asks for CAP_DAC_READ_SEARCH, else through /proc),
 * a later one from its hidden name. */
static int link_file(scratch_metrics *m, const char *file)
{
	char proc[64];

	if (m->hidden[0]) {
		if (linkat(m->dir, m->hidden, m->dir, file, 0))
			return -errno;
		(void)unlinkat(m->dir, m->hidden, 0);
		m->hidden[0] = '\0';
		return 0;
	}
	if (linkat(m->fd, "", m->dir, file, AT_EMPTY_PATH) == 0)
		return 0;
	if (errno == EEXIST)
		return -EEXIST;
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", m->fd);
	return linkat(AT_FDCWD, proc, m->dir, file, AT_SYMLINK_FOLLOW) ? -errno : 0;
}

/* Whether this process may name or unname m. */
static bool ours(const scratch_metrics *m)
{
	return !m->view && m->pid == metrics_process;
}

int scratch_metrics_register(scratch_metrics *m, const char *name)
{
	int err;

	if (!m || !name || !ours(m) || !name_ok(name))
		return -EINVAL;
	if (m->fd < 0)
		return -ENOTSUP;
	pthread_mutex_lock(&m->lock);
	if (m->file[0]) {
		err = -EBUSY;
	} else {
		char file[sizeof(m->file)];

		snprintf(file, sizeof(file), "scratch-%d-%s.metrics", (int)m->pid, name);
		m->shared->pid = (int32_t)m->pid;
		snprintf(m->shared->name, sizeof(m->shared->name), "%s", name);
		err = link_file(m, file);
		if (!err)
			memcpy(m->file, file, sizeof(file));
	}
	pthread_mutex_unlock(&m->lock);
	return err;
}

int scratch_metrics_unregister(scratch_metrics *m)
{
	int err = 0;

	if (!m || !ours(m))
		return -EINVAL;
	pthread_mutex_lock(&m->lock);
	if (!m->file[0]) {
		err = -EINVAL;
	} else {
		char hidden[sizeof(m->hidden)];

		snprintf(hidden, sizeof(hidden), ".scratch-%d-%u.metrics", (int)m->pid,
			 atomic_fetch_add(&hidden_seq, 1));
		if (renameat(m->dir, m->file, m->dir, hidden) == 0)
			memcpy(m->hidden, hidden, sizeof(hidden));
		else if (errno != ENOENT) /* ENOENT: cleaned up by someone else */
			err = -errno;
		if (!err)
			m->file[0] = '\0';
	}
	pthread_mutex_unlock(&m->lock);
	return err;
}

void registry_forget(scratch_metrics *m)
{
	if (!ours(m))
		return;
	pthread_mutex_lock(&m->lock);
	if (m->file[0])
		(void)unlinkat(m->dir, m->file, 0);
	if (m->hidden[0])
		(void)unlinkat(m->dir, m->hidden, 0);
	m->file[0] = m->hidden[0] = '\0';
	pthread_mutex_unlock(&m->lock);
}

static bool header_ok(const struct metrics_shared *s)
{
	return !memcmp(s->magic, MAGIC, sizeof(s->magic)) && s->version == VERSION &&
	       s->stripes == METRICS_STRIPES && s->buckets == METRICS_BUCKETS &&
	       s->stripe_size == sizeof(struct metrics_stripe) &&
	       !memcmp(s->bucket_ns, metrics_bucket_ns, sizeof(metrics_bucket_ns));
}

/* Reads n bytes at 0 of fd into p.  0, -EIO (fewer there), -errno. */
static int read_at_start(int fd, void *p, size_t n)
{
	size_t done = 0;

	while (done < n) {
		ssize_t k = pread(fd, (char *)p + done, n - done, (off_t)done);

		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		if (k == 0)
			return -EIO;
		done += (size_t)k;
	}
	return 0;
}

int registry_read(const scratch_metrics *m, struct metrics_shared **copy)
{
	int err;

	*copy = malloc(sizeof(**copy));
	if (!*copy)
		return -ENOMEM;
	err = read_at_start(m->fd, *copy, sizeof(**copy));
	if (!err && !header_ok(*copy))
		err = -EIO;
	return err;
}

int scratch_metrics_attach(const char *path, scratch_metrics **out)
{
	struct metrics_shared *head;
	struct stat st;
	scratch_metrics *m = NULL;
	int fd, err = -EINVAL;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!path)
		return -EINVAL;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
	if (fd < 0)
		return -errno;
	head = malloc(sizeof(*head));
	if (!head)
		err = -ENOMEM;
	else if (fstat(fd, &st))
		err = -errno;
	else if (S_ISREG(st.st_mode) && (uint64_t)st.st_size >= sizeof(*head) &&
		 read_at_start(fd, head, offsetof(struct metrics_shared, stripe)) == 0 &&
		 header_ok(head))
		err = (m = metrics_alloc()) ? 0 : -ENOMEM;
	free(head);
	if (err) {
		close(fd);
		return err;
	}
	m->fd = fd;
	m->view = true;
	*out = m;
	return 0;
}
