/*
 * htab.h: the concurrent handle table (design and memory orderings: htab.c).
 *
 * Maps handles to entries.  An entry describes one blob; its bytes belong to
 * the backend, which fills data/size/backing between htab_reserve() and
 * htab_publish() and frees them in its release callback.  Entries are
 * reference counted: the table holds one reference while the handle is
 * live, and each htab_acquire() returns one more.
 */
#ifndef SCRATCH_HTAB_H
#define SCRATCH_HTAB_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "lock.h"

#define HTAB_SHARD_BITS 5
#define HTAB_SHARDS (1u << HTAB_SHARD_BITS)
#define HTAB_TAG_BITS 16 /* a handle's top bits tell its table (htab.c) */
#define HTAB_CHUNKS 26 /* chunk c holds 64 << c entries: 2^32 per shard */
#define HTAB_GROUP_SHARDS 8 /* a thread puts into a group of this many (htab.c) */

struct htab_entry {
	_Atomic uint32_t refs;    /* HTAB_LINKED while in the table, plus a count */
	uint32_t index;           /* in its shard's pool */
	uint32_t next_free;       /* pool free list (index + 1), under the shard lock */
	uint32_t backing_index;   /* the backend's, e.g. a segment number */
	_Atomic uint64_t handle;  /* atomic: stale lock-free readers may look at it */
	/* The blob, owned by the backend; immutable while the entry is live. */
	const void *data;
	uint64_t size;
	void *backing;
	uint64_t offset;
	/* A blob kept in the entry itself (htab_set_small): its size + 1, or 0. */
	_Atomic uint32_t small_len;
} __attribute__((aligned(64))); /* one line each: readers of neighbours do not share */

/* Tables made with htab_ops.small_blobs give every entry a second cache line
 * that holds a blob of up to HTAB_SMALL_MAX bytes. */
#define HTAB_SMALL_MAX 64u

struct htab_slots;

struct htab_ops {
	/* The last reference to e is gone: free its bytes.  Called with the
	 * lock of shard `shard` held; must not call back into the table. */
	void (*release)(void *ctx, struct htab_entry *e, unsigned shard);
	/* htab_close() was called and every entry is released: free everything,
	 * including the table (htab_fini).  Called with no lock held, from the
	 * thread that dropped the last reference. */
	void (*destroy)(void *ctx);
	/* Entries carry room for a small blob (htab_set_small, htab_lookup). */
	bool small_blobs;
};

struct htab_shard {
	/* What every put and remove touches, in the shard's first line. */
	scratch_lock lock;                        /* writers only (lock.h) */
	uint32_t removed_tag;                     /* low 32 bits of the last removed sequence */
	struct htab_slots *_Atomic slots;         /* published with release */
	uint64_t next_seq;                        /* next handle's sequence number */
	uint32_t nlive, ntombs;                   /* slots in use / deleted */
	uint32_t nused;                           /* entries not on the free list */
	uint32_t free_head;                       /* index + 1, 0: empty */
	uint32_t pool_size;                       /* entries in allocated chunks */
	uint8_t entry_shift;                      /* log2 of an entry's stride */
	bool closed, done;
	_Atomic uint64_t live, bytes;             /* for stats, written under lock */
	struct htab_entry *_Atomic chunks[HTAB_CHUNKS];
} __attribute__((aligned(64)));

struct htab {
	struct htab_shard shards[HTAB_SHARDS];
	const struct htab_ops *ops;
	void *ctx;
	_Atomic unsigned shards_open;
};

struct htab_stats {
	uint64_t live, bytes;        /* live handles and their bytes */
	uint64_t slot_bytes;         /* memory of the slot arrays */
	uint64_t entry_bytes;        /* memory of the entry pools */
};

int htab_init(struct htab *t, const struct htab_ops *ops, void *ctx);
void htab_fini(struct htab *t);

/* Locks a shard (the thread's next, skipping busy ones), makes room for one
 * insert and returns a fresh entry with its handle set.  On success the
 * shard stays locked until htab_publish() or htab_cancel().  -ENOMEM. */
int htab_reserve(struct htab *t, struct htab_entry **out);
void htab_publish(struct htab *t, struct htab_entry *e);
void htab_cancel(struct htab *t, struct htab_entry *e);

static inline unsigned htab_shard_of(uint64_t handle)
{
	return (unsigned)(handle & (HTAB_SHARDS - 1));
}

/* Lock-free.  0 with *out referenced; SCRATCH_ENOTFOUND; -ENOMEM (no reader
 * record could be made for this thread); -EOVERFLOW (2^31 references). */
int htab_acquire(struct htab *t, uint64_t handle, struct htab_entry **out);

/* Between htab_reserve and htab_publish: keeps the n <= HTAB_SMALL_MAX bytes
 * at p in the entry itself (the table must have small_blobs). */
void htab_set_small(struct htab_entry *e, const void *p, size_t n);

/* htab_acquire, except that a blob kept in its entry is copied to buf
 * (HTAB_SMALL_MAX bytes) without taking a reference: then 0 with *out NULL
 * and *len its size.  Such a read writes nothing shared at all. */
int htab_lookup(struct htab *t, uint64_t handle, struct htab_entry **out, void *buf, size_t *len);
void htab_put(struct htab *t, struct htab_entry *e);

/* 0, with the blob's size in *size unless size is NULL, or
 * SCRATCH_ENOTFOUND. */
int htab_remove(struct htab *t, uint64_t handle, uint64_t *size);

/* Unlinks every handle; ops->destroy runs once the last entry is released
 * (maybe before this returns).  Nothing may use t after this but htab_put. */
void htab_close(struct htab *t);

void htab_stats(struct htab *t, struct htab_stats *out);

#endif
