/*
 * scratchstat: what the filesystem stores keep in a directory, and the
 * metrics that running processes registered, looked at without changing
 * anything (save for --clean).
 *
 *   scratchstat [--json] DIR...
 *   scratchstat [--json] --metrics [DIR...]
 *   scratchstat --prometheus FILE
 *   scratchstat --clean
 *
 * ------------------------------------------------------------- DIR...
 *
 * For each DIR (followed if it is a symlink: the user named it), the
 * entries directly in it whose names end in .lokiscratch, sorted by name;
 * other names are ignored and subdirectories are never entered.  Each
 * entry is looked at with fstatat(AT_SYMLINK_NOFOLLOW).  A regular file is
 * opened O_RDONLY|O_NOFOLLOW|O_NONBLOCK (never written, never locked, never
 * unlinked) and asked with F_OFD_GETLK whether anyone holds a lock that
 * would conflict with a write lock over the whole file.  A store holds an
 * OFD write lock on every file it owns (lib/segment.c), so:
 *
 *   live     someone holds a lock: the file belongs to a running store;
 *   stale    nobody does: its store is gone, and the next store started on
 *            DIR removes it;
 *   unknown  the file could not be opened or probed (a store's files are
 *            mode 0600, so another user gets EACCES); see "error";
 *   skipped  not a regular file (a symlink, a directory, ...): never
 *            opened, never followed; "type" says what it is.
 *
 * An entry that disappears between the directory read and the probe (a
 * store deleting an empty segment) is left out.  Sizes are st_size;
 * "allocated" is st_blocks * 512, the bytes the file really uses on disk
 * (segments are preallocated, and removed large blobs are punched out).
 *
 * Default output: per DIR a header line, an aligned table (NAME, STATE,
 * SIZE, ALLOCATED, NOTE) and a "total:" line.  Bytes other than printable
 * ASCII in names are shown as \xHH and a backslash as \\.
 *
 * --json: one JSON object per line, first one per entry, then one summary
 * per DIR.  Entry objects:
 *   "kind": "entry"
 *   "dir", "name": the directory as given, the entry's name
 *   "type": "regular", "symlink", "directory", "fifo", "socket",
 *           "char-device", "block-device", "other" or "unknown" (fstatat
 *           failed)
 *   "state": "live", "stale", "unknown" or "skipped"
 *   "size", "allocated": bytes (regular files only, when known)
 *   "error": strerror text (state "unknown" only)
 * Summary objects:
 *   "kind": "summary", "dir"
 *   "files": regular files ("live" + "stale" + "unknown")
 *   "live", "stale", "unknown", "skipped": entries in each state
 *   "size", "allocated": sums over the regular files (saturating at
 *           2^64 - 1)
 * Strings are UTF-8.  A name or dir that is not valid UTF-8 has each bad
 * byte replaced by U+FFFD, and a "name_hex" (or "dir_hex") field holds its
 * exact bytes as lowercase hex.
 *
 * ---------------------------------------------------------- --metrics
 *
 * After the DIRs, if any: the metrics registry, the directory
 * $SCRATCH_METRICS_DIR if set and not empty, else /dev/shm (followed if it
 * is a symlink), where scratch_metrics_register links a file
 * scratch-<pid>-<name>.metrics for each registered metrics object.  Only
 * names of exactly that form are looked at: <pid> in decimal from 1 to
 * INT_MAX without leading zeros, <name> 1 to 64 of [A-Za-z0-9_.-]; other
 * names are ignored and subdirectories are never entered.  Sorted by pid,
 * then name.  Each entry is looked at with fstatat(AT_SYMLINK_NOFOLLOW);
 * a regular file is attached (scratch_metrics_attach: opened O_NOFOLLOW,
 * mapped read-only, never written) and its counters read once:
 *
 *   live     a process with that pid exists (kill(pid, 0) succeeds, or
 *            fails with EPERM: another user's);
 *   stale    none does: the process died without unregistering.  Its last
 *            counts are shown; --clean removes the file;
 *   unknown  the file could not be attached: not a metrics file of this
 *            library's version (EINVAL), another user's (EACCES), ...;
 *            see "error";
 *   skipped  not a regular file (a symlink, a directory, ...): never
 *            attached, never followed; "type" says what it is.
 *
 * An entry that disappears before it is read (a process unregistering)
 * is left out.
 *
 * Pids are checked in scratchstat's own pid namespace.  A file registered
 * from another one (a container sharing the directory) is judged by
 * whichever process has that pid here, and "live" only says that some
 * process has the pid: once a pid is reused, not necessarily the one that
 * registered.
 *
 * Table: a header line naming the registry, then PID, NAME, STATE,
 * HANDLES and BYTES (the gauges), and for each operation (PUT, READ,
 * REMOVE) the calls that succeeded (_OK), that failed (_ERR) and their
 * mean time in microseconds (_US: over all its calls, succeeded or failed;
 * "-" when there were none), a NOTE (the type or the error), and a
 * "total:" line.  Numbers are "-" for files that were not read.
 *
 * --json: one object per registry file, then a summary.  File objects:
 *   "kind": "metrics"
 *   "dir", "file": the registry directory, the entry's name
 *   "pid", "name": from the entry's name (a number, a string)
 *   "type", "state": as for a DIR's entries
 *   "handles", "bytes": the gauges (live and stale only)
 *   "put_success", "put_error", "put_mean_us", and the same for "read_"
 *           and "remove_": the counts, and the mean time in microseconds
 *           (null when there were no calls) (live and stale only)
 *   "error": strerror text (state "unknown" only)
 * The summary object:
 *   "kind": "metrics_summary", "dir"
 *   "files": regular files ("live" + "stale" + "unknown")
 *   "live", "stale", "unknown", "skipped": entries in each state
 *
 * ---------------------------------------------------- --prometheus FILE
 *
 * Attaches FILE (a registry file; followed if it is a symlink: the user
 * named it) and writes its metrics to stdout in the Prometheus text format
 * (scratch_metrics_write_prometheus): for a quick look, or for a
 * node_exporter textfile (write a temporary file, then rename it over the
 * .prom file, so the exporter never reads half of one).
 *
 * ------------------------------------------------------------- --clean
 *
 * The only mode that changes anything: removes from the registry each
 * entry named as above, or hidden as unregistered metrics keep their file
 * (.scratch-<pid>-<n>.metrics), that is a regular file (fstatat with
 * AT_SYMLINK_NOFOLLOW) and whose pid does not exist (kill fails with
 * ESRCH), whatever it holds, with unlinkat (which never follows), and
 * prints its path, one per line.  An entry gone meanwhile is no error.
 * Pids are checked in scratchstat's own pid namespace, so run it in the
 * namespace of the processes that register: run elsewhere, it may remove
 * a live process's file (that process goes on counting, but nobody can
 * attach its metrics any more).
 *
 * ---------------------------------------------------------------------
 *
 * Exit status: 0 when every DIR and the registry were read (whatever the
 * states) and --clean removed every stale file; 1 when a DIR or the
 * registry could not be opened or read, FILE could not be attached or
 * written out, a removal failed, memory ran out, or stdout could not be
 * written (a message on stderr says which; the other DIRs are still
 * listed); 2 for a usage error: no DIR and no mode, or --prometheus or
 * --clean along with a DIR, another mode or --json.  --help prints the
 * usage and exits 0.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "scratchstat.h"

#define SUFFIX ".lokiscratch"

const char *const state_names[] = { "live", "stale", "unknown", "skipped" };

struct entry {
	char *name;
	const char *type;
	enum state state;
	bool sized;         /* size and allocated are known */
	uint64_t size;      /* st_size */
	uint64_t allocated; /* st_blocks * 512 */
	int err;            /* errno, for STATE_UNKNOWN */
};

