/*
 * test_segment.c: the on-disk layout: file names and modes, preallocation,
 * ownership locks and start-up cleanup, hole punching, resizing, and when
 * a range may be read through the mapping.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "segment.h"
#include "testutil.h"

#define SIZE (1u << 20)

static char root[64];
static struct heap heap;

static void setup(void)
{
	strcpy(root, "/tmp/test_segment.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(root));
	ck_assert_int_eq(heap_open(&heap), 0);
}

static void teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
	ck_assert_int_eq(system(cmd), 0);
	heap_close(&heap);
}

static bool exists_at(const char *dir, const char *name)
{
	char path[256];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return lstat(path, &st) == 0;
}

static void touch(const char *dir, const char *name)
{
	char path[256];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	ck_assert_int_ge(fd, 0);
	close(fd);
}

START_TEST(test_dir_made_with_parents)
{
	struct segment_dir d;
	char path[128];
	struct stat st;

	snprintf(path, sizeof(path), "%s/a/b/c", root);
	ck_assert_int_eq(segment_dir_open(&d, path, &heap), 0);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0700);
	segment_dir_close(&d);
	segment_dir_fini(&d);

	touch(root, "file");
	snprintf(path, sizeof(path), "%s/file", root);
	ck_assert_int_eq(segment_dir_open(&d, path, &heap), -ENOTDIR);
	snprintf(path, sizeof(path), "%s/file/below", root);
	ck_assert_int_eq(segment_dir_open(&d, path, &heap), -ENOTDIR);
}
END_TEST

START_TEST(test_segment_file)
{
	struct segment_dir d;
	struct segment *s;
	struct stat st;
	char path[256];

	ck_assert_int_eq(segment_dir_open(&d, root, &heap), 0);
	ck_assert_int_eq(segment_new(&d, SIZE, &s), 0);
	ck_assert_uint_eq(strlen(s->name), 32 + strlen(SEGMENT_EXT));
	ck_assert_uint_eq(strspn(s->name, "0123456789abcdef"), 32);
	snprintf(path, sizeof(path), "%s/%s", root, s->name);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert(S_ISREG(st.st_mode));
	ck_assert_int_eq(st.st_mode & 0777, 0600);
	ck_assert_int_eq(st.st_size, SIZE);
	ck_assert_int_ge(st.st_blocks * 512, SIZE); /* preallocated */
	ck_assert_uint_eq(s->map[SIZE - 1], 0);      /* mapped, whole */
	ck_assert_uint_eq(d.nsegments, 1);

	segment_put(s);
	ck_assert_int_eq(stat(path, &st), -1);
	ck_assert_uint_eq(d.nsegments, 0);
	segment_dir_close(&d);
	segment_dir_fini(&d);
}
END_TEST

START_TEST(test_cleanup_spares_owned_and_foreign)
{
	struct segment_dir a, b;
	struct segment *s;
	char sub[128], target[256], link[256];

	ck_assert_int_eq(segment_dir_open(&a, root, &heap), 0);
	ck_assert_int_eq(segment_new(&a, SIZE, &s), 0);
	touch(root, "0123abcd.lokiscratch");     /* nobody's */
	touch(root, "notes.txt");
	snprintf(sub, sizeof(sub), "%s/sub", root);
	ck_assert_int_eq(mkdir(sub, 0700), 0);
	touch(sub, "deep.lokiscratch");
	snprintf(target, sizeof(target), "%s/outside", sub);
	touch(sub, "outside");
	snprintf(link, sizeof(link), "%s/link.lokiscratch", root);
	ck_assert_int_eq(symlink(target, link), 0);

	/* A second store on the same directory, in this process and in a
	 * child (locks belong to open files, not processes). */
	pid_t pid = fork();

	if (pid == 0) {
		struct segment_dir c;

		_exit(segment_dir_open(&c, root, &heap) == 0 ? 0 : 1);
	}
	int status;

	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_int_eq(WEXITSTATUS(status), 0);
	ck_assert_int_eq(segment_dir_open(&b, root, &heap), 0);

	ck_assert(exists_at(root, s->name));
	ck_assert(!exists_at(root, "0123abcd.lokiscratch"));
	ck_assert(exists_at(root, "notes.txt"));
	ck_assert(exists_at(sub, "deep.lokiscratch"));
	ck_assert(exists_at(root, "link.lokiscratch"));
	ck_assert(exists_at(sub, "outside"));

	segment_dir_close(&a);
	ck_assert(!exists_at(root, s->name)); /* close unlinks at once */
	ck_assert_uint_eq(s->map[0], 0);      /* while the mapping lives on */
	segment_put(s);
	segment_dir_fini(&a);
	segment_dir_close(&b);
	segment_dir_fini(&b);
}
END_TEST

