/*
 * heap.c: blob memory on a private jemalloc arena.
 *
 * Blob bytes come from a jemalloc arena created for the store alone
 * (arenas.create), so the store's memory is kept apart from the program's
 * heap, can be measured on its own (stats.arenas.<i>.*) and goes back in
 * one arena.<i>.destroy when the store's last blob is released.
 *
 * jemalloc's automatic thread caches would mix our blocks with the host's,
 * so every call names its cache explicitly (tcache.create), or none.
 * - Blocks under HEAP_GROUP_MIN use a cache per table shard, taken under
 *   that shard's lock, which the caller holds anyway.
 * - From HEAP_GROUP_MIN up, a cache per put group of shards (the
 *   HTAB_GROUP_SHARDS shards one thread mostly puts into), under a lock of
 *   its own.  A thread's puts go to one shard while its removes free into
 *   another (the oldest blobs'), so with a cache per shard every block went
 *   from one cache back to the arena and on to another.  jemalloc keeps
 *   blocks of 4, 8 and 12 KiB one to a slab and of 2, 6, 10 and 14 KiB two
 *   (arenas.bin.<i>.nregs), so such trips tore slabs down and built them
 *   up: 1,200 instructions per 4 KiB allocation.  In the group's cache a
 *   free is the next put's allocation.  4 KiB put, read and remove, 1
 *   thread: +57% with 64 live, +6-10% with 1k live; smaller blocks, many to
 *   a slab, gained less than the extra lock cost them (256 B: -14%), so
 *   they keep the shard's cache.
 * - jemalloc makes at most 4096 caches in all.  A heap that cannot have its
 *   HEAP_CACHES gives back those it got and goes without, slower but whole,
 *   rather than failing the store.
 *
 * Built with -Dallocator=malloc (the sanitizer builds), the same interface
 * runs on plain malloc, which ASan and valgrind can see into, and counts its
 * bytes itself.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "heap.h"

ssize_t heap_buf_append(struct heap *h, struct heap_buf *b, const void *p, size_t n)
{
	size_t need;

	if (__builtin_add_overflow(b->len, n, &need) || need > SSIZE_MAX)
		return -ENOMEM;
	if (need > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;

		while (cap < need)
			cap = cap > SSIZE_MAX / 2 ? need : cap * 2;
		unsigned char *data = heap_grow(h, b->data, cap);

		if (!data)
			return -ENOMEM;
		b->data = data;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, n);
	b->len = need;
	return (ssize_t)n;
}

#if SCRATCH_WITH_JEMALLOC
#include <jemalloc/jemalloc.h>

/* The tcache flag for cache; locks a group's cache (unlock: cache_done). */
static int cache_take(struct heap *h, int cache)
{
	if (cache < 0 || h->ncaches == 0)
		return MALLOCX_TCACHE_NONE;
	if (cache >= (int)HTAB_SHARDS)
		lock_take(&h->groups[cache - (int)HTAB_SHARDS].lock);
	return MALLOCX_TCACHE(h->tcache[cache]);
}

static void cache_done(struct heap *h, int cache)
{
	if (cache >= (int)HTAB_SHARDS && h->ncaches)
		lock_drop(&h->groups[cache - (int)HTAB_SHARDS].lock);
}

void *heap_alloc(struct heap *h, int cache, size_t n)
{
	void *p = mallocx(n, MALLOCX_ARENA(h->arena) | cache_take(h, cache));

	cache_done(h, cache);
	return p;
}

void *heap_grow(struct heap *h, void *p, size_t n)
{
	int flags = MALLOCX_ARENA(h->arena) | MALLOCX_TCACHE_NONE;

	return p ? rallocx(p, n, flags) : mallocx(n, flags);
}

void heap_free(struct heap *h, int cache, void *p)
{
	if (p) {
		dallocx(p, cache_take(h, cache));
		cache_done(h, cache);
	}
}

