/*
 * htab.c: the handle table, an open-addressed hash table with lock-free
 * lookups.
 *
 * Layout.  The table is HTAB_SHARDS independent shards.  A handle carries
 * its shard in its low HTAB_SHARD_BITS bits and a per-shard sequence number
 * above them, so handles are never 0 and never reused.  The sequences of
 * a table start at its tag (in the top HTAB_TAG_BITS bits) plus 1, and no
 * two live tables have the same tag (tag_take), so another table's handle
 * finds no entry here (unless 2^43 handles went into one shard, or 65536
 * tables live at once).  Each shard has
 * - a slot array of 8-byte words, linear probing from a home slot that
 *   keeps consecutive sequence numbers together (slot_home): 0 is empty,
 *   ~0 a tombstone, anything else is
 *   (low 32 bits of the sequence) << 32 | SLOT_SMALL if small | (entry
 *   index + 64) (entry_at).  The tag lets a probe skip foreign slots without touching
 *   their entries;
 * - two pools of entries, big and small (htab.h), each in chunks of growing
 *   size that are never freed or moved while the table lives (type-stable
 *   memory: a stale pointer to an entry always points at an entry of the
 *   same kind, never at freed memory).
 * The slot array is rebuilt when live + tombstones pass 3/4 of it or live
 * falls under 1/4 (shards of 1024 slots or less are never shrunk), to a
 * power of two with load in (1/4, 1/2]; so it costs at most 32 bytes per
 * live handle, plus at most 8 KiB per shard.  A rebuild copies one shard only: writers
 * of the other shards never wait, readers never wait at all.
 *
 * Concurrency contract.
 * - Writers (reserve/publish, remove, close, and the release of an entry)
 *   take their shard's lock (lock.h).  A thread puts into a group of
 *   shards of its own, a run of puts into each in turn, and skips locked
 *   shards, so concurrent puts rarely meet (lock_next_shard).
 * - Readers (htab_lookup) take no lock and write nothing shared but a big
 *   entry's reference count.  They load the slot array inside a grace
 *   section (grace.h); a rebuild publishes the new array and waits out a
 *   grace period before freeing the old one.
 * - A reader may find a slot that is stale by the time it looks at the
 *   entry: the handle may have been removed and the entry recycled.  So a
 *   reader takes its reference on a big entry with a CAS that fails unless
 *   HTAB_LINKED is set, and only then checks the entry's handle.  A removed
 *   entry has lost HTAB_LINKED for good, so no reader can acquire a handle
 *   after its removal has returned.
 * - A small entry is read with no reference at all: copy_small copies its
 *   blob and keeps the copy only if the entry still holds the handle
 *   afterwards (a seqlock whose sequence is the handle, which is never
 *   reused; a remove sets it to 0).  So nothing but the table points at a
 *   small entry, and a remove frees it at once, with no atomic
 *   read-modify-write and no call to the backend.
 * - A big entry is released (its bytes freed by the backend, itself put on
 *   the free list) when its count reaches 0, under its shard's lock.
 * - htab_close unlinks everything; the table and the backend are destroyed
 *   when the last shard has no entry left, which may be long after, when
 *   the last reader closes.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "grace.h"
#include "htab.h"
#include "lock.h"
#include "scratch.h"

#define HTAB_LINKED 0x80000000u
#define HTAB_COUNT_MASK 0x7fffffffu
#define SLOT_EMPTY 0ull
#define SLOT_TOMB (~0ull)
#define MIN_BITS 4
/* For the few helpers of the put, lookup and remove paths that gcc would
 * otherwise leave out of line. */
#define HOT static inline __attribute__((always_inline))
#define SHRINK_MIN_BITS 10 /* never shrink a shard below 1024 slots (8 KiB) */
#define POOL_MAX (64u * ((1u << HTAB_CHUNKS) - 1)) /* entries in all chunks */
#define SLOT_SMALL 0x80000000u /* in a slot word: the entry is small */

_Static_assert(sizeof(struct htab_entry) == 64, "an entry is one cache line (entry_shift)");
_Static_assert(POOL_MAX + 64 < ~SLOT_SMALL, "no slot word is SLOT_TOMB");
_Static_assert(offsetof(struct htab_shard, chunks) == 64, "a shard's hot fields fill its first line");

struct htab_slots {
	uint32_t mask;               /* 2^bits - 1 */
	uint32_t run_mask;           /* 2^run_bits - 1 (slot_home) */
	uint8_t bits, run_bits;
	uint8_t shift;               /* 64 - bits */
	_Atomic uint64_t slot[];
};

/* initial-exec: the default model for a shared library calls
 * __tls_get_addr on each access.  (An attribute names one declarator.) */
static __thread unsigned put_group __attribute__((tls_model("initial-exec")));
static __thread unsigned puts_made __attribute__((tls_model("initial-exec")));
static __thread bool put_group_set __attribute__((tls_model("initial-exec")));

static inline uint64_t handle_seq(uint64_t h)
{
	return h >> HTAB_SHARD_BITS;
}

