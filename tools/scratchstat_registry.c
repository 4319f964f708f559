/*
 * scratchstat_registry.c: scratchstat's modes on the metrics registry,
 * --metrics, --prometheus and --clean (documented, with their fields, at
 * the top of scratchstat.c).
 *
 * The registry is read as a DIR is: one readdir pass over the directory
 * itself, then an fstatat(AT_SYMLINK_NOFOLLOW) of each entry whose name is
 * exactly one that scratch_metrics_register makes; only a regular file
 * goes further.  Its counters are read through the library
 * (scratch_metrics_attach, then a snapshot), the one place that knows the
 * file's layout: it opens the path O_NOFOLLOW and checks that it holds a
 * regular file of its own version before mapping it, so an entry swapped
 * for a symlink or a fifo after our fstatat is refused, never followed.
 * Whether the owner lives is asked of the pid in the file's name with
 * kill(pid, 0), which sends nothing; the file's own header also holds the
 * pid, but the public API does not show it, and the name is what --clean
 * must trust anyway.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <scratch.h>

#include "scratchstat.h"

#define PREFIX "scratch-"
#define EXT ".metrics"
#define NAME_MAX_LEN 64 /* scratch_metrics_register's limit */
#define NOPS 3          /* enum scratch_op */
#define CELL 72         /* room for a name, a number, a mean */

static const char *const op_names[NOPS] = { "put", "read", "remove" };

struct metrics_entry {
	char *file; /* the entry's name */
	int pid;
	char name[NAME_MAX_LEN + 1];
	const char *type;
	bool regular;
	enum state state;
	int err; /* errno, for STATE_UNKNOWN */
	struct scratch_metrics_snapshot snap; /* live and stale only */
};

struct registry {
	const char *dir; /* $SCRATCH_METRICS_DIR as given, or /dev/shm */
	DIR *stream;
	struct metrics_entry *v;
	size_t n, cap;
	uint64_t files, count[4];
};

/* ----------------------------------------------------------- the names */

static bool name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '.' || c == '-';
}

/* True if file is scratch-<pid>-<name>.metrics just as
 * scratch_metrics_register spells it (pid without leading zeros, never 0:
 * kill(0, ...) would ask about our own process group); sets *pid, name. */
static bool parse_file_name(const char *file, int *pid, char name[NAME_MAX_LEN + 1])
{
	size_t n = strlen(file), pre = sizeof(PREFIX) - 1, ext = sizeof(EXT) - 1;
	const char *p = file + pre, *end = file + n - ext, *start;
	long v = 0;

	if (n <= pre + ext || strncmp(file, PREFIX, pre) || strcmp(end, EXT) || *p < '1' || *p > '9')
		return false;
	for (; p < end && *p >= '0' && *p <= '9'; p++) {
		v = v * 10 + (*p - '0');
		if (v > INT_MAX)
			return false;
	}
	if (p == end || *p != '-')
		return false;
	start = ++p;
	if (end - start < 1 || end - start > NAME_MAX_LEN)
		return false;
	for (; p < end; p++)
		if (!name_char(*p))
			return false;
	memcpy(name, start, (size_t)(end - start));
	name[end - start] = '\0';
	*pid = (int)v;
	return true;
}

/* Some process has pid (EPERM: one of another user). */
static bool process_lives(int pid)
{
	return kill(pid, 0) == 0 || errno == EPERM;
}

/* dir/file, malloc'd; NULL when out of memory. */
static char *entry_path(const char *dir, const char *file)
{
	size_t n = strlen(dir);
	char *path;

	return asprintf(&path, "%s%s%s", dir, n && dir[n - 1] == '/' ? "" : "/", file) < 0 ? NULL
											  : path;
}

/* What a failed attach means, for the NOTE and "error". */
static const char *attach_error(int err)
{
	return err == EINVAL ? "not a metrics file of this version" : strerror(err);
}

/* --------------------------------------------------------- the reading */

static void registry_close(struct registry *r)
{
	for (size_t i = 0; i < r->n; i++)
		free(r->v[i].file);
	free(r->v);
	if (r->stream)
		closedir(r->stream);
	*r = (struct registry){ 0 };
}

