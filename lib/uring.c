/*
 * uring.c: writes through io_uring, or through pwritev when io_uring is not
 * available (old kernel, kernel.io_uring_disabled, a seccomp profile) or
 * not wanted (SCRATCH_IO=pwrite).
 *
 * What this machine measures (MACHINE.md) shapes the design: a buffered
 * io_uring write is always handed to a kernel worker, so submitting one
 * small write and waiting for it is 20x slower than pwrite, while a few
 * large writes into preallocated space run near pwrite speed and, not
 * waited for, overlap with the caller's work.  So the filesystem store only
 * ever gives this module large writes: a full staging buffer, started in
 * the background and waited for when its buffer is needed again, and large
 * blobs, written in the foreground straight from the caller's memory.
 *
 * Every write may complete short or fail with -EAGAIN/-EINTR: the rest is
 * resubmitted until it is all written or a real error comes back.  All
 * operations share the ring; completions are routed by user_data, which
 * points at the operation.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "uring.h"

int (*wio_fault)(int fd, int res);

bool wio_uring_wanted(void)
{
	const char *mode = getenv("SCRATCH_IO");

	return !mode || strcmp(mode, "pwrite") != 0;
}

int wio_init(struct wio *w, bool use_uring)
{
	int err;

	memset(w, 0, sizeof(*w));
	if (!use_uring)
		return 0;
	err = io_uring_queue_init(2 * (WIO_INFLIGHT + 1), &w->ring, 0);
	if (err)
		return err;
	w->uring = true;
	return 0;
}

void wio_fini(struct wio *w)
{
	while (w->nbackground)
		(void)wio_wait(w);
	if (w->uring)
		io_uring_queue_exit(&w->ring);
	w->uring = false;
}

/* Records n more bytes written: done, and where in iov the rest starts. */
static void op_progress(struct wio_op *op, size_t n)
{
	op->done += n;
	while (n && op->at < op->iovcnt) {
		size_t left = op->iov[op->at].iov_len - op->at_off;

		if (n < left) {
			op->at_off += n;
			return;
		}
		n -= left;
		op->at++;
		op->at_off = 0;
	}
}

/* Fills op->vec with what is left to write; returns the iovec count. */
static int op_remaining(struct wio_op *op)
{
	int n = 0;
	size_t skip = op->at_off;

	for (int i = op->at; i < op->iovcnt && n < WIO_MAX_IOV; i++, skip = 0) {
		if (op->iov[i].iov_len == skip)
			continue;
		op->vec[n].iov_base = (char *)op->iov[i].iov_base + skip;
		op->vec[n].iov_len = op->iov[i].iov_len - skip;
		n++;
	}
	return n;
}

/* -EAGAIN/-EINTR: try again, but not forever. */
static bool op_retry(struct wio_op *op, long res)
{
	return (res == -EINTR || res == -EAGAIN) && ++op->retries < WIO_MAX_RETRIES;
}

/* The pwritev path: the rest of the operation, now. */
static int op_pwrite(struct wio_op *op)
{
	while (op->done < op->total) {
		int n = op_remaining(op);
		ssize_t k = pwritev(op->fd, op->vec, n, (off_t)(op->off + op->done));

		if (k < 0)
			k = -errno;
		if (wio_fault)
			k = wio_fault(op->fd, (int)(k > INT_MAX ? INT_MAX : k));
		if (op_retry(op, k))
			continue;
		if (k < 0)
			return (int)k;
		if (k == 0)
			return -EIO;
		op_progress(op, (size_t)k);
	}
	return 0;
}

/* The ring failed (submit or wait said so, not a write).  Whatever was on
 * it fails with err: the kernel may still be copying from its buffer after
 * the ring is gone, so finishing it with pwritev could let the caller
 * reuse that buffer under a late kernel write.  The filesystem store keeps
 * a failed write's bytes in memory and never touches its buffer again, so
 * nothing is lost.  The channel writes with pwritev from now on. */
static void op_fail(struct wio_op *op, int err)
{
	if (op->busy) {
		op->busy = false;
		op->res = err;
	}
}