/*
 * Runs of consecutive sequence numbers get consecutive home slots: the
 * Fibonacci hash of the run picks where it starts, the low bits of the
 * sequence the slot after that.  A shard's handles are made in order (puts
 * come in runs, lock_next_shard) and mostly die in order, so a put or a
 * remove usually finds its slot's line already in the cache, even in a
 * table of millions.  Runs start anywhere, not on a line, so a program that
 * keeps one blob in every 2^k still spreads them over the whole array.  A
 * run is 1/64 of the array, at most 64 slots: long runs in a small array
 * would overlap and probe far.
 *
 * The home depends on the sequence's low 32 bits only, the tag its slot
 * word keeps, so a rebuild moves slots without reading their entries (in a
 * table of millions, each such read is a cache miss).
 */
#define RUN_BITS_MAX 6

static inline uint32_t slot_home(const struct htab_slots *s, uint32_t tag)
{
	uint64_t start = ((uint64_t)(tag >> s->run_bits) * 0x9e3779b97f4a7c15ull) >> s->shift;

	return (uint32_t)(start + (tag & s->run_mask)) & s->mask;
}

static inline uint64_t slot_word(uint64_t seq, unsigned kind, uint32_t index)
{
	return (uint64_t)(uint32_t)seq << 32 | (kind == HTAB_SMALL ? SLOT_SMALL : 0) | (index + 64u);
}

static inline unsigned slot_kind(uint64_t word)
{
	return (uint32_t)word & SLOT_SMALL ? HTAB_SMALL : HTAB_BIG;
}

static inline bool slot_matches(uint64_t word, uint64_t seq)
{
	return word != SLOT_EMPTY && word != SLOT_TOMB && (uint32_t)(word >> 32) == (uint32_t)seq;
}

/*
 * Chunk c holds entries [64 * (2^c - 1), 64 * (2^(c+1) - 1)): entry i is
 * in the chunk that the top bit of i + 64 tells (bit c + 6), at the offset
 * the other bits of i + 64 tell.
 */
static inline unsigned chunk_of(uint32_t index, uint32_t *offset)
{
	uint32_t m = index + 64;
	unsigned top = 31u - (unsigned)__builtin_clz(m);

	*offset = m - (1u << top);
	return top - 6;
}

/* log2 of an entry's stride: a small entry has a second line. */
static inline unsigned entry_shift(unsigned kind)
{
	return kind == HTAB_SMALL ? 7 : 6;
}

static inline struct htab_entry *entry_at(struct htab_shard *sh, unsigned kind, uint32_t index)
{
	uint32_t offset;
	unsigned c = chunk_of(index, &offset);
	/* Acquire: the chunk was stored before the slot or free list that led
	 * us here was published, but say so rather than rely on dependency. */
	unsigned char *chunk =
		(unsigned char *)atomic_load_explicit(&sh->chunks[kind][c], memory_order_acquire);

	return (struct htab_entry *)(chunk + ((size_t)offset << entry_shift(kind)));
}

/* The entry a live slot word names. */
static inline struct htab_entry *slot_entry(struct htab_shard *sh, uint64_t word)
{
	return entry_at(sh, slot_kind(word), ((uint32_t)word & ~SLOT_SMALL) - 64);
}

/*
 * The small-blob seqlock's words are relaxed atomics between two fences.
 * TSan does not understand fences, so under it every word is a release
 * store and an acquire load instead: stronger, and as correct.
 */
#if defined(__has_feature)
#if __has_feature(thread_sanitizer) /* clang */
#define UNDER_TSAN 1
#endif
#endif
#ifdef __SANITIZE_THREAD__ /* gcc */
#define UNDER_TSAN 1
#endif
#ifdef UNDER_TSAN
#define SMALL_STORE memory_order_release
#define SMALL_LOAD memory_order_acquire
#define small_fence(order) ((void)0)
#else
#define SMALL_STORE memory_order_relaxed
#define SMALL_LOAD memory_order_relaxed
#define small_fence(order) atomic_thread_fence(order)
#endif

/* A small entry's blob: its second line. */
static inline _Atomic uint64_t *entry_small(struct htab_entry *e)
{
	return (_Atomic uint64_t *)(e + 1);
}

/*
 * Zeroed memory for slot arrays and entry chunks.  From 2 MiB up it is
 * mapped 2 MiB-aligned and offered to transparent huge pages: a lookup in a
 * table of millions touches a random slot and a random entry, and on 4 KiB
 * pages each of those touches also costs a page walk that misses the cache.
 */
#define HUGE_SIZE (2u << 20)

