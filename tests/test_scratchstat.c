/*
 * test_scratchstat.c: tools/scratchstat run on the directories of real
 * filesystem stores.  The tool's path comes in $SCRATCHSTAT (meson sets
 * it); without it the program skips.
 *
 * Covers: a live store's files all "live", with sizes, allocations and
 * summary counts matching the directory; a planted unlocked file "stale";
 * a symlink and a directory named *.lokiscratch "skipped", not followed;
 * a subdirectory's files not listed; nothing in the directory changed by
 * the tool (entries, sizes, times, inodes), and the store unharmed; the
 * files of a store that died without closing "stale", then removed by the
 * next store; names with quotes, control bytes and invalid UTF-8 escaped
 * in JSON and in the table; exit status 1 for a DIR that cannot be read,
 * 2 for usage errors.  Helpers: fs_testutil.h.
 *
 * The registry modes, on a registry of the case's own ($SCRATCH_METRICS_DIR,
 * set in the case and inherited by the tool): a live registered metrics
 * object shown with its pid, name, gauges and counts, in the table, in
 * JSON and as Prometheus text; the file of a process that died without
 * unregistering "stale" with its last counts, and the only one --clean
 * removes; a file of zeros "unknown" (pid 1 lives: --clean keeps it); a
 * symlink and a directory named like metrics files "skipped", never
 * attached nor removed; names that are not exactly scratch-<pid>-<name>
 * ignored by both; an empty registry; DIRs listed before the registry;
 * run as another user (when the test runs as root), root's files
 * "unknown" (EACCES) and --clean failing on the stale one but leaving pid
 * 1's (kill answers EPERM: it lives); exit status 1 for an unreadable
 * registry or FILE, 2 for bad mixes.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <grp.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fs_testutil.h"

#define STALE_NAME "0123456789abcdef0123456789abcdef" SUFFIX
#define STALE_TEXT "left by a store that is gone"
#define INNER_NAME "fedcba9876543210fedcba9876543210" SUFFIX

static const char *tool;
static uid_t run_as; /* run the tool as this user (and group) if not 0 */

/* ------------------------------------------------------ running the tool */

struct run {
	int status; /* exit status, or -1 if it did not exit */
	char *out, *err;
};

/* All of fd from its current offset, NUL-terminated. */
static char *slurp(int fd)
{
	size_t n = 0, cap = 4096;
	char *buf = malloc(cap);
	ssize_t k;

	require(buf != NULL);
	for (;;) {
		if (cap - n < 2) {
			buf = realloc(buf, cap *= 2);
			require(buf != NULL);
		}
		k = read(fd, buf + n, cap - n - 1);
		if (k < 0 && errno == EINTR)
			continue;
		require(k >= 0);
		if (k == 0)
			break;
		n += (size_t)k;
	}
	buf[n] = '\0';
	return buf;
}

/* Runs the tool with args (NULL-terminated, argv[0] left out). */
static void run_tool(struct run *r, const char *const *args)
{
	const char *argv[16] = { "scratchstat" };
	FILE *err = tmpfile();
	int out[2], st;
	pid_t pid;

	for (size_t i = 0; args[i]; i++) {
		require(i + 2 < sizeof(argv) / sizeof(argv[0]));
		argv[i + 1] = args[i];
	}
	require(err != NULL && pipe(out) == 0);
	pid = fork();
	require(pid >= 0);
	if (pid == 0) {
		if (dup2(out[1], STDOUT_FILENO) < 0 || dup2(fileno(err), STDERR_FILENO) < 0)
			_exit(126);
		close(out[0]);
		close(out[1]);
		fclose(err); /* the copy on STDERR_FILENO stays */
		if (run_as && (setgroups(0, NULL) || setgid(run_as) || setuid(run_as)))
			_exit(125);
		execv(tool, (char *const *)argv);
		_exit(127);
	}
	close(out[1]);
	r->out = slurp(out[0]);
	close(out[0]);
	require(waitpid(pid, &st, 0) == pid);
	r->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	require(lseek(fileno(err), 0, SEEK_SET) == 0);
	r->err = slurp(fileno(err));
	fclose(err);
}

static void run_free(struct run *r)
{
	free(r->out);
	free(r->err);
}

/* Runs the tool and requires exit status want. */
#define RUN(r, want, ...)                                                                 \
	do {                                                                               \
		run_tool((r), (const char *const[]){ __VA_ARGS__, NULL });                 \
		if ((r)->status != (want))                                                 \
			ck_abort_msg("scratchstat exited %d, want %d; stderr: %s", (r)->status, \
				     (want), (r)->err);                                    \
	} while (0)

/* ------------------------------------------------------- reading output */

/* The next line of *p (without its newline) into line; false at the end. */
static bool next_line(const char **p, char *line, size_t cap)
{
	const char *end;
	size_t n;

	if (!**p)
		return false;
	end = strchr(*p, '\n');
	require(end != NULL); /* every line ends with a newline */
	n = (size_t)(end - *p);
	require(n < cap);
	memcpy(line, *p, n);
	line[n] = '\0';
	*p = end + 1;
	return true;
}

/* The string field key of a JSON line, copied as it stands (escapes kept);
 * false if absent. */
static bool json_str(const char *line, const char *key, char *out, size_t cap)
{
	char pat[64];
	const char *v, *end;

	snprintf(pat, sizeof(pat), "\"%s\":\"", key);
	if (!(v = strstr(line, pat)))
		return false;
	v += strlen(pat);
	for (end = v; *end != '"'; end++) {
		require(*end != '\0');
		if (*end == '\\')
			end++;
	}
	require((size_t)(end - v) < cap);
	memcpy(out, v, (size_t)(end - v));
	out[end - v] = '\0';
	return true;
}

/* The number field key of a JSON line; -1 if absent. */
static int64_t json_num(const char *line, const char *key)
{
	char pat[64];
	const char *v;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	if (!(v = strstr(line, pat)))
		return -1;
	return strtoll(v + strlen(pat), NULL, 10);
}

/* Every line is one object: '{' first, '}' last, no raw control bytes. */
static void expect_json_lines(const char *out)
{
	const char *p = out;
	char line[4096];

	require(*out != '\0');
	while (next_line(&p, line, sizeof(line))) {
		size_t n = strlen(line);

		if (n < 2 || line[0] != '{' || line[n - 1] != '}')
			ck_abort_msg("not a JSON object line: %s", line);
		for (size_t i = 0; i < n; i++)
			require((unsigned char)line[i] >= 0x20);
	}
}

