/*
 * filesystem.c: the filesystem backend.
 *
 * Blobs live in segment files (segment.c has the layout, the ownership
 * locks and the start-up cleanup); the streaming writer is in fs_writer.c,
 * what the two share in filesystem.h.  A put takes one of a few lanes (the
 * thread's own if it is free, else any free one; see fs_lane_lock), and by
 * size:
 * - empty blobs need no storage at all;
 * - small blobs (up to STAGE_MAX_URING, or STAGE_MAX on the pwrite path)
 *   are copied into the lane's staging buffer, packed from the front of
 *   the lane's segment; a full buffer is written with one large io_uring
 *   write in the background while the next fills, up to WIO_INFLIGHT at
 *   once (MACHINE.md: one small write waited for per put is 20x slower
 *   than pwrite, large writes nobody waits for are not);
 * - larger blobs are written straight from the caller's memory into the
 *   back of the lane's segment, and waited for (the caller owns the bytes);
 * - blobs over OWN_FILE_MIN get a segment of their own.
 * Every path ends in the table: the entry points at the segment's mapping
 * and holds a reference on the segment.
 *
 * Reading.  A staged blob is readable through the mapping once its buffer
 * is written (segment_bytes checks); before that, a reader takes the lane
 * lock and either waits for the write in flight or copies the blob out of
 * the filling buffer.  Readers never touch a range that was not written.
 *
 * Failure.  Any disk error (a segment that cannot be made: ENOSPC, EMFILE,
 * a deleted directory; a write that fails) sends the blob to the store's
 * heap instead, logs a WARN line, and keeps the disk off for RETRY_NS so a
 * full disk costs one failed attempt per interval, not per put.  A staged
 * buffer whose background write fails is kept as it is: the segment adopts
 * it as a memory chunk, and its blobs read from there.  Handles never
 * change, nothing is lost.
 *
 * Locks: a lane's lock, then (inside segment_put) the directory's lock.
 * Table shard locks are never held with a lane lock: a put finishes with
 * its lane before it enters the table, and the release callback, which
 * runs under a shard lock, touches only the segment.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "filesystem.h"

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

__attribute__((format(printf, 3, 4)))
static void fs_log(struct fs_store *fs, enum scratch_log_level level, const char *fmt, ...)
{
	char line[512];
	va_list ap;

	if (!fs->logger.log)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fs->logger.log(fs->logger.ctx, level, line);
}

bool fs_disk_ok(struct fs_store *fs)
{
	uint64_t at = atomic_load_explicit(&fs->retry_at, memory_order_relaxed);

	if (at == 0)
		return true; /* the usual case: no clock read on every put */
	if (now_ns() < at)
		return false;
	/* Relaxed: a put that still sees the old deadline just checks again. */
	atomic_compare_exchange_strong_explicit(&fs->retry_at, &at, 0, memory_order_relaxed,
						memory_order_relaxed);
	return true;
}

void fs_disk_failed(struct fs_store *fs, int err, const char *op)
{
	atomic_store_explicit(&fs->retry_at, now_ns() + RETRY_NS, memory_order_relaxed);
	fs_log(fs, SCRATCH_LOG_WARN,
	       "msg=\"disk failed, keeping blobs in memory\" op=%s err=\"%s\" path=\"%s\"", op,
	       strerror(-err), fs->path);
}

/* Sets up the lane's write channel on first use. */
struct wio *fs_lane_io(struct fs_store *fs, struct lane *l)
{
	if (!l->io_ready) {
		int err = wio_init(&l->io, fs->use_uring);

		if (err && !atomic_exchange(&fs->told_pwrite, true))
			fs_log(fs, SCRATCH_LOG_INFO,
			       "msg=\"io_uring unavailable, writing with pwrite\" err=\"%s\"",
			       strerror(-err));
		l->io_ready = true;
	}
	return &l->io;
}