struct listing {
	struct entry *v;
	size_t n, cap;
};

struct totals {
	uint64_t files, count[4], size, allocated;
};

/* ------------------------------------------------------------ arithmetic */

static uint64_t add_saturating(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static uint64_t blocks_to_bytes(blkcnt_t blocks)
{
	uint64_t b = blocks < 0 ? 0 : (uint64_t)blocks;

	return b > UINT64_MAX / 512 ? UINT64_MAX : b * 512;
}

/* ------------------------------------------------------------- probing */

/* Ends in .lokiscratch with something before it, as segment.c decides. */
static bool is_scratch_name(const char *name)
{
	size_t n = strlen(name), ext = sizeof(SUFFIX) - 1;

	return n > ext && strcmp(name + n - ext, SUFFIX) == 0;
}

const char *type_name(mode_t mode)
{
	if (S_ISREG(mode))
		return "regular";
	if (S_ISLNK(mode))
		return "symlink";
	if (S_ISDIR(mode))
		return "directory";
	if (S_ISFIFO(mode))
		return "fifo";
	if (S_ISSOCK(mode))
		return "socket";
	if (S_ISCHR(mode))
		return "char-device";
	if (S_ISBLK(mode))
		return "block-device";
	return "other";
}

static void set_stat(struct entry *e, const struct stat *st)
{
	e->type = type_name(st->st_mode);
	e->sized = S_ISREG(st->st_mode);
	e->size = st->st_size < 0 ? 0 : (uint64_t)st->st_size;
	e->allocated = blocks_to_bytes(st->st_blocks);
	if (!S_ISREG(st->st_mode))
		e->state = STATE_SKIPPED;
}

/*
 * Asks whether anyone holds a lock on fd's file that a write lock over the
 * whole file would conflict with.  F_OFD_GETLK only reports; it takes
 * nothing.  Returns 1 (locked), 0 (not) or -errno.
 */
static int probe_lock(int fd)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0 };

	if (fcntl(fd, F_OFD_GETLK, &fl))
		return -errno;
	return fl.l_type != F_UNLCK;
}