/* The table line holding name (as printed), or NULL. */
static const char *table_line(const char *out, const char *name, char *line, size_t cap)
{
	const char *p = out;
	char word[PATH_MAX];

	snprintf(word, sizeof(word), "  %s ", name);
	while (next_line(&p, line, cap))
		if (strncmp(line, word, strlen(word)) == 0)
			return line;
	return NULL;
}

struct summary {
	uint64_t files, live, stale, unknown, skipped, size, allocated;
};

static void table_summary(const char *out, struct summary *s)
{
	const char *p = out;
	char line[1024];

	while (next_line(&p, line, sizeof(line)))
		if (sscanf(line,
			   "  total: %" SCNu64 " files (%" SCNu64 " live, %" SCNu64 " stale, %" SCNu64
			   " unknown), %" SCNu64 " skipped, size %" SCNu64 ", allocated %" SCNu64,
			   &s->files, &s->live, &s->stale, &s->unknown, &s->skipped, &s->size,
			   &s->allocated) == 7)
			return;
	ck_abort_msg("no total line in:\n%s", out);
}

/* The JSON summary line of dir. */
static void json_summary(const char *out, const char *dir, struct summary *s)
{
	const char *p = out;
	char line[4096], got[PATH_MAX];

	while (next_line(&p, line, sizeof(line))) {
		if (!strstr(line, "\"kind\":\"summary\"") || !json_str(line, "dir", got, sizeof(got)) ||
		    strcmp(got, dir) != 0)
			continue;
		*s = (struct summary){
			(uint64_t)json_num(line, "files"),   (uint64_t)json_num(line, "live"),
			(uint64_t)json_num(line, "stale"),   (uint64_t)json_num(line, "unknown"),
			(uint64_t)json_num(line, "skipped"), (uint64_t)json_num(line, "size"),
			(uint64_t)json_num(line, "allocated"),
		};
		return;
	}
	ck_abort_msg("no summary of %s in:\n%s", dir, out);
}

static void expect_summary(const struct summary *got, const struct summary *want)
{
	if (memcmp(got, want, sizeof(*got)) != 0)
		ck_abort_msg("summary: files %lu live %lu stale %lu unknown %lu skipped %lu size %lu "
			     "allocated %lu; want %lu %lu %lu %lu %lu %lu %lu",
			     (unsigned long)got->files, (unsigned long)got->live,
			     (unsigned long)got->stale, (unsigned long)got->unknown,
			     (unsigned long)got->skipped, (unsigned long)got->size,
			     (unsigned long)got->allocated, (unsigned long)want->files,
			     (unsigned long)want->live, (unsigned long)want->stale,
			     (unsigned long)want->unknown, (unsigned long)want->skipped,
			     (unsigned long)want->size, (unsigned long)want->allocated);
}

/* ------------------------------------------------- the directory's state */

struct snap_entry {
	char *name;
	struct stat st;
};

struct snapshot {
	size_t n;
	struct snap_entry *v;
};

static int snap_cmp(const void *a, const void *b)
{
	return strcmp(((const struct snap_entry *)a)->name, ((const struct snap_entry *)b)->name);
}

/* Every entry of dir and of its subdirectory sub, with its lstat. */
static void snapshot(const char *dir, struct snapshot *s)
{
	char path[PATH_MAX];
	const char *dirs[] = { "", "/sub" };

	memset(s, 0, sizeof(*s));
	for (int i = 0; i < 2; i++) {
		snprintf(path, sizeof(path), "%s%s", dir, dirs[i]);
		DIR *d = opendir(path);
		struct dirent *e;

		require(d != NULL);
		while ((e = readdir(d))) {
			struct snap_entry *x;

			s->v = realloc(s->v, (s->n + 1) * sizeof(*s->v));
			require(s->v != NULL);
			x = &s->v[s->n++];
			require(asprintf(&x->name, "%s/%s", dirs[i], e->d_name) > 0);
			require(fstatat(dirfd(d), e->d_name, &x->st, AT_SYMLINK_NOFOLLOW) == 0);
		}
		closedir(d);
	}
	qsort(s->v, s->n, sizeof(*s->v), snap_cmp);
}

static bool same_time(struct timespec a, struct timespec b)
{
	return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

/* blocks: st_blocks must not change either.  Not so in a registry: on a
 * tmpfs, reading a hole through a shared mapping (as attaching does)
 * gives it a page. */
static void expect_same(const struct snapshot *a, const struct snapshot *b, bool blocks)
{
	ck_assert_uint_eq(a->n, b->n);
	for (size_t i = 0; i < a->n; i++) {
		const struct stat *x = &a->v[i].st, *y = &b->v[i].st;

		ck_assert_str_eq(a->v[i].name, b->v[i].name);
		if (x->st_ino != y->st_ino || x->st_mode != y->st_mode || x->st_size != y->st_size ||
		    (blocks && x->st_blocks != y->st_blocks) || !same_time(x->st_mtim, y->st_mtim) ||
		    !same_time(x->st_ctim, y->st_ctim))
			ck_abort_msg("%s changed", a->v[i].name);
	}
}

static void snapshot_free(struct snapshot *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i].name);
	free(s->v);
}

/* A 0600 file holding text (list_files wants store files 0600). */
static void plant(const char *dir, const char *name, const char *text)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	write_file(path, text);
	require(chmod(path, 0600) == 0);
}

/* ----------------------------------------------------------------- cases */

/* Checks the --json entries of the live-store case against the directory. */
static void check_json_entries(const char *dir, const char *out, const struct files *f)
{
	const char *p = out;
	char line[4096], name[NAME_MAX + 1], state[32], type[32];
	size_t entries = 0;

	while (next_line(&p, line, sizeof(line))) {
		if (strstr(line, "\"kind\":\"summary\""))
			continue;
		entries++;
		require(json_str(line, "name", name, sizeof(name)));
		require(json_str(line, "state", state, sizeof(state)));
		require(json_str(line, "type", type, sizeof(type)));
		if (strcmp(name, "x" SUFFIX) == 0 || strcmp(name, "d" SUFFIX) == 0) {
			ck_assert_str_eq(state, "skipped");
			ck_assert_str_eq(type, name[0] == 'x' ? "symlink" : "directory");
			require(json_num(line, "size") == -1);
			continue;
		}
		char path[PATH_MAX + NAME_MAX + 1];
		struct stat st;

		snprintf(path, sizeof(path), "%s/%s", dir, name);
		require(lstat(path, &st) == 0);
		ck_assert_str_eq(type, "regular");
		ck_assert_int_eq(json_num(line, "size"), st.st_size);
		ck_assert_int_eq(json_num(line, "allocated"), (int64_t)st.st_blocks * 512);
		if (strcmp(name, STALE_NAME) == 0) {
			ck_assert_str_eq(state, "stale");
		} else {
			if (!files_has(f, name))
				ck_abort_msg("%s listed, not a store file", name);
			ck_assert_str_eq(state, "live");
		}
	}
	ck_assert_uint_eq(entries, f->n + 2); /* f's files, the symlink, the directory */
}

