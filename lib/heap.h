/*
 * heap.h: where a store keeps blob bytes in memory (design: heap.c).
 *
 * A heap is a private jemalloc arena plus one private thread cache per table
 * shard; built with -Dallocator=malloc it is plain malloc.  `cache` names
 * the cache to use: a shard number (its lock must be held, since a cache
 * serves one thread at a time) or HEAP_NO_CACHE (any thread, any time).
 */
#ifndef SCRATCH_HEAP_H
#define SCRATCH_HEAP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "htab.h"

#define HEAP_NO_CACHE (-1)

struct heap {
	unsigned arena;
	unsigned tcache[HTAB_SHARDS];
	unsigned ntcaches;
	bool arena_made;
	_Atomic uint64_t bytes; /* malloc build only: what blobs hold */
};

/* 0 or -ENOMEM (then heap_close() frees what was made). */
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
