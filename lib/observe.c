/*
 * observe.c: the observed store, which wraps another store and counts what
 * goes through it into a metrics object (metrics.c).
 *
 * Every call is timed around the inner store's own and passed on
 * unchanged, results included.  The gauges move by what each put adds and
 * each remove takes away (htab_remove reports the blob's size), and by the
 * inner store's whole content when the wrapper starts and closes, so they
 * need no map of handles to sizes as Loki's observedStore keeps.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "metrics.h"

struct observed_store {
	scratch_store base; /* its table is never used: every call goes to inner */
	scratch_store *inner;
	scratch_metrics *metrics;
	pid_t pid; /* the process that made it (fork: see count) */
};

struct observed_writer {
	scratch_writer base;
	scratch_writer *inner;
	uint64_t ticks; /* spent in the inner writer's calls */
	uint64_t bytes; /* that it took */
};

static struct observed_store *to_observed(scratch_store *s)
{
	return (struct observed_store *)s;
}

/* Counts n operations of o that took `ticks`, and for a success moves the
 * gauges by handles and bytes, unless this is a forked child's copy of the
 * store: the blobs it holds are its parent's, counted there. */
static void count(struct observed_store *o, enum scratch_op op, int err, uint64_t ticks,
		  uint64_t n, int64_t handles, int64_t bytes)
{
	bool gauges = !err && o->pid == metrics_process;

	metrics_count(o->metrics, op, err, ticks, n, gauges ? handles : 0, gauges ? bytes : 0);
}

static int observed_put(scratch_store *s, const struct iovec *iov, int iovcnt, size_t total,
			scratch_handle *out)
{
	struct observed_store *o = to_observed(s);
	uint64_t t0 = metrics_ticks();
	int err = o->inner->backend->put(o->inner, iov, iovcnt, total, out);

	count(o, SCRATCH_OP_PUT, err, metrics_ticks() - t0, 1, 1, (int64_t)total);
	return err;
}

static int observed_put_batch(scratch_store *s, const struct iovec *blobs, size_t n, size_t total,
			      scratch_handle *out)
{
	struct observed_store *o = to_observed(s);
	uint64_t t0 = metrics_ticks();
	int err = store_put_batch(o->inner, blobs, n, total, out);

	/* Each blob is a put, and takes its share of the time. */
	count(o, SCRATCH_OP_PUT, err, metrics_ticks() - t0, n, (int64_t)n, (int64_t)total);
	return err;
}

static int observed_read(scratch_store *s, scratch_handle h, scratch_reader **out)
{
	struct observed_store *o = to_observed(s);
	uint64_t t0 = metrics_ticks();
	int err = store_read(o->inner, h, out);

	count(o, SCRATCH_OP_READ, err, metrics_ticks() - t0, 1, 0, 0);
	return err;
}

static int observed_remove(scratch_store *s, scratch_handle h, uint64_t *size)
{
	struct observed_store *o = to_observed(s);
	uint64_t t0 = metrics_ticks(), n = 0;
	int err = store_remove(o->inner, h, &n);

	count(o, SCRATCH_OP_REMOVE, err, metrics_ticks() - t0, 1, -1, -(int64_t)n);
	if (size)
		*size = n;
	return err;
}

static int observed_writer_open(scratch_store *s, scratch_writer **out)
{
	struct observed_store *o = to_observed(s);
	struct observed_writer *w = calloc(1, sizeof(*w));
	int err;

	if (!w)
		return -ENOMEM;
	err = o->inner->backend->writer_open(o->inner, &w->inner);
	if (err) {
		free(w);
		return err;
	}
	w->base.store = s;
	*out = &w->base;
	return 0;
}

static ssize_t observed_writer_write(scratch_writer *base, const void *p, size_t n)
{
	struct observed_writer *w = (struct observed_writer *)base;
	uint64_t t0 = metrics_ticks();
	ssize_t k = w->inner->store->backend->writer_write(w->inner, p, n);

	w->ticks += metrics_ticks() - t0;
	if (k > 0)
		w->bytes += (uint64_t)k;
	return k;
}

static int observed_writer_commit(scratch_writer *base, scratch_handle *out)
{
	struct observed_writer *w = (struct observed_writer *)base;
	struct observed_store *o = to_observed(base->store);
	uint64_t t0 = metrics_ticks();
	int err = w->inner->store->backend->writer_commit(w->inner, out);

	count(o, SCRATCH_OP_PUT, err, w->ticks + (metrics_ticks() - t0), 1, 1, (int64_t)w->bytes);
	free(w);
	return err;
}

static void observed_writer_abort(scratch_writer *base)
{
	struct observed_writer *w = (struct observed_writer *)base;

	w->inner->store->backend->writer_abort(w->inner);
	free(w);
}

static int observed_flush(scratch_store *s)
{
	return scratch_store_flush(to_observed(s)->inner);
}

static int observed_stats(scratch_store *s, struct scratch_store_stats *out)
{
	return scratch_store_stats(to_observed(s)->inner, out);
}

/* Moves the gauges by everything in inner, times sign. */
static void count_content(struct observed_store *o, int sign)
{
	struct scratch_store_stats st;

	if (scratch_store_stats(o->inner, &st) == 0)
		count(o, SCRATCH_OP_PUT, 0, 0, 0, sign * (int64_t)st.handles, sign * (int64_t)st.bytes);
}

static void observed_close(scratch_store *s)
{
	struct observed_store *o = to_observed(s);

	count_content(o, -1);
	scratch_store_close(o->inner);
	metrics_drop(o->metrics);
	free(o);
}

static const struct scratch_backend observed_backend = {
	.name = "observed",
	.put = observed_put,
	.close = observed_close,
	.writer_open = observed_writer_open,
	.writer_write = observed_writer_write,
	.writer_commit = observed_writer_commit,
	.writer_abort = observed_writer_abort,
	.flush = observed_flush,
	.read = observed_read,
	.remove = observed_remove,
	.put_batch = observed_put_batch,
	.stats = observed_stats,
};

int scratch_observe(scratch_metrics *m, scratch_store *inner, scratch_store **out)
{
	struct observed_store *o;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!inner)
		return -EINVAL;
	if (!m) {
		*out = inner;
		return 0;
	}
	if (m->view)
		return -EINVAL;
	o = aligned_alloc(_Alignof(struct observed_store), sizeof(*o));
	if (!o)
		return -ENOMEM;
	memset(o, 0, sizeof(*o));
	o->base.backend = &observed_backend;
	o->inner = inner;
	o->metrics = m;
	o->pid = metrics_process;
	metrics_hold(m);
	count_content(o, 1);
	*out = &o->base;
	return 0;
}