static struct metrics_entry *registry_add(struct registry *r, const char *file)
{
	struct metrics_entry *v = grow(r->v, r->n, &r->cap, sizeof(*v));

	if (!v)
		return NULL;
	r->v = v;
	struct metrics_entry *e = &r->v[r->n];

	*e = (struct metrics_entry){ .file = strdup(file), .state = STATE_UNKNOWN, .type = "unknown" };
	if (!e->file)
		return NULL;
	r->n++;
	return e;
}

/* Attaches e's file and takes a snapshot.  0, or -errno: -ENOENT (gone
 * since readdir: leave it out), -ENOMEM; any other failure is e's
 * STATE_UNKNOWN. */
static int read_counters(const struct registry *r, struct metrics_entry *e)
{
	char *path = entry_path(r->dir, e->file);
	scratch_metrics *view;
	int err;

	if (!path)
		return -ENOMEM;
	err = scratch_metrics_attach(path, &view);
	free(path);
	if (err == -ENOENT || err == -ENOMEM)
		return err;
	if (err) {
		e->err = -err;
		return 0;
	}
	(void)scratch_metrics_snapshot(view, &e->snap); /* cannot fail on a view */
	scratch_metrics_free(view);
	e->state = process_lives(e->pid) ? STATE_LIVE : STATE_STALE;
	return 0;
}

/* Fills e from an fstatat of its name and, if counters, its counters.
 * Returns as read_counters. */
static int probe(const struct registry *r, struct metrics_entry *e, bool counters)
{
	struct stat st;

	if (fstatat(dirfd(r->stream), e->file, &st, AT_SYMLINK_NOFOLLOW)) {
		e->err = errno;
		return errno == ENOENT ? -ENOENT : 0;
	}
	e->type = type_name(st.st_mode);
	e->regular = S_ISREG(st.st_mode);
	if (!e->regular) {
		e->state = STATE_SKIPPED;
		return 0;
	}
	return counters ? read_counters(r, e) : 0;
}

static int entry_cmp(const void *a, const void *b)
{
	const struct metrics_entry *x = a, *y = b;

	return x->pid != y->pid ? (x->pid > y->pid) - (x->pid < y->pid) : strcmp(x->name, y->name);
}

/* Opens the registry and reads its metrics entries into r, sorted, with
 * their counters if counters.  False (and a message) if it could not be
 * read; r is to be closed either way. */
static bool registry_read(struct registry *r, bool counters)
{
	const char *env = getenv("SCRATCH_METRICS_DIR");
	struct dirent *de;
	int fd, err = 0;

	*r = (struct registry){ .dir = env && *env ? env : "/dev/shm" };
	fd = open(r->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || !(r->stream = fdopendir(fd))) {
		err = errno;
		if (fd >= 0)
			close(fd);
		complain(r->dir, err);
		return false;
	}
	for (;;) {
		struct metrics_entry *e;
		int pid, rc;
		char name[NAME_MAX_LEN + 1];

		errno = 0;
		if (!(de = readdir(r->stream))) {
			err = errno; /* 0 at the end */
			break;
		}
		/* --clean also takes the hidden names that unregistered
		 * metrics keep (.scratch-<pid>-<n>.metrics). */
		if (!parse_file_name(de->d_name + (!counters && de->d_name[0] == '.'), &pid, name))
			continue;
		if (!(e = registry_add(r, de->d_name))) {
			err = ENOMEM;
			break;
		}
		e->pid = pid;
		memcpy(e->name, name, sizeof(name));
		rc = probe(r, e, counters);
		if (rc == -ENOMEM) {
			err = ENOMEM;
			break;
		}
		if (rc == -ENOENT) { /* gone since readdir */
			free(e->file);
			r->n--;
			continue;
		}
		r->count[e->state]++;
		r->files += e->state != STATE_SKIPPED;
	}
	if (err) {
		complain(r->dir, err);
		return false;
	}
	if (r->n > 1)
		qsort(r->v, r->n, sizeof(r->v[0]), entry_cmp);
	return true;
}

/* ---------------------------------------------------------- the output */

static bool has_counters(const struct metrics_entry *e)
{
	return e->state == STATE_LIVE || e->state == STATE_STALE;
}