/* Each thread has a lane of its own (my_lane, numbered in the first store
 * it puts into), and a second one half the lanes away.  A thread that
 * writes alone turns to its other lane after each buffer it sends and lets
 * each such write have a kernel worker of its own (wio_start's spread), so
 * its consecutive buffers, in two files, are written at once; once it has
 * company it goes back to its own lane.  scratchbench put 1 MiB, 1 thread,
 * alternating builds, four rounds: 0.78-0.84x seq-pwrite before, 0.91-0.95x
 * after.  With other threads writing there is no idle CPU for the second
 * worker, and the extra workers cost 2 threads 10%, so "alone" means that
 * no other thread wrote to disk (fs_lane_wrote) for LONE_NS. */
static __thread unsigned my_lane __attribute__((tls_model("initial-exec"))) = ~0u;
static __thread unsigned my_turn __attribute__((tls_model("initial-exec")));

/* Records that this thread just wrote to disk through l: who (the address
 * of its my_turn, unique among live threads) and when.  The two are stored
 * apart, so a reader may pair a new time with an old writer: a heuristic
 * can afford that. */
static void fs_lane_wrote(struct lane *l)
{
	atomic_store_explicit(&l->sent_at, now_ns(), memory_order_relaxed);
	atomic_store_explicit(&l->sent_by, (uintptr_t)&my_turn, memory_order_relaxed);
}

int fs_lane_writev(struct fs_store *fs, struct lane *l, int fd, const struct iovec *iov,
		   int iovcnt, uint64_t off)
{
	int err = wio_writev(fs_lane_io(fs, l), fd, iov, iovcnt, off);

	fs_lane_wrote(l);
	return err;
}

/* Did no other thread write to disk lately?  A look at every lane, once per
 * buffer sent, tells. */
static bool lone_writer(struct fs_store *fs)
{
	uint64_t now = now_ns();

	for (unsigned i = 0; i < NLANES; i++) {
		const struct lane *o = &fs->lanes[i];

		if (atomic_load_explicit(&o->sent_by, memory_order_relaxed) != (uintptr_t)&my_turn &&
		    atomic_load_explicit(&o->sent_at, memory_order_relaxed) + LONE_NS > now)
			return false;
	}
	return true;
}

/* Locks the thread's lane if free, else any free one, else waits for its own. */
struct lane *fs_lane_lock(struct fs_store *fs)
{
	if (my_lane == ~0u)
		my_lane = atomic_fetch_add_explicit(&fs->next_lane, 1, memory_order_relaxed);
	unsigned mine = my_lane + my_turn * (NLANES / 2);

	for (unsigned i = 0; i < NLANES; i++) {
		struct lane *l = &fs->lanes[(mine + i) % NLANES];

		if (pthread_mutex_trylock(&l->lock) == 0)
			return l;
	}
	struct lane *l = &fs->lanes[mine % NLANES];

	pthread_mutex_lock(&l->lock);
	return l;
}

/* The lane's buffers in flight are io's background writes: its queue's
 * head and length index flights[] too. */
static unsigned nflights(const struct lane *l)
{
	return l->io.nbackground;
}

static struct stage *flight(struct lane *l, unsigned i)
{
	return &l->flights[(l->io.head + i) % WIO_INFLIGHT];
}

/* Pops the oldest buffer in flight once its write is done. */
static struct stage flight_pop(struct lane *l, int *err)
{
	struct stage f = *flight(l, 0);

	*err = wio_wait(&l->io);
	return f;
}

/* The write of f, seg's oldest staged bytes not yet written, failed: seg
 * adopts f's buffer as a memory chunk, and with it every later buffer of
 * seg, in flight or filling (written or not: the watermark cannot pass
 * the failed range), and takes no more data.  Buffers in flight for seg
 * are the oldest ones, since a lane fills one segment at a time. */
