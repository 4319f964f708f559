/*
 * test_metrics.c: metrics, observed stores and the registry, through the
 * public API only.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <locale.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

enum { PUT = SCRATCH_OP_PUT, READ = SCRATCH_OP_READ, REMOVE = SCRATCH_OP_REMOVE };
enum { OK = SCRATCH_RESULT_SUCCESS, ERR = SCRATCH_RESULT_ERROR };

static char registry[64];

static struct scratch_metrics_snapshot snap(const scratch_metrics *m)
{
	struct scratch_metrics_snapshot s;

	ck_assert_int_eq(scratch_metrics_snapshot(m, &s), 0);
	return s;
}

static scratch_store *observed_memory(scratch_metrics *m)
{
	scratch_store *inner, *s;

	ck_assert_int_eq(scratch_memory_new(&inner), 0);
	ck_assert_int_eq(scratch_observe(m, inner, &s), 0);
	ck_assert_ptr_nonnull(s);
	ck_assert_ptr_ne(s, inner);
	return s;
}

static scratch_handle put(scratch_store *s, size_t n)
{
	static unsigned char bytes[8192];
	scratch_handle h;

	ck_assert_uint_le(n, sizeof(bytes));
	ck_assert_int_eq(scratch_put(s, bytes, n, &h), 0);
	return h;
}

static void read_ok(scratch_store *s, scratch_handle h)
{
	scratch_reader *r;

	ck_assert_int_eq(scratch_read(s, h, &r), 0);
	ck_assert_int_eq(scratch_reader_close(r), 0);
}

START_TEST(test_arguments)
{
	scratch_metrics *m = (scratch_metrics *)1, *view = (scratch_metrics *)1;
	scratch_store *inner, *s = (scratch_store *)1;

	ck_assert_int_eq(scratch_metrics_new(NULL), -EINVAL);
	ck_assert_int_eq(scratch_metrics_new(&m), 0);
	ck_assert_int_eq(scratch_observe(m, NULL, &s), -EINVAL);
	ck_assert_ptr_null(s);
	ck_assert_int_eq(scratch_memory_new(&inner), 0);
	ck_assert_int_eq(scratch_observe(m, inner, NULL), -EINVAL);
	ck_assert_int_eq(scratch_observe(NULL, inner, &s), 0);
	ck_assert_ptr_eq(s, inner);
	ck_assert_int_eq(scratch_metrics_snapshot(m, NULL), -EINVAL);
	ck_assert_int_eq(scratch_metrics_write_prometheus(m, -1), -EINVAL);
	ck_assert_int_eq(scratch_metrics_register(NULL, "x"), -EINVAL);
	ck_assert_int_eq(scratch_metrics_register(m, NULL), -EINVAL);
	ck_assert_int_eq(scratch_metrics_unregister(NULL), -EINVAL);
	ck_assert_int_eq(scratch_metrics_unregister(m), -EINVAL); /* not registered */
	ck_assert_int_eq(scratch_metrics_attach(NULL, &view), -EINVAL);
	ck_assert_ptr_null(view);
	ck_assert_int_eq(scratch_metrics_attach("/nonexistent/x.metrics", NULL), -EINVAL);
	scratch_store_close(inner);
	scratch_metrics_free(m);
	scratch_metrics_free(NULL);
}
END_TEST

/* Puts, reads and removes, good and bad, each counted under its result;
 * the gauges follow what the store holds. */