START_TEST(test_live_store)
{
	char dir[PATH_MAX], path[PATH_MAX + 32], line[1024];
	struct snapshot before, after;
	struct blob b[6];
	struct files f;
	struct run r;
	scratch_store *s;

	case_dir(dir);
	s = fs_new(NULL, dir);
	b[0] = put_seeded(s, 1, 100);
	b[1] = put_seeded(s, 2, 4096);
	b[2] = put_seeded(s, 3, 2 * MiB);
	b[3] = put_seeded(s, 4, 2 * MiB);
	b[4] = put_seeded(s, 5, 5 * MiB); /* a file of its own */
	require(scratch_store_flush(s) == 0);

	list_files(dir, &f); /* the store's files */
	ck_assert_uint_ge(f.n, 2);
	snprintf(path, sizeof(path), "%s/x" SUFFIX, dir);
	require(symlink(f.names[0], path) == 0); /* to a live file */
	files_free(&f);
	plant(dir, STALE_NAME, STALE_TEXT);
	list_files(dir, &f); /* and the stale file (list_files skips symlinks) */
	snprintf(path, sizeof(path), "%s/d" SUFFIX, dir); /* list_files would reject it */
	require(mkdir(path, 0700) == 0);
	snprintf(path, sizeof(path), "%s/sub", dir);
	require(mkdir(path, 0700) == 0);
	plant(path, INNER_NAME, "in a subdirectory");
	plant(dir, "notes.txt", "not a scratch file");
	snapshot(dir, &before);
	struct summary got, want = { .files = f.n, .live = f.n - 1, .stale = 1, .skipped = 2,
				     .size = f.bytes, .allocated = f.blocks * 512 };

	RUN(&r, 0, "--json", dir);
	ck_assert_str_eq(r.err, "");
	expect_json_lines(r.out);
	check_json_entries(dir, r.out, &f);
	json_summary(r.out, dir, &got);
	expect_summary(&got, &want);
	require(!strstr(r.out, INNER_NAME) && !strstr(r.out, "notes.txt"));
	run_free(&r);

	RUN(&r, 0, dir);
	ck_assert_str_eq(r.err, "");
	for (size_t i = 0; i < f.n; i++) {
		require(table_line(r.out, f.names[i], line, sizeof(line)));
		require(strstr(line, strcmp(f.names[i], STALE_NAME) ? " live " : " stale "));
	}
	require(table_line(r.out, "x" SUFFIX, line, sizeof(line)));
	require(strstr(line, " skipped ") && strstr(line, "symlink"));
	require(!strstr(r.out, INNER_NAME) && !strstr(r.out, "notes.txt"));
	table_summary(r.out, &got);
	expect_summary(&got, &want);
	run_free(&r);

	snapshot(dir, &after);
	expect_same(&before, &after, true);
	snapshot_free(&before);
	snapshot_free(&after);
	files_free(&f);
	snprintf(path, sizeof(path), "%s/d" SUFFIX, dir);
	require(rmdir(path) == 0);

	/* The store is unharmed: its blobs read back and it takes more. */
	b[5] = put_seeded(s, 6, 2 * MiB);
	require(scratch_store_flush(s) == 0);
	expect_blobs(s, b, 6);
	scratch_store_close(s);

	list_files(dir, &f);
	ck_assert_uint_eq(f.n, 1);
	ck_assert_str_eq(f.names[0], STALE_NAME);
	RUN(&r, 0, "--json", dir);
	json_summary(r.out, dir, &got);
	want = (struct summary){ .files = 1, .stale = 1, .skipped = 1, .size = f.bytes,
				 .allocated = f.blocks * 512 };
	expect_summary(&got, &want);
	run_free(&r);
	files_free(&f);
	rm_rf(dir);
}
END_TEST

/* A store that dies without closing leaves stale files; the next removes them. */
START_TEST(test_dead_store)
{
	char dir[PATH_MAX];
	struct summary got, want;
	struct files f;
	struct run r;
	pid_t pid;

	case_dir(dir);
	pid = fork();
	require(pid >= 0);
	if (pid == 0) {
		scratch_store *s = NULL;
		struct blob b;

		child_require(scratch_filesystem_new(NULL, dir, &s) == 0);
		child_require(put_seeded_rc(s, 1, 2 * MiB, &b) == 0);
		child_require(put_seeded_rc(s, 2, 1000, &b) == 0);
		child_require(scratch_store_flush(s) == 0);
		_exit(0); /* no close: the files stay, their locks die */
	}
	wait_child_ok(pid);

	list_files(dir, &f);
	ck_assert_uint_ge(f.n, 1);
	want = (struct summary){ .files = f.n, .stale = f.n, .size = f.bytes,
				 .allocated = f.blocks * 512 };
	RUN(&r, 0, "--json", dir);
	expect_json_lines(r.out);
	json_summary(r.out, dir, &got);
	expect_summary(&got, &want);
	require(!strstr(r.out, "\"state\":\"live\""));
	run_free(&r);
	ck_assert_uint_eq(count_files(dir), f.n); /* the tool removed nothing */
	files_free(&f);

	scratch_store *s = fs_new(NULL, dir); /* cleans up */
	ck_assert_uint_eq(count_files(dir), 0);
	scratch_store_close(s);
	RUN(&r, 0, dir);
	table_summary(r.out, &got);
	want = (struct summary){ 0 };
	expect_summary(&got, &want);
	require(!strstr(r.out, "  NAME ")); /* no table header for no entries */
	run_free(&r);
	rm_rf(dir);
}
END_TEST