static void segment_adopt(struct fs_store *fs, struct lane *l, struct stage f, int err)
{
	struct segment *seg = f.seg;
	unsigned n = 0;
	int later; /* adopted whatever it says: the watermark stops at f */

	seg->chunks[n++] = (struct segment_chunk){ f.start, f.len, f.buf };
	while (nflights(l) && flight(l, 0)->seg == seg) {
		f = flight_pop(l, &later);
		seg->chunks[n++] = (struct segment_chunk){ f.start, f.len, f.buf };
		segment_put(seg);
	}
	if (l->fill.seg == seg) {
		seg->chunks[n++] = (struct segment_chunk){ l->fill.start, l->fill.len, l->fill.buf };
		l->fill = (struct stage){ 0 };
		segment_put(seg);
	}
	/* Release: a reader that sees the count sees the chunks. */
	atomic_store_explicit(&seg->nchunks, n, memory_order_release);
	if (l->seg == seg) {
		atomic_store_explicit(&seg->filling, false, memory_order_relaxed);
		l->seg = NULL;
		segment_put(seg);
	}
	fs_disk_failed(fs, err, "write");
}

/* Waits for the oldest buffer in flight and publishes its fate: its bytes
 * become readable through the mapping and the buffer is reused, or, if the
 * write failed, its segment adopts it (segment_adopt). */
static void stage_finish(struct fs_store *fs, struct lane *l)
{
	int err;

	if (!nflights(l))
		return;
	struct stage f = flight_pop(l, &err);

	if (err) {
		segment_adopt(fs, l, f, err);
	} else {
		/* Release: a reader that sees the new mark sees the bytes. */
		atomic_store_explicit(&f.seg->written, f.start + f.len, memory_order_release);
		l->spare[l->nspare++] = f.buf;
	}
	segment_put(f.seg);
}

/* Sends the filling buffer to disk in the background (spread: see
 * wio_start). */
static void stage_start(struct fs_store *fs, struct lane *l, bool spread)
{
	struct wio *io;
	struct stage *f;

	if (!l->fill.seg)
		return;
	io = fs_lane_io(fs, l);
	if (nflights(l) == WIO_INFLIGHT) {
		stage_finish(fs, l);
		if (!l->fill.seg)
			return; /* a failed write took it along */
	}
	f = flight(l, nflights(l));
	*f = l->fill;
	l->fill = (struct stage){ .buf = l->nspare ? l->spare[--l->nspare] : NULL };
	(void)wio_start(io, f->seg->fd, f->buf, f->len, f->start, spread); /* not full: queued */
	fs_lane_wrote(l);
	/* pwrite wrote it already, and wrote older ones if the ring failed. */
	while (!io->uring && nflights(l))
		stage_finish(fs, l);
}

/* Waits until nothing is in flight. */
static void stage_drain(struct fs_store *fs, struct lane *l)
{
	while (nflights(l))
		stage_finish(fs, l);
}

/* Stops filling the lane's segment. */
static void lane_seal(struct fs_store *fs, struct lane *l)
{
	if (l->fill.seg == l->seg)
		stage_start(fs, l, false); /* nothing if nothing is filling */
	if (l->seg) {
		segment_retire(l->seg, l->front, l->back, now_ns());
		atomic_store_explicit(&l->seg->filling, false, memory_order_relaxed);
		segment_put(l->seg);
	}
	l->seg = NULL;
}

/* A segment for a lane (need: the first blob's bytes), or, if own, for one
 * blob of exactly need bytes; a lane's halves its size on ENOSPC. */
int fs_new_segment(struct fs_store *fs, uint64_t need, bool own, struct segment **out)
{
	uint64_t size = own || need > SEGMENT_SIZE ? round_up(need, PAGE) : SEGMENT_SIZE;
	int err;

	while ((err = segment_new(&fs->dir, size, out)) == -ENOSPC && size / 2 >= need &&
	       size / 2 >= SEGMENT_MIN)
		size /= 2;
	if (err)
		fs_disk_failed(fs, err, "create");
	return err;
}

/* Makes sure the lane's segment has n free bytes. */
static int lane_room(struct fs_store *fs, struct lane *l, uint64_t n)
{
	if (l->seg && l->back - l->front >= n)
		return 0;
	lane_seal(fs, l);
	segment_reap_old(&fs->dir, now_ns());
	int err = fs_new_segment(fs, n, false, &l->seg);

	if (err)
		return err;
	(void)segment_track(l->seg); /* without, its space comes back with it */
	l->seg->lane = l;
	atomic_store_explicit(&l->seg->filling, true, memory_order_relaxed);
	l->front = 0;
	l->back = l->seg->size;
	return 0;
}

