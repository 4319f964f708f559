/*
 * test_htab.c: the handle table on its own, with a fake backend whose
 * "blob" is the entry's handle written into the size field, so every
 * lookup can be checked against the handle it was asked for.  A fake made
 * with small blobs makes every other insert a small entry holding a blob
 * made from its handle (small_of), so a copy of the wrong blob is caught
 * too.
 */
#include <string.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "grace.h"
#include "htab.h"
#include "testutil.h"
#include "scratch.h"

struct fake {
	struct htab table;
	bool small;                 /* every other insert is small */
	_Atomic uint64_t inserts;
	_Atomic uint64_t big;       /* big entries inserted */
	_Atomic uint64_t released;  /* and released */
	_Atomic int destroyed;
};

/* The small blob of handle h: h % 65 bytes of h's bytes, repeated. */
static size_t small_of(uint64_t h, unsigned char *buf)
{
	size_t n = h % (HTAB_SMALL_MAX + 1);

	for (size_t i = 0; i < n; i++)
		buf[i] = (unsigned char)(h >> (8 * (i % 8)));
	return n;
}

/*
 * The last reference to e is gone: the table unlinked it and no reader
 * holds it, so its count is 0, HTAB_LINKED included (no reader can take a
 * reference without that bit).  Only big entries get here, still holding
 * the blob insert() gave their handle.
 */
static void fake_release(void *ctx, struct htab_entry *e, unsigned shard)
{
	struct fake *f = ctx;
	uint64_t h = e->handle;

	require(e->kind == HTAB_BIG);
	require(atomic_load(&e->refs) == 0);
	require(shard == htab_shard_of(h));
	require(e->size == h);
	atomic_fetch_add(&f->released, 1);
}

static void fake_destroy(void *ctx)
{
	struct fake *f = ctx;

	htab_fini(&f->table);
	atomic_store(&f->destroyed, 1);
}

static const struct htab_ops fake_ops = { .release = fake_release, .destroy = fake_destroy };

static struct fake *fake_new_with(bool small)
{
	struct fake *f = aligned_alloc(64, sizeof(*f));

	require(f != NULL);
	require(htab_init(&f->table, &fake_ops, f) == 0);
	f->small = small;
	atomic_init(&f->inserts, 0);
	atomic_init(&f->big, 0);
	atomic_init(&f->released, 0);
	atomic_init(&f->destroyed, 0);
	return f;
}

static struct fake *fake_new(void)
{
	return fake_new_with(false);
}

static uint64_t insert(struct fake *f)
{
	unsigned char small[HTAB_SMALL_MAX];
	struct htab_entry *e;
	uint64_t h;

	if (f->small && (atomic_fetch_add(&f->inserts, 1) & 1)) {
		require(htab_reserve_small(&f->table, &e) == 0);
		h = e->handle;
		require(e->kind == HTAB_SMALL);
		htab_set_small(e, small, small_of(h, small));
	} else {
		require(htab_reserve(&f->table, &e) == 0);
		h = e->handle;
		require(e->kind == HTAB_BIG);
		e->size = h;
		atomic_fetch_add(&f->big, 1);
	}
	require(h != 0);
	htab_publish(&f->table, e);
	return h;
}

/*
 * Looks h up as scratch_read does (a small blob comes back as a copy) and
 * checks that what it finds is h's.  False if h is not there, which is
 * fine for a handle another thread may remove at any time.  Calls Check
 * only through require(), so the stress threads use it too.
 */
static bool found_intact(struct fake *f, uint64_t h)
{
	unsigned char got[HTAB_SMALL_MAX], want[HTAB_SMALL_MAX];
	struct htab_entry *e;
	size_t n = 0;
	int err = htab_lookup(&f->table, h, &e, got, &n);

	if (err == SCRATCH_ENOTFOUND)
		return false;
	require(err == 0);
	if (!e) {
		require(f->small);
		require(n == small_of(h, want));
		require(memcmp(got, want, n) == 0);
		return true;
	}
	require(e->handle == h);
	require(e->size == h);
	htab_put(&f->table, e);
	return true;
}