START_TEST(test_counts)
{
	scratch_metrics *m;
	scratch_reader *r;

	ck_assert_int_eq(scratch_metrics_new(&m), 0);
	struct scratch_metrics_snapshot z = snap(m);

	ck_assert_uint_eq(z.handles, 0);
	ck_assert_uint_eq(z.bytes, 0);
	for (int op = 0; op < 3; op++) {
		ck_assert_uint_eq(z.ops[op][OK] + z.ops[op][ERR], 0);
		ck_assert(z.seconds[op][OK] == 0 && z.seconds[op][ERR] == 0);
	}

	scratch_store *s = observed_memory(m);
	scratch_handle a = put(s, 10), b = put(s, 100), c = put(s, 5000);

	read_ok(s, a);
	ck_assert_int_eq(scratch_read(s, b + 1000000, &r), SCRATCH_ENOTFOUND);
	ck_assert_int_eq(scratch_remove(s, b), 0);
	ck_assert_int_eq(scratch_remove(s, b), SCRATCH_ENOTFOUND);
	ck_assert_int_eq(scratch_read(s, b, &r), SCRATCH_ENOTFOUND);

	struct scratch_metrics_snapshot x = snap(m);

	ck_assert_uint_eq(x.handles, 2);
	ck_assert_uint_eq(x.bytes, 5010);
	ck_assert_uint_eq(x.ops[PUT][OK], 3);
	ck_assert_uint_eq(x.ops[PUT][ERR], 0);
	ck_assert_uint_eq(x.ops[READ][OK], 1);
	ck_assert_uint_eq(x.ops[READ][ERR], 2);
	ck_assert_uint_eq(x.ops[REMOVE][OK], 1);
	ck_assert_uint_eq(x.ops[REMOVE][ERR], 1);
	ck_assert(x.seconds[PUT][OK] > 0 && x.seconds[PUT][OK] < 10);
	ck_assert(x.seconds[READ][ERR] > 0);
	ck_assert(x.seconds[PUT][ERR] == 0);
	/* The data went through: the wrapper passes results on. */
	ck_assert_int_eq(scratch_read(s, c, &r), 0);
	ck_assert_uint_eq(scratch_reader_size(r), 5000);
	scratch_reader_close(r);
	/* Bad arguments are the caller's, not the store's: not counted. */
	ck_assert_int_eq(scratch_put(s, NULL, 5, &a), -EINVAL);
	ck_assert_uint_eq(snap(m).ops[PUT][ERR], 0);
	scratch_store_close(s);
	x = snap(m);
	ck_assert_uint_eq(x.handles, 0);
	ck_assert_uint_eq(x.bytes, 0);
	ck_assert_uint_eq(x.ops[READ][OK], 2);
	scratch_metrics_free(m);
}
END_TEST

static double wall_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The durations are in seconds: the puts' sum fits in the time around
 * them, and is not some tiny fraction of it (a wrong clock rate). */
START_TEST(test_durations)
{
	scratch_metrics *m;

	ck_assert_int_eq(scratch_metrics_new(&m), 0);
	scratch_store *s = observed_memory(m);
	double t0 = wall_seconds();

	for (int i = 0; i < 20000; i++)
		put(s, 4096);

	double wall = wall_seconds() - t0, sum = snap(m).seconds[PUT][OK];

	ck_assert_msg(sum <= wall * 1.01 && sum >= wall * 0.01, "puts took %g s in %g s", sum, wall);
	scratch_store_close(s);
	scratch_metrics_free(m);
}
END_TEST

/* putv, each blob of a batch and a committed writer count as puts; an
 * aborted writer as nothing. */
START_TEST(test_every_put_counts)
{
	scratch_metrics *m;
	scratch_writer *w;
	scratch_handle h[4];
	char bytes[300] = { 0 };
	struct iovec iov[4] = { { bytes, 1 }, { bytes, 20 }, { bytes, 300 }, { bytes, 0 } };

	ck_assert_int_eq(scratch_metrics_new(&m), 0);
	scratch_store *s = observed_memory(m);

	ck_assert_int_eq(scratch_putv(s, iov, 3, &h[0]), 0);
	ck_assert_int_eq(scratch_put_batch(s, iov, 4, h), 0);
	ck_assert_int_eq(scratch_writer_open(s, &w), 0);
	ck_assert_int_eq(scratch_writer_write(w, bytes, 100), 100);
	ck_assert_int_eq(scratch_writer_write(w, bytes, 50), 50);
	ck_assert_int_eq(scratch_writer_commit(w, &h[0]), 0);
	ck_assert_int_eq(scratch_writer_open(s, &w), 0);
	ck_assert_int_eq(scratch_writer_write(w, bytes, 7), 7);
	scratch_writer_abort(w);

	struct scratch_metrics_snapshot x = snap(m);

	ck_assert_uint_eq(x.ops[PUT][OK], 1 + 4 + 1);
	ck_assert_uint_eq(x.handles, 6);
	ck_assert_uint_eq(x.bytes, 321 + 321 + 150);
	ck_assert_int_eq(scratch_remove(s, h[0]), 0);
	ck_assert_uint_eq(snap(m).bytes, 321 + 321);
	scratch_store_close(s);
	scratch_metrics_free(m);
}
END_TEST

