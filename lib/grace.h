/*
 * grace.h: grace periods for memory that lock-free readers may still touch.
 *
 * A reader brackets its accesses with grace_enter()/grace_exit(); a writer
 * that has unpublished some memory calls grace_wait() and may free it once
 * that returns, because every reader that could have seen it has left.
 * Sections must be short and must never call grace_wait() themselves.
 *
 * Ordering rule for callers: inside a section, load the published pointer
 * with memory_order_seq_cst; a writer publishes its replacement with
 * memory_order_seq_cst before grace_wait().  Then the reader's announcement
 * (a seq_cst store) and the writer's publication are in one total order:
 * either the writer's scan sees the reader, or the reader sees the new
 * pointer (the store-buffering case that plain release/acquire allows).
 */
#ifndef SCRATCH_GRACE_H
#define SCRATCH_GRACE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct grace_record {
	_Atomic uint64_t active;     /* 0: outside a section; else the epoch it entered in */
	_Atomic int in_use;          /* owned by a live thread */
	struct grace_record *next;   /* the registry, push-only */
} __attribute__((aligned(64)));

extern _Atomic uint64_t grace_epoch;
/* Set once, before any section: the writer fences for readers (grace.c). */
extern bool grace_asymmetric;
extern __thread struct grace_record *grace_self __attribute__((tls_model("initial-exec")));

struct grace_record *grace_register(void);

/* Returns the thread's record, or NULL when it cannot be allocated. */
static inline struct grace_record *grace_enter(void)
{
	struct grace_record *r = grace_self;

	if (__builtin_expect(r == NULL, 0) && (r = grace_register()) == NULL)
		return NULL;
	uint64_t epoch = atomic_load_explicit(&grace_epoch, memory_order_seq_cst);

	if (__builtin_expect(grace_asymmetric, 1)) {
		/* A plain store: grace_wait's membarrier is the fence. */
		atomic_store_explicit(&r->active, epoch, memory_order_relaxed);
		atomic_signal_fence(memory_order_seq_cst);
		return r;
	}
	/* seq_cst (see the rule above): an x86 xchg, a plain load.  A section
	 * that reads an epoch a writer has bumped comes after that writer's
	 * publication in the total order, so it sees the new pointer. */
	atomic_store_explicit(&r->active, epoch, memory_order_seq_cst);
	return r;
}

static inline void grace_exit(struct grace_record *r)
{
	/* Release: our loads of the old memory happen before the writer that
	 * reads 0 here (with acquire) goes on to free it. */
	atomic_store_explicit(&r->active, 0, memory_order_release);
}

void grace_wait(void);

/* Records in the registry: the most threads that were ever reading at once. */
unsigned grace_records(void);

#endif