/*
 * Fills e for name in dirfd.  Returns false if the entry is gone (removed
 * since readdir), true otherwise, with e->state set.  Only a regular file
 * is opened; O_NOFOLLOW and the fstat of the open file catch one swapped
 * in meanwhile (O_NONBLOCK and O_NOCTTY keep such an open from blocking or
 * taking a terminal), and what is reported is what was probed.
 */
static bool probe_entry(int dirfd, struct entry *e)
{
	struct stat st;
	int fd, locked;

	e->state = STATE_UNKNOWN;
	e->type = "unknown";
	if (fstatat(dirfd, e->name, &st, AT_SYMLINK_NOFOLLOW)) {
		e->err = errno;
		return e->err != ENOENT;
	}
	set_stat(e, &st);
	if (e->state == STATE_SKIPPED)
		return true;
	fd = openat(dirfd, e->name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0) {
		e->err = errno;
		return e->err != ENOENT;
	}
	if (fstat(fd, &st)) {
		e->err = errno;
	} else {
		set_stat(e, &st);
		if (e->state != STATE_SKIPPED) {
			locked = probe_lock(fd);
			if (locked < 0)
				e->err = -locked;
			else
				e->state = locked ? STATE_LIVE : STATE_STALE;
		}
	}
	(void)close(fd); /* read-only and never locked: nothing to lose */
	return true;
}

/* ------------------------------------------------------------- listing */

static void listing_free(struct listing *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].name);
	free(l->v);
	*l = (struct listing){ 0 };
}

void *grow(void *v, size_t n, size_t *cap, size_t size)
{
	size_t more = *cap ? *cap * 2 : 16;

	if (n < *cap)
		return v;
	if (more < *cap || !(v = reallocarray(v, more, size)))
		return NULL;
	*cap = more;
	return v;
}

/* Appends a zeroed entry named name; NULL when out of memory. */
static struct entry *listing_add(struct listing *l, const char *name)
{
	struct entry *v = grow(l->v, l->n, &l->cap, sizeof(*v));

	if (!v)
		return NULL;
	l->v = v;
	struct entry *e = &l->v[l->n];

	*e = (struct entry){ .name = strdup(name) };
	if (!e->name)
		return NULL;
	l->n++;
	return e;
}