/* What the inner store held before it was observed counts from then on,
 * and is gone from the gauges when the wrapper closes. */
START_TEST(test_existing_blobs)
{
	scratch_metrics *m;
	scratch_store *inner, *s, *t;
	scratch_handle a, b;

	ck_assert_int_eq(scratch_metrics_new(&m), 0);
	ck_assert_int_eq(scratch_memory_new(&inner), 0);
	a = put(inner, 40);
	b = put(inner, 2);
	ck_assert_int_eq(scratch_observe(m, inner, &s), 0);
	ck_assert_uint_eq(snap(m).handles, 2);
	ck_assert_uint_eq(snap(m).bytes, 42);
	ck_assert_int_eq(scratch_remove(s, a), 0);
	ck_assert_uint_eq(snap(m).bytes, 2);
	read_ok(s, b);
	/* A second store on the same metrics adds to the same gauges. */
	t = observed_memory(m);
	put(t, 1000);
	ck_assert_uint_eq(snap(m).handles, 2);
	ck_assert_uint_eq(snap(m).bytes, 1002);
	scratch_store_close(s);
	ck_assert_uint_eq(snap(m).handles, 1);
	ck_assert_uint_eq(snap(m).bytes, 1000);
	scratch_store_close(t);
	ck_assert_uint_eq(snap(m).handles, 0);
	scratch_metrics_free(m);
}
END_TEST

/* Two layers of observation count twice, once in each. */
START_TEST(test_nested)
{
	scratch_metrics *m1, *m2;
	scratch_store *s1, *s2;

	ck_assert_int_eq(scratch_metrics_new(&m1), 0);
	ck_assert_int_eq(scratch_metrics_new(&m2), 0);
	s1 = observed_memory(m1);
	ck_assert_int_eq(scratch_observe(m2, s1, &s2), 0);
	scratch_handle h = put(s2, 64);

	read_ok(s2, h);
	ck_assert_int_eq(scratch_remove(s2, h), 0);
	for (int i = 0; i < 2; i++) {
		struct scratch_metrics_snapshot x = snap(i ? m2 : m1);

		ck_assert_uint_eq(x.ops[PUT][OK], 1);
		ck_assert_uint_eq(x.ops[READ][OK], 1);
		ck_assert_uint_eq(x.ops[REMOVE][OK], 1);
		ck_assert_uint_eq(x.handles, 0);
	}
	scratch_store_close(s2); /* closes s1, and its memory store */
	scratch_metrics_free(m1);
	scratch_metrics_free(m2);
}
END_TEST

/* The metrics may be given up before the stores they observe. */
START_TEST(test_free_before_close)
{
	scratch_metrics *m;

	ck_assert_int_eq(scratch_metrics_new(&m), 0);
	scratch_store *s = observed_memory(m);

	scratch_metrics_free(m);
	scratch_handle h = put(s, 100);

	read_ok(s, h);
	ck_assert_int_eq(scratch_remove(s, h), 0);
	scratch_store_close(s);
}
END_TEST

