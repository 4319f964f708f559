/*
 * segment.c: the on-disk layout of a filesystem store.
 *
 * Layout.  A store's data lives in files named <32 random hex
 * digits>.lokiscratch directly in its directory, created
 * O_EXCL|O_CLOEXEC|O_NOFOLLOW with mode 0600.  Each file is a segment:
 * preallocated with fallocate (so writes never allocate and a mapping of a
 * written range can never fault on a full disk), mapped read-only once, and
 * filled by the filesystem backend: small blobs are packed from the front in
 * batches, large ones are written directly from the back; a blob too large
 * for a segment gets a segment of its own.  Nothing else is in the file: no
 * header, no index.  The store's table knows where every blob is, and the
 * files die with the store.
 *
 * Space.  A segment goes (unmapped, closed, unlinked) when its last blob
 * does and no lane writes into it anymore, which in a pipeline that
 * removes what it put is soon.  One that a few blobs keep alive would hold
 * all of its 16 MiB for them; so a lane's segment counts, page by page,
 * the live blobs that hold bytes in it (segment_track), and once the lane
 * has left it for REAP_AGE_NS, the runs of PUNCH_RUN pages or more that no
 * live blob holds, complete (no blob will be placed there again:
 * segment_seal) and on disk, are punched out (FALLOC_FL_PUNCH_HOLE) and
 * marked so.  A lane looks for such segments when it makes a new one
 * (segment_reap_old): space comes back when new space is taken.  Why so
 * late and so coarse: here (ext4 mounted with discard) a punch of a few
 * MiB is a discard waited for, 1.4 ms a call, where unlinking a dead
 * segment costs 32 us; punching dead runs as blobs died took scratchbench
 * mixed 4 KiB with 2 threads from 2.1M ops/s to 0.9M, and thousands of
 * small punches leave every buffered write of the next second 5-10x slower
 * (put 64 KiB: 6.4k/s punching at 64 KiB, 52k/s at 1 MiB).  A segment of
 * one blob is never punched.  Staged bytes that were never written are
 * not punched: their write may still be on its way.
 *
 * Ownership.  A store holds an OFD write lock (F_OFD_SETLK) on each of its
 * files for as long as the file is open; the lock follows the open file, so
 * it also survives a fork and dies with the last process that has the file
 * open, SIGKILL included.  At start-up a store takes the lock of every
 * .lokiscratch regular file in its directory it can: those have no owner,
 * and are unlinked under the lock.  Symlinks (O_NOFOLLOW) and
 * subdirectories are never followed.  A store creating a file locks it
 * right after O_EXCL made it and then checks it is still linked: if a
 * cleaner got it in between, it tries another name.  Both orders are safe
 * because the cleaner unlinks only while holding the lock.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "segment.h"

#define PUNCH_RUN 256u /* pages: 1 MiB */
#define PAGE_PUNCHED UINT16_MAX

static int lock_file(int fd)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };

	return fcntl(fd, F_OFD_SETLK, &fl) ? -errno : 0;
}

static bool is_scratch_name(const char *name)
{
	size_t n = strlen(name), ext = sizeof(SEGMENT_EXT) - 1;

	return n > ext && strcmp(name + n - ext, SEGMENT_EXT) == 0;
}

/* Removes name if it is a regular .lokiscratch file that nobody owns. */
static void remove_if_stale(int dirfd, const char *name)
{
	struct stat st, again;
	int fd = openat(dirfd, name, O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);

	if (fd < 0)
		return;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink > 0 && lock_file(fd) == 0 &&
	    fstatat(dirfd, name, &again, AT_SYMLINK_NOFOLLOW) == 0 && again.st_ino == st.st_ino &&
	    again.st_dev == st.st_dev)
		(void)unlinkat(dirfd, name, 0);
	close(fd); /* drops the lock */
}