/* Without its descriptor, a segment's mapping still holds its file open,
 * and so its lock: a cleaner leaves it alone. */
START_TEST(test_written_segment_stays_owned)
{
	struct segment_dir a, b;
	struct segment *s;

	ck_assert_int_eq(segment_dir_open(&a, root, &heap), 0);
	ck_assert_int_eq(segment_new(&a, SIZE, &s), 0);
	ck_assert_int_eq(pwrite(s->fd, "xyz", 3, 0), 3);
	segment_written(s);
	ck_assert_int_eq(s->fd, -1);
	ck_assert_int_eq(segment_dir_open(&b, root, &heap), 0);
	ck_assert(exists_at(root, s->name));
	ck_assert_int_eq(memcmp(s->map, "xyz", 3), 0);
	segment_release_range(s, 0, SIZE); /* no descriptor: nothing to punch */
	segment_put(s);
	ck_assert_uint_eq(a.nsegments, 0);
	segment_dir_close(&a);
	segment_dir_fini(&a);
	segment_dir_close(&b);
	segment_dir_fini(&b);
}
END_TEST

START_TEST(test_killed_owner_cleaned)
{
	int pipefd[2], status;
	char name[SEGMENT_NAME_MAX];

	ck_assert_int_eq(pipe(pipefd), 0);
	pid_t pid = fork();

	if (pid == 0) {
		struct segment_dir d;
		struct segment *s;

		if (segment_dir_open(&d, root, &heap) || segment_new(&d, SIZE, &s))
			_exit(1);
		(void)!write(pipefd[1], s->name, sizeof(s->name));
		pause();
		_exit(0);
	}
	ck_assert_int_eq(read(pipefd[0], name, sizeof(name)), (ssize_t)sizeof(name));
	ck_assert(exists_at(root, name));

	struct segment_dir d;

	ck_assert_int_eq(segment_dir_open(&d, root, &heap), 0); /* owner alive */
	ck_assert(exists_at(root, name));
	segment_dir_close(&d);
	segment_dir_fini(&d);

	kill(pid, SIGKILL);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_int_eq(segment_dir_open(&d, root, &heap), 0); /* owner gone */
	ck_assert(!exists_at(root, name));
	segment_dir_close(&d);
	segment_dir_fini(&d);
	close(pipefd[0]);
	close(pipefd[1]);
}
END_TEST

static blkcnt_t blocks(int fd)
{
	struct stat st;

	ck_assert_int_eq(fstat(fd, &st), 0);
	return st.st_blocks;
}

/* A blob with a run (256 pages) of its own gives it back at once; pages
 * it shares with live blobs stay. */
START_TEST(test_release_punches_own_run)
{
	struct segment_dir d;
	struct segment *s;
	unsigned char page[4096];
	enum { P = 4096, SECTORS = P / 512 };

	memset(page, 7, sizeof(page));
	ck_assert_int_eq(segment_dir_open(&d, root, &heap), 0);
	ck_assert_int_eq(segment_new(&d, 4 * SIZE, &s), 0);
	ck_assert_int_eq(segment_track(s), 0);
	segment_get(s); /* a blob of another kind lives on: the file stays */
	for (int i = 0; i < 700; i++)
		ck_assert_int_eq(pwrite(s->fd, page, P, i * P), P);
	blkcnt_t before = blocks(s->fd);

	segment_place(s, 0, 100);                       /* page 0 */
	segment_place(s, 100, 300 * P);                 /* pages 0-300 */
	segment_place(s, 100 + 300 * P, 100 * P);       /* 300-400 */
	segment_place(s, 100 + 400 * P, 200 * P);       /* 400-600 */
	segment_seal(s, 700 * P, 4 * SIZE);
	atomic_store(&s->written, 700 * P);
	segment_release_range(s, 100, 300 * P); /* 1-299 are its own */
	ck_assert_int_eq(before - blocks(s->fd), 299 * SECTORS);
	ck_assert_uint_eq(s->map[99], 7);
	ck_assert_uint_eq(s->map[300 * P + 100], 7);
	segment_release_range(s, 100 + 400 * P, 200 * P); /* 200 of its own: too few */
	ck_assert_int_eq(before - blocks(s->fd), 299 * SECTORS);
	/* Nothing once the store is closing. */
	segment_dir_close(&d);
	segment_release_range(s, 100 + 300 * P, 100 * P);
	ck_assert_int_eq(before - blocks(s->fd), 299 * SECTORS);
	segment_put(s);
	segment_put(s);
	segment_dir_fini(&d);
}
END_TEST

