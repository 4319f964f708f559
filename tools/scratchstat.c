/*
 * scratchstat: what the filesystem stores keep in a directory, looked at
 * without changing anything.
 *
 *   scratchstat [--json] DIR...
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
 * Exit status: 0 when every DIR was read (whatever the states); 1 when a
 * DIR could not be opened or read (a message on stderr names it; the other
 * DIRs are still listed), memory ran out, or stdout could not be written;
 * 2 for a usage error.  --help prints the usage and exits 0.
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

#define SUFFIX ".lokiscratch"

enum state { STATE_LIVE, STATE_STALE, STATE_UNKNOWN, STATE_SKIPPED };

static const char *const state_names[] = { "live", "stale", "unknown", "skipped" };

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

static const char *type_name(mode_t mode)
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

/* Appends a zeroed entry named name; NULL when out of memory. */
static struct entry *listing_add(struct listing *l, const char *name)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		struct entry *v = cap > l->cap ? reallocarray(l->v, cap, sizeof(*v)) : NULL;

		if (!v)
			return NULL;
		l->v = v;
		l->cap = cap;
	}
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

/* Prints s with every byte but printable ASCII escaped, padded to width. */
static void text_put(FILE *out, const char *s, size_t width)
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
static void json_field(FILE *out, const char *key, const char *value, bool first)
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

static void json_number(FILE *out, const char *key, uint64_t v)
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
	fputs("usage: scratchstat [--json] DIR...\n"
	      "Lists the .lokiscratch files directly in each DIR with their size, the bytes\n"
	      "they use on disk, and whether a running store owns them (live) or not (stale).\n"
	      "Changes nothing.\n"
	      "  --json   one JSON object per line (fields: see the top of tools/scratchstat.c)\n"
	      "  --help   this text\n",
	      out);
}

/* Lists one DIR; false if it could not be read.  *tables counts the tables
 * printed so far, to put a blank line between them. */
static bool stat_dir(const char *path, bool json, unsigned *tables)
{
	struct listing l = { 0 };
	int err = read_dir(path, &l);

	if (err) {
		fflush(stdout); /* keep earlier output before the message */
		fputs("scratchstat: ", stderr);
		text_put(stderr, path, 0);
		fprintf(stderr, ": %s\n", strerror(-err));
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

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool json = false, ok = true;
	unsigned tables = 0;
	int c, err;

	while ((c = getopt_long(argc, argv, "h", options, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'h':
			usage(stdout);
			return fflush(stdout) || ferror(stdout) ? 1 : 0;
		default: /* getopt_long has named the problem */
			usage(stderr);
			return 2;
		}
	}
	if (optind == argc) {
		fputs("scratchstat: no DIR given\n", stderr);
		usage(stderr);
		return 2;
	}
	for (int i = optind; i < argc; i++)
		if (!stat_dir(argv[i], json, &tables))
			ok = false;
	err = fflush(stdout) ? errno : ferror(stdout) ? EIO : 0;
	if (err) {
		fprintf(stderr, "scratchstat: writing the output: %s\n", strerror(err));
		return 1;
	}
	return ok ? 0 : 1;
}
