/*
 * htab.h: the concurrent handle table (design and memory orderings: htab.c).
 *
 * Maps handles to entries.  An entry describes one blob.  A big entry's
 * bytes belong to the backend, which fills data/size/backing between
 * htab_reserve() and htab_publish() and frees them in its release callback;
 * big entries are reference counted: the table holds one reference while
 * the handle is live, and each htab_acquire() returns one more.  A small
 * entry holds its blob itself (htab_reserve_small, htab_set_small); readers
 * copy it out, so it needs no count and goes at its remove.
 */
#ifndef SCRATCH_HTAB_H
#define SCRATCH_HTAB_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lock.h"

#define HTAB_SHARD_BITS 5
#define HTAB_SHARDS (1u << HTAB_SHARD_BITS)
#define HTAB_TAG_BITS 16 /* a handle's top bits tell its table (htab.c) */
#define HTAB_CHUNKS 24 /* chunk c holds 64 << c entries: 2^30 a pool */
#define HTAB_GROUP_SHARDS 8 /* a thread puts into a group of this many (htab.c) */

/* A blob of up to HTAB_SMALL_MAX bytes can be kept in a small entry. */
#define HTAB_SMALL_MAX 64u

/* Each shard has a pool of each kind of entry.  An entry never changes
 * kind, so a reader that finds a stale one knows what it is looking at. */
enum htab_pool_kind {
	HTAB_BIG,   /* the blob's bytes are the backend's; reference counted */
	HTAB_SMALL, /* the blob is in the entry's second line; no references */
	HTAB_POOLS
};

struct htab_entry {
	_Atomic uint32_t refs;    /* big: HTAB_LINKED while in the table, plus a count */
	uint32_t index;           /* in its shard's pool */
	uint32_t backing_index;   /* the backend's, e.g. a segment number */
	_Atomic uint64_t handle;  /* atomic: stale lock-free readers may look at it */
	union {
		/* Big: the blob, owned by the backend; immutable while the
		 * entry is live. */
		const void *data;
		/* Free: the pool's next free entry (under the shard lock). */
		struct htab_entry *next_free;
	};
	uint64_t size;
	void *backing;
	uint64_t offset;
	_Atomic uint32_t small_len; /* small: the blob's size */
	uint8_t kind;               /* enum htab_pool_kind, for good */
} __attribute__((aligned(64))); /* one line each: readers of neighbours do not share */

struct htab_ops {
	/* The last reference to a big entry e is gone: free its bytes.  Called
	 * with the lock of shard `shard` held; must not call back into the
	 * table.  (Small entries have no bytes elsewhere: nothing is called.) */
	void (*release)(void *ctx, struct htab_entry *e, unsigned shard);
	/* htab_close() was called and every entry is released: free everything,
	 * including the table (htab_fini).  Called with no lock held, from the
	 * thread that dropped the last reference. */
	void (*destroy)(void *ctx);
};

struct htab_shard {
	/* What every put and remove touches, in the shard's first line. */
	scratch_lock lock;                        /* writers only (lock.h) */
	uint32_t removed_tag;                     /* low 32 bits of the last removed sequence */
	struct htab_slots *_Atomic slots;         /* published with release */
	uint64_t next_seq;                        /* next handle's sequence number */
	uint32_t nlive, ntombs;                   /* slots in use / deleted */
	uint32_t nused;                           /* entries not on a free list */
	bool closed, done;
	struct htab_entry *free[HTAB_POOLS];      /* each pool's free list, NULL: empty */
	uint64_t bytes;                           /* of the live handles' blobs */
	struct htab_entry *_Atomic chunks[HTAB_POOLS][HTAB_CHUNKS];
	uint32_t pool_size[HTAB_POOLS];           /* entries in allocated chunks */
} __attribute__((aligned(64)));

struct htab {
	struct htab_shard shards[HTAB_SHARDS];
	const struct htab_ops *ops;
	void *ctx;
	_Atomic unsigned shards_open;
	uint32_t tag; /* its handles' top HTAB_TAG_BITS bits, unique among live tables */
};

struct htab_stats {
	uint64_t live, bytes;        /* live handles and their bytes */
	uint64_t slot_bytes;         /* memory of the slot arrays */
	uint64_t entry_bytes;        /* memory of the entry pools */
};

int htab_init(struct htab *t, const struct htab_ops *ops, void *ctx);
void htab_fini(struct htab *t);

/* Locks a shard (the thread's next, skipping busy ones), makes room for one
 * insert and returns a fresh big entry with its handle set.  On success the
 * shard stays locked until htab_publish() or htab_cancel().  -ENOMEM. */
int htab_reserve(struct htab *t, struct htab_entry **out);
void htab_publish(struct htab *t, struct htab_entry *e);
void htab_cancel(struct htab *t, struct htab_entry *e);

/* Keeps the n <= HTAB_SMALL_MAX bytes at p as a new small blob: its handle
 * goes to *handle.  0 or -ENOMEM.  The same as htab_reserve_small,
 * htab_set_small and htab_publish, in one call: those three are for a
 * caller that needs the handle before the blob (test_htab makes its blobs
 * from their handles). */
int htab_insert_small(struct htab *t, const void *p, size_t n, uint64_t *handle);
int htab_reserve_small(struct htab *t, struct htab_entry **out);
void htab_set_small(struct htab_entry *e, const void *p, size_t n);

static inline unsigned htab_shard_of(uint64_t handle)
{
	return (unsigned)(handle & (HTAB_SHARDS - 1));
}

/*
 * Lock-free lookup.  A small blob is copied to buf (HTAB_SMALL_MAX bytes,
 * whatever its size) with no reference taken and nothing shared written:
 * then 0 with *out NULL and *len its size.  A big one: 0 with *out
 * referenced (drop it with htab_put).  Else SCRATCH_ENOTFOUND; -ENOMEM (no
 * reader record could be made for this thread); -EOVERFLOW (2^31
 * references); -EINVAL: small, and buf is NULL.
 */
int htab_lookup(struct htab *t, uint64_t handle, struct htab_entry **out, void *buf, size_t *len);
/* htab_lookup without a buffer, for tables with big entries only. */
int htab_acquire(struct htab *t, uint64_t handle, struct htab_entry **out);
void htab_put(struct htab *t, struct htab_entry *e);

/* 0, with the blob's size in *size unless size is NULL, or
 * SCRATCH_ENOTFOUND. */
int htab_remove(struct htab *t, uint64_t handle, uint64_t *size);

/* Unlinks every handle; ops->destroy runs once the last entry is released
 * (maybe before this returns).  Nothing may use t after this but htab_put. */
void htab_close(struct htab *t);

void htab_stats(struct htab *t, struct htab_stats *out);

#endif
