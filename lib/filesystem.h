/*
 * filesystem.h: what the filesystem backend's two files share
 * (filesystem.c: puts, lanes, reads, teardown; fs_writer.c: the streaming
 * writer).  Internal to the backend: nothing else includes it.
 */
#ifndef SCRATCH_FILESYSTEM_H
#define SCRATCH_FILESYSTEM_H

#include <stdbool.h>
#include <stdint.h>

#include "backend.h"
#include "segment.h"
#include "uring.h"

#define SEGMENT_SIZE (16ull << 20) /* halved down to SEGMENT_MIN on ENOSPC */
#define SEGMENT_MIN (1ull << 20)
#define STAGE_SIZE (1u << 20)      /* one background write */
/* Larger blobs are written directly.  io_uring overlaps buffers' writes
 * with the next puts (WIO_INFLIGHT of them), which pays for the copy up to
 * a whole buffer (scratchbench put 1 MiB: 0.75-0.81x seq-pwrite staged, 0.67-
 * 0.69x written directly and waited for); pwrite cannot overlap, so there
 * a copy only pays while it saves system calls. */
#define STAGE_MAX (64u << 10)
#define STAGE_MAX_URING STAGE_SIZE
#define STAGE_ALIGN 16u
#define OWN_FILE_MIN (SEGMENT_SIZE / 4)
#define WRITER_GROW (4ull << 20)
#define NLANES 4
#define RETRY_NS (5ull * 1000 * 1000)
#define LONE_NS (100ull * 1000 * 1000) /* a thread that wrote nothing for this long is idle */

#define BLOB_STAGED 1u /* entry->backing_index: may still be in a buffer */

_Static_assert(WIO_INFLIGHT + 1 <= sizeof(((struct segment *)0)->chunks) /
				   sizeof(struct segment_chunk),
	       "a segment must be able to adopt every buffer of a lane");

struct stage {
	struct segment *seg; /* referenced while the buffer holds its bytes */
	uint64_t start;      /* where buf[0] goes in seg */
	size_t len;
	unsigned char *buf;  /* STAGE_SIZE bytes of the heap, or NULL */
};

/* The most references a lane holds on its segment: its own, its filling
 * buffer's, and one per buffer in flight. */
#define LANE_REFS_MAX (2 + WIO_INFLIGHT)

struct lane {
	pthread_mutex_t lock;
	struct wio io;
	bool io_ready;
	struct segment *seg;        /* being filled; referenced */
	uint64_t front, back;       /* staged bytes go up from front, direct down from back */
	struct stage fill;
	/* Being written: io's background writes, indexed as its queue is. */
	struct stage flights[WIO_INFLIGHT];
	unsigned char *spare[WIO_INFLIGHT + 1]; /* written buffers, for reuse */
	unsigned nspare;
	/* The last write through the lane: CLOCK_MONOTONIC ns, and by whom
	 * (fs_lane_wrote). */
	_Atomic uint64_t sent_at;
	_Atomic uintptr_t sent_by;
} __attribute__((aligned(64)));

struct fs_store {
	scratch_store base;
	struct heap heap;
	struct segment_dir dir;
	scratch_logger logger;
	char *path;
	bool use_uring;
	_Atomic bool told_pwrite;
	_Atomic uint64_t retry_at; /* CLOCK_MONOTONIC ns: no disk before */
	_Atomic unsigned next_lane;
	/* A lane's segment may hold no blob any more (fs_release): the next
	 * remove or flush looks (fs_reclaim). */
	_Atomic bool reclaim;
	struct lane lanes[NLANES];
};

struct fs_writer {
	scratch_writer base;
	struct heap_buf stage; /* up to STAGE_SIZE bytes not yet on disk */
	struct segment *seg; /* a file of its own, once the buffer first fills */
	uint64_t on_disk;
	struct heap_buf mem; /* after a disk failure: everything, in memory */
	bool failed;         /* the disk failed: the rest goes to memory */
};

static inline struct fs_store *to_fs(scratch_store *s)
{
	return (struct fs_store *)s;
}

/* The disk: usable now, or failed (logged, and off for RETRY_NS). */
bool fs_disk_ok(struct fs_store *fs);
void fs_disk_failed(struct fs_store *fs, int err, const char *op);
/* A segment for a lane (need: the first blob's bytes) or, if own, for one
 * blob of exactly need bytes.  0 or -errno, logged. */
int fs_new_segment(struct fs_store *fs, uint64_t need, bool own, struct segment **out);
/* A lane, locked, and its write channel (made on first use). */
struct lane *fs_lane_lock(struct fs_store *fs);
struct wio *fs_lane_io(struct fs_store *fs, struct lane *l);
/* Writes iov at off of fd through the locked lane l and waits (noted for
 * lone writers: fs_lane_wrote).  0 or -errno. */
int fs_lane_writev(struct fs_store *fs, struct lane *l, int fd, const struct iovec *iov,
		   int iovcnt, uint64_t off);

int fs_put(scratch_store *s, const struct iovec *iov, int iovcnt, size_t total,
	   scratch_handle *out);
/* Publishes a blob placed on disk (blob->backing set) or in the heap
 * (blob->data); on failure the caller drops it with fs_drop_blob. */
int fs_publish(scratch_store *s, struct htab_entry *blob, scratch_handle *out);
void fs_drop_blob(struct fs_store *fs, struct htab_entry *blob);

/* fs_writer.c */
int fs_writer_open(scratch_store *s, scratch_writer **out);
ssize_t fs_writer_write(scratch_writer *base, const void *p, size_t n);
int fs_writer_commit(scratch_writer *base, scratch_handle *out);
void fs_writer_abort(scratch_writer *base);

#endif