static void *table_alloc(size_t n)
{
	if (n < HUGE_SIZE) {
		void *p = aligned_alloc(64, (n + 63) & ~(size_t)63);

		return p ? memset(p, 0, n) : NULL;
	}
	size_t len = (n + HUGE_SIZE - 1) & ~(size_t)(HUGE_SIZE - 1);
	unsigned char *p = mmap(NULL, len + HUGE_SIZE, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	unsigned char *aligned = (unsigned char *)(((uintptr_t)p + HUGE_SIZE - 1) & ~(uintptr_t)(HUGE_SIZE - 1));

	if (aligned > p)
		munmap(p, (size_t)(aligned - p));
	if (aligned + len < p + len + HUGE_SIZE)
		munmap(aligned + len, (size_t)(p + len + HUGE_SIZE - (aligned + len)));
	(void)madvise(aligned, len, MADV_HUGEPAGE); /* advice only: fine to fail */
	return aligned;
}

static void table_free(void *p, size_t n)
{
	if (n < HUGE_SIZE)
		free(p);
	else if (p)
		munmap(p, (n + HUGE_SIZE - 1) & ~(size_t)(HUGE_SIZE - 1));
}

static size_t slots_size(unsigned bits)
{
	return sizeof(struct htab_slots) + (sizeof(uint64_t) << bits);
}

static size_t chunk_size(unsigned kind, unsigned c)
{
	return ((size_t)64 << c) << entry_shift(kind);
}

static struct htab_slots *slots_new(unsigned bits)
{
	struct htab_slots *s = table_alloc(slots_size(bits));

	if (s) {
		s->bits = (uint8_t)bits;
		s->run_bits = (uint8_t)(bits > RUN_BITS_MAX + 6 ? RUN_BITS_MAX : bits > 6 ? bits - 6 : 0);
		s->shift = (uint8_t)(64 - bits);
		s->mask = (uint32_t)((1ull << bits) - 1);
		s->run_mask = (1u << s->run_bits) - 1;
	}
	return s;
}

static inline void slots_insert(struct htab_slots *s, uint64_t word, uint32_t *ntombs)
{
	uint32_t i = slot_home(s, (uint32_t)(word >> 32));

	for (;; i = (i + 1) & s->mask) {
		uint64_t old = atomic_load_explicit(&s->slot[i], memory_order_relaxed);

		if (old == SLOT_EMPTY || old == SLOT_TOMB) {
			if (old == SLOT_TOMB)
				(*ntombs)--;
			/* Release: the entry (refs, handle, blob) is complete
			 * before a reader can find it here. */
			atomic_store_explicit(&s->slot[i], word, memory_order_release);
			return;
		}
	}
}

/* Rebuilds sh's slots to fit `live` handles at load (1/4, 1/2]. */
static int shard_rebuild(struct htab_shard *sh, uint32_t live)
{
	struct htab_slots *old = atomic_load_explicit(&sh->slots, memory_order_relaxed);
	unsigned bits = MIN_BITS;

	while ((2ull * live) > (1ull << bits))
		bits++;
	if (bits > 32)
		return -ENOMEM;
	struct htab_slots *s = slots_new(bits);
	uint32_t no_tombs = 0;

	if (!s)
		return -ENOMEM;
	for (uint32_t i = 0; i <= old->mask; i++) {
		uint64_t word = atomic_load_explicit(&old->slot[i], memory_order_relaxed);

		if (word != SLOT_EMPTY && word != SLOT_TOMB)
			slots_insert(s, word, &no_tombs);
	}
	/* seq_cst, the publication side of grace.h's rule (and a release:
	 * the copied slots are visible before the array is). */
	atomic_store_explicit(&sh->slots, s, memory_order_seq_cst);
	sh->ntombs = 0;
	grace_wait();
	table_free(old, slots_size(old->bits));
	return 0;
}

static int pool_grow(struct htab_shard *sh, unsigned kind)
{
	uint32_t size = sh->pool_size[kind], offset;
	unsigned c = chunk_of(size, &offset);
	size_t n = (size_t)64 << c;

	if (size >= POOL_MAX)
		return -ENOMEM;
	unsigned char *chunk = table_alloc(chunk_size(kind, c));

	if (!chunk)
		return -ENOMEM;
	/* Newest entries go on the free list last-in so index order is kept. */
	for (size_t k = n; k-- > 0;) {
		struct htab_entry *e = (struct htab_entry *)(chunk + (k << entry_shift(kind)));

		e->index = size + (uint32_t)k;
		e->kind = (uint8_t)kind;
		e->next_free = sh->free[kind];
		sh->free[kind] = e;
	}
	/* Release: readers that reach these entries see them initialised. */
	atomic_store_explicit(&sh->chunks[kind][c], (struct htab_entry *)chunk, memory_order_release);
	sh->pool_size[kind] = size + (uint32_t)n;
	return 0;
}

/*
 * Tags of live tables, a bit each.  A new table takes the first free tag
 * from the one after the last taken, so a tag that comes free is given
 * again as late as can be: handles kept past their store's close stay
 * foreign to the stores that follow.  With every tag taken (65536 live
 * tables), tables share the next one.
 */
#define TAGS (1u << HTAB_TAG_BITS)

static pthread_mutex_t tags_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t tags_live[TAGS / 64];
static uint32_t tag_next;

static uint32_t tag_take(void)
{
	pthread_mutex_lock(&tags_lock);
	uint32_t tag = tag_next;

	for (uint32_t k = 0; k < TAGS; k++) {
		uint32_t t = (tag_next + k) % TAGS;

		if (!(tags_live[t / 64] & 1ull << (t % 64))) {
			tag = t;
			break;
		}
	}
	tags_live[tag / 64] |= 1ull << (tag % 64);
	tag_next = (tag + 1) % TAGS;
	pthread_mutex_unlock(&tags_lock);
	return tag;
}

static void tag_give_back(uint32_t tag)
{
	pthread_mutex_lock(&tags_lock);
	tags_live[tag / 64] &= ~(1ull << (tag % 64));
	pthread_mutex_unlock(&tags_lock);
}

int htab_init(struct htab *t, const struct htab_ops *ops, void *ctx)
{
	memset(t, 0, sizeof(*t));
	t->ops = ops;
	t->ctx = ctx;
	t->tag = tag_take();
	for (unsigned i = 0; i < HTAB_SHARDS; i++) {
		struct htab_shard *sh = &t->shards[i];
		struct htab_slots *s = slots_new(MIN_BITS);

		if (!s) {
			htab_fini(t);
			return -ENOMEM;
		}
		atomic_init(&sh->slots, s);
		sh->next_seq = (uint64_t)t->tag << (64 - HTAB_SHARD_BITS - HTAB_TAG_BITS) | 1;
	}
	atomic_init(&t->shards_open, HTAB_SHARDS);
	return 0;
}

/* Frees what htab_init made (all of it, or the slots of its first shards). */
void htab_fini(struct htab *t)
{
	tag_give_back(t->tag);
	for (unsigned i = 0; i < HTAB_SHARDS; i++) {
		struct htab_shard *sh = &t->shards[i];
		struct htab_slots *s = atomic_load_explicit(&sh->slots, memory_order_relaxed);

		if (s)
			table_free(s, slots_size(s->bits));
		for (unsigned kind = 0; kind < HTAB_POOLS; kind++) {
			for (unsigned c = 0; c < HTAB_CHUNKS; c++)
				table_free(atomic_load_explicit(&sh->chunks[kind][c], memory_order_relaxed),
					   chunk_size(kind, c));
		}
	}
}

/*
 * Each thread puts into a group of HTAB_GROUP_SHARDS shards of its own,
 * one shard for PUTS_PER_SHARD puts in a row, then the next of its group.
 * A thread that puts and removes its own blobs, the usual pipeline, keeps its
 * shards' locks, counters, slots, pools and the backend's per-shard caches
 * in its own core's cache; threads sharing shards made each op's lines
 * cross between cores.  Moving around the group keeps a single-threaded
 * program's handles spread, so that no shard, and no rebuild, grows to the
 * size of the whole table.  A busy shard is skipped, the group's first, so
 * concurrent putters rarely wait for each other.
 *
 * A thread joins the group with the fewest threads (the lowest of those)
 * at its first put and leaves it when it exits, so a thread that replaces
 * one that exited takes over its shards, with the free entries that its
 * removes will leave there; a new group would grow fresh entries instead.
 */
#define PUTS_PER_SHARD 64
#define GROUPS (HTAB_SHARDS / HTAB_GROUP_SHARDS)

static _Atomic unsigned group_threads[GROUPS];
static pthread_key_t group_key;
static pthread_once_t group_once = PTHREAD_ONCE_INIT;
static bool group_key_made;

static void group_leave(void *group_plus_one)
{
	atomic_fetch_sub_explicit(&group_threads[(uintptr_t)group_plus_one - 1], 1, memory_order_relaxed);
	put_group_set = false;
}

static void group_make_key(void)
{
	group_key_made = pthread_key_create(&group_key, group_leave) == 0;
}

static void group_join(void)
{
	unsigned best = 0, fewest = UINT_MAX;

	(void)pthread_once(&group_once, group_make_key);
	for (unsigned g = 0; g < GROUPS; g++) {
		unsigned n = atomic_load_explicit(&group_threads[g], memory_order_relaxed);

		if (n < fewest) {
			fewest = n;
			best = g;
		}
	}
	/* A race with another joiner only makes two threads share a group. */
	atomic_fetch_add_explicit(&group_threads[best], 1, memory_order_relaxed);
	if (group_key_made)
		(void)pthread_setspecific(group_key, (void *)(uintptr_t)(best + 1));
	put_group = best * HTAB_GROUP_SHARDS;
	put_group_set = true;
}

/* lock_next_shard when the thread's current shard is busy: the group's
 * other shards from there on, then the other groups', else wait. */
static __attribute__((noinline)) struct htab_shard *lock_busy_shard(struct htab *t, unsigned n)
{
	for (unsigned k = 1; k < HTAB_SHARDS; k++) {
		unsigned i = put_group + (k & ~(HTAB_GROUP_SHARDS - 1)) + ((n + k) & (HTAB_GROUP_SHARDS - 1));
		struct htab_shard *sh = &t->shards[i & (HTAB_SHARDS - 1)];

		if (lock_try(&sh->lock))
			return sh;
	}
	struct htab_shard *sh = &t->shards[put_group + n % HTAB_GROUP_SHARDS];

	lock_take(&sh->lock);
	return sh;
}

HOT struct htab_shard *lock_next_shard(struct htab *t)
{
	if (__builtin_expect(!put_group_set, 0))
		group_join();
	unsigned n = puts_made++ / PUTS_PER_SHARD;
	struct htab_shard *sh = &t->shards[put_group + n % HTAB_GROUP_SHARDS];

	return __builtin_expect(lock_try(&sh->lock), 1) ? sh : lock_busy_shard(t, n);
}

/*
 * Locks the thread's next shard (*shard), makes room there for one more
 * handle and takes a free entry of pool `kind`, its handle set.  Inlined
 * where it is called, so kind is a constant.
 */
HOT int entry_take(struct htab *t, unsigned kind, struct htab_shard **shard,
		  struct htab_entry **out)
{
	struct htab_shard *sh = lock_next_shard(t);
	struct htab_slots *s = atomic_load_explicit(&sh->slots, memory_order_relaxed);
	int err = 0;

	if (4ull * (sh->nlive + sh->ntombs + 1) > 3ull * ((uint64_t)s->mask + 1))
		err = shard_rebuild(sh, sh->nlive + 1);
	if (!err && !sh->free[kind])
		err = pool_grow(sh, kind);
	if (err) {
		lock_drop(&sh->lock);
		return err;
	}
	struct htab_entry *e = sh->free[kind];

	sh->free[kind] = e->next_free;
	sh->nused++;
	/* Relaxed: published by the release store of the slot (htab_publish),
	 * and for a stale reader of a small entry, by htab_set_small's fence. */
	atomic_store_explicit(&e->handle, sh->next_seq++ << HTAB_SHARD_BITS | (uint64_t)(sh - t->shards),
			      memory_order_relaxed);
	*shard = sh;
	*out = e;
	return 0;
}

int htab_reserve(struct htab *t, struct htab_entry **out)
{
	struct htab_shard *sh;
	struct htab_entry *e;
	int err = entry_take(t, HTAB_BIG, &sh, &e);

	if (err)
		return err;
	e->data = NULL;
	e->size = 0;
	e->backing = NULL;
	e->offset = 0;
	e->backing_index = 0;
	*out = e;
	return 0;
}

int htab_reserve_small(struct htab *t, struct htab_entry **out)
{
	struct htab_shard *sh;
	int err = entry_take(t, HTAB_SMALL, &sh, out);

	if (!err) /* empty until htab_set_small, not the last handle's bytes */
		atomic_store_explicit(&(*out)->small_len, 0, memory_order_relaxed);
	return err;
}

/* The bytes [n & ~7, n) of src, n % 8 of them, as the start of a word. */
static inline uint64_t tail_word(const unsigned char *src, size_t n)
{
	uint64_t w = 0;

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	if (n >= 8) {
		/* One load of the last 8 bytes: the tail is its top bytes. */
		memcpy(&w, src + n - 8, 8);
		return w >> (8 * (8 - n % 8));
	}
#endif
	memcpy(&w, src + (n & ~(size_t)7), n % 8);
	return w;
}

static inline void set_word(_Atomic uint64_t *small, const unsigned char *src, unsigned i)
{
	uint64_t w;

	memcpy(&w, src + 8 * i, 8);
	atomic_store_explicit(&small[i], w, SMALL_STORE);
}

HOT void small_fill(struct htab_entry *e, const void *p, size_t n)
{
	const unsigned char *src = p;
	_Atomic uint64_t *small = entry_small(e);

	/* Release: the entry's new handle (entry_take) is visible before any
	 * of these stores, so a reader that copied one of them sees that its
	 * handle changed (the seqlock check in copy_small). */
	small_fence(memory_order_release);
	/* Word by word from p, straight-line: a copy to a buffer first would
	 * make these loads wait for its stores to be forwarded. */
	switch (n / 8) {
	case 8: set_word(small, src, 7); /* fall through */
	case 7: set_word(small, src, 6); /* fall through */
	case 6: set_word(small, src, 5); /* fall through */
	case 5: set_word(small, src, 4); /* fall through */
	case 4: set_word(small, src, 3); /* fall through */
	case 3: set_word(small, src, 2); /* fall through */
	case 2: set_word(small, src, 1); /* fall through */
	case 1: set_word(small, src, 0); /* fall through */
	default: break;
	}
	if (n % 8)
		atomic_store_explicit(&small[n / 8], tail_word(src, n), SMALL_STORE);
	atomic_store_explicit(&e->small_len, (uint32_t)n, SMALL_STORE);
}

void htab_set_small(struct htab_entry *e, const void *p, size_t n)
{
	small_fill(e, p, n);
}

/* Links entry e of pool `kind`, handle h, into the slots of sh (locked)
 * and unlocks it. */
HOT void link_unlock(struct htab_shard *sh, struct htab_entry *e, unsigned kind, uint64_t h,
		     uint64_t size)
{
	struct htab_slots *s = atomic_load_explicit(&sh->slots, memory_order_relaxed);

	slots_insert(s, slot_word(handle_seq(h), kind, e->index), &sh->ntombs);
	sh->nlive++;
	sh->bytes += size;
	lock_drop(&sh->lock);
}

void htab_publish(struct htab *t, struct htab_entry *e)
{
	uint64_t h = atomic_load_explicit(&e->handle, memory_order_relaxed);
	struct htab_shard *sh = &t->shards[htab_shard_of(h)];

	if (e->kind == HTAB_SMALL) {
		link_unlock(sh, e, HTAB_SMALL, h, atomic_load_explicit(&e->small_len, memory_order_relaxed));
		return;
	}
	/* Release: a stale reader whose CAS sees LINKED also sees the new
	 * handle and blob (the slot store publishes them to new readers). */
	atomic_store_explicit(&e->refs, HTAB_LINKED | 1u, memory_order_release);
	link_unlock(sh, e, HTAB_BIG, h, e->size);
}

int htab_insert_small(struct htab *t, const void *p, size_t n, uint64_t *handle)
{
	struct htab_shard *sh;
	struct htab_entry *e;
	int err = entry_take(t, HTAB_SMALL, &sh, &e);

	if (err)
		return err;
	small_fill(e, p, n);
	*handle = atomic_load_explicit(&e->handle, memory_order_relaxed);
	link_unlock(sh, e, HTAB_SMALL, *handle, n);
	return 0;
}

static void entry_free_locked(struct htab_shard *sh, struct htab_entry *e)
{
	e->next_free = sh->free[e->kind];
	sh->free[e->kind] = e;
	sh->nused--;
}

/* Called with sh locked once it may have become empty after close. */
static bool shard_finish_locked(struct htab *t, struct htab_shard *sh)
{
	if (!sh->closed || sh->done || sh->nused != 0)
		return false;
	sh->done = true;
	/* acq_rel: the last shard to finish sees every other shard's frees. */
	return atomic_fetch_sub_explicit(&t->shards_open, 1, memory_order_acq_rel) == 1;
}

void htab_cancel(struct htab *t, struct htab_entry *e)
{
	struct htab_shard *sh = &t->shards[htab_shard_of(atomic_load_explicit(&e->handle, memory_order_relaxed))];

	entry_free_locked(sh, e);
	lock_drop(&sh->lock);
}

static void entry_release_locked(struct htab *t, struct htab_shard *sh, struct htab_entry *e)
{
	t->ops->release(t->ctx, e, (unsigned)(sh - t->shards));
	entry_free_locked(sh, e);
}

/* Takes a reference unless e is unlinked or about to overflow. */
static int entry_tryget(struct htab_entry *e)
{
	uint32_t v = atomic_load_explicit(&e->refs, memory_order_relaxed);

	do {
		if (!(v & HTAB_LINKED))
			return SCRATCH_ENOTFOUND;
		if ((v & HTAB_COUNT_MASK) == HTAB_COUNT_MASK)
			return -EOVERFLOW;
		/* Acquire: pairs with htab_publish's release, so the handle and
		 * blob we read next are the ones this reference protects. */
	} while (!atomic_compare_exchange_weak_explicit(&e->refs, &v, v + 1, memory_order_acquire,
							memory_order_relaxed));
	return 0;
}

/*
 * Copies the blob of small entry e, which held `handle` when looked at,
 * without a reference: a seqlock whose sequence is the handle itself.  The
 * entry is type-stable memory, so the copy is always safe to make; it is
 * only kept if e still holds `handle` after it was made.  The blob is
 * visible to us because we came through the handle's own slot word, loaded
 * with acquire after the put that published it (the only other words that
 * could name e with the same low 32 bits belong to handles 2^32 puts older,
 * gone before this one was made).  All HTAB_SMALL_MAX bytes are copied,
 * whatever the size: straight-line code, into a buffer that is ours, so a
 * copy that turns out stale does no harm.
 */
static int copy_small(struct htab_entry *e, uint64_t handle, void *buf, size_t *len)
{
	_Atomic uint64_t *small = entry_small(e);
	uint32_t n = atomic_load_explicit(&e->small_len, SMALL_LOAD);

#pragma GCC unroll 8
	for (unsigned i = 0; i < HTAB_SMALL_MAX / 8; i++) {
		uint64_t w = atomic_load_explicit(&small[i], SMALL_LOAD);

		memcpy((unsigned char *)buf + 8 * i, &w, 8);
	}
	/* Acquire: pairs with htab_set_small's fence; a word written for a
	 * later handle makes that handle visible to the load below. */
	small_fence(memory_order_acquire);
	if (atomic_load_explicit(&e->handle, memory_order_relaxed) != handle)
		return SCRATCH_ENOTFOUND; /* removed, maybe reused */
	*len = n;
	return 0;
}

int htab_lookup(struct htab *t, uint64_t handle, struct htab_entry **out, void *buf, size_t *len)
{
	uint64_t seq = handle_seq(handle);
	struct htab_shard *sh = &t->shards[htab_shard_of(handle)];
	struct htab_entry *stale = NULL;
	int err = SCRATCH_ENOTFOUND;

	*out = NULL;
	if (seq == 0)
		return SCRATCH_ENOTFOUND;
	struct grace_record *g = grace_enter();

	if (!g)
		return -ENOMEM;
	/* seq_cst, the reader side of grace.h's rule (a plain load on x86);
	 * it also acquires, pairing with shard_rebuild's publication. */
	struct htab_slots *s = atomic_load_explicit(&sh->slots, memory_order_seq_cst);

	for (uint32_t i = slot_home(s, (uint32_t)seq);; i = (i + 1) & s->mask) {
		/* Acquire: pairs with slots_insert's release. */
		uint64_t word = atomic_load_explicit(&s->slot[i], memory_order_acquire);

		if (word == SLOT_EMPTY)
			break;
		if (!slot_matches(word, seq))
			continue;
		struct htab_entry *e = slot_entry(sh, word);

		/* Skip tag collisions without touching the entry's count. */
		if (atomic_load_explicit(&e->handle, memory_order_relaxed) != handle)
			continue;
		if (slot_kind(word) == HTAB_SMALL) {
			err = buf ? copy_small(e, handle, buf, len) : -EINVAL;
			break;
		}
		err = entry_tryget(e);
		if (err == SCRATCH_ENOTFOUND)
			continue; /* unlinked: being removed or already recycled */
		if (err == 0 && atomic_load_explicit(&e->handle, memory_order_relaxed) != handle) {
			/* Recycled between the check and the CAS, so our handle
			 * was removed.  Drop the reference outside the section:
			 * the drop may lock the shard, whose holder may be
			 * waiting for this very section to end. */
			stale = e;
			err = SCRATCH_ENOTFOUND;
		}
		if (err == 0)
			*out = e;
		break;
	}
	grace_exit(g);
	if (stale)
		htab_put(t, stale);
	return err;
}

int htab_acquire(struct htab *t, uint64_t handle, struct htab_entry **out)
{
	return htab_lookup(t, handle, out, NULL, NULL);
}

void htab_put(struct htab *t, struct htab_entry *e)
{
	/* Release: our reads of the blob come before whoever frees it;
	 * acquire: if we are that one, everyone else's reads come before us. */
	if (atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) != 1)
		return;
	struct htab_shard *sh = &t->shards[htab_shard_of(atomic_load_explicit(&e->handle, memory_order_relaxed))];

	lock_take(&sh->lock);
	entry_release_locked(t, sh, e);
	bool last = shard_finish_locked(t, sh);

	lock_drop(&sh->lock);
	if (last)
		t->ops->destroy(t->ctx);
}

