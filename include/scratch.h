/*
 * libscratch: scratch space for temporary blobs.
 *
 * A store keeps blobs that a program puts aside, reads back and throws away.
 * Each put returns a handle; a handle can be read (through a reader, a
 * seekable view of the blob) or removed, nothing else: blobs are immutable.
 *
 * Conventions that hold for every function below:
 * - Errors are returned, never signalled through errno: a fallible function
 *   returns 0 (or a count or offset) on success, or a negative code, either a
 *   negated errno value (-EINVAL, -ENOMEM, ...) or SCRATCH_ENOTFOUND.
 *   scratch_strerror() names every code.
 * - A NULL store, reader, writer or out-pointer gives -EINVAL, never a crash.
 * - Every store, and every function taking a store, may be called from many
 *   threads at once.  A reader or a writer belongs to one thread at a time;
 *   many readers of the same handle may be open at once.
 * - Constructors fill an out-pointer; on failure it is set to NULL (or to
 *   SCRATCH_INVALID_HANDLE for handles) when the pointer itself is valid.
 *
 * This header is the whole public interface: see README.md for a tour.
 */
#ifndef SCRATCH_H
#define SCRATCH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && !defined(SCRATCH_API)
#define SCRATCH_API __attribute__((visibility("default")))
#elif !defined(SCRATCH_API)
#define SCRATCH_API
#endif

#define SCRATCH_VERSION_MAJOR 0
#define SCRATCH_VERSION_MINOR 1
#define SCRATCH_VERSION_PATCH 0

/* ---------------------------------------------------------------- errors */

/* Returned for a handle the store does not know: never issued, removed, or
 * issued by another store (stores tell their handles apart by a 16-bit tag
 * that no two open stores share, up to 65536 open at once; a closed store's
 * tag is given again only once every other free tag has been given since).
 * Outside the errno range. */
#define SCRATCH_ENOTFOUND (-10000)

/* A static, never-NULL description of any code this library returns:
 * SCRATCH_ENOTFOUND gives "handle not found", -errno gives strerror's text,
 * 0 gives "success".  Thread-safe. */
SCRATCH_API const char *scratch_strerror(int err);

/* --------------------------------------------------------------- handles */

/* Unique per store, never 0, never reused while the store lives. */
typedef uint64_t scratch_handle;
#define SCRATCH_INVALID_HANDLE ((scratch_handle)0)

/* --------------------------------------------------------------- logging */

enum scratch_log_level {
	SCRATCH_LOG_DEBUG,
	SCRATCH_LOG_INFO,
	SCRATCH_LOG_WARN,
	SCRATCH_LOG_ERROR,
};

/* The library hands each log line to log(ctx, level, line); line is logfmt,
 * e.g. `msg="falling back to memory" path=/tmp/x err="No space left"`, and
 * valid only during the call.  log may be called from any thread that calls
 * into the library, so it must be thread-safe, and it may be called with
 * the store's internal locks held, so it must not call back into the store
 * that logs.  A NULL logger logs nothing;
 * the library never writes to stdout or stderr by itself.  The logger struct
 * is copied: it need not outlive the call that passes it. */
typedef struct scratch_logger {
	void (*log)(void *ctx, enum scratch_log_level level, const char *line);
	void *ctx;
} scratch_logger;

/* ---------------------------------------------------------------- stores */

typedef struct scratch_store scratch_store;
typedef struct scratch_reader scratch_reader;
typedef struct scratch_writer scratch_writer;

/* A store that keeps blobs in memory, in a jemalloc arena of its own (so its
 * memory is separate from the program's heap).
 * Returns 0, -EINVAL (out is NULL) or -ENOMEM. */
SCRATCH_API int scratch_memory_new(scratch_store **out);

/* A store that keeps blobs in files named at random with the extension
 * .lokiscratch in the directory path, created with its parents (mode 0700)
 * if missing.  At start-up, .lokiscratch files directly in path whose owning
 * store is gone are removed; files that a live store (of this process or
 * another) owns are left alone.  If writing to disk fails, the blob is kept
 * in memory instead (with a WARN log line); handles stay unique across both.
 * logger may be NULL.
 * Small blobs are staged in memory and written in large batches (see
 * scratch_store_flush); readers map the files, so their data() is zero-copy.
 * Writes go through io_uring where the kernel allows it, else through
 * pwritev (one INFO log line says so); the environment variable
 * SCRATCH_IO=pwrite, read here, asks for pwritev.
 * Returns 0; -EINVAL (path or out NULL, path empty); -ENOTDIR, -EACCES,
 * -EROFS, ... when path cannot be made into a usable directory; -ENOMEM. */