static void expect_found(struct fake *f, uint64_t h)
{
	require(found_intact(f, h));
}

static void expect_missing(struct fake *f, uint64_t h)
{
	struct htab_entry *e;

	require(htab_acquire(&f->table, h, &e) == SCRATCH_ENOTFOUND);
	require(e == NULL);
}

START_TEST(test_insert_lookup_remove)
{
	struct fake *f = fake_new();
	uint64_t h = insert(f);

	expect_found(f, h);
	expect_missing(f, 0);
	expect_missing(f, h + HTAB_SHARDS); /* same shard, never issued */
	require(htab_remove(&f->table, h, NULL) == 0);
	expect_missing(f, h);
	require(htab_remove(&f->table, h, NULL) == SCRATCH_ENOTFOUND);
	require(htab_remove(&f->table, 0, NULL) == SCRATCH_ENOTFOUND);
	require(atomic_load(&f->released) == 1);
	htab_close(&f->table);
	require(atomic_load(&f->destroyed) == 1);
	free(f);
}
END_TEST

/* A small blob of every size is copied back exact, has no reference to
 * take, and is gone at its remove with nothing released. */
START_TEST(test_small_entries)
{
	struct fake *f = fake_new();
	unsigned char blob[HTAB_SMALL_MAX + 8], got[HTAB_SMALL_MAX];
	uint64_t h[HTAB_SMALL_MAX + 1];
	struct htab_entry *e;
	size_t n;

	for (size_t i = 0; i < sizeof(blob); i++)
		blob[i] = (unsigned char)(i * 37 + 1);
	for (size_t len = 0; len <= HTAB_SMALL_MAX; len++) /* from offset 8: a tail word reads back */
		require(htab_insert_small(&f->table, blob + 8, len, &h[len]) == 0);
	for (size_t len = 0; len <= HTAB_SMALL_MAX; len++) {
		memset(got, 0xee, sizeof(got));
		require(htab_lookup(&f->table, h[len], &e, got, &n) == 0);
		require(e == NULL);
		require(n == len);
		require(memcmp(got, blob + 8, len) == 0);
		require(htab_acquire(&f->table, h[len], &e) == -EINVAL);
		require(e == NULL);
	}
	struct htab_stats st;

	htab_stats(&f->table, &st);
	require(st.live == HTAB_SMALL_MAX + 1);
	require(st.bytes == HTAB_SMALL_MAX * (HTAB_SMALL_MAX + 1) / 2);
	for (size_t len = 0; len <= HTAB_SMALL_MAX; len += 2) {
		uint64_t size = 99;

		require(htab_remove(&f->table, h[len], &size) == 0);
		require(size == len);
		expect_missing(f, h[len]);
		require(htab_lookup(&f->table, h[len], &e, got, &n) == SCRATCH_ENOTFOUND);
		require(htab_remove(&f->table, h[len], NULL) == SCRATCH_ENOTFOUND);
	}
	require(atomic_load(&f->released) == 0);
	htab_close(&f->table); /* no reference is out: destroyed at once */
	require(atomic_load(&f->destroyed) == 1);
	free(f);
}
END_TEST

/* A table never makes the handles of another live table: 65536 tables
 * made and closed meanwhile, the next one still finds none of the first's
 * handles and makes none of them. */
START_TEST(test_tags_unique_among_live)
{
	struct fake *a = fake_new(), *b;
	uint64_t ha[HTAB_SHARDS * 4];
	struct htab_entry *e;

	for (unsigned i = 0; i < sizeof(ha) / sizeof(ha[0]); i++)
		ha[i] = insert(a);
	for (unsigned i = 0; i < (1u << HTAB_TAG_BITS); i++) {
		b = fake_new();
		require(b->table.tag != a->table.tag);
		htab_close(&b->table);
		require(atomic_load(&b->destroyed) == 1);
		free(b);
	}
	b = fake_new();
	require(b->table.tag != a->table.tag);
	for (unsigned i = 0; i < sizeof(ha) / sizeof(ha[0]); i++) {
		uint64_t hb = insert(b);

		for (unsigned j = 0; j < sizeof(ha) / sizeof(ha[0]); j++)
			require(hb != ha[j]);
		require(htab_acquire(&b->table, ha[i], &e) == SCRATCH_ENOTFOUND);
		expect_found(a, ha[i]);
	}
	htab_close(&b->table);
	htab_close(&a->table);
	free(b);
	free(a);
}
END_TEST

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Grows through many rebuilds, then shrinks; every handle stays findable,
 * handles are unique, and the slot arrays stay within 32 bytes a handle.
 * _i: 0 big entries only, 1 small ones too. */
