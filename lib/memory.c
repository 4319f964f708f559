/*
 * memory.c: the memory backend.
 *
 * Blob bytes come from a jemalloc arena created for the store alone
 * (arenas.create), so the store's memory is kept apart from the program's
 * heap, can be measured on its own (stats.arenas.<i>.*) and goes back in
 * one arena.<i>.destroy when the store's last blob is released.
 *
 * jemalloc's automatic thread caches would mix our blocks with the host's,
 * so every call names its cache explicitly:
 * - each table shard owns a private tcache (tcache.create).  A tcache may be
 *   used by one thread at a time; the shard's lock gives exactly that, and
 *   both the small-blob put (between htab_reserve and htab_publish) and the
 *   release callback run under it.
 * - larger blobs (over SMALL_MAX) are allocated and copied before the shard
 *   is locked, with no tcache, so a long copy never holds a shard.
 *
 * Built with -Dallocator=malloc (the sanitizer builds), the same code runs
 * on plain malloc, which ASan and valgrind can see into.
 */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"

#if SCRATCH_WITH_JEMALLOC
#include <jemalloc/jemalloc.h>
#include <stdio.h>
#endif

#define SMALL_MAX (16u * 1024)

struct memory_store {
	scratch_store base;
	unsigned arena;
	unsigned tcache[HTAB_SHARDS];
	unsigned ntcaches;
	bool arena_made;
};

struct memory_writer {
	scratch_writer base;
	unsigned char *buf;
	size_t len, cap;
};

static inline struct memory_store *to_memory(scratch_store *s)
{
	return (struct memory_store *)s;
}

#if SCRATCH_WITH_JEMALLOC
/* tcache < 0: none (any thread, any time); else the shard's (lock held). */
static void *blob_alloc(struct memory_store *m, int tcache, size_t n)
{
	int cache = tcache < 0 ? MALLOCX_TCACHE_NONE : MALLOCX_TCACHE(m->tcache[tcache]);

	return mallocx(n, MALLOCX_ARENA(m->arena) | cache);
}

static void *blob_grow(struct memory_store *m, void *p, size_t n)
{
	int flags = MALLOCX_ARENA(m->arena) | MALLOCX_TCACHE_NONE;

	return p ? rallocx(p, n, flags) : mallocx(n, flags);
}

static void blob_free(struct memory_store *m, int tcache, void *p)
{
	if (p)
		dallocx(p, tcache < 0 ? MALLOCX_TCACHE_NONE : MALLOCX_TCACHE(m->tcache[tcache]));
}

static int heap_open(struct memory_store *m)
{
	size_t sz = sizeof(unsigned);

	if (mallctl("arenas.create", &m->arena, &sz, NULL, 0))
		return -ENOMEM;
	m->arena_made = true;
	for (; m->ntcaches < HTAB_SHARDS; m->ntcaches++) {
		sz = sizeof(unsigned);
		if (mallctl("tcache.create", &m->tcache[m->ntcaches], &sz, NULL, 0))
			return -ENOMEM;
	}
	return 0;
}

static void heap_close(struct memory_store *m)
{
	char name[64];

	/* The caches must be flushed before their arena goes. */
	for (unsigned i = 0; i < m->ntcaches; i++)
		(void)mallctl("tcache.destroy", NULL, NULL, &m->tcache[i], sizeof(unsigned));
	if (m->arena_made) {
		snprintf(name, sizeof(name), "arena.%u.destroy", m->arena);
		(void)mallctl(name, NULL, NULL, NULL, 0);
	}
}

static uint64_t memory_heap_bytes(scratch_store *s)
{
	struct memory_store *m = to_memory(s);
	uint64_t epoch = 1, total = 0;
	size_t sz = sizeof(epoch);
	static const char *const kinds[] = { "small", "large" };

	/* Stats are snapshots refreshed by writing the epoch. */
	(void)mallctl("epoch", &epoch, &sz, &epoch, sz);
	for (unsigned k = 0; k < 2; k++) {
		char name[64];
		size_t value, vsz = sizeof(value);

		snprintf(name, sizeof(name), "stats.arenas.%u.%s.allocated", m->arena, kinds[k]);
		if (mallctl(name, &value, &vsz, NULL, 0) == 0)
			total += value;
	}
	return total;
}
#else
static void *blob_alloc(struct memory_store *m, int tcache, size_t n)
{
	(void)m, (void)tcache;
	return malloc(n);
}

static void *blob_grow(struct memory_store *m, void *p, size_t n)
{
	(void)m;
	return realloc(p, n);
}

static void blob_free(struct memory_store *m, int tcache, void *p)
{
	(void)m, (void)tcache;
	free(p);
}

