/*
 * fs_writer.c: the streaming writer of the filesystem store.
 *
 * A writer buffers up to STAGE_SIZE bytes, in a buffer that grows as they
 * come (a writer of a small blob holds little memory); a blob that never
 * outgrows the buffer is put like any other at commit.  Past that, the
 * writer makes a segment of its own, preallocated in steps, and writes each
 * full buffer to it (through a lane's channel, io_uring or pwrite), so a
 * blob of any size streams to disk with one buffer of memory.  Nothing is visible
 * until commit, which trims the file and publishes it; abort unlinks it.
 * If the disk fails part-way, what is on disk (written, so safe to read
 * through the mapping) and the buffer move to memory, where the rest
 * follows: the committed blob reads back whole.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "filesystem.h"

int fs_writer_open(scratch_store *s, scratch_writer **out)
{
	struct fs_writer *w = calloc(1, sizeof(*w));

	if (!w)
		return -ENOMEM;
	w->base.store = s;
	*out = &w->base;
	return 0;
}

static void writer_free(struct fs_store *fs, struct fs_writer *w)
{
	if (w->seg)
		segment_put(w->seg);
	heap_free(&fs->heap, HEAP_NO_CACHE, w->stage.data);
	heap_free(&fs->heap, HEAP_NO_CACHE, w->mem.data);
	free(w);
}

/* After a disk failure: what is on disk (written, so safe to map) and what
 * is buffered move to memory, where the rest will follow.  0 or -ENOMEM
 * (then nothing changed). */
static int writer_to_memory(struct fs_store *fs, struct fs_writer *w)
{
	size_t need = w->on_disk + w->stage.len, cap = need > STAGE_SIZE ? need : STAGE_SIZE;
	unsigned char *m = heap_alloc(&fs->heap, HEAP_NO_CACHE, cap);

	if (!m)
		return -ENOMEM;
	if (w->on_disk)
		memcpy(m, w->seg->map, w->on_disk);
	if (w->stage.len)
		memcpy(m + w->on_disk, w->stage.data, w->stage.len);
	if (w->seg)
		segment_put(w->seg);
	/* A failed write's request may outlive a torn-down ring and still read
	 * the buffer, but all it could do is put stale bytes into the file
	 * dropped just above (the lane keeps its buffers because it reads them
	 * back). */
	heap_free(&fs->heap, HEAP_NO_CACHE, w->stage.data);
	*w = (struct fs_writer){ .base = w->base, .mem = { m, need, cap } };
	return 0;
}

/* Writes the buffer to the writer's own file, or moves all to memory. */
static int writer_spill(struct fs_store *fs, struct fs_writer *w)
{
	int err = 0;

	/* After a failed write the kernel may still read the buffer: no more disk. */
	if (w->failed)
		err = -EIO;
	else if (!w->seg)
		err = fs_disk_ok(fs) ? fs_new_segment(fs, WRITER_GROW, true, &w->seg) : -EAGAIN;
	if (!err && w->on_disk + w->stage.len > w->seg->size) {
		uint64_t size = w->seg->size * 2;

		if (size < w->on_disk + w->stage.len)
			size = round_up(w->on_disk + w->stage.len, PAGE);
		if ((err = segment_resize(w->seg, size)))
			fs_disk_failed(fs, err, "fallocate");
	}
	if (!err) {
		struct iovec iov = { w->stage.data, w->stage.len };
		struct lane *l = fs_lane_lock(fs);

		err = fs_lane_writev(fs, l, w->seg->fd, &iov, 1, w->on_disk);
		pthread_mutex_unlock(&l->lock);
		if (err)
			fs_disk_failed(fs, err, "write");
	}
	if (err) {
		w->failed = true;
		return writer_to_memory(fs, w);
	}
	w->on_disk += w->stage.len;
	w->stage.len = 0;
	return 0;
}

/* Takes n bytes, or returns how many it took before running out of memory
 * (-ENOMEM if none). */
ssize_t fs_writer_write(scratch_writer *base, const void *p, size_t n)
{
	struct fs_writer *w = (struct fs_writer *)base;
	struct fs_store *fs = to_fs(base->store);
	const unsigned char *src = p;
	size_t left = n;

	while (left && !w->mem.data) {
		ssize_t k = 0;

		if (w->stage.len == STAGE_SIZE)
			k = writer_spill(fs, w);
		if (k == 0 && !w->mem.data)
			k = heap_buf_append(&fs->heap, &w->stage, src,
					    left < STAGE_SIZE - w->stage.len ? left : STAGE_SIZE - w->stage.len);
		if (k < 0)
			return left < n ? (ssize_t)(n - left) : k;
		src += k;
		left -= (size_t)k;
	}
	if (left) {
		ssize_t k = heap_buf_append(&fs->heap, &w->mem, src, left);

		if (k < 0)
			return left < n ? (ssize_t)(n - left) : k;
	}
	return (ssize_t)n;
}

void fs_writer_abort(scratch_writer *base)
{
	writer_free(to_fs(base->store), (struct fs_writer *)base);
}

int fs_writer_commit(scratch_writer *base, scratch_handle *out)
{
	struct fs_writer *w = (struct fs_writer *)base;
	scratch_store *s = base->store;
	struct fs_store *fs = to_fs(s);
	struct htab_entry blob = { 0 };
	int err;

	if (!w->seg && !w->mem.data) {
		/* Never filled its buffer: an ordinary put. */
		struct iovec iov = { w->stage.data, w->stage.len };

		err = fs_put(s, &iov, 1, w->stage.len, out);
		writer_free(fs, w);
		return err;
	}
	if (w->seg && w->stage.len && (err = writer_spill(fs, w))) {
		writer_free(fs, w);
		return err;
	}
	if (w->seg) {
		/* Trim the preallocation; a failure only wastes the tail. */
		(void)segment_resize(w->seg, round_up(w->on_disk, PAGE));
		segment_written(w->seg);
		blob.backing = w->seg;
		blob.size = w->on_disk;
		w->seg = NULL;
	} else {
		blob.data = w->mem.data;
		blob.size = w->mem.len;
		w->mem.data = NULL;
	}
	err = fs_publish(s, &blob, out);
	if (err)
		fs_drop_blob(fs, &blob);
	writer_free(fs, w);
	return err;
}