START_TEST(test_grow_shrink_unique)
{
	enum { N = 200000 };
	struct fake *f = fake_new_with(_i);
	uint64_t *h = malloc(N * sizeof(*h)), *sorted = malloc(N * sizeof(*h));
	struct htab_stats st;

	for (size_t i = 0; i < N; i++)
		h[i] = insert(f);
	for (size_t i = 0; i < N; i++)
		expect_found(f, h[i]);
	htab_stats(&f->table, &st);
	require(st.live == N);
	require(st.slot_bytes <= 32ull * N);
	memcpy(sorted, h, N * sizeof(*h));
	qsort(sorted, N, sizeof(*h), cmp_u64);
	for (size_t i = 1; i < N; i++)
		require(sorted[i - 1] != sorted[i]);
	/* Remove 15 in 16: the tables shrink, the rest stay findable.  These
	 * shards are large and the removes in order, so they fetch ahead
	 * (prefetch_removes) as they go. */
	for (size_t i = 0; i < N; i++)
		if (i % 16)
			require(htab_remove(&f->table, h[i], NULL) == 0);
	for (size_t i = 0; i < N; i++) {
		if (i % 16)
			expect_missing(f, h[i]);
		else
			expect_found(f, h[i]);
	}
	htab_stats(&f->table, &st);
	require(st.live == N / 16);
	require(st.slot_bytes <= 32ull * (N / 16));
	/* New handles never repeat removed ones. */
	for (size_t i = 0; i < 1000; i++) {
		uint64_t x = insert(f);

		require(bsearch(&x, sorted, N, sizeof(*h), cmp_u64) == NULL);
	}
	htab_close(&f->table);
	require(atomic_load(&f->destroyed) == 1);
	require(atomic_load(&f->released) == atomic_load(&f->big));
	require(atomic_load(&f->big) == (_i ? (N + 1000) / 2 : N + 1000));
	free(h);
	free(sorted);
	free(f);
}
END_TEST

/* A reference taken before remove and close keeps the entry, and the
 * table, alive until it is put back. */
START_TEST(test_refs_outlive_remove_and_close)
{
	struct fake *f = fake_new();
	uint64_t a = insert(f), b = insert(f);
	struct htab_entry *ea, *eb;

	require(htab_acquire(&f->table, a, &ea) == 0);
	require(htab_acquire(&f->table, b, &eb) == 0);
	require(htab_remove(&f->table, a, NULL) == 0);
	require(atomic_load(&f->released) == 0);
	expect_missing(f, a);
	htab_close(&f->table);
	require(atomic_load(&f->destroyed) == 0);
	require(ea->size == a);
	htab_put(&f->table, ea);
	require(atomic_load(&f->released) == 1);
	require(atomic_load(&f->destroyed) == 0);
	require(eb->size == b);
	htab_put(&f->table, eb);
	require(atomic_load(&f->destroyed) == 1);
	free(f);
}
END_TEST

START_TEST(test_cancel)
{
	struct fake *f = fake_new();
	struct htab_entry *e;

	require(htab_reserve(&f->table, &e) == 0);
	uint64_t h = e->handle;

	htab_cancel(&f->table, e);
	expect_missing(f, h);
	uint64_t next = insert(f);

	require(next != h);
	htab_close(&f->table);
	require(atomic_load(&f->destroyed) == 1);
	free(f);
}
END_TEST