/* A filesystem store behind the wrapper: its files go when it closes. */
START_TEST(test_filesystem)
{
	char dir[] = "/tmp/scratch-metrics-fs-XXXXXX";
	scratch_metrics *m;
	scratch_store *inner, *s;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	ck_assert_int_eq(scratch_metrics_new(&m), 0);
	ck_assert_int_eq(scratch_filesystem_new(NULL, dir, &inner), 0);
	ck_assert_int_eq(scratch_observe(m, inner, &s), 0);
	scratch_handle h = put(s, 8000);

	ck_assert_int_eq(scratch_store_flush(s), 0);
	read_ok(s, h);
	ck_assert_uint_eq(snap(m).bytes, 8000);
	scratch_store_close(s);
	ck_assert_int_eq(rmdir(dir), 0); /* empty: the store removed its files */
	ck_assert_uint_eq(snap(m).handles, 0);
	scratch_metrics_free(m);
}
END_TEST

struct worker {
	scratch_store *s;
	int rounds;
};

static void *work(void *arg)
{
	struct worker *w = arg;

	for (int i = 0; i < w->rounds; i++) {
		scratch_handle h;
		scratch_reader *r;
		char b[32] = { 0 };

		require(scratch_put(w->s, b, sizeof(b), &h) == 0);
		require(scratch_read(w->s, h, &r) == 0);
		scratch_reader_close(r);
		require(scratch_remove(w->s, h) == 0);
	}
	return NULL;
}

/* Threads count into stripes; the sums are exact. */
START_TEST(test_threads)
{
	enum { THREADS = 6, ROUNDS = 5000 };
	pthread_t tid[THREADS];
	struct worker w;
	scratch_metrics *m;

	ck_assert_int_eq(scratch_metrics_new(&m), 0);
	w = (struct worker){ .s = observed_memory(m), .rounds = ROUNDS };
	for (int i = 0; i < THREADS; i++)
		ck_assert_int_eq(pthread_create(&tid[i], NULL, work, &w), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(tid[i], NULL);

	struct scratch_metrics_snapshot x = snap(m);

	for (int op = 0; op < 3; op++) {
		ck_assert_uint_eq(x.ops[op][OK], THREADS * ROUNDS);
		ck_assert_uint_eq(x.ops[op][ERR], 0);
	}
	ck_assert_uint_eq(x.handles, 0);
	ck_assert_uint_eq(x.bytes, 0);
	scratch_store_close(w.s);
	scratch_metrics_free(m);
}
END_TEST

/* A forked child shares the counters (they are a shared mapping) and
 * counts into them with atomic adds, so neither side loses counts while
 * both count at once. */
START_TEST(test_fork)
{
	enum { ROUNDS = 20000 };
	scratch_metrics *m;
	struct worker w;
	int status;
	pid_t pid;

	ck_assert_int_eq(scratch_metrics_new(&m), 0);
	w = (struct worker){ .s = observed_memory(m), .rounds = ROUNDS };
	work(&w); /* this thread now owns a stripe, which the child inherits */
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		work(&w);
		_exit(0);
	}
	work(&w);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	for (int op = 0; op < 3; op++)
		ck_assert_uint_eq(snap(m).ops[op][OK], 3 * ROUNDS);
	scratch_store_close(w.s);
	scratch_metrics_free(m);
}
END_TEST

/* The same, with nothing counted before the fork: parent and child each
 * then claim a stripe of their own, which must not be the same one. */