static int heap_open(struct memory_store *m)
{
	(void)m;
	return 0;
}

static void heap_close(struct memory_store *m)
{
	(void)m;
}

static uint64_t memory_heap_bytes(scratch_store *s)
{
	struct htab_stats t;

	htab_stats(&s->table, &t);
	return t.bytes;
}
#endif

static void copy_iov(unsigned char *dst, const struct iovec *iov, int iovcnt)
{
	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len)
			memcpy(dst, iov[i].iov_base, iov[i].iov_len);
		dst += iov[i].iov_len;
	}
}

static int memory_put(scratch_store *s, const struct iovec *iov, int iovcnt, size_t total,
		      scratch_handle *out)
{
	struct memory_store *m = to_memory(s);
	unsigned char *data = NULL;
	struct htab_entry *e;
	int err;

	if (total > SMALL_MAX) {
		data = blob_alloc(m, -1, total);
		if (!data)
			return -ENOMEM;
		copy_iov(data, iov, iovcnt);
	}
	err = htab_reserve(&s->table, &e);
	if (err) {
		blob_free(m, -1, data);
		return err;
	}
	if (total && !data) {
		data = blob_alloc(m, (int)htab_shard_of(e->handle), total);
		if (!data) {
			htab_cancel(&s->table, e);
			return -ENOMEM;
		}
		copy_iov(data, iov, iovcnt);
	}
	e->data = data;
	e->size = total;
	*out = e->handle;
	htab_publish(&s->table, e);
	return 0;
}

static void memory_release(void *ctx, struct htab_entry *e, unsigned shard)
{
	blob_free(ctx, (int)shard, (void *)e->data);
}

static void memory_destroy(void *ctx)
{
	struct memory_store *m = ctx;

	htab_fini(&m->base.table);
	heap_close(m);
	free(m);
}

static int memory_writer_open(scratch_store *s, scratch_writer **out)
{
	struct memory_writer *w = calloc(1, sizeof(*w));

	if (!w)
		return -ENOMEM;
	w->base.store = s;
	*out = &w->base;
	return 0;
}

static ssize_t memory_writer_write(scratch_writer *base, const void *p, size_t n)
{
	struct memory_writer *w = (struct memory_writer *)base;
	struct memory_store *m = to_memory(base->store);
	size_t need;

	if (__builtin_add_overflow(w->len, n, &need) || need > SSIZE_MAX)
		return -ENOMEM;
	if (need > w->cap) {
		size_t cap = w->cap ? w->cap : 4096;

		while (cap < need)
			cap = cap > SSIZE_MAX / 2 ? need : cap * 2;
		unsigned char *buf = blob_grow(m, w->buf, cap);

		if (!buf)
			return -ENOMEM;
		w->buf = buf;
		w->cap = cap;
	}
	memcpy(w->buf + w->len, p, n);
	w->len = need;
	return (ssize_t)n;
}

static void memory_writer_abort(scratch_writer *base)
{
	struct memory_writer *w = (struct memory_writer *)base;

	blob_free(to_memory(base->store), -1, w->buf);
	free(w);
}

static int memory_writer_commit(scratch_writer *base, scratch_handle *out)
{
	struct memory_writer *w = (struct memory_writer *)base;
	scratch_store *s = base->store;
	struct htab_entry *e;
	int err = htab_reserve(&s->table, &e);

	if (err) {
		memory_writer_abort(base);
		return err;
	}
	if (w->len == 0) {
		blob_free(to_memory(s), -1, w->buf);
		w->buf = NULL;
	}
	e->data = w->buf;
	e->size = w->len;
	*out = e->handle;
	htab_publish(&s->table, e);
	free(w);
	return 0;
}

static const struct scratch_backend memory_backend = {
	.name = "memory",
	.put = memory_put,
	.writer_open = memory_writer_open,
	.writer_write = memory_writer_write,
	.writer_commit = memory_writer_commit,
	.writer_abort = memory_writer_abort,
	.heap_bytes = memory_heap_bytes,
	.table_ops = { .release = memory_release, .destroy = memory_destroy },
};

int scratch_memory_backend_new(scratch_store **out)
{
	struct memory_store *m = aligned_alloc(64, sizeof(*m));
	int err;

	if (!m)
		return -ENOMEM;
	memset(m, 0, sizeof(*m));
	m->base.backend = &memory_backend;
	err = heap_open(m);
	if (!err)
		err = htab_init(&m->base.table, &memory_backend.table_ops, m);
	if (err) {
		heap_close(m);
		free(m);
		return err;
	}
	*out = &m->base;
	return 0;
}