/* Four threads insert, look up and remove at once, each also looking up
 * handles that the others own (which may vanish at any time) and checking
 * that whatever it finds is the entry it asked for. */
enum { STRESS_THREADS = 4, STRESS_ROUNDS = 300000, STRESS_KEEP = 512 };

struct stress {
	struct fake *f;
	_Atomic uint64_t recent[STRESS_THREADS][64];
	unsigned id;
	uint64_t found_foreign;
};

static struct stress stress_shared;

static void *stress_thread(void *arg)
{
	unsigned id = (unsigned)(uintptr_t)arg;
	struct fake *f = stress_shared.f;
	uint64_t keep[STRESS_KEEP] = { 0 };
	uint64_t rnd = 0x9e3779b97f4a7c15ull * (id + 1);
	uintptr_t found = 0;

	for (unsigned r = 0; r < STRESS_ROUNDS; r++) {
		unsigned k = r % STRESS_KEEP;

		if (keep[k]) {
			expect_found(f, keep[k]);
			require(htab_remove(&f->table, keep[k], NULL) == 0);
			expect_missing(f, keep[k]);
		}
		keep[k] = insert(f);
		atomic_store(&stress_shared.recent[id][r % 64], keep[k]);
		rnd ^= rnd << 13, rnd ^= rnd >> 7, rnd ^= rnd << 17;
		uint64_t other = atomic_load(&stress_shared.recent[rnd % STRESS_THREADS][(rnd >> 8) % 64]);

		if (other && found_intact(f, other))
			found++;
	}
	for (unsigned k = 0; k < STRESS_KEEP; k++)
		if (keep[k])
			require(htab_remove(&f->table, keep[k], NULL) == 0);
	return (void *)found;
}

/* _i: bit 0, small blobs (copied under their seqlock); bit 1, readers
 * announce with an exchange (as where membarrier is refused) instead of a
 * plain store. */
START_TEST(test_threads_stress)
{
	pthread_t t[STRESS_THREADS];
	uintptr_t found = 0;

	grace_exit(grace_enter()); /* sets grace_asymmetric up, once */
	if (_i & 2)
		grace_asymmetric = false;
	stress_shared.f = fake_new_with(_i & 1);
	for (uintptr_t i = 0; i < STRESS_THREADS; i++)
		require(pthread_create(&t[i], NULL, stress_thread, (void *)i) == 0);
	for (unsigned i = 0; i < STRESS_THREADS; i++) {
		void *ret;

		pthread_join(t[i], &ret);
		found += (uintptr_t)ret;
	}
	require(found > 0);
	struct htab_stats st;

	htab_stats(&stress_shared.f->table, &st);
	require(st.live == 0);
	require(atomic_load(&stress_shared.f->big) ==
		(uint64_t)STRESS_THREADS * STRESS_ROUNDS / (_i & 1 ? 2 : 1));
	require(atomic_load(&stress_shared.f->released) == atomic_load(&stress_shared.f->big));
	htab_close(&stress_shared.f->table);
	require(atomic_load(&stress_shared.f->destroyed) == 1);
	free(stress_shared.f);
}
END_TEST

/* Threads that come and go hand their reader records on: a pipeline that
 * starts a thread per task must not grow the registry without bound. */
static void *lookup_once(void *arg)
{
	struct fake *f = arg;
	struct htab_entry *e;

	require(htab_acquire(&f->table, HTAB_SHARDS, &e) == SCRATCH_ENOTFOUND);
	return NULL;
}

START_TEST(test_thread_records_reused)
{
	struct fake *f = fake_new();
	pthread_t t;

	lookup_once(f);
	unsigned before = grace_records();

	for (int i = 0; i < 200; i++) {
		ck_assert_int_eq(pthread_create(&t, NULL, lookup_once, f), 0);
		pthread_join(t, NULL);
	}
	ck_assert_uint_le(grace_records(), before + 1);
	htab_close(&f->table);
	free(f);
}
END_TEST

/* Each thread puts into a group of shards of its own, and a thread that
 * replaces one that exited takes over its group. */
struct putter {
	struct fake *f;
	pthread_barrier_t *both; /* NULL: alone */
	unsigned shards;         /* the shards its handles went to, a bit each */
};

