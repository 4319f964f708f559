/*
 * memory.c: the memory backend.
 *
 * A blob of HTAB_SMALL_MAX (64) bytes or less, however it was put (put,
 * putv, a writer), is kept in a small table entry: no allocation at all,
 * and readers copy it without touching a reference count (htab_lookup).
 * Other blob bytes live in the store's heap (heap.c: a private jemalloc
 * arena with private tcaches):
 * - a blob up to HEAP_CACHE_MAX is allocated and copied between
 *   htab_reserve and htab_publish, under its shard's lock, with the cache
 *   heap_cache() names for its shard and size; the release callback frees
 *   it into the same cache;
 * - larger blobs are allocated and copied before the shard is locked, with
 *   no cache, so a long copy never holds a shard;
 * - once the store's blobs of STREAM_MIN or more hold STREAM_LIVE_MIN
 *   bytes, the parts of STREAM_MIN or more of a new such blob (the whole
 *   blob, for scratch_put) are copied with streaming stores (copy_stream).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "backend.h"

#define STREAM_MIN (1u << 20)
#define STREAM_LIVE_MIN (64ull << 20)

struct memory_store {
	scratch_store base;
	struct heap heap;
	_Atomic uint64_t big_bytes; /* held by blobs of STREAM_MIN or more */
};

struct memory_writer {
	scratch_writer base;
	struct heap_buf buf;
};

static inline struct memory_store *to_memory(scratch_store *s)
{
	return (struct memory_store *)s;
}

static uint64_t memory_heap_bytes(scratch_store *s)
{
	return heap_bytes(&to_memory(s)->heap);
}

/*
 * Copies with streaming stores: each line goes to memory without first
 * being read into the cache, as an ordinary store's does.  A blob of
 * STREAM_MIN or more does not fit a core's cache, and once the store holds
 * more such bytes than the last-level cache can (STREAM_LIVE_MIN), a new
 * one is mostly gone from it before it is read back, so the read that an
 * ordinary copy makes of every destination line is wasted memory traffic.
 * scratchbench put 1 MiB, 1 thread: 5.8-6.7k puts/s with memcpy, 12.3-
 * 13.8k with this (the map baseline: 5.8-7.3k); put+read+remove with 1 GiB
 * live: unchanged.  With 16 MiB live, the blobs stay in the last-level
 * cache and this was 25% slower: hence STREAM_LIVE_MIN.
 */
void copy_stream(unsigned char *dst, const unsigned char *src, size_t n)
{
#if defined(__SSE2__)
	size_t head = (16 - ((uintptr_t)dst & 15)) & 15;

	memcpy(dst, src, head); /* n >= 16: head < 16 fits */
	dst += head;
	src += head;
	n -= head;
	for (; n >= 64; n -= 64, dst += 64, src += 64) {
		__m128i a = _mm_loadu_si128((const __m128i *)src);
		__m128i b = _mm_loadu_si128((const __m128i *)(src + 16));
		__m128i c = _mm_loadu_si128((const __m128i *)(src + 32));
		__m128i d = _mm_loadu_si128((const __m128i *)(src + 48));

		_mm_stream_si128((__m128i *)dst, a);
		_mm_stream_si128((__m128i *)(dst + 16), b);
		_mm_stream_si128((__m128i *)(dst + 32), c);
		_mm_stream_si128((__m128i *)(dst + 48), d);
	}
	memcpy(dst, src, n);
	_mm_sfence(); /* streaming stores are weakly ordered: publish after */
#else
	memcpy(dst, src, n);
#endif
}

/* Copies a large blob's bytes: its long parts streamed once the store holds
 * STREAM_LIVE_MIN of such blobs (copy_stream says why). */
static void copy_big(struct memory_store *m, unsigned char *dst, const struct iovec *iov,
		     int iovcnt, size_t total)
{
	bool stream = total >= STREAM_MIN &&
		      atomic_load_explicit(&m->big_bytes, memory_order_relaxed) >= STREAM_LIVE_MIN;

	for (int i = 0; i < iovcnt; i++) {
		if (stream && iov[i].iov_len >= STREAM_MIN)
			copy_stream(dst, iov[i].iov_base, iov[i].iov_len);
		else if (iov[i].iov_len)
			memcpy(dst, iov[i].iov_base, iov[i].iov_len);
		dst += iov[i].iov_len;
	}
}