/* Sends the filling buffer for a put: spread, and the next buffer in the
 * thread's other lane, if the thread writes alone (see my_lane). */
static void stage_send(struct fs_store *fs, struct lane *l)
{
	bool alone = fs_lane_io(fs, l)->uring && lone_writer(fs);

	stage_start(fs, l, alone);
	my_turn = alone ? my_turn ^ 1 : 0;
}

static int put_staged(struct fs_store *fs, struct lane *l, const struct iovec *iov, int iovcnt,
		      size_t total, struct htab_entry *e)
{
	uint64_t n = round_up(total, STAGE_ALIGN);
	struct stage *f = &l->fill;
	int err;

	/* Starting the buffer may fail and seal the segment: check again. */
	for (;;) {
		err = lane_room(fs, l, n);
		if (err)
			return err;
		if (!f->seg || (f->seg == l->seg && f->len + n <= STAGE_SIZE))
			break;
		stage_send(fs, l);
	}
	if (!f->buf && !(f->buf = heap_alloc(&fs->heap, HEAP_NO_CACHE, STAGE_SIZE)))
		return -ENOMEM;
	if (!f->seg) {
		f->seg = l->seg;
		segment_get(f->seg);
		f->start = l->front;
	}
	copy_iov(f->buf + f->len, iov, iovcnt);
	memset(f->buf + f->len + total, 0, n - total); /* no heap garbage on disk */
	e->backing = l->seg;
	e->offset = l->front;
	e->backing_index = BLOB_STAGED;
	segment_get(l->seg);
	segment_place(l->seg, l->front, total);
	l->front += n;
	segment_seal(l->seg, l->front, l->back);
	f->len += n;
	if (f->len == STAGE_SIZE)
		stage_send(fs, l);
	return 0;
}

static int put_direct(struct fs_store *fs, struct lane *l, const struct iovec *iov, int iovcnt,
		      size_t total, struct htab_entry *e)
{
	uint64_t n = round_up(total, PAGE);
	int err = lane_room(fs, l, n);

	if (err)
		return err;
	l->back -= n;
	err = fs_lane_writev(fs, l, l->seg->fd, iov, iovcnt, l->back);
	if (err) {
		fs_disk_failed(fs, err, "write");
		return err;
	}
	e->backing = l->seg;
	e->offset = l->back;
	segment_get(l->seg);
	segment_place(l->seg, l->back, total);
	segment_seal(l->seg, l->front, l->back);
	return 0;
}

static int put_own_file(struct fs_store *fs, const struct iovec *iov, int iovcnt, size_t total,
			struct htab_entry *e)
{
	struct segment *seg;
	int err = fs_new_segment(fs, total, true, &seg);

	if (err)
		return err;
	struct lane *l = fs_lane_lock(fs);

	err = fs_lane_writev(fs, l, seg->fd, iov, iovcnt, 0);
	pthread_mutex_unlock(&l->lock);
	if (err) {
		fs_disk_failed(fs, err, "write");
		segment_put(seg);
		return err;
	}
	segment_written(seg);
	e->backing = seg; /* the creation reference becomes the blob's */
	e->offset = 0;
	return 0;
}

/* Puts the blob on disk: fills e->backing/offset/backing_index, or fails. */
static int put_disk(struct fs_store *fs, const struct iovec *iov, int iovcnt, size_t total,
		    struct htab_entry *e)
{
	struct lane *l;
	int err;

	if (total == 0 || !fs_disk_ok(fs))
		return -EAGAIN;
	if (total > OWN_FILE_MIN)
		return put_own_file(fs, iov, iovcnt, total, e);
	l = fs_lane_lock(fs);
	if (total <= (fs_lane_io(fs, l)->uring ? STAGE_MAX_URING : STAGE_MAX))
		err = put_staged(fs, l, iov, iovcnt, total, e);
	else
		err = put_direct(fs, l, iov, iovcnt, total, e);
	pthread_mutex_unlock(&l->lock);
	return err;
}