static int entry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct entry *)a)->name, ((const struct entry *)b)->name);
}

/* Reads the .lokiscratch entries of path into l, sorted.  0 or -errno. */
static int read_dir(const char *path, struct listing *l)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *dir = fd < 0 ? NULL : fdopendir(fd);
	struct dirent *de;
	int err = 0;

	if (!dir) {
		err = -errno;
		if (fd >= 0)
			close(fd);
		return err;
	}
	for (;;) {
		errno = 0;
		if (!(de = readdir(dir))) {
			err = -errno; /* 0 at the end */
			break;
		}
		if (!is_scratch_name(de->d_name))
			continue;
		struct entry *e = listing_add(l, de->d_name);

		if (!e) {
			err = -ENOMEM;
			break;
		}
		if (!probe_entry(dirfd(dir), e)) {
			free(e->name);
			l->n--;
		}
	}
	closedir(dir);
	if (l->n > 1)
		qsort(l->v, l->n, sizeof(l->v[0]), entry_cmp);
	return err;
}

static struct totals sum_up(const struct listing *l)
{
	struct totals t = { 0 };

	for (size_t i = 0; i < l->n; i++) {
		const struct entry *e = &l->v[i];

		t.count[e->state]++;
		if (e->state == STATE_SKIPPED)
			continue;
		t.files++;
		if (e->sized) {
			t.size = add_saturating(t.size, e->size);
			t.allocated = add_saturating(t.allocated, e->allocated);
		}
	}
	return t;
}

/* ----------------------------------------------------------- the table */

static bool printable(unsigned char c)
{
	return c >= 0x20 && c < 0x7f && c != '\\';
}

/* Width of s as text_put prints it. */
static size_t text_width(const char *s)
{
	size_t w = 0;

	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		w += printable(*p) ? 1 : *p == '\\' ? 2 : 4;
	return w;
}

void text_put(FILE *out, const char *s, size_t width)
{
	size_t w = 0;

	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (printable(*p)) {
			putc(*p, out);
			w++;
		} else if (*p == '\\') {
			fputs("\\\\", out);
			w += 2;
		} else {
			fprintf(out, "\\x%02x", *p);
			w += 4;
		}
	}
	for (; w < width; w++)
		putc(' ', out);
}

static int digits(uint64_t v)
{
	int n = 1;

	while (v >= 10)
		v /= 10, n++;
	return n;
}

static void print_table(const char *path, const struct listing *l, const struct totals *t)
{
	size_t name_w = 4;
	int size_w = 4, alloc_w = 9;

	for (size_t i = 0; i < l->n; i++) {
		size_t w = text_width(l->v[i].name);

		name_w = w > name_w ? w : name_w;
		if (l->v[i].sized) {
			size_w = digits(l->v[i].size) > size_w ? digits(l->v[i].size) : size_w;
			alloc_w = digits(l->v[i].allocated) > alloc_w ? digits(l->v[i].allocated)
								      : alloc_w;
		}
	}
	text_put(stdout, path, 0);
	fputs(":\n", stdout);
	if (l->n) {
		fputs("  ", stdout);
		text_put(stdout, "NAME", name_w);
		printf("  %-7s  %*s  %*s  NOTE\n", "STATE", size_w, "SIZE", alloc_w, "ALLOCATED");
	}
	for (size_t i = 0; i < l->n; i++) {
		const struct entry *e = &l->v[i];

		fputs("  ", stdout);
		text_put(stdout, e->name, name_w);
		printf("  %-7s  ", state_names[e->state]);
		if (e->sized)
			printf("%*" PRIu64 "  %*" PRIu64, size_w, e->size, alloc_w, e->allocated);
		else
			printf("%*s  %*s", size_w, "-", alloc_w, "-");
		if (e->state == STATE_SKIPPED)
			printf("  %s", e->type);
		else if (e->state == STATE_UNKNOWN)
			printf("  %s", strerror(e->err));
		putchar('\n');
	}
	printf("  total: %" PRIu64 " files (%" PRIu64 " live, %" PRIu64 " stale, %" PRIu64
	       " unknown), %" PRIu64 " skipped, size %" PRIu64 ", allocated %" PRIu64 "\n",
	       t->files, t->count[STATE_LIVE], t->count[STATE_STALE], t->count[STATE_UNKNOWN],
	       t->count[STATE_SKIPPED], t->size, t->allocated);
}