/* Counts a published blob's bytes into big_bytes (in), or out. */
static void count_big(struct memory_store *m, uint64_t size, bool in)
{
	if (size < STREAM_MIN)
		return;
	if (in)
		atomic_fetch_add_explicit(&m->big_bytes, size, memory_order_relaxed);
	else
		atomic_fetch_sub_explicit(&m->big_bytes, size, memory_order_relaxed);
}

/* A blob above HTAB_SMALL_MAX: its bytes go to the heap.  Out of line,
 * so that small puts do not carry its frame. */
static __attribute__((noinline)) int put_big(scratch_store *s, const struct iovec *iov, int iovcnt,
					     size_t total, scratch_handle *out)
{
	struct memory_store *m = to_memory(s);
	unsigned char *data = NULL;
	struct htab_entry *e;
	int err;

	if (total > HEAP_CACHE_MAX) {
		data = heap_alloc(&m->heap, HEAP_NO_CACHE, total);
		if (!data)
			return -ENOMEM;
		copy_big(m, data, iov, iovcnt, total);
	}
	err = htab_reserve(&s->table, &e);
	if (err) {
		heap_free(&m->heap, HEAP_NO_CACHE, data);
		return err;
	}
	if (!data) {
		data = heap_alloc(&m->heap, heap_cache(htab_shard_of(e->handle), total), total);
		if (!data) {
			htab_cancel(&s->table, e);
			return -ENOMEM;
		}
		copy_iov(data, iov, iovcnt);
	}
	e->data = data;
	e->size = total;
	count_big(m, total, true);
	*out = e->handle;
	htab_publish(&s->table, e);
	return 0;
}

/* A small blob in pieces: gathered first. */
static __attribute__((noinline)) int put_small_gathered(scratch_store *s, const struct iovec *iov,
							int iovcnt, size_t total, scratch_handle *out)
{
	unsigned char small[HTAB_SMALL_MAX];

	copy_iov(small, iov, iovcnt);
	return htab_insert_small(&s->table, small, total, out);
}

static int memory_put(scratch_store *s, const struct iovec *iov, int iovcnt, size_t total,
		      scratch_handle *out)
{
	if (total > HTAB_SMALL_MAX)
		return put_big(s, iov, iovcnt, total, out);
	if (iovcnt == 1)
		return htab_insert_small(&s->table, iov[0].iov_base, total, out);
	return put_small_gathered(s, iov, iovcnt, total, out);
}

static void memory_release(void *ctx, struct htab_entry *e, unsigned shard)
{
	struct memory_store *m = ctx;

	count_big(m, e->size, false);
	heap_free(&m->heap, heap_cache(shard, e->size), (void *)e->data);
}

static void memory_destroy(void *ctx)
{
	struct memory_store *m = ctx;

	htab_fini(&m->base.table);
	heap_close(&m->heap);
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

	return heap_buf_append(&to_memory(base->store)->heap, &w->buf, p, n);
}

static void memory_writer_abort(scratch_writer *base)
{
	struct memory_writer *w = (struct memory_writer *)base;

	heap_free(&to_memory(base->store)->heap, HEAP_NO_CACHE, w->buf.data);
	free(w);
}

static int memory_writer_commit(scratch_writer *base, scratch_handle *out)
{
	struct memory_writer *w = (struct memory_writer *)base;
	scratch_store *s = base->store;
	struct htab_entry *e;
	int err;

	if (w->buf.len <= HTAB_SMALL_MAX) {
		err = htab_insert_small(&s->table, w->buf.data, w->buf.len, out);
		memory_writer_abort(base);
		return err;
	}
	err = htab_reserve(&s->table, &e);
	if (err) {
		memory_writer_abort(base);
		return err;
	}
	e->data = w->buf.data;
	e->size = w->buf.len;
	count_big(to_memory(s), e->size, true);
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
	.small_in_table = true,
};

int scratch_memory_backend_new(scratch_store **out)
{
	struct memory_store *m = aligned_alloc(64, sizeof(*m));
	int err;

	if (!m)
		return -ENOMEM;
	memset(m, 0, sizeof(*m));
	m->base.backend = &memory_backend;
	err = heap_open(&m->heap);
	if (!err)
		err = htab_init(&m->base.table, &memory_backend.table_ops, m);
	if (err) {
		heap_close(&m->heap);
		free(m);
		return err;
	}
	*out = &m->base;
	return 0;
}