/* Unlinks e, the live entry in slot i of sh (locked); returns its size. */
HOT uint64_t slot_unlink_locked(struct htab *t, struct htab_shard *sh, struct htab_slots *s,
			       uint32_t i, struct htab_entry *e)
{
	bool small = e->kind == HTAB_SMALL;
	uint64_t size = small ? atomic_load_explicit(&e->small_len, memory_order_relaxed) : e->size;

	/* If the next slot is empty, no probe continues past i: empty it and
	 * the tombstones before it instead of leaving a tombstone.  Release
	 * stores: a reader seeing them also sees the entry's unlinking below
	 * is ordered after; correctness rests on the CAS in entry_tryget and
	 * on copy_small's check. */
	if (atomic_load_explicit(&s->slot[(i + 1) & s->mask], memory_order_relaxed) == SLOT_EMPTY) {
		atomic_store_explicit(&s->slot[i], SLOT_EMPTY, memory_order_release);
		for (uint32_t j = (i - 1) & s->mask;
		     atomic_load_explicit(&s->slot[j], memory_order_relaxed) == SLOT_TOMB; j = (j - 1) & s->mask) {
			atomic_store_explicit(&s->slot[j], SLOT_EMPTY, memory_order_release);
			sh->ntombs--;
		}
	} else {
		atomic_store_explicit(&s->slot[i], SLOT_TOMB, memory_order_release);
		sh->ntombs++;
	}
	sh->nlive--;
	sh->bytes -= size;
	if (small) {
		/* No reference to wait for: a reader that copied the blob
		 * finds its handle gone, before or after a put reuses e. */
		atomic_store_explicit(&e->handle, 0, memory_order_relaxed);
		entry_free_locked(sh, e);
	} else if (atomic_fetch_sub_explicit(&e->refs, HTAB_LINKED | 1u, memory_order_acq_rel) ==
		   (HTAB_LINKED | 1u)) {
		/* acq_rel: release orders our use of e before a reader's free
		 * of it; acquire orders readers' uses before our release. */
		entry_release_locked(t, sh, e);
	}
	return size;
}

