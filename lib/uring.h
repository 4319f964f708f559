/*
 * uring.h: the write path of the filesystem store (design: uring.c).
 *
 * A struct wio is one writer's channel to the disk: an io_uring ring, or
 * plain pwritev when io_uring cannot be had (or once the ring itself has
 * failed, which fails whatever was on it).  It is used by one thread at a
 * time (its owner's lock).  It carries up to WIO_INFLIGHT background
 * writes, started and waited for in order, so full staging buffers go to
 * disk while the next one fills, plus one foreground write at a time that
 * the caller waits for.
 */
#ifndef SCRATCH_URING_H
#define SCRATCH_URING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <liburing.h>

#define WIO_MAX_IOV 64 /* iovecs per submission; the rest is resubmitted */
#define WIO_MAX_RETRIES 1000 /* -EAGAIN/-EINTR in a row before giving up */
/* Background writes in flight.  Buffered io_uring writes are copied into
 * the page cache by kernel workers here, so throughput grows with writes in
 * flight: scratchbench put 1 MiB against seq-pwrite, alternating builds, three
 * rounds: 1 in flight 0.56-0.58x, 2: 0.71-0.79x, 3: 0.75-0.81x. */
#define WIO_INFLIGHT 3

struct wio_op {
	int fd;
	const struct iovec *iov;
	int iovcnt;
	uint64_t off;
	size_t total, done;
	int at;              /* the rest starts in iov[at], at_off bytes in */
	size_t at_off;
	unsigned retries;
	int res;             /* 0 or -errno once finished */
	bool busy;           /* submitted, not yet finished */
	bool spread;         /* io_uring: IOSQE_ASYNC (see wio_start) */
	struct iovec one;    /* iov storage of a single-buffer write */
	struct iovec vec[WIO_MAX_IOV]; /* what is in flight */
};

struct wio {
	struct io_uring ring;
	bool uring;                /* false: pwritev */
	struct wio_op background[WIO_INFLIGHT]; /* a FIFO from head */
	unsigned head, nbackground;
	struct wio_op foreground;
};

/* Test seam: if set, every completion's result (bytes written or -errno,
 * from io_uring or pwritev) passes through it, so tests can make writes
 * fail, come back short, or ask to be retried.  Internal: not exported. */
extern int (*wio_fault)(int fd, int res);

/* False when the environment asks for the pwrite path (SCRATCH_IO=pwrite). */
bool wio_uring_wanted(void);

/* Sets up w, with a ring if use_uring.  0, or -errno from io_uring_setup
 * (then w is set up for pwritev and usable all the same). */
int wio_init(struct wio *w, bool use_uring);
void wio_fini(struct wio *w);

/* Starts writing buf[0..len) at off in the background; the bytes must stay
 * put until wio_wait() returns its result.  At most WIO_INFLIGHT may be
 * started and not yet waited for (-EBUSY).  On the pwrite path the write
 * happens now.  0, or the write's -errno if it already failed.
 *
 * spread: let io_uring start another kernel worker for this write if its
 * workers are busy.  io-wq runs the buffered writes one thread submits
 * with one worker as long as it is busy, whatever file they go to; a lone
 * writer whose buffers alternate between two files gets them written two
 * at a time.  Where every CPU is already busy, the extra workers only cost. */
int wio_start(struct wio *w, int fd, const void *buf, size_t len, uint64_t off, bool spread);

/* Waits for the oldest background write: 0 once every byte is written, or
 * -errno (-ENOSPC, -EIO, ...).  0 if none is in flight. */
int wio_wait(struct wio *w);

/* Writes iov[0..iovcnt) at off and waits for it.  0 or -errno. */
int wio_writev(struct wio *w, int fd, const struct iovec *iov, int iovcnt, uint64_t off);

#endif