SCRATCH_API int scratch_filesystem_new(const scratch_logger *logger, const char *path,
				       scratch_store **out);

/* A memory store if path is NULL or "", otherwise a filesystem store on an
 * existing directory.  Returns what the constructors return, plus -ENOENT if
 * path does not exist and -ENOTDIR if it is not a directory. */
SCRATCH_API int scratch_open(const scratch_logger *logger, const char *path, scratch_store **out);

/* Frees every blob and removes the store's files.  Waits for no reader
 * (only for disk writes already under way): readers still open stay valid
 * until they are closed, and the store's last resources go with the last
 * of them.  No other call may use s once this is called,
 * and that includes its writers: commit or abort every writer first.
 * NULL is a no-op. */
SCRATCH_API void scratch_store_close(scratch_store *s);

/* Writes out what a filesystem store still holds in its staging buffers
 * (small blobs are packed in memory and written in large batches, when a
 * buffer fills or on this call; close discards what is unwritten, since
 * the files go too), and gives back the disk space of segment files that
 * no blob is left in and of runs of 1 MiB or more that no blob holds in
 * segments puts left a second or more ago (scratch_remove).  Blobs stay readable throughout;
 * this only bounds how much sits in memory and forces the disk write now.
 * A blob whose write fails is kept in memory (with a WARN log line): this
 * returns 0 even then, since nothing was lost.  A memory store has nothing
 * to flush.  Safe to call from any thread.
 * Returns 0 or -EINVAL (s NULL). */
SCRATCH_API int scratch_store_flush(scratch_store *s);

/* Copies n bytes from p into a new blob and stores its handle in *out; p may
 * be reused at once.  n == 0 is a valid, empty blob (p may then be NULL).
 * Returns 0; -EINVAL (s or out NULL, p NULL with n > 0); -ENOMEM when the
 * data could be kept nowhere, in which case *out is SCRATCH_INVALID_HANDLE. */
SCRATCH_API int scratch_put(scratch_store *s, const void *p, size_t n, scratch_handle *out);

/* Stores the concatenation of iov[0..iovcnt) as one blob.  iovcnt may be 0
 * (an empty blob); an iovec with iov_len > 0 must have a non-NULL base.
 * Returns as scratch_put, plus -EINVAL for iovcnt < 0, iov NULL with
 * iovcnt > 0, or a total size that overflows. */
SCRATCH_API int scratch_putv(scratch_store *s, const struct iovec *iov, int iovcnt,
			     scratch_handle *out);

/* Stores n blobs, blobs[i] -> out[i], with as few system calls as the store
 * can manage.  All are stored, or none: on failure every out[i] is
 * SCRATCH_INVALID_HANDLE.  n == 0 succeeds and does nothing.
 * Returns as scratch_put, plus -EINVAL for blobs or out NULL with n > 0. */
SCRATCH_API int scratch_put_batch(scratch_store *s, const struct iovec *blobs, size_t n,
				  scratch_handle *out);

/* Opens a reader on handle h.  The reader stays valid, and its bytes stay
 * intact, after h is removed and after the store is closed, until
 * scratch_reader_close.
 * Returns 0; -EINVAL (s or out NULL); SCRATCH_ENOTFOUND (h unknown or
 * removed); -ENOMEM. */
SCRATCH_API int scratch_read(scratch_store *s, scratch_handle h, scratch_reader **out);

/* Removes the blob h: later reads and removes of h give SCRATCH_ENOTFOUND.
 * Readers already open keep working; the blob's memory or disk space is
 * released when the last of them closes.  On a filesystem store, a blob of
 * 1 MiB or more is then punched out of its file; smaller blobs are packed
 * into 16 MiB segment files, whose space comes back when the last of their
 * blobs goes (a punch per small blob made writes 5-10x slower here: see
 * lib/segment.c).  A segment that puts are still filling goes at the
 * remove that empties it if it is three quarters used (once the writes
 * under way for it are done), else at the next scratch_store_flush.  One
 * that puts left a second or more ago and that some blobs keep alive
 * gives back its runs of 1 MiB or more that no blob holds, when a put
 * next needs a new segment file or at scratch_store_flush.  A child made
 * by fork() shares its parent's segment files: remove a blob in one
 * process only, or the other reads zeros where it was.
 * Returns 0; -EINVAL (s NULL); SCRATCH_ENOTFOUND (h unknown or removed). */