START_TEST(test_fork_first)
{
	enum { ROUNDS = 100000 }; /* long enough for the two to overlap */
	scratch_metrics *m;
	struct worker w;
	int status;
	pid_t pid;

	ck_assert_int_eq(scratch_metrics_new(&m), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	w = (struct worker){ .s = observed_memory(m), .rounds = ROUNDS };
	work(&w);
	scratch_store_close(w.s);
	if (pid == 0)
		_exit(0);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	for (int op = 0; op < 3; op++)
		ck_assert_uint_eq(snap(m).ops[op][OK], 2 * ROUNDS);
	scratch_metrics_free(m);
}
END_TEST

/* Reads what write_prometheus wrote into a NUL-terminated string. */
static char *exposition(const scratch_metrics *m)
{
	FILE *f = tmpfile();
	static char text[65536];
	size_t n;

	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(scratch_metrics_write_prometheus(m, fileno(f)), 0);
	rewind(f);
	n = fread(text, 1, sizeof(text) - 1, f);
	ck_assert_uint_lt(n, sizeof(text) - 1);
	text[n] = '\0';
	fclose(f);
	return text;
}

/* The value of the line that starts with prefix (a series and its labels). */
static double value_of(const char *text, const char *prefix)
{
	const char *p = text;
	size_t n = strlen(prefix);

	for (; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (!strncmp(p, prefix, n) && p[n] == ' ')
			return strtod(p + n + 1, NULL);
	ck_abort_msg("no line %s", prefix);
	return -1;
}

START_TEST(test_prometheus)
{
	static const char *const ops[] = { "Put", "Read", "Remove" }, *const res[] = { "success", "error" };
	scratch_metrics *m;
	scratch_reader *r;

	ck_assert_int_eq(scratch_metrics_new(&m), 0);
	scratch_store *s = observed_memory(m);
	scratch_handle h = put(s, 123);

	put(s, 7);
	read_ok(s, h);
	ck_assert_int_eq(scratch_read(s, 0, &r), SCRATCH_ENOTFOUND);
	ck_assert_int_eq(scratch_remove(s, h), 0);

	char *text = exposition(m);

	ck_assert_ptr_nonnull(strstr(text, "# TYPE loki_scratch_store_handles gauge\n"));
	ck_assert_ptr_nonnull(strstr(text, "# TYPE loki_scratch_store_bytes gauge\n"));
	ck_assert_ptr_nonnull(strstr(text, "# TYPE loki_scratch_store_requests_seconds histogram\n"));
	ck_assert(value_of(text, "loki_scratch_store_handles") == 1);
	ck_assert(value_of(text, "loki_scratch_store_bytes") == 7);
	/* Every series: cumulative buckets ending in +Inf == _count. */
	for (int o = 0; o < 3; o++) {
		for (int k = 0; k < 2; k++) {
			char labels[128], line[256];
			double last = 0;
			int nb = 0;

			snprintf(labels, sizeof(labels), "{operation=\"%s\",result=\"%s\"", ops[o], res[k]);
			for (const char *p = text; (p = strstr(p, "loki_scratch_store_requests_seconds_bucket")); p++) {
				if (strncmp(p + strlen("loki_scratch_store_requests_seconds_bucket"), labels, strlen(labels)))
					continue;
				double v = strtod(strchr(p, '}') + 2, NULL);

				ck_assert(v >= last);
				last = v;
				nb++;
			}
			ck_assert_int_eq(nb, 23);
			snprintf(line, sizeof(line), "loki_scratch_store_requests_seconds_count%s}", labels);
			ck_assert(value_of(text, line) == last);
			snprintf(line, sizeof(line), "loki_scratch_store_requests_seconds_bucket%s,le=\"+Inf\"}", labels);
			ck_assert(value_of(text, line) == last);
		}
	}
	ck_assert(value_of(text, "loki_scratch_store_requests_seconds_count{operation=\"Put\",result=\"success\"}") == 2);
	ck_assert(value_of(text, "loki_scratch_store_requests_seconds_count{operation=\"Read\",result=\"error\"}") == 1);
	ck_assert(value_of(text, "loki_scratch_store_requests_seconds_sum{operation=\"Put\",result=\"success\"}") > 0);
	ck_assert(value_of(text, "loki_scratch_store_requests_seconds_bucket{operation=\"Put\",result=\"success\",le=\"10\"}") == 2);

	int fds[2];

	ck_assert_int_eq(pipe(fds), 0);
	close(fds[0]);
	signal(SIGPIPE, SIG_IGN);
	ck_assert_int_eq(scratch_metrics_write_prometheus(m, fds[1]), -EPIPE);
	close(fds[1]);
	ck_assert_int_eq(scratch_metrics_write_prometheus(m, fds[1]), -EBADF);
	scratch_store_close(s);
	scratch_metrics_free(m);
}
END_TEST

static char *registry_file(const char *name)
{
	static char path[512];

	snprintf(path, sizeof(path), "%s/scratch-%d-%s.metrics", registry, (int)getpid(), name);
	return path;
}

/* Entries in the registry: visible names only, or hidden ones too. */
static int count_files(bool hidden)
{
	char cmd[600];
	int n = 0;
	FILE *p;

	snprintf(cmd, sizeof(cmd), "ls %s %s | wc -l", hidden ? "-A" : "", registry);
	p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(fscanf(p, "%d", &n), 1);
	pclose(p);
	return n;
}

/* Registering names the counters' file; another process's view of it
 * (attach) follows them live; unregistering and freeing remove the name. */
START_TEST(test_registry)
{
	scratch_metrics *m, *m2, *view;
	struct stat st;

	ck_assert_int_eq(scratch_metrics_new(&m), 0);
	ck_assert_int_eq(count_files(true), 0); /* nameless until registered */
	ck_assert_int_eq(scratch_metrics_register(m, ""), -EINVAL);
	ck_assert_int_eq(scratch_metrics_register(m, "a/b"), -EINVAL);
	ck_assert_int_eq(scratch_metrics_register(m, "../x"), -EINVAL);
	ck_assert_int_eq(scratch_metrics_register(m, "ingester-1.chunks_2"), 0);
	ck_assert_int_eq(scratch_metrics_register(m, "other"), -EBUSY);
	ck_assert_int_eq(stat(registry_file("ingester-1.chunks_2"), &st), 0);
	ck_assert_uint_eq(st.st_mode & 0777, 0600);
	ck_assert_int_eq(scratch_metrics_new(&m2), 0);
	ck_assert_int_eq(scratch_metrics_register(m2, "ingester-1.chunks_2"), -EEXIST);

	scratch_store *s = observed_memory(m);

	put(s, 11);
	ck_assert_int_eq(scratch_metrics_attach(registry_file("ingester-1.chunks_2"), &view), 0);
	ck_assert_uint_eq(snap(view).handles, 1);
	ck_assert_uint_eq(snap(view).bytes, 11);
	put(s, 22);
	ck_assert_uint_eq(snap(view).bytes, 33);
	ck_assert_uint_eq(snap(view).ops[PUT][OK], 2);
	ck_assert(value_of(exposition(view), "loki_scratch_store_bytes") == 33);
	/* A view cannot observe or register. */
	scratch_store *t;

	ck_assert_int_eq(scratch_observe(view, s, &t), -EINVAL);
	ck_assert_int_eq(scratch_metrics_register(view, "v"), -EINVAL);
	ck_assert_int_eq(scratch_metrics_unregister(view), -EINVAL);

	ck_assert_int_eq(scratch_metrics_unregister(m), 0);
	ck_assert_int_eq(count_files(false), 0);
	ck_assert_int_eq(scratch_metrics_unregister(m), -EINVAL);
	put(s, 33); /* the view still reads the counters */
	ck_assert_uint_eq(snap(view).bytes, 66);
	scratch_metrics_free(view);

	/* The same counters can be registered again, under any name. */
	ck_assert_int_eq(scratch_metrics_register(m, "again"), 0);
	ck_assert_int_eq(count_files(true), 1);
	ck_assert_int_eq(scratch_metrics_attach(registry_file("again"), &view), 0);
	ck_assert_uint_eq(snap(view).bytes, 66);
	scratch_metrics_free(view);
	ck_assert_int_eq(scratch_metrics_unregister(m), 0);

	ck_assert_int_eq(scratch_metrics_register(m2, "ingester-1.chunks_2"), 0);
	ck_assert_int_eq(count_files(false), 1);
	scratch_metrics_free(m2); /* unregisters */
	ck_assert_int_eq(count_files(false), 0);
	scratch_store_close(s);
	scratch_metrics_free(m);
	ck_assert_int_eq(count_files(true), 0); /* the hidden name too */
}
END_TEST

/* A forked child has a copy of the object, not of its name: its free and
 * unregister leave the parent's registration alone, and it cannot
 * register the counters itself. */
START_TEST(test_fork_registry)
{
	scratch_metrics *m;
	int status;
	pid_t pid;

	ck_assert_int_eq(scratch_metrics_new(&m), 0);
	ck_assert_int_eq(scratch_metrics_register(m, "parent"), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int a = scratch_metrics_unregister(m), b = scratch_metrics_register(m, "child");

		scratch_metrics_free(m);
		_exit(a == -EINVAL && b == -EINVAL ? 0 : 1);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	ck_assert_int_eq(count_files(true), 1);
	ck_assert_int_eq(access(registry_file("parent"), F_OK), 0);
	ck_assert_int_eq(scratch_metrics_unregister(m), 0);
	ck_assert_int_eq(scratch_metrics_register(m, "parent"), 0);
	scratch_metrics_free(m);
	ck_assert_int_eq(count_files(true), 0);
}
END_TEST

/* A child that closes the observed store it inherited leaves the gauges
 * alone: the blobs are its parent's. */
START_TEST(test_fork_gauges)
{
	scratch_metrics *m;
	int status;
	pid_t pid;

	ck_assert_int_eq(scratch_metrics_new(&m), 0);
	scratch_store *s = observed_memory(m);

	for (int i = 0; i < 10; i++)
		put(s, 4);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		scratch_handle h;

		scratch_put(s, "xy", 2, &h);
		scratch_store_close(s);
		_exit(0);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	ck_assert_uint_eq(snap(m).handles, 10);
	ck_assert_uint_eq(snap(m).bytes, 40);
	ck_assert_uint_eq(snap(m).ops[PUT][OK], 11); /* its operations do count */
	scratch_store_close(s);
	scratch_metrics_free(m);
}
END_TEST

/* A view reads its file when asked: one that shrank gives -EIO, never a
 * fault in the reader. */
START_TEST(test_view_of_truncated_file)
{
	char path[600];
	scratch_metrics *m, *view;
	struct scratch_metrics_snapshot x;
	int fd, in;

	ck_assert_int_eq(scratch_metrics_new(&m), 0);
	ck_assert_int_eq(scratch_metrics_register(m, "t"), 0);
	/* A copy of the file, which this test may shrink. */
	snprintf(path, sizeof(path), "%s/copy.metrics", registry);
	in = open(registry_file("t"), O_RDONLY);
	fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0600);
	ck_assert(in >= 0 && fd >= 0);
	for (char buf[4096]; ;) {
		ssize_t k = read(in, buf, sizeof(buf));

		ck_assert_int_ge(k, 0);
		if (k == 0)
			break;
		ck_assert_int_eq(write(fd, buf, (size_t)k), k);
	}
	close(in);
	ck_assert_int_eq(scratch_metrics_attach(path, &view), 0);
	ck_assert_int_eq(scratch_metrics_snapshot(view, &x), 0);
	ck_assert_int_eq(ftruncate(fd, 4096), 0);
	ck_assert_int_eq(scratch_metrics_snapshot(view, &x), -EIO);
	ck_assert_int_eq(scratch_metrics_write_prometheus(view, 1), -EIO);
	close(fd);
	unlink(path);
	scratch_metrics_free(view);
	scratch_metrics_free(m);
}
END_TEST

/* The exposition is the same in any locale (a decimal comma would make it
 * unreadable to Prometheus). */
START_TEST(test_prometheus_locale)
{
	scratch_metrics *m;

	if (!setlocale(LC_ALL, "de_DE.UTF-8") && !setlocale(LC_ALL, "fr_FR.UTF-8")) {
		printf("SKIP test_prometheus_locale: no locale with a decimal comma installed\n");
		return;
	}
	ck_assert_int_eq(scratch_metrics_new(&m), 0);
	scratch_store *s = observed_memory(m);

	put(s, 1);
	char *text = exposition(m);

	ck_assert_ptr_nonnull(strstr(text, "le=\"0.0000025\""));
	/* No comma in a value: the text after each line's last space. */
	for (const char *line = text; *line; line = strchr(line, '\n') + 1) {
		const char *end = strchr(line, '\n'), *v = end;

		while (v > line && v[-1] != ' ')
			v--;
		ck_assert_msg(*line == '#' || !memchr(v, ',', (size_t)(end - v)), "a comma in %.*s",
			      (int)(end - line), line);
	}
	scratch_store_close(s);
	scratch_metrics_free(m);
}
END_TEST

START_TEST(test_attach_rejects)
{
	char path[600];
	scratch_metrics *view = (scratch_metrics *)1;
	int fd;

	snprintf(path, sizeof(path), "%s/junk.metrics", registry);
	fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, 1 << 16), 0); /* long enough, all zeros */
	close(fd);
	ck_assert_int_eq(scratch_metrics_attach(path, &view), -EINVAL);
	ck_assert_ptr_null(view);
	ck_assert_int_eq(truncate(path, 10), 0);
	ck_assert_int_eq(scratch_metrics_attach(path, &view), -EINVAL);
	ck_assert_int_eq(scratch_metrics_attach(registry, &view), -EINVAL); /* a directory */
	snprintf(path, sizeof(path), "%s/none.metrics", registry);
	ck_assert_int_eq(scratch_metrics_attach(path, &view), -ENOENT);
	snprintf(path, sizeof(path), "%s/junk.metrics", registry);
	unlink(path);
}
END_TEST