static void ring_failed(struct wio *w, int err)
{
	io_uring_queue_exit(&w->ring);
	w->uring = false;
	for (unsigned i = 0; i < WIO_INFLIGHT; i++)
		op_fail(&w->background[i], err);
	op_fail(&w->foreground, err);
}

/* Puts the rest of op on the ring.  op->busy says whether it is there. */
static void op_submit(struct wio *w, struct wio_op *op)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);
	int n = op_remaining(op), err;

	op->busy = true;
	if (!sqe) { /* never: the ring has room for every operation */
		ring_failed(w, -EIO);
		return;
	}
	io_uring_prep_writev(sqe, op->fd, op->vec, (unsigned)n, op->off + op->done);
	io_uring_sqe_set_data(sqe, op);
	/* A forced-async write may start a worker of its own even while
	 * another is busy (io-wq's "concurrent" work); a plain one waits. */
	if (op->spread)
		io_uring_sqe_set_flags(sqe, IOSQE_ASYNC);
	do
		err = io_uring_submit(&w->ring);
	while (op_retry(op, err));
	/* A failed enter leaves the entry in the submission queue, where the
	 * next enter would send it again with op->vec changed under it. */
	if (err < 0)
		ring_failed(w, err);
}

/* One completion of op: finished, or the rest resubmitted. */
static void op_complete(struct wio *w, struct wio_op *op, int res)
{
	op->busy = false;
	if (op_retry(op, res))
		res = 0;
	else if (res == 0)
		res = -EIO; /* no progress on a non-empty write */
	else if (res > 0)
		op_progress(op, (size_t)res), res = 0;
	if (res < 0)
		op->res = res;
	else if (op->done < op->total)
		op_submit(w, op);
}

/* Reaps completions until op is finished. */
static int op_wait(struct wio *w, struct wio_op *op)
{
	while (op->busy && w->uring) {
		struct io_uring_cqe *cqe;
		int err = io_uring_wait_cqe(&w->ring, &cqe);

		if (err == -EINTR || err == -EAGAIN)
			continue;
		if (err < 0) {
			ring_failed(w, err); /* fails op, and every other one */
			break;
		}
		struct wio_op *done = io_uring_cqe_get_data(cqe);
		int res = wio_fault ? wio_fault(done->fd, cqe->res) : cqe->res;

		io_uring_cqe_seen(&w->ring, cqe);
		op_complete(w, done, res);
	}
	return op->res;
}

/* Starts op; 0 while it is on the ring, else its result. */
static int op_start(struct wio *w, struct wio_op *op, int fd, const struct iovec *iov,
		    int iovcnt, uint64_t off, bool spread)
{
	size_t total = 0;

	for (int i = 0; i < iovcnt; i++)
		total += iov[i].iov_len;
	*op = (struct wio_op){ .fd = fd, .iov = iov, .iovcnt = iovcnt, .off = off, .total = total,
			       .spread = spread, .one = op->one };
	if (total == 0)
		return 0;
	if (!w->uring)
		return op->res = op_pwrite(op);
	op_submit(w, op);
	return op->busy ? 0 : op->res;
}

int wio_start(struct wio *w, int fd, const void *buf, size_t len, uint64_t off, bool spread)
{
	struct wio_op *op;

	if (w->nbackground == WIO_INFLIGHT)
		return -EBUSY;
	op = &w->background[(w->head + w->nbackground++) % WIO_INFLIGHT];
	op->one.iov_base = (void *)buf;
	op->one.iov_len = len;
	return op_start(w, op, fd, &op->one, 1, off, spread);
}

int wio_wait(struct wio *w)
{
	struct wio_op *op = &w->background[w->head];

	if (!w->nbackground)
		return 0;
	int res = op_wait(w, op);

	w->head = (w->head + 1) % WIO_INFLIGHT;
	w->nbackground--;
	return res;
}

int wio_writev(struct wio *w, int fd, const struct iovec *iov, int iovcnt, uint64_t off)
{
	int err = op_start(w, &w->foreground, fd, iov, iovcnt, off, false);

	return err ? err : op_wait(w, &w->foreground);
}
