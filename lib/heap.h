/*
 * heap.h: where a store keeps blob bytes in memory (design: heap.c).
 *
 * A heap is a private jemalloc arena plus private thread caches; built with
 * -Dallocator=malloc it is plain malloc.  `cache` names the cache to use:
 * HEAP_NO_CACHE, or what heap_cache() gives for a block of a table shard.
 */
#ifndef SCRATCH_HEAP_H
#define SCRATCH_HEAP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "htab.h"
#include "lock.h"

#define HEAP_NO_CACHE (-1)
#define HEAP_GROUP_MIN 2048u         /* blocks from this size up use the group's cache */
#define HEAP_CACHE_MAX (16u * 1024)  /* larger blocks use no cache */
#define HEAP_GROUPS (HTAB_SHARDS / HTAB_GROUP_SHARDS)
#define HEAP_CACHES (HTAB_SHARDS + HEAP_GROUPS)

/* The cache for a block of n bytes of table shard `shard`: below
 * HEAP_GROUP_MIN the shard's own, whose lock the caller must hold; up to
 * HEAP_CACHE_MAX that of the shard's put group, which the heap locks
 * itself; above, none (a large block would hold the group's lock through
 * jemalloc's slow paths, and sit in a cache it is never taken from). */
static inline int heap_cache(unsigned shard, size_t n)
{
	if (n > HEAP_CACHE_MAX)
		return HEAP_NO_CACHE;
	return n < HEAP_GROUP_MIN ? (int)shard : (int)(HTAB_SHARDS + shard / HTAB_GROUP_SHARDS);
}

struct heap {
	struct {
		scratch_lock lock; /* a jemalloc tcache serves one thread at a time */
	} __attribute__((aligned(64))) groups[HEAP_GROUPS];
	unsigned tcache[HEAP_CACHES];
	unsigned ncaches; /* all made, or 0: jemalloc had too few (heap.c) */
	unsigned arena;
	bool arena_made;
	_Atomic uint64_t bytes; /* malloc build only: what blobs hold */
};

/* On zeroed memory: 0 or -ENOMEM (then heap_close() frees what was made). */
int heap_open(struct heap *h);
void heap_close(struct heap *h);

void *heap_alloc(struct heap *h, int cache, size_t n);
/* Grows (or makes, p NULL) a buffer owned by one thread; no cache. */
void *heap_grow(struct heap *h, void *p, size_t n);
void heap_free(struct heap *h, int cache, void *p);

/* A buffer that grows as bytes are appended (a streaming writer's). */
struct heap_buf {
	unsigned char *data;
	size_t len, cap;
};

/* Appends n bytes at p to b, doubling its room (from 4 KiB) as needed.
 * n, or -ENOMEM with b unchanged.  Free b->data with heap_free, no cache. */
ssize_t heap_buf_append(struct heap *h, struct heap_buf *b, const void *p, size_t n);

/* Bytes held by the heap's blobs (the arena's allocated bytes). */
uint64_t heap_bytes(struct heap *h);

#endif