/* Without a usable registry directory the metrics work; only registering
 * fails. */
START_TEST(test_no_registry)
{
	scratch_metrics *m;

	setenv("SCRATCH_METRICS_DIR", "/nonexistent/scratch-registry", 1);
	ck_assert_int_eq(scratch_metrics_new(&m), 0);
	scratch_store *s = observed_memory(m);

	put(s, 5);
	ck_assert_uint_eq(snap(m).bytes, 5);
	ck_assert_int_eq(scratch_metrics_register(m, "x"), -ENOTSUP);
	scratch_store_close(s);
	scratch_metrics_free(m);
}
END_TEST

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st, (void)flag, (void)f;
	return remove(p);
}

/* Whether dir's filesystem makes O_TMPFILE files (overlayfs before
 * Linux 6.6 does not). */
static bool tmpfile_works(const char *dir)
{
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

	if (fd < 0)
		return false;
	close(fd);
	return true;
}

int main(void)
{
	Suite *s = suite_create("metrics");
	TCase *tc = tcase_create("metrics");
	int status;

	/* Where the library puts counters by default (a tmpfs), else /tmp. */
	snprintf(registry, sizeof(registry), "%s/scratch-metrics-test-XXXXXX",
		 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
	if (!mkdtemp(registry)) {
		perror("mkdtemp");
		return EXIT_FAILURE;
	}
	setenv("SCRATCH_METRICS_DIR", registry, 1);
	bool tmpfile_ok = tmpfile_works(registry);

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_arguments);
	tcase_add_test(tc, test_counts);
	tcase_add_test(tc, test_durations);
	tcase_add_test(tc, test_every_put_counts);
	tcase_add_test(tc, test_existing_blobs);
	tcase_add_test(tc, test_nested);
	tcase_add_test(tc, test_free_before_close);
	tcase_add_test(tc, test_filesystem);
	tcase_add_test(tc, test_threads);
	tcase_add_test(tc, test_fork);
	tcase_add_test(tc, test_fork_first);
	tcase_add_test(tc, test_prometheus);
	if (tmpfile_ok)
		tcase_add_test(tc, test_registry);
	else
		printf("SKIP test_registry: %s cannot hold O_TMPFILE files, so metrics cannot "
		       "be registered there\n", registry);
	if (tmpfile_ok) {
		tcase_add_test(tc, test_fork_registry);
		tcase_add_test(tc, test_view_of_truncated_file);
	}
	tcase_add_test(tc, test_fork_gauges);
	tcase_add_test(tc, test_prometheus_locale);
	tcase_add_test(tc, test_attach_rejects);
	tcase_add_test(tc, test_no_registry);
	suite_add_tcase(s, tc);
	status = run_suite(s);
	nftw(registry, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
	return status;
}
