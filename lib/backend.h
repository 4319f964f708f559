/*
 * backend.h: the contract between the dispatch layer (store.c) and the
 * backends (memory.c, later filesystem.c).
 *
 * store.c validates every argument and then calls a backend; a backend may
 * therefore assume non-NULL pointers, iovcnt >= 0 with valid bases, and a
 * total that did not overflow.  Backends own the blob bytes; the handle
 * table (htab.h), embedded in every store, owns handles and entries.
 *
 * A read is a table lookup; the backend's view() (NULL: e->data is it)
 * then says where the bytes are, which for the filesystem store may be a
 * private copy while the blob is still being written, and a file that
 * holds them too.
 */
#ifndef SCRATCH_BACKEND_H
#define SCRATCH_BACKEND_H

#include <stddef.h>
#include <sys/uio.h>

#include <string.h>

#include "heap.h"
#include "htab.h"
#include "scratch.h"

/* Internal statistics (the observed store's gauges start from them). */
struct scratch_store_stats {
	uint64_t handles;      /* live handles */
	uint64_t bytes;        /* their bytes */
	uint64_t heap_bytes;   /* bytes held by the backend's heap */
	uint64_t table_bytes;  /* slot arrays and entry pools */
};

/* Where a referenced entry's bytes can be read (scratch_backend.view). */
struct blob_view {
	const void *data;    /* valid while the reference is held */
	void *copy;          /* memory the reader must free(), or NULL */
	int fd;              /* a file holding the same bytes at fd_offset, open */
	uint64_t fd_offset;  /* while the reference is held; or fd -1 */
};

struct scratch_backend {
	const char *name;
	/* Stores the concatenation of iov (total bytes) as one new blob.
	 * 0 or -ENOMEM; *out is set on success only. */
	int (*put)(scratch_store *s, const struct iovec *iov, int iovcnt, size_t total,
		   scratch_handle *out);
	/* Fills in *v, which comes with data e->data, no copy and fd -1.
	 * 0 or -ENOMEM. */
	int (*view)(scratch_store *s, struct htab_entry *e, struct blob_view *v);
	/* scratch_store_close: must end in htab_close().  NULL: just that. */
	void (*close)(scratch_store *s);
	/* Opens a streaming writer whose w->store is s.  0 or -ENOMEM. */
	int (*writer_open)(scratch_store *s, scratch_writer **out);
	/* Appends; n on success, or fewer if memory ran out part-way,
	 * -ENOMEM if it ran out before taking any byte. */
	ssize_t (*writer_write)(scratch_writer *w, const void *p, size_t n);
	/* Publishes and frees w.  0 or -ENOMEM (w freed all the same). */
	int (*writer_commit)(scratch_writer *w, scratch_handle *out);
	void (*writer_abort)(scratch_writer *w);
	/* Writes out staged data; NULL if the backend stages nothing.  0. */
	int (*flush)(scratch_store *s);
	/* Bytes the backend holds in its heap (e.g. its jemalloc arena). */
	uint64_t (*heap_bytes)(scratch_store *s);
	/* An observed store's (observe.c), which has no table of its own and
	 * passes these on; NULL in a backend that keeps its blobs, whose
	 * reads, removes, batches and statistics store.c takes from its table.
	 * (The filesystem store has a remove of its own: htab_remove, then
	 * giving back segments left empty.) */
	int (*read)(scratch_store *s, scratch_handle h, scratch_reader **out);
	int (*remove)(scratch_store *s, scratch_handle h, uint64_t *size);
	int (*put_batch)(scratch_store *s, const struct iovec *blobs, size_t n, size_t total,
			 scratch_handle *out);
	int (*stats)(scratch_store *s, struct scratch_store_stats *out);
	/* The table's callbacks (htab_ops) for this backend. */
	struct htab_ops table_ops;
	/* scratch_put keeps a blob of up to HTAB_SMALL_MAX bytes in the table
	 * itself (htab_insert_small) without calling put(), which still gets
	 * such blobs from scratch_putv. */
	bool small_in_table;
};

struct scratch_store {
	const struct scratch_backend *backend;
	struct htab table;
};

struct scratch_writer {
	scratch_store *store;
};

/* store.c: the public calls past their checks, for observe.c to pass on. */
int store_read(scratch_store *s, scratch_handle h, scratch_reader **out);
int store_remove(scratch_store *s, scratch_handle h, uint64_t *size);
int store_put_batch(scratch_store *s, const struct iovec *blobs, size_t n, size_t total,
		    scratch_handle *out);
int scratch_store_stats(scratch_store *s, struct scratch_store_stats *out);

/* Copies the concatenation of iov[0..iovcnt) to dst. */
static inline void copy_iov(unsigned char *dst, const struct iovec *iov, int iovcnt)
{
	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len)
			memcpy(dst, iov[i].iov_base, iov[i].iov_len);
		dst += iov[i].iov_len;
	}
}

/* memory.c: copies n >= 16 bytes with streaming stores (non-temporal, on
 * x86-64; elsewhere memcpy).  Exposed for its test. */
void copy_stream(unsigned char *dst, const unsigned char *src, size_t n);

/* reader.c */
/* scratch_read past its checks: a reader of h, holding a reference on its
 * entry, or a copy of it if it is small.  0, SCRATCH_ENOTFOUND, -ENOMEM. */
int scratch_reader_open(scratch_store *s, scratch_handle h, scratch_reader **out);

/* Backend constructors. */
int scratch_memory_backend_new(scratch_store **out);
int scratch_filesystem_backend_new(const scratch_logger *logger, const char *path,
				   scratch_store **out);

#endif