/* The mean time of op's calls in microseconds; false if there were none. */
static bool mean_us(const struct scratch_metrics_snapshot *s, int op, double *out)
{
	uint64_t n = s->ops[op][SCRATCH_RESULT_SUCCESS] + s->ops[op][SCRATCH_RESULT_ERROR];

	if (n == 0)
		return false;
	*out = (s->seconds[op][SCRATCH_RESULT_SUCCESS] + s->seconds[op][SCRATCH_RESULT_ERROR]) /
	       (double)n * 1e6;
	return true;
}

enum { COL_PID, COL_NAME, COL_STATE, COL_HANDLES, COL_BYTES, COL_OPS, COLUMNS = COL_OPS + 3 * NOPS };

static const char *const headers[COLUMNS] = {
	"PID",	   "NAME",     "STATE",	  "HANDLES",   "BYTES",	     "PUT_OK",	  "PUT_ERR",
	"PUT_US", "READ_OK", "READ_ERR", "READ_US", "REMOVE_OK", "REMOVE_ERR", "REMOVE_US",
};

/* The cells of e's table row ("-" for what was not read). */
static void format_row(const struct metrics_entry *e, char cell[COLUMNS][CELL])
{
	const struct scratch_metrics_snapshot *s = &e->snap;

	snprintf(cell[COL_PID], CELL, "%d", e->pid);
	snprintf(cell[COL_NAME], CELL, "%s", e->name);
	snprintf(cell[COL_STATE], CELL, "%s", state_names[e->state]);
	for (int c = COL_HANDLES; c < COLUMNS; c++)
		snprintf(cell[c], CELL, "-");
	if (!has_counters(e))
		return;
	snprintf(cell[COL_HANDLES], CELL, "%" PRIu64, s->handles);
	snprintf(cell[COL_BYTES], CELL, "%" PRIu64, s->bytes);
	for (int op = 0; op < NOPS; op++) {
		char *c = cell[COL_OPS + 3 * op];
		double us;

		snprintf(c, CELL, "%" PRIu64, s->ops[op][SCRATCH_RESULT_SUCCESS]);
		snprintf(c + CELL, CELL, "%" PRIu64, s->ops[op][SCRATCH_RESULT_ERROR]);
		if (mean_us(s, op, &us))
			snprintf(c + 2 * CELL, CELL, "%.2f", us);
	}
}

static const char *note_of(const struct metrics_entry *e)
{
	return e->state == STATE_SKIPPED ? e->type : e->state == STATE_UNKNOWN ? attach_error(e->err) : "";
}

/* Prints one row: NAME and STATE left-aligned, numbers right-aligned. */
static void print_row(char cell[COLUMNS][CELL], const int width[COLUMNS], const char *note)
{
	fputs(" ", stdout);
	for (int c = 0; c < COLUMNS; c++)
		printf(" %*s%s", c == COL_NAME || c == COL_STATE ? -width[c] : width[c], cell[c],
		       c + 1 < COLUMNS ? " " : "");
	if (*note)
		printf("  %s", note);
	putchar('\n');
}

static void print_table(const struct registry *r)
{
	char cell[COLUMNS][CELL];
	int width[COLUMNS];

	for (int c = 0; c < COLUMNS; c++)
		width[c] = (int)strlen(headers[c]);
	for (size_t i = 0; i < r->n; i++) {
		format_row(&r->v[i], cell);
		for (int c = 0; c < COLUMNS; c++)
			if ((int)strlen(cell[c]) > width[c])
				width[c] = (int)strlen(cell[c]);
	}
	fputs("metrics registry ", stdout);
	text_put(stdout, r->dir, 0);
	fputs(":\n", stdout);
	if (r->n) {
		for (int c = 0; c < COLUMNS; c++)
			snprintf(cell[c], CELL, "%s", headers[c]);
		print_row(cell, width, "NOTE");
	}
	for (size_t i = 0; i < r->n; i++) {
		format_row(&r->v[i], cell);
		print_row(cell, width, note_of(&r->v[i]));
	}
	printf("  total: %" PRIu64 " files (%" PRIu64 " live, %" PRIu64 " stale, %" PRIu64
	       " unknown), %" PRIu64 " skipped\n",
	       r->files, r->count[STATE_LIVE], r->count[STATE_STALE], r->count[STATE_UNKNOWN],
	       r->count[STATE_SKIPPED]);
}

