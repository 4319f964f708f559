/*
 * reader.c: seekable views of a blob.
 *
 * A reader holds one reference on the blob's table entry, so neither
 * scratch_remove nor scratch_store_close can free the bytes under it: they
 * go when the last reference does, on whichever thread drops it.  A small
 * blob (HTAB_SMALL_MAX bytes or less, kept in its entry) is copied into the
 * reader instead, which then holds no reference at all.  The bytes are
 * immutable, so reading needs no lock; a reader belongs to one thread at a
 * time, so its offset needs none either.
 *
 * Each thread keeps the last reader it closed for the next it opens (freed
 * when the thread exits): a pipeline opens and closes readers by the
 * million, and malloc and free were a twentieth of a small read.
 *
 * A large read of bytes that are also in an open file (a filesystem
 * store's segment, struct blob_view) is a pread rather than a copy out of
 * the mapping: the kernel copies through its direct map of memory, on
 * large pages, where our mapping of the file has a 4 KiB page every 4 KiB.
 * scratchbench read 1 MiB, filesystem store, 1 thread, five alternating
 * rounds: 0.66-0.85x memcpy from the mapping, 0.92-1.01x with pread (2
 * threads 0.81-0.87x, 0.95-0.96x; 256 KiB reads even either way).  (A
 * forked child shares the descriptor numbers: one that closes them and
 * opens other files in their place must not go on reading its parent's
 * readers.)
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"

struct scratch_reader {
	struct htab *table;
	struct htab_entry *entry;
	const unsigned char *data;
	void *copy; /* the bytes, when they could not be shared */
	uint64_t size;
	uint64_t offset;
	int fd;             /* a big blob's: the file that also holds it, or -1 */
	uint64_t fd_offset; /* where */
	unsigned char small[HTAB_SMALL_MAX];
};

static __thread scratch_reader *spare __attribute__((tls_model("initial-exec")));
static __thread bool spare_keyed __attribute__((tls_model("initial-exec")));
static pthread_key_t spare_key;
static pthread_once_t spare_once = PTHREAD_ONCE_INIT;
static bool spare_key_made;

/* At thread exit (the key's value only says there is a spare to free). */
static void spare_free(void *unused)
{
	(void)unused;
	free(spare);
	spare = NULL;
	spare_keyed = false;
}

static void spare_make_key(void)
{
	spare_key_made = pthread_key_create(&spare_key, spare_free) == 0;
}

static scratch_reader *reader_alloc(void)
{
	scratch_reader *r = spare;

	if (!r)
		return malloc(sizeof(*r));
	spare = NULL;
	return r;
}

/* reader_free when the thread has a spare already, or no key for one yet. */
static __attribute__((noinline)) void reader_free_slow(scratch_reader *r)
{
	if (!spare && !spare_keyed) {
		(void)pthread_once(&spare_once, spare_make_key);
		spare_keyed = spare_key_made && pthread_setspecific(spare_key, &spare_key) == 0;
	}
	if (!spare && spare_keyed) {
		spare = r;
		return;
	}
	free(r);
}

/* Keeps r as the thread's spare if it has none, else frees it. */
static inline void reader_free(scratch_reader *r)
{
	if (__builtin_expect(spare_keyed && !spare, 1))
		spare = r;
	else
		reader_free_slow(r);
}

/* The rest of opening r on a big entry e, referenced. */
static __attribute__((noinline)) int reader_open_big(scratch_store *s, scratch_reader *r,
						     struct htab_entry *e)
{
	struct blob_view v = { .data = e->data, .fd = -1 };
	int err;

	if (s->backend->view && (err = s->backend->view(s, e, &v))) {
		htab_put(&s->table, e);
		return err;
	}
	r->table = &s->table;
	r->size = e->size;
	r->data = v.data;
	r->copy = v.copy;
	r->fd = v.fd;
	r->fd_offset = v.fd_offset;
	return 0;
}

int scratch_reader_open(scratch_store *s, scratch_handle h, scratch_reader **out)
{
	scratch_reader *r = reader_alloc();
	struct htab_entry *e;
	size_t size = 0;
	int err;

	if (!r)
		return -ENOMEM;
	/* A small blob is copied straight into the reader. */
	err = htab_lookup(&s->table, h, &e, r->small, &size);
	r->entry = e;
	r->data = r->small;
	r->size = size;
	r->copy = NULL;
	r->offset = 0;
	if (!err && e)
		err = reader_open_big(s, r, e);
	if (err) {
		reader_free(r);
		return err;
	}
	*out = r;
	return 0;
}

