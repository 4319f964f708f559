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
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
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

static void expect_same(const struct snapshot *a, const struct snapshot *b)
{
	ck_assert_uint_eq(a->n, b->n);
	for (size_t i = 0; i < a->n; i++) {
		const struct stat *x = &a->v[i].st, *y = &b->v[i].st;

		ck_assert_str_eq(a->v[i].name, b->v[i].name);
		if (x->st_ino != y->st_ino || x->st_mode != y->st_mode || x->st_size != y->st_size ||
		    x->st_blocks != y->st_blocks || !same_time(x->st_mtim, y->st_mtim) ||
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
	expect_same(&before, &after);
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
	suite_add_tcase(s, tc);

	rc = run_suite(s);
	fs_root_remove();
	return rc;
}