static void print_json_entry(const struct registry *r, const struct metrics_entry *e)
{
	fputs("{\"kind\":\"metrics\",", stdout);
	json_field(stdout, "dir", r->dir, true);
	json_field(stdout, "file", e->file, false);
	json_number(stdout, "pid", (uint64_t)e->pid);
	json_field(stdout, "name", e->name, false);
	json_field(stdout, "type", e->type, false);
	json_field(stdout, "state", state_names[e->state], false);
	if (has_counters(e)) {
		json_number(stdout, "handles", e->snap.handles);
		json_number(stdout, "bytes", e->snap.bytes);
		for (int op = 0; op < NOPS; op++) {
			char key[32];
			double us;

			snprintf(key, sizeof(key), "%s_success", op_names[op]);
			json_number(stdout, key, e->snap.ops[op][SCRATCH_RESULT_SUCCESS]);
			snprintf(key, sizeof(key), "%s_error", op_names[op]);
			json_number(stdout, key, e->snap.ops[op][SCRATCH_RESULT_ERROR]);
			if (mean_us(&e->snap, op, &us))
				printf(",\"%s_mean_us\":%.3f", op_names[op], us);
			else
				printf(",\"%s_mean_us\":null", op_names[op]);
		}
	}
	if (e->state == STATE_UNKNOWN)
		json_field(stdout, "error", attach_error(e->err), false);
	fputs("}\n", stdout);
}

static void print_json(const struct registry *r)
{
	for (size_t i = 0; i < r->n; i++)
		print_json_entry(r, &r->v[i]);
	fputs("{\"kind\":\"metrics_summary\",", stdout);
	json_field(stdout, "dir", r->dir, true);
	json_number(stdout, "files", r->files);
	for (int s = STATE_LIVE; s <= STATE_SKIPPED; s++)
		json_number(stdout, state_names[s], r->count[s]);
	fputs("}\n", stdout);
}

/* ----------------------------------------------------------- the modes */

bool registry_list(bool json, unsigned *tables)
{
	struct registry r;
	bool ok = registry_read(&r, true);

	if (ok && json) {
		print_json(&r);
	} else if (ok) {
		if ((*tables)++)
			putchar('\n');
		print_table(&r);
	}
	registry_close(&r);
	return ok;
}

bool registry_prometheus(const char *path)
{
	char *real = realpath(path, NULL); /* the user named it: follow it */
	scratch_metrics *view = NULL;
	int err = real ? scratch_metrics_attach(real, &view) : -errno;

	free(real);
	if (err) {
		fflush(stdout);
		fputs("scratchstat: ", stderr);
		text_put(stderr, path, 0);
		fprintf(stderr, ": %s\n", attach_error(-err));
		return false;
	}
	fflush(stdout); /* nothing is buffered, but the exposition goes around stdio */
	err = scratch_metrics_write_prometheus(view, STDOUT_FILENO);
	scratch_metrics_free(view);
	if (err)
		fprintf(stderr, "scratchstat: writing the output: %s\n", strerror(-err));
	return err == 0;
}

/*
 * The pid is asked again just before each unlink.  Between the fstatat and
 * the unlink the name could come to hold something else; unlinkat then
 * removes that name, whatever it is (never what a symlink points to), and
 * fails on a directory: only someone who may write the registry can swap
 * entries, and they could remove them themselves.
 */
bool registry_clean(void)
{
	struct registry r;
	bool listed = registry_read(&r, false), ok = listed;

	for (size_t i = 0; listed && i < r.n; i++) { /* nothing if the listing failed */
		const struct metrics_entry *e = &r.v[i];
		char *path;

		if (!e->regular || process_lives(e->pid))
			continue;
		if (!(path = entry_path(r.dir, e->file))) {
			complain(r.dir, ENOMEM);
			ok = false;
			break;
		}
		if (unlinkat(dirfd(r.stream), e->file, 0) == 0) {
			text_put(stdout, path, 0);
			putchar('\n');
		} else if (errno != ENOENT) { /* ENOENT: someone else cleaned it */
			complain(path, errno);
			ok = false; /* and go on with the others */
		}
		free(path);
	}
	registry_close(&r);
	return ok;
}