/*
 * The arena's extent hooks are jemalloc's own, except that freed extents
 * are never merged.  jemalloc merges freed large extents at once, and then
 * will not carve a request out of a free extent over 64 times its size
 * (opt.lg_extent_max_active_fit): a store that freed 512 blobs of 1 MiB
 * side by side mapped fresh memory for the next 512, which faulted in,
 * while the freed 512 MiB sat unused; with jemalloc's decay turned off
 * that grew by ~128 MiB a cycle without end.  Unmerged, a freed blob's
 * extent is reused as it is by the next blob of its size class.  Unused
 * pages still decay back to the OS as jemalloc's defaults say.
 */
static extent_hooks_t unmerged_hooks;
static bool unmerged_made;
static pthread_once_t unmerged_once = PTHREAD_ONCE_INIT;

static void make_unmerged_hooks(void)
{
	extent_hooks_t *hooks;
	size_t sz = sizeof(hooks);

	if (mallctl("arena.0.extent_hooks", &hooks, &sz, NULL, 0) == 0) {
		unmerged_hooks = *hooks;
		unmerged_hooks.merge = NULL; /* jemalloc then never tries */
		unmerged_made = true;
	}
}

static void caches_destroy(struct heap *h)
{
	for (; h->ncaches > 0; h->ncaches--)
		(void)mallctl("tcache.destroy", NULL, NULL, &h->tcache[h->ncaches - 1], sizeof(unsigned));
}

int heap_open(struct heap *h)
{
	size_t sz = sizeof(unsigned);
	extent_hooks_t *hooks = &unmerged_hooks;

	(void)pthread_once(&unmerged_once, make_unmerged_hooks);
	if (mallctl("arenas.create", &h->arena, &sz, unmerged_made ? &hooks : NULL,
		    unmerged_made ? sizeof(hooks) : 0))
		return -ENOMEM;
	h->arena_made = true;
	for (; h->ncaches < HEAP_CACHES; h->ncaches++) {
		sz = sizeof(unsigned);
		if (mallctl("tcache.create", &h->tcache[h->ncaches], &sz, NULL, 0)) {
			caches_destroy(h);
			break;
		}
	}
	return 0;
}

void heap_close(struct heap *h)
{
	char name[64];

	caches_destroy(h); /* flushed before their arena goes */
	if (h->arena_made) {
		snprintf(name, sizeof(name), "arena.%u.destroy", h->arena);
		(void)mallctl(name, NULL, NULL, NULL, 0);
	}
}

uint64_t heap_bytes(struct heap *h)
{
	static const char *const kinds[] = { "small", "large" };
	uint64_t epoch = 1, total = 0;
	size_t sz = sizeof(epoch);

	/* Stats are snapshots refreshed by writing the epoch. */
	(void)mallctl("epoch", &epoch, &sz, &epoch, sz);
	for (unsigned k = 0; k < 2; k++) {
		char name[64];
		size_t value, vsz = sizeof(value);

		snprintf(name, sizeof(name), "stats.arenas.%u.%s.allocated", h->arena, kinds[k]);
		if (mallctl(name, &value, &vsz, NULL, 0) == 0)
			total += value;
	}
	return total;
}
#else
#include <malloc.h>

void *heap_alloc(struct heap *h, int cache, size_t n)
{
	void *p = malloc(n);

	(void)cache;
	if (p)
		atomic_fetch_add_explicit(&h->bytes, malloc_usable_size(p), memory_order_relaxed);
	return p;
}

void *heap_grow(struct heap *h, void *p, size_t n)
{
	size_t old = p ? malloc_usable_size(p) : 0;
	void *q = realloc(p, n);

	if (q) {
		atomic_fetch_sub_explicit(&h->bytes, old, memory_order_relaxed);
		atomic_fetch_add_explicit(&h->bytes, malloc_usable_size(q), memory_order_relaxed);
	}
	return q;
}

void heap_free(struct heap *h, int cache, void *p)
{
	(void)cache;
	if (p)
		atomic_fetch_sub_explicit(&h->bytes, malloc_usable_size(p), memory_order_relaxed);
	free(p);
}

int heap_open(struct heap *h)
{
	atomic_init(&h->bytes, 0);
	return 0;
}

void heap_close(struct heap *h)
{
	(void)h;
}

uint64_t heap_bytes(struct heap *h)
{
	return atomic_load_explicit(&h->bytes, memory_order_relaxed);
}
#endif