static void remove_stale(int dirfd)
{
	int fd = dup(dirfd);
	DIR *dir = fd < 0 ? NULL : fdopendir(fd);
	struct dirent *de;

	if (!dir) {
		if (fd >= 0)
			close(fd);
		return;
	}
	while ((de = readdir(dir)))
		if ((de->d_type == DT_REG || de->d_type == DT_UNKNOWN) && is_scratch_name(de->d_name))
			remove_if_stale(dirfd, de->d_name);
	closedir(dir);
}

/* mkdir -p, mode 0700 for what it creates. */
static int make_dirs(const char *path)
{
	char *p = strdup(path);
	int err = 0;

	if (!p)
		return -ENOMEM;
	for (char *s = p + 1; *s && !err; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, 0700) && errno != EEXIST)
			err = -errno;
		*s = '/';
	}
	if (!err && mkdir(p, 0700) && errno != EEXIST)
		err = -errno;
	free(p);
	return err;
}

int segment_dir_open(struct segment_dir *d, const char *path, struct heap *heap)
{
	int err = make_dirs(path);

	memset(d, 0, sizeof(*d));
	d->fd = -1;
	d->heap = heap;
	if (err)
		return err;
	d->fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (d->fd < 0)
		return -errno;
	if (faccessat(d->fd, ".", W_OK | X_OK, AT_EACCESS)) {
		err = -errno;
		close(d->fd);
		return err;
	}
	pthread_mutex_init(&d->lock, NULL);
	remove_stale(d->fd);
	return 0;
}

void segment_dir_close(struct segment_dir *d)
{
	pthread_mutex_lock(&d->lock);
	atomic_store_explicit(&d->closed, true, memory_order_relaxed);
	for (struct segment *s = d->list; s; s = s->next) {
		if (!s->unlinked)
			(void)unlinkat(d->fd, s->name, 0);
		s->unlinked = true;
	}
	pthread_mutex_unlock(&d->lock);
}

void segment_dir_fini(struct segment_dir *d)
{
	if (d->fd >= 0)
		close(d->fd);
	d->fd = -1;
	pthread_mutex_destroy(&d->lock);
}

static int random_name(char *name)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char r[16];
	size_t got = 0;

	while (got < sizeof(r)) {
		ssize_t k = getrandom(r + got, sizeof(r) - got, 0);

		if (k < 0 && errno != EINTR)
			return -errno;
		if (k > 0)
			got += (size_t)k;
	}
	for (size_t i = 0; i < sizeof(r); i++) {
		name[2 * i] = hex[r[i] >> 4];
		name[2 * i + 1] = hex[r[i] & 15];
	}
	memcpy(name + 2 * sizeof(r), SEGMENT_EXT, sizeof(SEGMENT_EXT));
	return 0;
}

static int preallocate(int fd, uint64_t size)
{
	int err = fallocate(fd, 0, 0, (off_t)size) ? -errno : 0;

	if (err == -EOPNOTSUPP)
		err = ftruncate(fd, (off_t)size) ? -errno : 0;
	return err;
}

/* Creates, locks and preallocates a file; returns its fd or -errno. */
static int create_file(struct segment_dir *d, uint64_t size, char *name)
{
	for (int tries = 0; tries < 8; tries++) {
		struct stat st;
		int err = random_name(name), fd;

		if (err)
			return err;
		fd = openat(d->fd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd < 0) {
			if (errno == EEXIST)
				continue;
			return -errno;
		}
		/* A cleaner may have taken it between create and lock (and will
		 * unlink it); any other failure to lock is ours to clean up. */
		err = lock_file(fd);
		if (err && err != -EAGAIN && err != -EACCES) {
			(void)unlinkat(d->fd, name, 0);
			close(fd);
			return err;
		}
		if (err || fstat(fd, &st) || st.st_nlink == 0) {
			close(fd);
			continue;
		}
		err = preallocate(fd, size);
		if (err) {
			(void)unlinkat(d->fd, name, 0);
			close(fd);
			return err;
		}
		return fd;
	}
	return -EEXIST;
}