/* Runs of 256 pages or more that smaller blobs left go once the lane has
 * left the segment for REAP_AGE_NS. */
START_TEST(test_reap_punches_dead_runs)
{
	struct segment_dir d;
	struct segment *s;
	unsigned char page[4096];
	enum { P = 4096, SECTORS = P / 512 };
	const uint64_t t0 = 1000, aged = t0 + REAP_AGE_NS;

	memset(page, 7, sizeof(page));
	ck_assert_int_eq(segment_dir_open(&d, root, &heap), 0);
	ck_assert_int_eq(segment_new(&d, 4 * SIZE, &s), 0);
	ck_assert_int_eq(segment_track(s), 0);
	segment_get(s);
	for (int i = 0; i < 1000; i++)
		ck_assert_int_eq(pwrite(s->fd, page, P, i * P), P);
	blkcnt_t before = blocks(s->fd);

	/* Ten blobs of 100 pages, then one of a few bytes; 900 on are not
	 * written yet. */
	for (int i = 0; i < 10; i++)
		segment_place(s, (uint64_t)i * 100 * P, 100 * P);
	segment_place(s, 1000 * P, 8);
	segment_seal(s, 1000 * P + 16, 4 * SIZE);
	atomic_store(&s->written, 900 * P);
	for (int i = 0; i < 3; i++) /* 0-299 */
		segment_release_range(s, (uint64_t)i * 100 * P, 100 * P);
	segment_reap_old(&d, aged); /* still filling */
	ck_assert_int_eq(before - blocks(s->fd), 0);
	segment_retire(s, 1000 * P + 16, 4 * SIZE, t0);
	segment_reap_old(&d, aged - 1); /* too young */
	ck_assert_int_eq(before - blocks(s->fd), 0);
	segment_reap_old(&d, aged);
	ck_assert_int_eq(before - blocks(s->fd), 300 * SECTORS);
	ck_assert_uint_eq(s->map[300 * P], 7);
	/* 400-599: a run of 200 (300-399 live); 800-999: 900 on not written;
	 * then 300-399 goes, and 300-599 is a run. */
	segment_release_range(s, 400 * P, 100 * P);
	segment_release_range(s, 500 * P, 100 * P);
	segment_release_range(s, 800 * P, 100 * P);
	segment_release_range(s, 900 * P, 100 * P);
	segment_reap_old(&d, aged);
	ck_assert_int_eq(before - blocks(s->fd), 300 * SECTORS);
	segment_release_range(s, 300 * P, 100 * P);
	segment_reap_old(&d, aged);
	ck_assert_int_eq(before - blocks(s->fd), 600 * SECTORS);
	ck_assert_uint_eq(s->map[600 * P], 7);
	segment_put(s);
	segment_put(s);
	segment_dir_fini(&d);
}
END_TEST

/* A run may take in pages no blob was ever counted in (a direct write
 * that failed after the back moved past it): the count of dead pages, a
 * hint, never wraps below zero, which would make every look a search. */
START_TEST(test_reap_dead_count_never_wraps)
{
	struct segment_dir d;
	struct segment *s;
	enum { P = 4096 };
	const uint64_t end = 4 * SIZE;

	ck_assert_int_eq(segment_dir_open(&d, root, &heap), 0);
	ck_assert_int_eq(segment_new(&d, end, &s), 0);
	ck_assert_int_eq(segment_track(s), 0);
	segment_get(s);
	segment_place(s, end - 300 * P, 300 * P); /* a: live */
	/* [end - 600 pages, end - 300 pages): the failed write, never placed */
	segment_place(s, end - 700 * P, 100 * P); /* b */
	segment_place(s, 0, 200 * P);             /* c, at the front */
	segment_place(s, 200 * P, 8);             /* keeps page 200 live */
	atomic_store(&s->written, 201 * P);
	segment_retire(s, 201 * P, end - 700 * P, 1);
	segment_release_range(s, end - 700 * P, 100 * P);
	segment_release_range(s, 0, 200 * P);
	ck_assert_uint_eq(atomic_load(&s->dead), 300);
	segment_reap_old(&d, 1 + REAP_AGE_NS); /* b and the gap: 400 pages */
	ck_assert_uint_eq(atomic_load(&s->pages[(end - 650 * P) / P]), UINT16_MAX);
	ck_assert_uint_le(atomic_load(&s->dead), 300);
	segment_put(s);
	segment_put(s);
	segment_dir_fini(&d);
}
END_TEST