SCRATCH_API int scratch_remove(scratch_store *s, scratch_handle h);

/* --------------------------------------------------------------- readers */

/* Copies up to n bytes from the reader's offset into buf and advances the
 * offset.  Returns the count (0 at or past the end, or when n == 0), or
 * -EINVAL (r NULL, buf NULL with n > 0). */
SCRATCH_API ssize_t scratch_reader_read(scratch_reader *r, void *buf, size_t n);

/* Moves the offset to offset from SEEK_SET (the start), SEEK_CUR (the current
 * offset) or SEEK_END (the end).  Seeking past the end is allowed (later
 * reads return 0).  Returns the new offset, or -EINVAL (r NULL, another
 * whence, a negative or overflowing result: the offset is then unchanged). */
SCRATCH_API int64_t scratch_reader_seek(scratch_reader *r, int64_t offset, int whence);

/* The blob's size in bytes; 0 for a NULL reader. */
SCRATCH_API uint64_t scratch_reader_size(const scratch_reader *r);

/* A zero-copy view of the whole blob, valid until the reader is closed.  For
 * an empty blob it is a valid pointer to no bytes.  NULL for a NULL reader. */
SCRATCH_API const void *scratch_reader_data(const scratch_reader *r);

/* Closes the reader.  Returns 0; NULL is a no-op returning 0. */
SCRATCH_API int scratch_reader_close(scratch_reader *r);

/* ------------------------------------------------------------ streaming */

/* Opens a writer that streams one blob of unknown length into s.  Nothing is
 * visible, and no handle exists, until scratch_writer_commit.  A writer must
 * be committed or aborted before its store is closed.
 * Returns 0, -EINVAL (s or out NULL), -ENOMEM. */
SCRATCH_API int scratch_writer_open(scratch_store *s, scratch_writer **out);

/* Appends n bytes from p.  Returns n, or -EINVAL (w NULL, p NULL with n > 0)
 * or -ENOMEM (the bytes could be kept nowhere; the writer stays usable and
 * holds what it had). */
SCRATCH_API ssize_t scratch_writer_write(scratch_writer *w, const void *p, size_t n);

/* Publishes what was written as one blob and stores its handle in *out.
 * Always frees w, also on failure (which leaves nothing behind).
 * Returns 0, -EINVAL (w or out NULL; w is still freed if not NULL), -ENOMEM. */
SCRATCH_API int scratch_writer_commit(scratch_writer *w, scratch_handle *out);

/* Discards what was written and frees w.  NULL is a no-op. */
SCRATCH_API void scratch_writer_abort(scratch_writer *w);

/* --------------------------------------------------------------- metrics */

typedef struct scratch_metrics scratch_metrics;

enum scratch_op { SCRATCH_OP_PUT, SCRATCH_OP_READ, SCRATCH_OP_REMOVE };
enum scratch_result { SCRATCH_RESULT_SUCCESS, SCRATCH_RESULT_ERROR };

struct scratch_metrics_snapshot {
	uint64_t handles;       /* loki_scratch_store_handles */
	uint64_t bytes;         /* loki_scratch_store_bytes */
	uint64_t ops[3][2];     /* [enum scratch_op][enum scratch_result] counts */
	double seconds[3][2];   /* summed durations, same indexing */
};

/*
 * Metrics for observed stores, the counterpart of Loki's Metrics:
 * - loki_scratch_store_handles, loki_scratch_store_bytes: gauges of the
 *   handles and blob bytes in the stores observed with these metrics;
 * - loki_scratch_store_requests_seconds: a histogram of the time each Put,
 *   Read and Remove took, by operation and result (success or error; a read
 *   or remove of an unknown handle is an error).
 * One metrics object may observe many stores, from many threads; each of
 * the first 64 threads counts into counters of its own, so observing costs
 * two clock reads and a few plain adds per operation (later threads share
 * counters, with atomic adds).  The counters are shared memory: a child
 * made by fork() counts its operations into its parent's (with atomic
 * adds), but leaves the gauges to the parent, whose blobs its copies of
 * the stores hold.
 *
 * Returns 0, -EINVAL (out NULL), -ENOMEM. */
SCRATCH_API int scratch_metrics_new(scratch_metrics **out);

/* Removes m's registered name, if any, and gives m up.  Stores still
 * observed with m keep counting into it until they close, and the memory
 * goes with the last of them, so this may come before or after closing
 * them.  In a forked child it leaves the parent's name alone.  NULL is a
 * no-op. */