int segment_new(struct segment_dir *d, uint64_t size, struct segment **out)
{
	struct segment *s = calloc(1, sizeof(*s));
	void *map;
	int fd, err;

	if (!s)
		return -ENOMEM;
	fd = create_file(d, size, s->name);
	if (fd < 0) {
		free(s);
		return fd;
	}
	map = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED) {
		err = -errno;
		(void)unlinkat(d->fd, s->name, 0);
		close(fd);
		free(s);
		return err;
	}
	s->dir = d;
	s->fd = fd;
	s->size = size;
	s->map = map;
	atomic_init(&s->refs, 1);
	atomic_init(&s->written, 0);
	atomic_init(&s->nchunks, 0);
	atomic_init(&s->sealed_front, 0);
	atomic_init(&s->sealed_back, size);
	atomic_init(&s->dead, 0);
	atomic_init(&s->dead_seen, 0);
	atomic_init(&s->sealed_at, 0);
	pthread_mutex_init(&s->punch_lock, NULL);

	pthread_mutex_lock(&d->lock);
	if (d->closed) {
		(void)unlinkat(d->fd, s->name, 0);
		s->unlinked = true;
	}
	s->next = d->list;
	if (d->list)
		d->list->prev = s;
	d->list = s;
	pthread_mutex_unlock(&d->lock);
	atomic_fetch_add_explicit(&d->disk_bytes, size, memory_order_relaxed);
	atomic_fetch_add_explicit(&d->nsegments, 1, memory_order_relaxed);
	*out = s;
	return 0;
}

unsigned segment_put(struct segment *s)
{
	struct segment_dir *d = s->dir;
	/* acq_rel: whoever frees must see every other holder's last use. */
	unsigned left = atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) - 1;

	if (left)
		return left;
	pthread_mutex_lock(&d->lock);
	if (s->prev)
		s->prev->next = s->next;
	else
		d->list = s->next;
	if (s->next)
		s->next->prev = s->prev;
	if (!s->unlinked)
		(void)unlinkat(d->fd, s->name, 0);
	pthread_mutex_unlock(&d->lock);
	munmap((void *)s->map, s->size);
	if (s->fd >= 0)
		close(s->fd);
	for (unsigned i = 0; i < atomic_load_explicit(&s->nchunks, memory_order_relaxed); i++)
		heap_free(d->heap, HEAP_NO_CACHE, s->chunks[i].buf);
	atomic_fetch_sub_explicit(&d->disk_bytes, s->size, memory_order_relaxed);
	atomic_fetch_sub_explicit(&d->nsegments, 1, memory_order_relaxed);
	pthread_mutex_destroy(&s->punch_lock);
	free(s->pages);
	free(s);
	return 0;
}

void segment_written(struct segment *s)
{
	close(s->fd);
	s->fd = -1;
}

int segment_resize(struct segment *s, uint64_t size)
{
	void *map;
	int err;

	if (size > s->size && (err = preallocate(s->fd, size)))
		return err;
	map = mremap((void *)s->map, s->size, size, MREMAP_MAYMOVE);
	if (map == MAP_FAILED) {
		err = -errno;
		if (size > s->size)
			(void)ftruncate(s->fd, (off_t)s->size); /* as it was */
		return err;
	}
	if (size < s->size)
		(void)ftruncate(s->fd, (off_t)size);
	atomic_fetch_add_explicit(&s->dir->disk_bytes, size - s->size, memory_order_relaxed);
	s->map = map;
	s->size = size;
	return 0;
}

int segment_track(struct segment *s)
{
	_Atomic uint16_t *pages = calloc(s->size / PAGE, sizeof(*pages));

	if (!pages)
		return -ENOMEM;
	/* Under the directory's lock, which segment_reap_old holds as it
	 * looks; every other reader comes after a blob placed after this. */
	pthread_mutex_lock(&s->dir->lock);
	s->pages = pages;
	pthread_mutex_unlock(&s->dir->lock);
	return 0;
}