/* Publishes a blob that put_disk placed, or that lives in the heap. */
int fs_publish(scratch_store *s, struct htab_entry *blob, scratch_handle *out)
{
	struct htab_entry *e;
	int err = htab_reserve(&s->table, &e);

	if (err)
		return err;
	e->backing = blob->backing;
	e->offset = blob->offset;
	e->backing_index = blob->backing_index;
	e->size = blob->size;
	e->data = blob->backing ? ((struct segment *)blob->backing)->map + blob->offset : blob->data;
	*out = e->handle;
	htab_publish(&s->table, e);
	return 0;
}

void fs_drop_blob(struct fs_store *fs, struct htab_entry *blob)
{
	if (blob->backing)
		segment_put(blob->backing);
	else
		heap_free(&fs->heap, HEAP_NO_CACHE, (void *)blob->data);
}

int fs_put(scratch_store *s, const struct iovec *iov, int iovcnt, size_t total,
		  scratch_handle *out)
{
	struct fs_store *fs = to_fs(s);
	struct htab_entry blob = { .size = total };
	int err;

	if (put_disk(fs, iov, iovcnt, total, &blob)) {
		blob = (struct htab_entry){ .size = total };
		if (total) {
			unsigned char *p = heap_alloc(&fs->heap, HEAP_NO_CACHE, total);

			if (!p)
				return -ENOMEM;
			copy_iov(p, iov, iovcnt);
			blob.data = p;
		}
	}
	err = fs_publish(s, &blob, out);
	if (err)
		fs_drop_blob(fs, &blob);
	return err;
}

static void fs_release(void *ctx, struct htab_entry *e, unsigned shard)
{
	struct fs_store *fs = ctx;
	struct segment *seg = e->backing;

	(void)shard; /* heap blobs here were made without a cache: freed so too */
	if (!seg) {
		heap_free(&fs->heap, HEAP_NO_CACHE, (void *)e->data);
		return;
	}
	segment_release_range(seg, e->offset, e->size);
	/* Read before the put, which may free seg: the lane sets it before
	 * any blob goes in (lane_room) and clears it under its lock. */
	bool filling = atomic_load_explicit(&seg->filling, memory_order_relaxed);
	unsigned left = segment_put(seg);

	/* The last blobs of a segment a lane still fills: it might hold none
	 * now (lane_reclaim).  Counted after our own put, so of two removes
	 * racing to empty it, the later one sees so.  Release: pairs with
	 * fs_reclaim's exchange. */
	if (filling && left && left <= LANE_REFS_MAX)
		atomic_store_explicit(&fs->reclaim, true, memory_order_release);
}

/* The references that lane l itself holds on its segment: its own, its
 * filling buffer's and those of its buffers in flight.  Lane locked. */
static unsigned lane_refs(struct lane *l)
{
	unsigned n = 1 + (l->fill.seg == l->seg);

	for (unsigned i = 0; i < nflights(l); i++)
		n += flight(l, i)->seg == l->seg;
	return n;
}

/*
 * Lets the lane's segment go if no blob is left in it and at least
 * quarters/4 of it were used, rather than keeping that dead space on
 * disk until the lane next needs room.  Blobs take their references under
 * the lane lock, which we hold, so a count that equals the lane's own
 * references stays so.  What is still staged for the segment is dead: the
 * filling buffer is dropped unwritten, and the buffers in flight keep the
 * segment until they are reaped (the next write through the lane, or a
 * flush), so nobody waits for them here.  Lane locked.
 */
static void lane_reclaim(struct lane *l, unsigned quarters)
{
	struct segment *seg = l->seg;

	/* Acquire: pairs with segment_put's release by the blobs' owners. */
	if (!seg || l->front + (seg->size - l->back) < seg->size / 4 * quarters ||
	    atomic_load_explicit(&seg->refs, memory_order_acquire) != lane_refs(l))
		return;
	if (l->fill.seg == seg) {
		segment_put(seg);
		l->fill = (struct stage){ .buf = l->fill.buf };
	}
	atomic_store_explicit(&seg->filling, false, memory_order_relaxed);
	l->seg = NULL;
	segment_put(seg); /* the file goes with the last reference */
}