START_TEST(test_hostile_names)
{
	static const char name[] = "q\"b\\n\nc\x01\xff\xc3\xa9" SUFFIX;
	char dir[PATH_MAX], got[PATH_MAX], hex[2 * sizeof(name) + 1], line[4096];
	const char *p;
	struct run r;

	case_dir(dir);
	plant(dir, name, "x");
	for (size_t i = 0; name[i]; i++)
		sprintf(hex + 2 * i, "%02x", (unsigned char)name[i]);

	RUN(&r, 0, "--json", dir);
	expect_json_lines(r.out); /* the newline in the name did not split the line */
	p = r.out;
	require(next_line(&p, line, sizeof(line)));
	require(json_str(line, "name", got, sizeof(got)));
	ck_assert_str_eq(got, "q\\\"b\\\\n\\u000ac\\u0001\\ufffd\xc3\xa9" SUFFIX);
	require(json_str(line, "name_hex", got, sizeof(got)));
	ck_assert_str_eq(got, hex);
	require(!strstr(line, "dir_hex")); /* the directory's name is UTF-8 */
	require(json_str(line, "state", got, sizeof(got)));
	ck_assert_str_eq(got, "stale");
	require(next_line(&p, line, sizeof(line)) && strstr(line, "\"kind\":\"summary\""));
	require(!next_line(&p, line, sizeof(line)));
	run_free(&r);

	RUN(&r, 0, dir);
	require(table_line(r.out, "q\"b\\\\n\\x0ac\\x01\\xff\\xc3\\xa9" SUFFIX, line,
			   sizeof(line)));
	require(strstr(line, " stale "));
	for (p = r.out; *p; p++)
		require(*p == '\n' || (unsigned char)*p >= 0x20);
	run_free(&r);
	rm_rf(dir);
}
END_TEST

START_TEST(test_errors_and_usage)
{
	char dir[PATH_MAX], missing[PATH_MAX + 16], file[PATH_MAX + 16];
	struct summary got, want = { 0 };
	struct run r;

	case_dir(dir);
	snprintf(missing, sizeof(missing), "%s/missing", dir);
	snprintf(file, sizeof(file), "%s/file", dir);
	write_file(file, "not a directory");

	RUN(&r, 1, missing);
	ck_assert_str_eq(r.out, "");
	require(strstr(r.err, missing) && strstr(r.err, strerror(ENOENT)));
	run_free(&r);

	RUN(&r, 1, "--json", missing, dir, file); /* the good one is still listed */
	expect_json_lines(r.out);
	json_summary(r.out, dir, &got);
	expect_summary(&got, &want);
	require(strstr(r.err, missing) && strstr(r.err, file) && strstr(r.err, strerror(ENOTDIR)));
	run_free(&r);

	run_tool(&r, (const char *const[]){ NULL });
	ck_assert_int_eq(r.status, 2);
	ck_assert_str_eq(r.out, "");
	require(strstr(r.err, "usage:"));
	run_free(&r);

	RUN(&r, 2, "--no-such-option", dir);
	require(strstr(r.err, "usage:"));
	run_free(&r);

	RUN(&r, 0, "--help");
	require(strstr(r.out, "usage:"));
	ck_assert_str_eq(r.err, "");
	run_free(&r);

	RUN(&r, 0, "--", dir);
	table_summary(r.out, &got);
	expect_summary(&got, &want);
	run_free(&r);
	rm_rf(dir);
}
END_TEST

/* ------------------------------------------------------------ the registry */

/* Where the cases' registries go: under /dev/shm, as the library's default
 * registry is (a tmpfs), else under /tmp.  Registering needs O_TMPFILE,
 * which some filesystems lack (overlayfs before Linux 6.6). */
static char registry_root[64];
static bool registry_tmpfile;