/*
 * Removes that come in handle order, a pipeline dropping its oldest blobs,
 * fetch ahead what the removes to come will touch.  In a table of millions
 * those are cache misses: the slots of handle seq + PREFETCH_SLOT, and the
 * entry of handle seq + PREFETCH_ENTRY, and if that entry is small, its
 * second line, which the put that reuses the entry will write.  The hardware prefetcher does not
 * follow a shard's entries past page boundaries, and it does not skip ahead
 * as far as a cycle of put, read and remove needs.  Removes in any other
 * order, or in a table that fits the cache, fetch nothing: a load of a slot
 * that is not coming would be a miss of its own.  64 B put, read and remove
 * of the oldest, 10M live: 9.5-10.2M to 13.7-14.3M cycles/s; 1k live and
 * 4 KiB blobs unchanged.
 */
#define PREFETCH_MIN_BITS 13 /* 8192 slots (64 KiB) and 4096 entries a shard */
#define PREFETCH_ENTRY 8
#define PREFETCH_SLOT 32

static void prefetch_removes(struct htab_shard *sh, const struct htab_slots *s, uint64_t seq)
{
	uint64_t word = atomic_load_explicit(&s->slot[slot_home(s, (uint32_t)(seq + PREFETCH_ENTRY))],
					     memory_order_relaxed);

	if (slot_matches(word, seq + PREFETCH_ENTRY)) {
		struct htab_entry *e = slot_entry(sh, word);

		__builtin_prefetch(e, 1);
		if (slot_kind(word) == HTAB_SMALL)
			__builtin_prefetch(entry_small(e), 1);
	}
	__builtin_prefetch(&s->slot[slot_home(s, (uint32_t)(seq + PREFETCH_SLOT))], 0);
}