/* ---------------------------------------------------------------- JSON */

/* Length of the valid UTF-8 sequence at s (n bytes left, n > 0); 0 if
 * invalid (bad lead or continuation, overlong, surrogate, > U+10FFFF). */
static size_t utf8_length(const unsigned char *s, size_t n)
{
	uint32_t cp, min;
	size_t len;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2, cp = s[0] & 0x1f, min = 0x80;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		len = 3, cp = s[0] & 0x0f, min = 0x800;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4, cp = s[0] & 0x07, min = 0x10000;
	else
		return 0;
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

/* Prints s as a JSON string; true if some byte was not valid UTF-8 and
 * was replaced by U+FFFD. */
static bool json_string(FILE *out, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s);
	bool lossy = false;

	putc('"', out);
	while (n) {
		size_t len = utf8_length(p, n);

		if (len == 0) {
			fputs("\\ufffd", out);
			lossy = true;
			len = 1;
		} else if (*p == '"' || *p == '\\') {
			fprintf(out, "\\%c", *p);
		} else if (*p < 0x20 || *p == 0x7f) {
			fprintf(out, "\\u%04x", *p);
		} else {
			fwrite(p, 1, len, out);
		}
		p += len;
		n -= len;
	}
	putc('"', out);
	return lossy;
}

/* Prints ,"key":"value" and, if value is not UTF-8, ,"key_hex":"..." too. */
void json_field(FILE *out, const char *key, const char *value, bool first)
{
	if (!first)
		putc(',', out);
	fprintf(out, "\"%s\":", key);
	if (!json_string(out, value))
		return;
	fprintf(out, ",\"%s_hex\":\"", key);
	for (const unsigned char *p = (const unsigned char *)value; *p; p++)
		fprintf(out, "%02x", *p);
	putc('"', out);
}

void json_number(FILE *out, const char *key, uint64_t v)
{
	fprintf(out, ",\"%s\":%" PRIu64, key, v);
}

static void print_json(const char *path, const struct listing *l, const struct totals *t)
{
	for (size_t i = 0; i < l->n; i++) {
		const struct entry *e = &l->v[i];

		fputs("{\"kind\":\"entry\",", stdout);
		json_field(stdout, "dir", path, true);
		json_field(stdout, "name", e->name, false);
		json_field(stdout, "type", e->type, false);
		json_field(stdout, "state", state_names[e->state], false);
		if (e->sized) {
			json_number(stdout, "size", e->size);
			json_number(stdout, "allocated", e->allocated);
		}
		if (e->state == STATE_UNKNOWN)
			json_field(stdout, "error", strerror(e->err), false);
		fputs("}\n", stdout);
	}
	fputs("{\"kind\":\"summary\",", stdout);
	json_field(stdout, "dir", path, true);
	json_number(stdout, "files", t->files);
	for (int s = STATE_LIVE; s <= STATE_SKIPPED; s++)
		json_number(stdout, state_names[s], t->count[s]);
	json_number(stdout, "size", t->size);
	json_number(stdout, "allocated", t->allocated);
	fputs("}\n", stdout);
}

/* ---------------------------------------------------------------- main */