SCRATCH_API void scratch_metrics_free(scratch_metrics *m);

/* m == NULL: *out = inner, nothing is wrapped.  Otherwise *out is a new
 * store that wraps inner and owns it: every call on *out is passed to inner
 * and counted in m, and closing *out closes inner.  Use only *out from then
 * on (calls made on inner directly are not counted).  Blobs already in
 * inner count in the gauges from now; the gauges lose what *out still holds
 * when it closes.  On an observed store, a committed writer (timed over its
 * writes and its commit), a putv and each blob of a batch count as a Put;
 * an aborted writer counts as nothing.
 * Returns 0; -EINVAL (inner or out NULL, or m attached read-only, see
 * scratch_metrics_attach); -ENOMEM.  On failure inner is still the
 * caller's. */
SCRATCH_API int scratch_observe(scratch_metrics *m, scratch_store *inner, scratch_store **out);

/* The current figures.  handles and bytes sum the observed stores; ops
 * counts the calls, and seconds their summed durations.
 * Returns 0; -EINVAL (m or out NULL); for an attached view, -EIO (its file
 * shrank) or -ENOMEM. */
SCRATCH_API int scratch_metrics_snapshot(const scratch_metrics *m,
					 struct scratch_metrics_snapshot *out);

/* Writes the metrics to fd in the Prometheus text exposition format
 * (version 0.0.4): the two gauges, then the histogram with the labels
 * operation="Put|Read|Remove" and result="success|error" (all six series,
 * also those still at zero) and buckets from 1 us to 10 s.  Serve it from a
 * /metrics handler, or write it to a node_exporter textfile.  Numbers are
 * written the same in every locale.
 * Returns 0; -EINVAL (m NULL, fd < 0); -errno of a failed write (EINTR and
 * short writes are retried; a socket whose peer has gone gives -EPIPE, not
 * SIGPIPE); -ENOMEM; as scratch_metrics_snapshot for a view. */
SCRATCH_API int scratch_metrics_write_prometheus(const scratch_metrics *m, int fd);

/*
 * Registration: making metrics visible to other processes, such as
 * tools/scratchstat or an exporter, and hiding them again (the counterpart
 * of Loki's Register and Unregister).
 *
 * The counters of every metrics object live in a file of the registry
 * directory, $SCRATCH_METRICS_DIR if set, else /dev/shm (a tmpfs: nothing
 * goes to disk; about 80 KiB per object).  The file has no name until it
 * is registered: registering links it as `scratch-<pid>-<name>.metrics`,
 * unregistering renames it to a hidden `.scratch-<pid>-<n>.metrics`, and
 * scratch_metrics_free removes whichever name it has.  Other processes
 * open a registered file with scratch_metrics_attach and read it live.  A
 * process that dies leaves its names behind; `scratchstat` shows them as
 * stale (their pid is gone) and `scratchstat --clean` removes them.  Only
 * the process that made a metrics object registers or unregisters it.
 */

/* Registers m under name: 1 to 64 characters of [A-Za-z0-9_.-].  A metrics
 * object has at most one name at a time.
 * Returns 0; -EINVAL (m NULL, read-only, or made by another process, a
 * bad name); -EEXIST (the name is taken: this process registered it
 * already, or a dead process with the same pid left it; see
 * scratchstat --clean); -EBUSY (m is registered);
 * -ENOTSUP (m's counters could not be put in the registry directory when
 * it was made: no such directory, or a filesystem without O_TMPFILE, such
 * as overlayfs before Linux 6.6); -errno of the link. */
SCRATCH_API int scratch_metrics_register(scratch_metrics *m, const char *name);

/* Hides m again; it may be registered again later.
 * Returns 0; -EINVAL (m NULL, read-only, made by another process, or not
 * registered); -errno of the rename. */
SCRATCH_API int scratch_metrics_unregister(scratch_metrics *m);

/* A read-only view of the metrics registered at path (a registry file, as
 * listed by scratchstat), live: snapshot and write_prometheus read the
 * owner's current counters from the file each time.  Free it with
 * scratch_metrics_free.
 * Returns 0; -EINVAL (path or out NULL, or not a metrics file of this
 * version); -ENOMEM; -errno of open (a symlink is not followed: -ELOOP). */
SCRATCH_API int scratch_metrics_attach(const char *path, scratch_metrics **out);

#ifdef __cplusplus
}
#endif

#endif /* SCRATCH_H */