int htab_remove(struct htab *t, uint64_t handle, uint64_t *size)
{
	uint64_t seq = handle_seq(handle);
	struct htab_shard *sh = &t->shards[htab_shard_of(handle)];
	int err = SCRATCH_ENOTFOUND;

	if (seq == 0)
		return SCRATCH_ENOTFOUND;
	lock_take(&sh->lock);
	struct htab_slots *s = atomic_load_explicit(&sh->slots, memory_order_relaxed);

	for (uint32_t i = slot_home(s, (uint32_t)seq);; i = (i + 1) & s->mask) {
		uint64_t word = atomic_load_explicit(&s->slot[i], memory_order_relaxed);

		if (word == SLOT_EMPTY)
			break;
		if (!slot_matches(word, seq))
			continue;
		struct htab_entry *e = slot_entry(sh, word);

		if (atomic_load_explicit(&e->handle, memory_order_relaxed) == handle) {
			bool big = s->bits >= PREFETCH_MIN_BITS;
			uint64_t n = slot_unlink_locked(t, sh, s, i, e);

			if (size)
				*size = n;
			err = 0;
			if (big && (uint32_t)seq == sh->removed_tag + 1)
				prefetch_removes(sh, s, seq);
			if (big)
				sh->removed_tag = (uint32_t)seq;
			break;
		}
	}
	/* Shrink when under 1/4 full, but leave small shards alone: they would
	 * thrash between growing and shrinking as puts come in runs.  A failed
	 * shrink only costs memory. */
	if (err == 0 && s->bits > SHRINK_MIN_BITS && 4ull * sh->nlive < (uint64_t)s->mask + 1)
		(void)shard_rebuild(sh, sh->nlive);
	lock_drop(&sh->lock);
	return err;
}