static void usage(FILE *out)
{
	fputs("usage: scratchstat [--json] [--metrics] DIR...\n"
	      "       scratchstat [--json] --metrics\n"
	      "       scratchstat --prometheus FILE\n"
	      "       scratchstat --clean\n"
	      "Lists the .lokiscratch files directly in each DIR with their size, the bytes\n"
	      "they use on disk, and whether a running store owns them (live) or not (stale).\n"
	      "The registry is $SCRATCH_METRICS_DIR, else /dev/shm.  Only --clean changes\n"
	      "anything.\n"
	      "  --metrics          then the metrics that processes registered: their gauges,\n"
	      "                     counts and mean times, and whether the process lives\n"
	      "  --prometheus FILE  print the metrics of registry file FILE in the Prometheus\n"
	      "                     text format\n"
	      "  --clean            remove the registry files of processes that are gone\n"
	      "                     (pids as this pid namespace sees them), printing each path\n"
	      "  --json             one JSON object per line (fields: see the top of\n"
	      "                     tools/scratchstat.c)\n"
	      "  --help             this text\n",
	      out);
}

void complain(const char *path, int err)
{
	fflush(stdout); /* keep earlier output before the message */
	fputs("scratchstat: ", stderr);
	text_put(stderr, path, 0);
	fprintf(stderr, ": %s\n", strerror(err));
}

/* Lists one DIR; false if it could not be read. */
static bool stat_dir(const char *path, bool json, unsigned *tables)
{
	struct listing l = { 0 };
	int err = read_dir(path, &l);

	if (err) {
		complain(path, -err);
	} else {
		struct totals t = sum_up(&l);

		if (json) {
			print_json(path, &l, &t);
		} else {
			if ((*tables)++)
				putchar('\n');
			print_table(path, &l, &t);
		}
	}
	listing_free(&l);
	return err == 0;
}

/* The DIRs, then the registry if asked; false if any failed. */
static bool list_all(char **dirs, int ndirs, bool json, bool metrics)
{
	unsigned tables = 0;
	bool ok = true;

	for (int i = 0; i < ndirs; i++)
		if (!stat_dir(dirs[i], json, &tables))
			ok = false;
	if (metrics && !registry_list(json, &tables))
		ok = false;
	return ok;
}

struct options {
	bool json, metrics, clean;
	const char *prometheus; /* FILE, or NULL */
};

/* Parses argv into o, leaving optind at the first DIR.  Returns -1 to go
 * on, else the exit status (after --help, or a usage error). */
static int parse_options(int argc, char **argv, struct options *o)
{
	static const struct option options[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "metrics", no_argument, NULL, 'm' },
		{ "prometheus", required_argument, NULL, 'p' },
		{ "clean", no_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *problem = NULL;
	int c;

	*o = (struct options){ 0 };
	while ((c = getopt_long(argc, argv, "h", options, NULL)) != -1) {
		switch (c) {
		case 'j':
			o->json = true;
			break;
		case 'm':
			o->metrics = true;
			break;
		case 'p':
			if (o->prometheus)
				problem = "--prometheus given twice";
			o->prometheus = optarg;
			break;
		case 'c':
			o->clean = true;
			break;
		case 'h':
			usage(stdout);
			return fflush(stdout) || ferror(stdout) ? 1 : 0;
		default: /* getopt_long has named the problem */
			usage(stderr);
			return 2;
		}
	}
	if (o->prometheus || o->clean) {
		if (optind < argc)
			problem = o->clean ? "--clean takes no DIR" : "--prometheus takes no DIR";
		else if (o->json || o->metrics || (o->prometheus && o->clean))
			problem = "--prometheus and --clean go alone";
	} else if (optind == argc && !o->metrics) {
		problem = "no DIR given";
	}
	if (problem) {
		fprintf(stderr, "scratchstat: %s\n", problem);
		usage(stderr);
		return 2;
	}
	return -1;
}

int main(int argc, char **argv)
{
	struct options o;
	int status = parse_options(argc, argv, &o), err;
	bool ok;

	if (status >= 0)
		return status;
	if (o.prometheus)
		ok = registry_prometheus(o.prometheus);
	else if (o.clean)
		ok = registry_clean();
	else
		ok = list_all(argv + optind, argc - optind, o.json, o.metrics);
	err = fflush(stdout) ? errno : ferror(stdout) ? EIO : 0;
	if (err) {
		fprintf(stderr, "scratchstat: writing the output: %s\n", strerror(err));
		return 1;
	}
	return ok ? 0 : 1;
}