void segment_place(struct segment *s, uint64_t off, uint64_t len)
{
	if (!s->pages || !len)
		return;
	/* Relaxed: published by segment_seal's release, and to the blob's
	 * remover with the blob itself. */
	for (uint64_t p = off / PAGE; p <= (off + len - 1) / PAGE; p++)
		atomic_fetch_add_explicit(&s->pages[p], 1, memory_order_relaxed);
}

void segment_retire(struct segment *s, uint64_t front, uint64_t back, uint64_t now_ns)
{
	segment_seal(s, round_up(front, PAGE), back); /* its last page too */
	atomic_store_explicit(&s->sealed_at, now_ns ? now_ns : 1, memory_order_relaxed);
}

void segment_seal(struct segment *s, uint64_t front, uint64_t back)
{
	if (!s->pages)
		return;
	/* Release: the counts of every blob placed so far come first. */
	atomic_store_explicit(&s->sealed_front, front & ~(uint64_t)(PAGE - 1), memory_order_release);
	atomic_store_explicit(&s->sealed_back, round_up(back, PAGE), memory_order_release);
}

/* Where s's pages are complete and on disk, loaded under punch_lock.
 * Acquire: pairs with segment_seal's and the write's release. */
struct limits {
	uint64_t front, back, written;
};

static struct limits limits_of(struct segment *s)
{
	return (struct limits){
		.front = atomic_load_explicit(&s->sealed_front, memory_order_acquire),
		.back = atomic_load_explicit(&s->sealed_back, memory_order_acquire),
		.written = atomic_load_explicit(&s->written, memory_order_acquire),
	};
}

/* May page p go?  No live blob, complete, and on disk: a staged page below
 * the written mark, or a page of the back, written before its blob was
 * placed.  Under punch_lock: no other search marks pages meanwhile. */
static bool page_dead(struct segment *s, uint64_t p, const struct limits *lim)
{
	uint64_t at = p * PAGE;

	if (atomic_load_explicit(&s->pages[p], memory_order_relaxed) != 0)
		return false; /* live, or punched already */
	return at + PAGE <= lim->front ? at + PAGE <= lim->written : at >= lim->back;
}

/* Punches pages [lo, hi] and marks them so.  Under punch_lock. */
static void punch(struct segment *s, uint64_t lo, uint64_t hi)
{
	if (fallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)(lo * PAGE),
		      (off_t)((hi - lo + 1) * PAGE)))
		return;
	for (uint64_t q = lo; q <= hi; q++)
		atomic_store_explicit(&s->pages[q], PAGE_PUNCHED, memory_order_relaxed);
	/* dead is a hint: a run may hold pages never counted (a failed direct
	 * write's), a front page may be counted twice.  Never below 0:
	 * releases only add meanwhile. */
	uint32_t dead = atomic_load_explicit(&s->dead, memory_order_relaxed);
	uint32_t n = (uint32_t)(hi - lo + 1);

	atomic_fetch_sub_explicit(&s->dead, n < dead ? n : dead, memory_order_relaxed);
}

/* Punches every run of PUNCH_RUN dead pages or more of s.  One search at
 * a time: this one waits for its turn. */
static void reap_segment(struct segment *s)
{
	uint64_t npages = s->size / PAGE;

	pthread_mutex_lock(&s->punch_lock);
	struct limits lim = limits_of(s);

	for (uint64_t lo = 0, hi; lo < npages; lo = hi + 1) {
		hi = lo;
		if (!page_dead(s, lo, &lim))
			continue;
		while (hi + 1 < npages && page_dead(s, hi + 1, &lim))
			hi++;
		if (hi - lo + 1 >= PUNCH_RUN)
			punch(s, lo, hi);
	}
	atomic_store_explicit(&s->dead_seen, atomic_load_explicit(&s->dead, memory_order_relaxed),
			      memory_order_relaxed);
	pthread_mutex_unlock(&s->punch_lock);
}

/* Punches [first, last], a removed blob's own run, if all of it may go.
 * From a release, under a table shard's lock: if a search holds the lock
 * (maybe waiting for a discard), the run waits for segment_reap_old. */