/* Pages not wholly written stay; so do pages of the back's gap. */
START_TEST(test_reap_spares_unwritten_pages)
{
	struct segment_dir d;
	struct segment *s;
	unsigned char page[4096];
	enum { P = 4096 };

	memset(page, 7, sizeof(page));
	ck_assert_int_eq(segment_dir_open(&d, root, &heap), 0);
	ck_assert_int_eq(segment_new(&d, 4 * SIZE, &s), 0);
	ck_assert_int_eq(segment_track(s), 0);
	segment_get(s);
	for (int i = 0; i < 1024; i++)
		ck_assert_int_eq(pwrite(s->fd, page, P, i * P), P);
	blkcnt_t before = blocks(s->fd);

	/* A front blob of 300 pages and a bit, written up to its end only;
	 * a back blob of 300 pages; the gap between them never used. */
	segment_place(s, 0, 300 * P + 8);
	atomic_store(&s->written, 300 * P + 16);
	segment_place(s, 4 * SIZE - 300 * P, 300 * P);
	segment_retire(s, 300 * P + 16, 4 * SIZE - 300 * P, 1);
	segment_release_range(s, 0, 300 * P + 8);
	segment_release_range(s, 4 * SIZE - 300 * P, 300 * P);
	segment_reap_old(&d, 1 + REAP_AGE_NS);
	/* 0-299 and the back went; 300 is not all on disk. */
	ck_assert_int_eq(before - blocks(s->fd), 600 * (P / 512));
	segment_put(s);
	segment_put(s);
	segment_dir_fini(&d);
}
END_TEST

START_TEST(test_bytes_only_when_written)
{
	struct segment_dir d;
	struct segment *s;
	unsigned char *chunk;

	ck_assert_int_eq(segment_dir_open(&d, root, &heap), 0);
	ck_assert_int_eq(segment_new(&d, SIZE, &s), 0);
	ck_assert_ptr_null(segment_bytes(s, 0, 10));
	atomic_store(&s->written, 4096);
	ck_assert_ptr_eq(segment_bytes(s, 0, 4096), s->map);
	ck_assert_ptr_eq(segment_bytes(s, 4000, 96), s->map + 4000);
	ck_assert_ptr_null(segment_bytes(s, 4000, 97));
	chunk = heap_alloc(&heap, HEAP_NO_CACHE, 8192);
	s->chunks[0] = (struct segment_chunk){ 4096, 8192, chunk };
	atomic_store(&s->nchunks, 1);
	ck_assert_ptr_eq(segment_bytes(s, 4096 + 16, 32), chunk + 16);
	ck_assert_ptr_null(segment_bytes(s, 4096 + 8000, 400));
	segment_put(s); /* frees the chunk */
	segment_dir_close(&d);
	segment_dir_fini(&d);
}
END_TEST

START_TEST(test_resize)
{
	struct segment_dir d;
	struct segment *s;
	struct stat st;

	ck_assert_int_eq(segment_dir_open(&d, root, &heap), 0);
	ck_assert_int_eq(segment_new(&d, SIZE, &s), 0);
	ck_assert_int_eq(segment_resize(s, 4 * SIZE), 0);
	ck_assert_uint_eq(s->map[4 * SIZE - 1], 0);
	ck_assert_uint_eq(d.disk_bytes, 4 * SIZE);
	ck_assert_int_eq(segment_resize(s, 8192), 0);
	ck_assert_int_eq(fstat(s->fd, &st), 0);
	ck_assert_int_eq(st.st_size, 8192);
	ck_assert_uint_eq(d.disk_bytes, 8192);
	segment_put(s);
	ck_assert_uint_eq(d.disk_bytes, 0);
	segment_dir_close(&d);
	segment_dir_fini(&d);
}
END_TEST

static Suite *segment_suite(void)
{
	Suite *s = suite_create("segment");
	TCase *tc = tcase_create("layout");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_dir_made_with_parents);
	tcase_add_test(tc, test_segment_file);
	tcase_add_test(tc, test_cleanup_spares_owned_and_foreign);
	tcase_add_test(tc, test_written_segment_stays_owned);
	tcase_add_test(tc, test_killed_owner_cleaned);
	tcase_add_test(tc, test_release_punches_own_run);
	tcase_add_test(tc, test_reap_punches_dead_runs);
	tcase_add_test(tc, test_reap_dead_count_never_wraps);
	tcase_add_test(tc, test_reap_spares_unwritten_pages);
	tcase_add_test(tc, test_bytes_only_when_written);
	tcase_add_test(tc, test_resize);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return run_suite(segment_suite());
}