static void registry_root_init(void)
{
	int fd;

	snprintf(registry_root, sizeof(registry_root), "%s/scratchstat-registry-XXXXXX",
		 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
	if (!mkdtemp(registry_root)) {
		perror("mkdtemp");
		exit(EXIT_FAILURE);
	}
	fd = open(registry_root, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	registry_tmpfile = fd >= 0;
	if (fd >= 0)
		close(fd);
}

/* A fresh registry for one case, made $SCRATCH_METRICS_DIR for the case
 * (Check runs it in a child of its own) and the tools it runs. */
static void case_registry(char *out)
{
	snprintf(out, PATH_MAX, "%s/reg-XXXXXX", registry_root);
	require(mkdtemp(out) != NULL);
	require(setenv("SCRATCH_METRICS_DIR", out, 1) == 0);
}

/* reg/<pre><pid><post>; pid < 0: reg/<pre><post>.  out: PATH_MAX bytes. */
static void reg_path(char *out, const char *reg, const char *pre, int pid, const char *post)
{
	char num[16] = "";

	if (pid >= 0)
		snprintf(num, sizeof(num), "%d", pid);
	require(snprintf(out, PATH_MAX, "%s/%s%s%s", reg, pre, num, post) < PATH_MAX);
}

/* Forks a child that registers metrics as name, counts one put of 7 bytes
 * and exits without unregistering.  Returns its pid, reaped: gone. */
static pid_t register_and_die(const char *name)
{
	pid_t pid = fork();

	require(pid >= 0);
	if (pid == 0) {
		scratch_metrics *m = NULL;
		scratch_store *inner = NULL, *s = NULL;
		scratch_handle h;

		child_require(scratch_metrics_new(&m) == 0);
		child_require(scratch_memory_new(&inner) == 0);
		child_require(scratch_observe(m, inner, &s) == 0);
		child_require(scratch_put(s, "1234567", 7, &h) == 0);
		child_require(scratch_metrics_register(m, name) == 0);
		_exit(0); /* no unregister: the file stays, its process goes */
	}
	wait_child_ok(pid);
	require(kill(pid, 0) == -1 && errno == ESRCH);
	return pid;
}

/* Registers metrics as "ingest" on a memory store and counts 3 puts, a
 * read, a read of an unknown handle, a remove and a remove of a removed
 * handle: 2 handles, 5010 bytes left. */
static scratch_store *register_ingest(scratch_metrics **m)
{
	static const char bytes[5000];
	scratch_store *inner, *s;
	scratch_reader *r;
	scratch_handle a, b, c;

	ck_assert_int_eq(scratch_metrics_new(m), 0);
	ck_assert_int_eq(scratch_memory_new(&inner), 0);
	ck_assert_int_eq(scratch_observe(*m, inner, &s), 0);
	ck_assert_int_eq(scratch_metrics_register(*m, "ingest"), 0);
	ck_assert_int_eq(scratch_put(s, bytes, 10, &a), 0);
	ck_assert_int_eq(scratch_put(s, bytes, 100, &b), 0);
	ck_assert_int_eq(scratch_put(s, bytes, 5000, &c), 0);
	ck_assert_int_eq(scratch_read(s, a, &r), 0);
	ck_assert_int_eq(scratch_reader_close(r), 0);
	ck_assert_int_eq(scratch_read(s, c + 1000000, &r), SCRATCH_ENOTFOUND);
	ck_assert_int_eq(scratch_remove(s, b), 0);
	ck_assert_int_eq(scratch_remove(s, b), SCRATCH_ENOTFOUND);
	return s;
}

/* A --metrics table row: PID, NAME, STATE, the 11 numbers, the note. */
struct metrics_row {
	int pid;
	char name[80], state[16], v[11][32], note[128];
};

/* The table row of the metrics named name; false if none. */
static bool metrics_row(const char *out, const char *name, struct metrics_row *row)
{
	const char *p = out;
	char line[1024];

	while (next_line(&p, line, sizeof(line))) {
		struct metrics_row x = { 0 };
		char *v = x.v[0];
		int n = -1;

		if (sscanf(line,
			   "%d %79s %15s %31s %31s %31s %31s %31s %31s %31s %31s %31s %31s %31s %n",
			   &x.pid, x.name, x.state, v, v + 32, v + 64, v + 96, v + 128, v + 160,
			   v + 192, v + 224, v + 256, v + 288, v + 320, &n) != 14 ||
		    strcmp(x.name, name) != 0)
			continue;
		snprintf(x.note, sizeof(x.note), "%s", n >= 0 ? line + n : "");
		*row = x;
		return true;
	}
	return false;
}

/* Checks a row's numbers; "*" in want stands for a mean time. */
static void expect_row(const struct metrics_row *row, const char *const want[11])
{
	for (int i = 0; i < 11; i++) {
		char *end;

		if (strcmp(want[i], "*") != 0) {
			if (strcmp(row->v[i], want[i]) != 0)
				ck_abort_msg("%s: number %d is %s, want %s", row->name, i, row->v[i],
					     want[i]);
		} else if (strtod(row->v[i], &end) < 0 || end == row->v[i] || *end) {
			ck_abort_msg("%s: number %d is %s, want a time", row->name, i, row->v[i]);
		}
	}
}

/* The --json object of the metrics named name, into line; false if none. */
static bool metrics_object(const char *out, const char *name, char *line, size_t cap)
{
	const char *p = out;
	char got[128];

	while (next_line(&p, line, cap))
		if (strstr(line, "\"kind\":\"metrics\"") && json_str(line, "name", got, sizeof(got)) &&
		    strcmp(got, name) == 0)
			return true;
	return false;
}

/* The number field key of a JSON line; false if absent or null. */
static bool json_double(const char *line, const char *key, double *v)
{
	char pat[64];
	const char *p;
	char *end;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	if (!(p = strstr(line, pat)) || strncmp(p + strlen(pat), "null", 4) == 0)
		return false;
	*v = strtod(p + strlen(pat), &end);
	require(end != p + strlen(pat));
	return true;
}

/* Checks the state, type, gauges and counts of a --json object. */
static void expect_object(const char *line, const char *state, const char *type,
			  const int64_t want[8])
{
	static const char *const keys[8] = { "handles",	    "bytes",	   "put_success",
					     "put_error",   "read_success", "read_error",
					     "remove_success", "remove_error" };
	char got[64];

	require(json_str(line, "state", got, sizeof(got)));
	ck_assert_str_eq(got, state);
	require(json_str(line, "type", got, sizeof(got)));
	ck_assert_str_eq(got, type);
	for (int i = 0; i < 8; i++)
		if (json_num(line, keys[i]) != want[i])
			ck_abort_msg("%s is %lld, want %lld in %s", keys[i],
				     (long long)json_num(line, keys[i]), (long long)want[i], line);
}

struct msummary {
	uint64_t files, live, stale, unknown, skipped;
};

static void metrics_table_summary(const char *out, struct msummary *s)
{
	const char *p = out;
	char line[1024];

	while (next_line(&p, line, sizeof(line)))
		if (sscanf(line,
			   "  total: %" SCNu64 " files (%" SCNu64 " live, %" SCNu64 " stale, %" SCNu64
			   " unknown), %" SCNu64 " skipped",
			   &s->files, &s->live, &s->stale, &s->unknown, &s->skipped) == 5 &&
		    !strstr(line, "size"))
			return;
	ck_abort_msg("no registry total line in:\n%s", out);
}

static void metrics_json_summary(const char *out, const char *reg, struct msummary *s)
{
	const char *p = out;
	char line[1024], dir[PATH_MAX];

	while (next_line(&p, line, sizeof(line))) {
		if (!strstr(line, "\"kind\":\"metrics_summary\""))
			continue;
		require(json_str(line, "dir", dir, sizeof(dir)));
		ck_assert_str_eq(dir, reg);
		*s = (struct msummary){ (uint64_t)json_num(line, "files"), (uint64_t)json_num(line, "live"),
					(uint64_t)json_num(line, "stale"),
					(uint64_t)json_num(line, "unknown"),
					(uint64_t)json_num(line, "skipped") };
		return;
	}
	ck_abort_msg("no metrics_summary in:\n%s", out);
}

static void expect_msummary(const struct msummary *got, const struct msummary *want)
{
	if (memcmp(got, want, sizeof(*got)) != 0)
		ck_abort_msg("registry summary: files %lu live %lu stale %lu unknown %lu skipped %lu; "
			     "want %lu %lu %lu %lu %lu",
			     (unsigned long)got->files, (unsigned long)got->live,
			     (unsigned long)got->stale, (unsigned long)got->unknown,
			     (unsigned long)got->skipped, (unsigned long)want->files,
			     (unsigned long)want->live, (unsigned long)want->stale,
			     (unsigned long)want->unknown, (unsigned long)want->skipped);
}

/* Names scratchstat must ignore, around the pid of a dead process (so
 * --clean would remove them if it took them for registry files). */
static const char *const ignored[][2] = {
	{ "scratch-0", "-zero.metrics" },   { "scratch-", "-bad name.metrics" },
	{ "scratch-", "-.metrics" },	    { "scratch-", ".metrics" },
	{ "scratch-", "-x.metrics.tmp" },   { "Scratch-", "-x.metrics" },
	{ "scratch-+", "-plus.metrics" },   { "scratch-", "-\xc3\xa9.metrics" },
	{ "scratch-0-zero.metrics", "" },   { "scratch-99999999999-big.metrics", "" },
	{ "scratch--x.metrics", "" },
	{ "scratch-", "-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.metrics" },
};
#define NIGNORED (sizeof(ignored) / sizeof(ignored[0]))

/* The pid goes between the two parts, unless the second is empty. */
static void ignored_path(char *out, const char *reg, size_t i, int pid)
{
	reg_path(out, reg, ignored[i][0], ignored[i][1][0] ? pid : -1, ignored[i][1]);
}

/* Checks the listing of the registry built by test_registry, before
 * --clean: --json, then the table. */
static void check_listing(const char *reg, pid_t dead, const scratch_metrics *m)
{
	static const int64_t ingest[8] = { 2, 5010, 3, 0, 1, 1, 1, 1 };
	static const int64_t old[8] = { 1, 7, 1, 0, 0, 0, 0, 0 };
	static const int64_t none[8] = { -1, -1, -1, -1, -1, -1, -1, -1 };
	char line[4096], got[PATH_MAX], want[PATH_MAX + 32], last_name[80] = "";
	struct scratch_metrics_snapshot snap;
	struct msummary sum, want_sum = { .files = 3, .live = 1, .stale = 1, .unknown = 1, .skipped = 3 };
	struct metrics_row row;
	const char *p;
	int64_t last_pid = 0;
	size_t objects = 0;
	double us;
	struct run r;

	RUN(&r, 0, "--json", "--metrics");
	ck_assert_str_eq(r.err, "");
	expect_json_lines(r.out);
	for (p = r.out; next_line(&p, line, sizeof(line));) { /* sorted by pid, then name */
		if (!strstr(line, "\"kind\":\"metrics\""))
			continue;
		objects++;
		require(json_num(line, "pid") >= last_pid);
		last_pid = json_num(line, "pid");
		require(json_str(line, "name", last_name, sizeof(last_name)));
		require(json_str(line, "dir", got, sizeof(got)));
		ck_assert_str_eq(got, reg);
	}
	ck_assert_uint_eq(objects, 6);
	ck_assert_str_eq(last_name, "huge");
	require(strstr(r.out, "\"name\":\"dir\"") < strstr(r.out, "\"name\":\"link\"") &&
		strstr(r.out, "\"name\":\"link\"") < strstr(r.out, "\"name\":\"old\""));

	require(metrics_object(r.out, "ingest", line, sizeof(line)));
	ck_assert_int_eq(json_num(line, "pid"), getpid());
	require(json_str(line, "file", got, sizeof(got)));
	snprintf(want, sizeof(want), "scratch-%d-ingest.metrics", (int)getpid());
	ck_assert_str_eq(got, want);
	expect_object(line, "live", "regular", ingest);
	ck_assert_int_eq(scratch_metrics_snapshot(m, &snap), 0);
	for (int op = 0; op < 3; op++) {
		static const char *const keys[] = { "put_mean_us", "read_mean_us", "remove_mean_us" };
		double mean = (snap.seconds[op][0] + snap.seconds[op][1]) /
			      (double)(snap.ops[op][0] + snap.ops[op][1]) * 1e6;

		require(json_double(line, keys[op], &us));
		if (us < mean - 0.001 || us > mean + 0.001)
			ck_abort_msg("%s is %f, want %f", keys[op], us, mean);
	}

	require(metrics_object(r.out, "old", line, sizeof(line)));
	ck_assert_int_eq(json_num(line, "pid"), dead);
	expect_object(line, "stale", "regular", old);
	require(json_double(line, "put_mean_us", &us) && us > 0);
	require(strstr(line, "\"read_mean_us\":null") && strstr(line, "\"remove_mean_us\":null"));

	require(metrics_object(r.out, "junk", line, sizeof(line)));
	ck_assert_int_eq(json_num(line, "pid"), 1);
	expect_object(line, "unknown", "regular", none);
	require(json_str(line, "error", got, sizeof(got)));
	ck_assert_str_eq(got, "not a metrics file of this version");

	require(metrics_object(r.out, "link", line, sizeof(line)));
	expect_object(line, "skipped", "symlink", none); /* not followed to ingest's */
	require(!strstr(line, "\"error\""));
	require(metrics_object(r.out, "dir", line, sizeof(line)));
	expect_object(line, "skipped", "directory", none);
	metrics_json_summary(r.out, reg, &sum);
	expect_msummary(&sum, &want_sum);
	run_free(&r);

	RUN(&r, 0, "--metrics");
	ck_assert_str_eq(r.err, "");
	snprintf(want, sizeof(want), "metrics registry %s:\n", reg);
	require(strncmp(r.out, want, strlen(want)) == 0);
	p = r.out + strlen(want);
	require(next_line(&p, line, sizeof(line)));
	require(strstr(line, " PID  NAME ") && strstr(line, " REMOVE_US  NOTE"));
	require(metrics_row(r.out, "ingest", &row));
	ck_assert_int_eq(row.pid, getpid());
	ck_assert_str_eq(row.state, "live");
	expect_row(&row, (const char *const[]){ "2", "5010", "3", "0", "*", "1", "1", "*", "1", "1", "*" });
	ck_assert_str_eq(row.note, "");
	require(metrics_row(r.out, "old", &row));
	ck_assert_int_eq(row.pid, dead);
	ck_assert_str_eq(row.state, "stale");
	expect_row(&row, (const char *const[]){ "1", "7", "1", "0", "*", "0", "0", "-", "0", "0", "-" });
	require(metrics_row(r.out, "junk", &row));
	ck_assert_str_eq(row.state, "unknown");
	expect_row(&row, (const char *const[]){ "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-" });
	ck_assert_str_eq(row.note, "not a metrics file of this version");
	require(metrics_row(r.out, "link", &row));
	ck_assert_str_eq(row.state, "skipped");
	ck_assert_str_eq(row.note, "symlink");
	require(metrics_row(r.out, "dir", &row));
	ck_assert_str_eq(row.note, "directory");
	metrics_table_summary(r.out, &sum);
	expect_msummary(&sum, &want_sum);
	run_free(&r);
}

/* What --prometheus writes for a live file, a stale one, a symlink to the
 * live one (named by the user: followed), a missing file and junk. */
static void check_prometheus(const char *reg, pid_t dead)
{
	char live[PATH_MAX], path[PATH_MAX];
	struct run r;

	reg_path(live, reg, "scratch-", (int)getpid(), "-ingest.metrics");
	RUN(&r, 0, "--prometheus", live);
	ck_assert_str_eq(r.err, "");
	require(strstr(r.out, "\nloki_scratch_store_handles 2\n"));
	require(strstr(r.out, "\nloki_scratch_store_bytes 5010\n"));
	require(strstr(r.out, "# TYPE loki_scratch_store_requests_seconds histogram\n"));
	require(strstr(r.out, "\nloki_scratch_store_requests_seconds_count{operation=\"Read\","
			      "result=\"error\"} 1\n"));
	run_free(&r);

	reg_path(path, reg, "scratch-", dead, "-link.metrics");
	RUN(&r, 0, "--prometheus", path);
	require(strstr(r.out, "\nloki_scratch_store_handles 2\n"));
	run_free(&r);
	reg_path(path, reg, "scratch-", dead, "-old.metrics");
	RUN(&r, 0, "--prometheus", path);
	require(strstr(r.out, "\nloki_scratch_store_bytes 7\n"));
	run_free(&r);

	reg_path(path, reg, "scratch-", dead, "-none.metrics");
	RUN(&r, 1, "--prometheus", path);
	ck_assert_str_eq(r.out, "");
	require(strstr(r.err, path) && strstr(r.err, strerror(ENOENT)));
	run_free(&r);
	reg_path(path, reg, "scratch-", 1, "-junk.metrics");
	RUN(&r, 1, "--prometheus", path);
	ck_assert_str_eq(r.out, "");
	require(strstr(r.err, path) && strstr(r.err, "not a metrics file"));
	run_free(&r);
}

/* A registry with a live file, a stale one, junk, a symlink, a directory,
 * a subdirectory and names to ignore: listed, exported, then cleaned. */
START_TEST(test_registry)
{
	char reg[PATH_MAX], path[PATH_MAX], target[PATH_MAX], hidden[PATH_MAX];
	char want[2 * PATH_MAX + 2];
	struct snapshot before, after;
	struct msummary sum;
	scratch_metrics *m;
	scratch_store *s;
	struct run r;
	pid_t dead;
	int fd;

	case_registry(reg);
	s = register_ingest(&m);
	dead = register_and_die("old");

	reg_path(path, reg, "scratch-", 1, "-junk.metrics"); /* pid 1 always lives */
	fd = open(path, O_CREAT | O_WRONLY | O_EXCL | O_CLOEXEC, 0600);
	require(fd >= 0 && ftruncate(fd, 1 << 20) == 0); /* all zeros */
	close(fd);
	reg_path(target, reg, "scratch-", (int)getpid(), "-ingest.metrics");
	reg_path(path, reg, "scratch-", dead, "-link.metrics");
	require(symlink(target, path) == 0);
	reg_path(path, reg, "scratch-", dead, "-dir.metrics");
	require(mkdir(path, 0700) == 0);
	/* Last by pid, though first by name after pid 1's. */
	reg_path(path, reg, "scratch-", 1000000000, "-huge.metrics");
	require(mkdir(path, 0700) == 0);
	reg_path(path, reg, "sub", -1, "");
	require(mkdir(path, 0700) == 0);
	reg_path(path, reg, "sub/scratch-", dead, "-inner.metrics");
	write_file(path, "in a subdirectory");
	for (size_t i = 0; i < NIGNORED; i++) {
		ignored_path(path, reg, i, dead);
		write_file(path, "not a registry name");
	}
	/* The hidden name unregistered metrics keep: not listed, but cleaned. */
	reg_path(hidden, reg, ".scratch-", dead, "-3.metrics");
	write_file(hidden, "unregistered");

	snapshot(reg, &before);
	check_listing(reg, dead, m);
	check_prometheus(reg, dead);
	snapshot(reg, &after);
	expect_same(&before, &after, false); /* none of that changed anything */
	snapshot_free(&before);
	snapshot_free(&after);

	/* --clean removes the stale file and the hidden one, and only them. */
	reg_path(path, reg, "scratch-", dead, "-old.metrics");
	snprintf(want, sizeof(want), "%s\n%s\n", hidden, path);
	RUN(&r, 0, "--clean");
	ck_assert_str_eq(r.out, want);
	ck_assert_str_eq(r.err, "");
	run_free(&r);
	require(access(path, F_OK) == -1 && errno == ENOENT);
	require(access(hidden, F_OK) == -1 && errno == ENOENT);
	require(access(target, F_OK) == 0);
	reg_path(path, reg, "scratch-", 1, "-junk.metrics");
	require(access(path, F_OK) == 0);
	reg_path(path, reg, "scratch-", dead, "-link.metrics");
	require(faccessat(AT_FDCWD, path, F_OK, AT_SYMLINK_NOFOLLOW) == 0);
	reg_path(path, reg, "scratch-", dead, "-dir.metrics");
	require(access(path, F_OK) == 0);
	reg_path(path, reg, "sub/scratch-", dead, "-inner.metrics");
	require(access(path, F_OK) == 0);
	for (size_t i = 0; i < NIGNORED; i++) {
		ignored_path(path, reg, i, dead);
		if (access(path, F_OK) != 0)
			ck_abort_msg("--clean removed %s", path);
	}
	RUN(&r, 0, "--clean"); /* nothing left to do */
	ck_assert_str_eq(r.out, "");
	run_free(&r);
	RUN(&r, 0, "--json", "--metrics");
	metrics_json_summary(r.out, reg, &sum);
	expect_msummary(&sum, &(struct msummary){ .files = 2, .live = 1, .unknown = 1, .skipped = 3 });
	run_free(&r);

	/* Unregistered, the live file is gone too. */
	scratch_store_close(s);
	scratch_metrics_free(m);
	require(access(target, F_OK) == -1 && errno == ENOENT);
	RUN(&r, 0, "--metrics");
	metrics_table_summary(r.out, &sum);
	expect_msummary(&sum, &(struct msummary){ .files = 1, .unknown = 1, .skipped = 3 });
	run_free(&r);
	rm_rf(reg);
}
END_TEST

/* An empty registry, alone and after DIRs. */
START_TEST(test_registry_empty)
{
	char reg[PATH_MAX], dir[PATH_MAX], want[2 * PATH_MAX + 128], line[4096];
	struct msummary sum;
	const char *p;
	struct run r;

	case_registry(reg);
	case_dir(dir);
	RUN(&r, 0, "--metrics");
	snprintf(want, sizeof(want),
		 "metrics registry %s:\n  total: 0 files (0 live, 0 stale, 0 unknown), 0 skipped\n",
		 reg);
	ck_assert_str_eq(r.out, want);
	ck_assert_str_eq(r.err, "");
	run_free(&r);

	RUN(&r, 0, "--json", "--metrics");
	expect_json_lines(r.out);
	metrics_json_summary(r.out, reg, &sum);
	expect_msummary(&sum, &(struct msummary){ 0 });
	p = r.out;
	require(next_line(&p, line, sizeof(line)) && !next_line(&p, line, sizeof(line)));
	run_free(&r);

	RUN(&r, 0, "--clean");
	ck_assert_str_eq(r.out, "");
	run_free(&r);

	/* The DIRs first, then the registry, whatever the order of the
	 * arguments. */
	RUN(&r, 0, "--metrics", dir);
	snprintf(want, sizeof(want), "%s:\n", dir);
	require(strncmp(r.out, want, strlen(want)) == 0);
	snprintf(want, sizeof(want), "\n\nmetrics registry %s:\n", reg);
	require(strstr(r.out, want));
	run_free(&r);
	RUN(&r, 0, "--json", dir, "--metrics");
	expect_json_lines(r.out);
	p = r.out;
	require(next_line(&p, line, sizeof(line)) && strstr(line, "\"kind\":\"summary\""));
	require(next_line(&p, line, sizeof(line)) && strstr(line, "\"kind\":\"metrics_summary\""));
	require(!next_line(&p, line, sizeof(line)));
	run_free(&r);
	rm_rf(reg);
	rm_rf(dir);
}
END_TEST

START_TEST(test_registry_errors_and_usage)
{
	char reg[PATH_MAX], dir[PATH_MAX], missing[PATH_MAX + 16];
	struct summary got, want = { 0 };
	struct run r;

	case_registry(reg);
	case_dir(dir);
	snprintf(missing, sizeof(missing), "%s/missing", reg);
	require(setenv("SCRATCH_METRICS_DIR", missing, 1) == 0);
	RUN(&r, 1, "--metrics");
	ck_assert_str_eq(r.out, "");
	require(strstr(r.err, missing) && strstr(r.err, strerror(ENOENT)));
	run_free(&r);
	RUN(&r, 1, "--clean");
	ck_assert_str_eq(r.out, "");
	require(strstr(r.err, missing));
	run_free(&r);
	RUN(&r, 1, "--metrics", dir); /* the DIR is still listed */
	table_summary(r.out, &got);
	expect_summary(&got, &want);
	run_free(&r);

	/* Empty: the library's default, /dev/shm. */
	require(setenv("SCRATCH_METRICS_DIR", "", 1) == 0);
	if (access("/dev/shm", R_OK | X_OK) == 0) {
		RUN(&r, 0, "--metrics");
		require(strncmp(r.out, "metrics registry /dev/shm:\n", 27) == 0);
		run_free(&r);
	}
	require(setenv("SCRATCH_METRICS_DIR", reg, 1) == 0);

	static const char *const bad[][4] = {
		{ "--json" }, /* no DIR, no mode */
		{ "--prometheus" },
		{ "--prometheus", "x", "--clean" },
		{ "--prometheus", "x", "--metrics" },
		{ "--prometheus", "x", "--json" },
		{ "--prometheus", "x", "--prometheus", "y" },
		{ "--clean", "--json" },
		{ "--clean", "--metrics" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		run_tool(&r, bad[i]);
		if (r.status != 2 || *r.out || !strstr(r.err, "usage:"))
			ck_abort_msg("%s %s ...: exit %d, stderr %s", bad[i][0], bad[i][1] ? bad[i][1] : "",
				     r.status, r.err);
		run_free(&r);
	}
	RUN(&r, 2, "--clean", dir);
	require(strstr(r.err, "--clean takes no DIR"));
	run_free(&r);
	RUN(&r, 2, "--prometheus", dir, dir);
	require(strstr(r.err, "--prometheus takes no DIR"));
	run_free(&r);
	RUN(&r, 0, "--help");
	require(strstr(r.out, "--metrics") && strstr(r.out, "--prometheus FILE") &&
		strstr(r.out, "--clean"));
	run_free(&r);
	rm_rf(reg);
	rm_rf(dir);
}
END_TEST

/* As another user, root's registry files cannot be attached ("unknown",
 * EACCES), and --clean cannot remove the stale one (exit 1), but leaves
 * pid 1's alone: kill answers EPERM for a process of another user, and
 * that process lives.  Only where the test runs as root. */
START_TEST(test_registry_other_user)
{
	char reg[PATH_MAX], path[PATH_MAX], line[4096], got[128];
	const char *p;
	size_t unknown = 0;
	scratch_metrics *m;
	scratch_store *s;
	struct run r;
	pid_t dead;
	int fd;

	if (geteuid() != 0)
		return; /* said in main */
	case_registry(reg);
	require(chmod(registry_root, 0755) == 0 && chmod(reg, 0755) == 0); /* listable */
	s = register_ingest(&m);
	dead = register_and_die("old");
	reg_path(path, reg, "scratch-", 1, "-junk.metrics");
	fd = open(path, O_CREAT | O_WRONLY | O_EXCL | O_CLOEXEC, 0600);
	require(fd >= 0 && ftruncate(fd, 1 << 20) == 0);
	close(fd);

	run_as = 65534; /* nobody */
	run_tool(&r, (const char *const[]){ "--json", "--metrics", NULL });
	if (r.status == 125 || r.status == 127) {
		printf("SKIP test_registry_other_user: cannot run %s as uid 65534\n", tool);
		run_free(&r);
		goto out;
	}
	ck_assert_int_eq(r.status, 0);
	for (p = r.out; next_line(&p, line, sizeof(line));) {
		if (!strstr(line, "\"kind\":\"metrics\""))
			continue;
		require(json_str(line, "state", got, sizeof(got)));
		ck_assert_str_eq(got, "unknown");
		require(json_str(line, "error", got, sizeof(got)));
		ck_assert_str_eq(got, strerror(EACCES));
		require(json_num(line, "handles") == -1);
		unknown++;
	}
	ck_assert_uint_eq(unknown, 3);
	run_free(&r);

	RUN(&r, 1, "--clean");
	ck_assert_str_eq(r.out, "");
	reg_path(path, reg, "scratch-", dead, "-old.metrics");
	require(strstr(r.err, path) && strstr(r.err, strerror(EACCES)));
	require(!strstr(r.err, "junk") && !strstr(r.err, "ingest"));
	require(access(path, F_OK) == 0);
	run_free(&r);
out:
	run_as = 0;
	scratch_store_close(s);
	scratch_metrics_free(m);
	rm_rf(reg);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("scratchstat");
	TCase *tc = tcase_create("scratchstat");
	int rc;

	tool = getenv("SCRATCHSTAT");
	if (!tool || access(tool, X_OK))
		skip_all("$SCRATCHSTAT does not name the scratchstat binary");
	fs_root_init("scratchstat-test");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_live_store);
	tcase_add_test(tc, test_dead_store);
	tcase_add_test(tc, test_hostile_names);
	tcase_add_test(tc, test_errors_and_usage);
	registry_root_init();
	if (registry_tmpfile)
		tcase_add_test(tc, test_registry);
	else
		printf("SKIP test_registry: %s cannot hold O_TMPFILE files, so metrics cannot "
		       "be registered there\n", registry_root);
	if (registry_tmpfile && geteuid() == 0)
		tcase_add_test(tc, test_registry_other_user);
	else if (registry_tmpfile)
		printf("SKIP test_registry_other_user: needs root, to run the tool as another user\n");
	tcase_add_test(tc, test_registry_empty);
	tcase_add_test(tc, test_registry_errors_and_usage);
	suite_add_tcase(s, tc);

	rc = run_suite(s);
	fs_root_remove();
	rm_rf(registry_root);
	return rc;
}