/*
 * After a remove that may have left a lane's segment empty (fs_release):
 * lets it go if three quarters of it are used.  A pipeline that puts blobs
 * and removes them soon after empties its lanes' segments over and over,
 * and would otherwise make a new segment file for every few megabytes
 * (1/4: scratchbench mixed 4 KiB, 16 live, io_uring: -13%; 3/4: even).
 * scratch_store_flush lets any empty one go.  The lane locks are taken,
 * not tried: a remove racing ours may hold one, having looked before our
 * blob went, and we must look after it.
 */
static void fs_reclaim(struct fs_store *fs)
{
	/* Acquire: pairs with fs_release's store, after its put. */
	if (!atomic_load_explicit(&fs->reclaim, memory_order_relaxed) ||
	    !atomic_exchange_explicit(&fs->reclaim, false, memory_order_acquire))
		return;
	for (unsigned i = 0; i < NLANES; i++) {
		struct lane *l = &fs->lanes[i];

		pthread_mutex_lock(&l->lock);
		lane_reclaim(l, 3);
		pthread_mutex_unlock(&l->lock);
	}
}

static int fs_remove(scratch_store *s, scratch_handle h, uint64_t *size)
{
	int err = htab_remove(&s->table, h, size);

	fs_reclaim(to_fs(s));
	return err;
}

/* Is the staged byte at off of seg in a buffer being written? */
static bool in_flight(struct lane *l, const struct segment *seg, uint64_t off)
{
	for (unsigned i = 0; i < nflights(l); i++) {
		const struct stage *g = flight(l, i);

		if (g->seg == seg && off >= g->start && off < g->start + g->len)
			return true;
	}
	return false;
}

/* Where a staged blob's bytes are while its buffer is not yet written:
 * waits for the write in flight, or copies them out of the filling buffer
 * into *copy, which the reader frees. */
static const unsigned char *staged_bytes(struct fs_store *fs, struct htab_entry *e, void **copy)
{
	struct segment *seg = e->backing;
	struct lane *l = seg->lane;
	const unsigned char *p;
	struct stage *f = &l->fill;

	pthread_mutex_lock(&l->lock);
	/* In flight: finish writes, oldest first, until its own is done. */
	while (!segment_bytes(seg, e->offset, e->size) && in_flight(l, seg, e->offset))
		stage_finish(fs, l);
	p = segment_bytes(seg, e->offset, e->size);
	if (!p && f->seg == seg && e->offset >= f->start &&
	    e->offset + e->size <= f->start + f->len && (*copy = malloc(e->size))) {
		memcpy(*copy, f->buf + (e->offset - f->start), e->size);
		p = *copy;
	}
	pthread_mutex_unlock(&l->lock);
	return p;
}

static int fs_view(scratch_store *s, struct htab_entry *e, struct blob_view *v)
{
	struct segment *seg = e->backing;

	if (!seg)
		return 0;
	if (e->backing_index & BLOB_STAGED) {
		const unsigned char *p = segment_bytes(seg, e->offset, e->size);

		if (!p)
			p = staged_bytes(to_fs(s), e, &v->copy);
		if (!p)
			return -ENOMEM; /* the copy failed: every other case has bytes */
		v->data = p;
	}
	/* In the file, and the file stays open as long as the segment (only
	 * a segment of one blob closes it, before the blob is published). */
	if (v->data == seg->map + e->offset && seg->fd >= 0) {
		v->fd = seg->fd;
		v->fd_offset = e->offset;
	}
	return 0;
}

static int fs_flush(scratch_store *s)
{
	struct fs_store *fs = to_fs(s);

	for (unsigned i = 0; i < NLANES; i++) {
		struct lane *l = &fs->lanes[i];

		pthread_mutex_lock(&l->lock);
		stage_start(fs, l, false);
		stage_drain(fs, l);
		lane_reclaim(l, 0);
		pthread_mutex_unlock(&l->lock);
	}
	segment_reap_old(&fs->dir, now_ns());
	return 0;
}