static void punch_own_run(struct segment *s, uint64_t first, uint64_t last)
{
	if (pthread_mutex_trylock(&s->punch_lock))
		return;
	struct limits lim = limits_of(s);
	uint64_t p = first;

	while (p <= last && page_dead(s, p, &lim))
		p++;
	if (p > last)
		punch(s, first, last);
	pthread_mutex_unlock(&s->punch_lock);
}

/* Not worth a system call: the file itself is about to go. */
static bool going(struct segment *s)
{
	return s->fd < 0 || atomic_load_explicit(&s->refs, memory_order_relaxed) == 1 ||
	       atomic_load_explicit(&s->dir->closed, memory_order_relaxed);
}

void segment_release_range(struct segment *s, uint64_t off, uint64_t len)
{
	uint64_t first = UINT64_MAX, last = 0;

	if (!s->pages || !len)
		return;
	for (uint64_t p = off / PAGE; p <= (off + len - 1) / PAGE; p++) {
		if (atomic_fetch_sub_explicit(&s->pages[p], 1, memory_order_relaxed) == 1) {
			first = first < p ? first : p;
			last = p; /* one blob's dead pages are one run */
		}
	}
	if (first == UINT64_MAX)
		return;
	atomic_fetch_add_explicit(&s->dead, (uint32_t)(last - first + 1), memory_order_relaxed);
	/* A blob with a run's worth of pages of its own gives them back at
	 * once, as its own file would (a full disk wants them now); the rest
	 * waits for segment_reap_old. */
	if (last - first + 1 >= PUNCH_RUN && !going(s))
		punch_own_run(s, first, last);
}

/* A reference on s unless it is already going. */
static bool segment_tryget(struct segment *s)
{
	uint32_t n = atomic_load_explicit(&s->refs, memory_order_relaxed);

	while (n && !atomic_compare_exchange_weak_explicit(&s->refs, &n, n + 1, memory_order_relaxed,
							   memory_order_relaxed))
		;
	return n != 0;
}

#define REAP_BATCH 16

void segment_reap_old(struct segment_dir *d, uint64_t now_ns)
{
	struct segment *old[REAP_BATCH];
	unsigned n = 0;

	if (atomic_load_explicit(&d->closed, memory_order_relaxed))
		return; /* every file goes soon */
	pthread_mutex_lock(&d->lock);
	for (struct segment *s = d->list; s && n < REAP_BATCH; s = s->next) {
		uint64_t at = atomic_load_explicit(&s->sealed_at, memory_order_relaxed);
		uint32_t dead = s->pages ? atomic_load_explicit(&s->dead, memory_order_relaxed) : 0;
		uint32_t seen = atomic_load_explicit(&s->dead_seen, memory_order_relaxed);

		/* Left long enough ago, with a run's worth of dead pages, a
		 * quarter run of them new since the last search. */
		if (dead >= PUNCH_RUN && dead >= seen + PUNCH_RUN / 4 && s->fd >= 0 && at &&
		    now_ns - at >= REAP_AGE_NS && segment_tryget(s))
			old[n++] = s;
	}
	pthread_mutex_unlock(&d->lock);
	for (unsigned i = 0; i < n; i++) {
		reap_segment(old[i]);
		segment_put(old[i]);
	}
}

const unsigned char *segment_bytes(struct segment *s, uint64_t off, uint64_t len)
{
	/* Acquire pairs with the release that published `written` after the
	 * write completed: the page cache holds the bytes we are about to map. */
	if (off + len <= atomic_load_explicit(&s->written, memory_order_acquire))
		return s->map + off;
	/* Acquire pairs with the release that published the chunks. */
	unsigned n = atomic_load_explicit(&s->nchunks, memory_order_acquire);

	for (unsigned i = 0; i < n; i++) {
		const struct segment_chunk *c = &s->chunks[i];

		if (off >= c->start && off + len <= c->start + c->len)
			return c->buf + (off - c->start);
	}
	return NULL;
}
