/*
 * store.c: the public store API.  This is the one place that validates
 * arguments; past it, backends (backend.h) may trust what they are given.
 *
 * The data's path is short on purpose: a put is checks -> backend put
 * (which inserts into the table); a read is checks -> table lookup ->
 * reader; a remove is checks -> table remove (the backend frees the bytes
 * in its release callback when the last reference goes).  An observed
 * store (observe.c) has no table: its backend's read, remove, put_batch
 * and stats hooks take those calls, and pass them on to the store it
 * wraps through the store_* functions below.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backend.h"

const char *scratch_strerror(int err)
{
	if (err == SCRATCH_ENOTFOUND)
		return "handle not found";
	if (err == 0)
		return "success";
	if (err < 0 && err > -4096)
		return strerror(-err);
	return "unknown error";
}

int scratch_memory_new(scratch_store **out)
{
	if (!out)
		return -EINVAL;
	*out = NULL;
	return scratch_memory_backend_new(out);
}

int scratch_filesystem_new(const scratch_logger *logger, const char *path, scratch_store **out)
{
	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!path || !*path)
		return -EINVAL;
	return scratch_filesystem_backend_new(logger, path, out);
}

int scratch_open(const scratch_logger *logger, const char *path, scratch_store **out)
{
	struct stat st;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!path || !*path)
		return scratch_memory_new(out);
	if (stat(path, &st))
		return -errno;
	if (!S_ISDIR(st.st_mode))
		return -ENOTDIR;
	return scratch_filesystem_new(logger, path, out);
}

void scratch_store_close(scratch_store *s)
{
	if (!s)
		return;
	if (s->backend->close)
		s->backend->close(s);
	else
		htab_close(&s->table);
}

int scratch_store_flush(scratch_store *s)
{
	if (!s)
		return -EINVAL;
	return s->backend->flush ? s->backend->flush(s) : 0;
}

/* Checks an iovec array and sums its lengths into *total. */
static int iov_total(const struct iovec *iov, size_t n, size_t *total)
{
	size_t sum = 0;

	if (!iov && n)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (!iov[i].iov_base && iov[i].iov_len)
			return -EINVAL;
		if (__builtin_add_overflow(sum, iov[i].iov_len, &sum))
			return -EINVAL;
	}
	if (sum > SSIZE_MAX)
		return -EINVAL;
	*total = sum;
	return 0;
}

int scratch_put(scratch_store *s, const void *p, size_t n, scratch_handle *out)
{
	struct iovec iov = { .iov_base = (void *)p, .iov_len = n };

	if (!out)
		return -EINVAL;
	*out = SCRATCH_INVALID_HANDLE;
	if (!s || (!p && n) || n > SSIZE_MAX)
		return -EINVAL;
	if (n <= HTAB_SMALL_MAX && s->backend->small_in_table)
		return htab_insert_small(&s->table, p, n, out);
	return s->backend->put(s, &iov, 1, n, out);
}

int scratch_putv(scratch_store *s, const struct iovec *iov, int iovcnt, scratch_handle *out)
{
	size_t total;
	int err;

	if (!out)
		return -EINVAL;
	*out = SCRATCH_INVALID_HANDLE;
	if (!s || iovcnt < 0)
		return -EINVAL;
	err = iov_total(iov, (size_t)iovcnt, &total);
	if (err)
		return err;
	return s->backend->put(s, iov, iovcnt, total, out);
}

int store_put_batch(scratch_store *s, const struct iovec *blobs, size_t n, size_t total,
		    scratch_handle *out)
{
	if (s->backend->put_batch)
		return s->backend->put_batch(s, blobs, n, total, out);
	for (size_t i = 0; i < n; i++) {
		int err = s->backend->put(s, &blobs[i], 1, blobs[i].iov_len, &out[i]);

		if (err) {
			/* All or none: take back what went in. */
			while (i-- > 0) {
				(void)htab_remove(&s->table, out[i], NULL);
				out[i] = SCRATCH_INVALID_HANDLE;
			}
			return err;
		}
	}
	return 0;
}

int scratch_put_batch(scratch_store *s, const struct iovec *blobs, size_t n, scratch_handle *out)
{
	size_t total;
	int err;

	if (!out && n)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		out[i] = SCRATCH_INVALID_HANDLE;
	if (!s)
		return -EINVAL;
	err = iov_total(blobs, n, &total);
	if (err)
		return err;
	return store_put_batch(s, blobs, n, total, out);
}

int store_read(scratch_store *s, scratch_handle h, scratch_reader **out)
{
	if (__builtin_expect(s->backend->read != NULL, 0))
		return s->backend->read(s, h, out);
	return scratch_reader_open(s, h, out);
}

int scratch_read(scratch_store *s, scratch_handle h, scratch_reader **out)
{
	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!s)
		return -EINVAL;
	return store_read(s, h, out);
}

int store_remove(scratch_store *s, scratch_handle h, uint64_t *size)
{
	if (__builtin_expect(s->backend->remove != NULL, 0))
		return s->backend->remove(s, h, size);
	return htab_remove(&s->table, h, size);
}

int scratch_remove(scratch_store *s, scratch_handle h)
{
	if (!s)
		return -EINVAL;
	return store_remove(s, h, NULL);
}

int scratch_writer_open(scratch_store *s, scratch_writer **out)
{
	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!s)
		return -EINVAL;
	return s->backend->writer_open(s, out);
}

ssize_t scratch_writer_write(scratch_writer *w, const void *p, size_t n)
{
	if (!w || (!p && n) || n > SSIZE_MAX)
		return -EINVAL;
	if (n == 0)
		return 0;
	return w->store->backend->writer_write(w, p, n);
}

int scratch_writer_commit(scratch_writer *w, scratch_handle *out)
{
	if (!w) {
		if (out)
			*out = SCRATCH_INVALID_HANDLE;
		return -EINVAL;
	}
	if (!out) {
		w->store->backend->writer_abort(w);
		return -EINVAL;
	}
	*out = SCRATCH_INVALID_HANDLE;
	return w->store->backend->writer_commit(w, out);
}

void scratch_writer_abort(scratch_writer *w)
{
	if (w)
		w->store->backend->writer_abort(w);
}

int scratch_store_stats(scratch_store *s, struct scratch_store_stats *out)
{
	struct htab_stats t;

	if (!s || !out)
		return -EINVAL;
	if (s->backend->stats)
		return s->backend->stats(s, out);
	htab_stats(&s->table, &t);
	out->handles = t.live;
	out->bytes = t.bytes;
	out->table_bytes = t.slot_bytes + t.entry_bytes;
	out->heap_bytes = s->backend->heap_bytes(s);
	return 0;
}
