/*
 * segment.h: the filesystem store's files (layout: segment.c).
 *
 * A segment is one .lokiscratch file, preallocated, locked by its store and
 * mapped read-only once; blobs are ranges of it.  It is reference counted:
 * one reference per blob in it (held by the blob's table entry, so readers
 * keep it too), one while a lane appends to it, one per staging buffer that
 * holds bytes for it.  The last reference unmaps, closes and unlinks it.
 */
#ifndef SCRATCH_SEGMENT_H
#define SCRATCH_SEGMENT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "heap.h"

#define PAGE 4096u

/* n rounded up to a multiple of to, a power of two. */
static inline uint64_t round_up(uint64_t n, uint64_t to)
{
	return (n + to - 1) & ~(to - 1);
}

#define SEGMENT_NAME_MAX 48
#define SEGMENT_EXT ".lokiscratch"

/* Staged bytes whose write failed, kept in memory instead. */
struct segment_chunk {
	uint64_t start, len;
	unsigned char *buf; /* heap memory, freed with the segment */
};

struct segment_dir;

struct segment {
	struct segment_dir *dir;
	int fd;                       /* -1 once segment_written() */
	uint64_t size;
	const unsigned char *map;     /* PROT_READ, MAP_SHARED, size bytes */
	void *lane;                   /* the lane that stages into it, or NULL */
	_Atomic bool filling;         /* that lane still puts blobs into it */
	_Atomic uint32_t refs;
	/* Staged bytes below `written` are on disk: readers may map them.
	 * Stored with release after the write completed, loaded with acquire
	 * before touching the mapping. */
	_Atomic uint64_t written;
	/* Set once, under the lane's lock, before being published with
	 * release through nchunks. */
	struct segment_chunk chunks[4]; /* buffers in flight + the filling one */
	_Atomic unsigned nchunks;
	struct segment *prev, *next;  /* the directory's list, under its lock */
	bool unlinked;                /* under the directory's lock */
	char name[SEGMENT_NAME_MAX];
	/* A lane's segment (segment_track): how many live blobs each page
	 * holds bytes of, PAGE_PUNCHED (segment.c) once handed back; and the pages
	 * that are complete, below sealed_front and from sealed_back on, whose
	 * counts can only fall.  NULL: not tracked. */
	_Atomic uint16_t *pages;
	_Atomic uint64_t sealed_front, sealed_back;
	_Atomic uint32_t dead;        /* pages that lost their last blob, not punched */
	_Atomic uint32_t dead_seen;   /* dead when last searched */
	_Atomic uint64_t sealed_at;   /* CLOCK_MONOTONIC ns the lane left it; 0: filling */
	pthread_mutex_t punch_lock;   /* one page-run search at a time */
};

/* The store's directory and the segments it owns. */
struct segment_dir {
	int fd;
	pthread_mutex_t lock;
	struct segment *list;
	_Atomic bool closed;          /* files are unlinked as soon as made */
	struct heap *heap;            /* where chunks live */
	_Atomic uint64_t disk_bytes;  /* sizes of the live segments */
	_Atomic uint64_t nsegments;
};

/* Opens (creating with parents, mode 0700) the directory at path and
 * removes the .lokiscratch files in it that no live store owns.
 * 0 or -errno (-ENOTDIR, -EACCES, -EROFS, -ENOMEM, ...). */
int segment_dir_open(struct segment_dir *d, const char *path, struct heap *heap);
/* Unlinks the files of every live segment; later segments go at once.
 * The segments themselves live on while referenced. */
void segment_dir_close(struct segment_dir *d);
/* Once no segment is left. */
void segment_dir_fini(struct segment_dir *d);

/* A new segment of `size` bytes (a multiple of the page size), holding one
 * reference.  0 or -errno (-ENOSPC, -EMFILE, -ENOENT, ...). */
int segment_new(struct segment_dir *d, uint64_t size, struct segment **out);

static inline void segment_get(struct segment *s)
{
	/* Relaxed: the caller already holds a reference. */
	atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

/* Drops a reference; returns how many are left (0: the segment is gone). */
unsigned segment_put(struct segment *s);

/* A segment of one blob is written for good: its file descriptor goes (a
 * process keeps a thousand large blobs without a thousand fds).  The
 * mapping keeps the open file, and with it the ownership lock, until the
 * segment goes; with one blob, nothing is ever punched. */
void segment_written(struct segment *s);

/* Grows (preallocating) or shrinks the file and its mapping; only while
 * the segment is its creator's alone.  0 or -errno. */
int segment_resize(struct segment *s, uint64_t size);

/* Counts the live blobs of s page by page from now on, so that runs of
 * pages no blob is left in go back to the filesystem (segment.c: Space).
 * For a segment of many blobs, before the first.  0 or -ENOMEM (then s is
 * not tracked, and its space comes back with it). */
int segment_track(struct segment *s);
/* The blob [off, off+len) is placed: before it is published, under the
 * lock of the lane that fills s. */
void segment_place(struct segment *s, uint64_t off, uint64_t len);
/* No blob will be placed below front, nor from back on (the lane moved
 * them there, under its lock, after placing what is in between). */
void segment_seal(struct segment *s, uint64_t front, uint64_t back);
/* The lane is done with s, whose blobs end at front and start at back:
 * from REAP_AGE_NS after now_ns, segment_reap_old may punch it. */
void segment_retire(struct segment *s, uint64_t front, uint64_t back, uint64_t now_ns);
/* The blob [off, off+len) is gone and nobody maps it: counts the pages it
 * leaves empty, and punches them at once if they are a run (1 MiB) of its
 * own.  Call before dropping its reference. */
void segment_release_range(struct segment *s, uint64_t off, uint64_t len);
/* Punches the runs of empty pages of the segments that lanes left
 * REAP_AGE_NS or more before now_ns, that hold a run's worth of empty
 * pages and have lost a quarter of that since last looked at (segment.c:
 * Space). */
#define REAP_AGE_NS (1000ull * 1000 * 1000)
void segment_reap_old(struct segment_dir *d, uint64_t now_ns);

/* Where [off, off+len) of s may be read without a lock: the mapping if
 * written, a chunk if its write failed, NULL if it is still being staged. */
const unsigned char *segment_bytes(struct segment *s, uint64_t off, uint64_t len);

#endif