/*
 * A small blob was just stored into the reader 8 bytes at a time
 * (htab_lookup).  Loaded back 8 bytes at a time, each load is forwarded
 * from its store; memcpy's wider loads are not, and wait until the store
 * buffer drains, misses of older stores included.  scratchbench 64 B mixed
 * with 10M live: 7.5-7.7M cycles/s with memcpy, 7.9-8.2M with this.
 */
static inline void copy_word(unsigned char *dst, const unsigned char *src, unsigned i)
{
	uint64_t w;

	memcpy(&w, src + 8 * i, 8);
	memcpy(dst + 8 * i, &w, 8);
}

/* n <= HTAB_SMALL_MAX: straight-line code. */
static void copy_words(unsigned char *dst, const unsigned char *src, size_t n)
{
	switch (n / 8) {
	case 8: copy_word(dst, src, 7); /* fall through */
	case 7: copy_word(dst, src, 6); /* fall through */
	case 6: copy_word(dst, src, 5); /* fall through */
	case 5: copy_word(dst, src, 4); /* fall through */
	case 4: copy_word(dst, src, 3); /* fall through */
	case 3: copy_word(dst, src, 2); /* fall through */
	case 2: copy_word(dst, src, 1); /* fall through */
	case 1: copy_word(dst, src, 0); /* fall through */
	default: break;
	}
	for (size_t i = n & ~(size_t)7; i < n; i++)
		dst[i] = src[i];
}

#define PREAD_MIN (256u << 10) /* a system call is under 1% of a copy this long */

/* scratch_reader_read's copy of n <= what is left, but for a small blob
 * read from a whole word: out of line, so that one needs no frame. */
static __attribute__((noinline)) ssize_t read_copy(scratch_reader *r, void *buf, size_t n)
{
	if (n > SSIZE_MAX)
		n = SSIZE_MAX;
	/* A pread that fails or comes up short (it should not) is redone as a
	 * copy, which overwrites whatever it got. */
	if (n >= PREAD_MIN && r->entry && r->fd >= 0 &&
	    pread(r->fd, buf, n, (off_t)(r->fd_offset + r->offset)) == (ssize_t)n) {
		r->offset += n;
		return (ssize_t)n;
	}
	memcpy(buf, r->data + r->offset, n);
	r->offset += n;
	return (ssize_t)n;
}

ssize_t scratch_reader_read(scratch_reader *r, void *buf, size_t n)
{
	if (!r || (!buf && n))
		return -EINVAL;
	if (n == 0 || r->offset >= r->size)
		return 0;
	uint64_t left = r->size - r->offset;

	if (n > left)
		n = (size_t)left;
	if (r->data != r->small || r->offset % 8)
		return read_copy(r, buf, n);
	copy_words(buf, r->small + r->offset, n);
	r->offset += n;
	return (ssize_t)n;
}

int64_t scratch_reader_seek(scratch_reader *r, int64_t offset, int whence)
{
	int64_t base;

	if (!r)
		return -EINVAL;
	switch (whence) {
	case SEEK_SET:
		base = 0;
		break;
	case SEEK_CUR:
		base = (int64_t)r->offset;
		break;
	case SEEK_END:
		base = (int64_t)r->size;
		break;
	default:
		return -EINVAL;
	}
	int64_t to;

	if (__builtin_add_overflow(base, offset, &to) || to < 0)
		return -EINVAL;
	r->offset = (uint64_t)to;
	return to;
}

uint64_t scratch_reader_size(const scratch_reader *r)
{
	return r ? r->size : 0;
}

const void *scratch_reader_data(const scratch_reader *r)
{
	static const unsigned char empty[1];

	if (!r)
		return NULL;
	return r->data ? (const void *)r->data : (const void *)empty;
}

int scratch_reader_close(scratch_reader *r)
{
	if (!r)
		return 0;
	if (r->entry) {
		htab_put(r->table, r->entry);
		free(r->copy);
	}
	reader_free(r);
	return 0;
}
