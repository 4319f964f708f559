/*
 * lock.h: the lock of the library's short critical sections (a table
 * shard, a heap cache).
 *
 * Such a section is tens of nanoseconds, and each thread mostly takes locks
 * of its own (the shards of its put group, htab.c, and the heap cache of
 * that group, heap.c), so the lock is nearly always free: taking it is one
 * exchange and releasing it a plain store, where a mutex's release is a
 * second locked instruction (~6 ns here: the 64 B put, read and remove
 * cycle ran 17% faster without it).  A waiter spins briefly, then yields,
 * then sleeps with a growing backoff, so a holder that was preempted, or
 * runs at a lower priority, gets the CPU back; long sections (rebuilding a
 * large shard, a heap cache refilling) are rare.
 */
#ifndef SCRATCH_LOCK_H
#define SCRATCH_LOCK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* 0: free, 1: held.  Zeroed memory is a free lock. */
typedef _Atomic uint32_t scratch_lock;

static inline bool lock_try(scratch_lock *l)
{
	/* Acquire: the last holder's writes, released by lock_drop. */
	return atomic_load_explicit(l, memory_order_relaxed) == 0 &&
	       atomic_exchange_explicit(l, 1, memory_order_acquire) == 0;
}

/* Waits until l is taken (lock.c). */
void lock_wait(scratch_lock *l);

static inline void lock_take(scratch_lock *l)
{
	if (__builtin_expect(atomic_exchange_explicit(l, 1, memory_order_acquire) != 0, 0))
		lock_wait(l);
}

static inline void lock_drop(scratch_lock *l)
{
	atomic_store_explicit(l, 0, memory_order_release);
}

#endif