static void fs_destroy(void *ctx)
{
	struct fs_store *fs = ctx;

	htab_fini(&fs->base.table);
	segment_dir_fini(&fs->dir);
	heap_close(&fs->heap);
	for (unsigned i = 0; i < NLANES; i++)
		pthread_mutex_destroy(&fs->lanes[i].lock);
	free(fs->path);
	free(fs);
}

static void fs_close(scratch_store *s)
{
	struct fs_store *fs = to_fs(s);

	/* Staged bytes are not worth writing now: every blob goes below. */
	for (unsigned i = 0; i < NLANES; i++) {
		struct lane *l = &fs->lanes[i];

		pthread_mutex_lock(&l->lock);
		stage_drain(fs, l);
		if (l->fill.seg)
			segment_put(l->fill.seg);
		heap_free(&fs->heap, HEAP_NO_CACHE, l->fill.buf);
		l->fill = (struct stage){ 0 };
		while (l->nspare)
			heap_free(&fs->heap, HEAP_NO_CACHE, l->spare[--l->nspare]);
		if (l->seg) {
			atomic_store_explicit(&l->seg->filling, false, memory_order_relaxed);
			segment_put(l->seg);
		}
		l->seg = NULL;
		if (l->io_ready)
			wio_fini(&l->io);
		l->io_ready = false;
		pthread_mutex_unlock(&l->lock);
	}
	segment_dir_close(&fs->dir);
	htab_close(&s->table);
}

static uint64_t fs_heap_bytes(scratch_store *s)
{
	return heap_bytes(&to_fs(s)->heap);
}

static const struct scratch_backend fs_backend = {
	.name = "filesystem",
	.put = fs_put,
	.view = fs_view,
	.flush = fs_flush,
	.close = fs_close,
	.writer_open = fs_writer_open,
	.writer_write = fs_writer_write,
	.writer_commit = fs_writer_commit,
	.writer_abort = fs_writer_abort,
	.heap_bytes = fs_heap_bytes,
	.remove = fs_remove,
	.table_ops = { .release = fs_release, .destroy = fs_destroy },
};

int scratch_filesystem_backend_new(const scratch_logger *logger, const char *path,
				   scratch_store **out)
{
	struct fs_store *fs = aligned_alloc(64, sizeof(*fs));
	int err;

	if (!fs)
		return -ENOMEM;
	memset(fs, 0, sizeof(*fs));
	fs->base.backend = &fs_backend;
	if (logger)
		fs->logger = *logger;
	for (unsigned i = 0; i < NLANES; i++) {
		pthread_mutex_init(&fs->lanes[i].lock, NULL);
		/* Nobody is alone in a new store until LONE_NS has passed. */
		fs->lanes[i].sent_at = now_ns();
	}
	fs->path = strdup(path);
	err = fs->path ? heap_open(&fs->heap) : -ENOMEM;
	if (err)
		goto fail_dir; /* heap_close frees what heap_open made */
	err = segment_dir_open(&fs->dir, path, &fs->heap);
	if (err)
		goto fail_dir;
	fs->use_uring = wio_uring_wanted();
	if (fs->use_uring)
		fs->use_uring = fs_lane_io(fs, &fs->lanes[0])->uring; /* probe, logs if not */
	else
		fs_log(fs, SCRATCH_LOG_DEBUG, "msg=\"writing with pwrite\" reason=SCRATCH_IO");
	err = htab_init(&fs->base.table, &fs_backend.table_ops, fs);
	if (err)
		goto fail_table;
	*out = &fs->base;
	return 0;

fail_table:
	if (fs->lanes[0].io_ready)
		wio_fini(&fs->lanes[0].io);
	segment_dir_fini(&fs->dir);
fail_dir:
	heap_close(&fs->heap);
	for (unsigned i = 0; i < NLANES; i++)
		pthread_mutex_destroy(&fs->lanes[i].lock);
	free(fs->path);
	free(fs);
	return err;
}