void htab_close(struct htab *t)
{
	bool last = false;

	for (unsigned k = 0; k < HTAB_SHARDS; k++) {
		struct htab_shard *sh = &t->shards[k];

		lock_take(&sh->lock);
		struct htab_slots *s = atomic_load_explicit(&sh->slots, memory_order_relaxed);

		for (uint32_t i = 0; i <= s->mask && sh->nlive; i++) {
			uint64_t word = atomic_load_explicit(&s->slot[i], memory_order_relaxed);

			if (word != SLOT_EMPTY && word != SLOT_TOMB)
				slot_unlink_locked(t, sh, s, i, slot_entry(sh, word));
		}
		sh->closed = true;
		last = shard_finish_locked(t, sh);
		lock_drop(&sh->lock);
	}
	if (last)
		t->ops->destroy(t->ctx);
}

void htab_stats(struct htab *t, struct htab_stats *out)
{
	memset(out, 0, sizeof(*out));
	for (unsigned k = 0; k < HTAB_SHARDS; k++) {
		struct htab_shard *sh = &t->shards[k];

		lock_take(&sh->lock);
		struct htab_slots *s = atomic_load_explicit(&sh->slots, memory_order_relaxed);

		out->live += sh->nlive;
		out->bytes += sh->bytes;
		out->slot_bytes += sizeof(*s) + (((uint64_t)s->mask + 1) * sizeof(uint64_t));
		for (unsigned kind = 0; kind < HTAB_POOLS; kind++)
			out->entry_bytes += (uint64_t)sh->pool_size[kind] << entry_shift(kind);
		lock_drop(&sh->lock);
	}
}