static void *put_some(void *arg)
{
	struct putter *p = arg;

	if (p->both)
		pthread_barrier_wait(p->both); /* both threads live before either puts */
	for (int i = 0; i < 1000; i++)
		p->shards |= 1u << htab_shard_of(insert(p->f));
	if (p->both)
		pthread_barrier_wait(p->both); /* and until both have put */
	return NULL;
}

static void put_on_thread(struct putter *p, pthread_t *t)
{
	ck_assert_int_eq(pthread_create(t, NULL, put_some, p), 0);
}

START_TEST(test_put_groups)
{
	struct fake *f = fake_new();
	struct putter a = { f, NULL, 0 }, b = { f, NULL, 0 }, c, d;
	pthread_barrier_t both;
	pthread_t ta, tb;
	unsigned group = (1u << HTAB_GROUP_SHARDS) - 1;

	put_on_thread(&a, &ta);
	pthread_join(ta, NULL);
	ck_assert_uint_eq(a.shards, group << __builtin_ctz(a.shards)); /* one whole group */
	ck_assert_uint_eq(__builtin_ctz(a.shards) % HTAB_GROUP_SHARDS, 0);
	put_on_thread(&b, &tb);
	pthread_join(tb, NULL);
	ck_assert_uint_eq(b.shards, a.shards);

	require(pthread_barrier_init(&both, NULL, 2) == 0);
	c = (struct putter){ f, &both, 0 };
	d = (struct putter){ f, &both, 0 };
	put_on_thread(&c, &ta);
	put_on_thread(&d, &tb);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	pthread_barrier_destroy(&both);
	ck_assert_uint_eq(c.shards & d.shards, 0);
	ck_assert_uint_eq(__builtin_popcount(c.shards), HTAB_GROUP_SHARDS);
	ck_assert_uint_eq(__builtin_popcount(d.shards), HTAB_GROUP_SHARDS);
	htab_close(&f->table);
	free(f);
}
END_TEST

/* A remove waits for the put that holds its shard, through the lock's
 * sleeping path, and goes on once the put publishes. */
struct remover {
	struct fake *f;
	uint64_t h;
	_Atomic int done;
	int err;
};

static void *remove_one(void *arg)
{
	struct remover *r = arg;

	r->err = htab_remove(&r->f->table, r->h, NULL);
	atomic_store(&r->done, 1);
	return NULL;
}

START_TEST(test_remove_waits_for_locked_shard)
{
	struct fake *f = fake_new();
	struct remover r = { .f = f, .h = insert(f) };
	struct htab_entry *e;
	pthread_t t;

	/* The next put goes to the same shard, and holds it until published. */
	require(htab_reserve(&f->table, &e) == 0);
	ck_assert_uint_eq(htab_shard_of(e->handle), htab_shard_of(r.h));
	e->size = e->handle;
	ck_assert_int_eq(pthread_create(&t, NULL, remove_one, &r), 0);
	usleep(50 * 1000); /* long past the spinning and yielding */
	ck_assert_int_eq(atomic_load(&r.done), 0);
	htab_publish(&f->table, e);
	pthread_join(t, NULL);
	ck_assert_int_eq(r.err, 0);
	expect_missing(f, r.h);
	expect_found(f, e->handle);
	htab_close(&f->table);
	free(f);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("htab");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_insert_lookup_remove);
	tcase_add_test(tc, test_small_entries);
	tcase_add_test(tc, test_tags_unique_among_live);
	tcase_add_loop_test(tc, test_grow_shrink_unique, 0, 2);
	tcase_add_test(tc, test_refs_outlive_remove_and_close);
	tcase_add_test(tc, test_cancel);
	tcase_add_loop_test(tc, test_threads_stress, 0, 4);
	tcase_add_test(tc, test_thread_records_reused);
	tcase_add_test(tc, test_put_groups);
	tcase_add_test(tc, test_remove_waits_for_locked_shard);
	suite_add_tcase(s, tc);

	return run_suite(s);
}
