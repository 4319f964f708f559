/*
 * grace.c: the registry of reader records behind grace.h.
 *
 * Each thread that reads gets a cache-line-sized record, found through a
 * thread-local pointer and kept in a process-wide push-only list.  Records
 * are never freed: a thread that exits hands its record back (through a
 * pthread key destructor) for the next new thread to reuse, so the list is
 * as long as the most threads ever reading at once.  The library is linked
 * with -z nodelete so that the destructor outlives any dlclose().
 *
 * The epoch only grows.  A reader announces the epoch it entered in; a
 * writer bumps the epoch and waits for every record to be either outside a
 * section (0) or inside one that began after the bump (>= the new epoch).
 * Such a section loaded the epoch after the bump, so after the writer's
 * unpublish (see the fence argument in grace_wait), and cannot hold the old
 * pointer.
 */
#include <errno.h>
#include <pthread.h>
#include <linux/membarrier.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "grace.h"

_Atomic uint64_t grace_epoch = 1;
bool grace_asymmetric;
__thread struct grace_record *grace_self __attribute__((tls_model("initial-exec")));

static struct grace_record *_Atomic registry;
static pthread_key_t exit_key;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;
static int exit_key_error;

static void grace_thread_exit(void *arg)
{
	struct grace_record *r = arg;

	atomic_store_explicit(&r->active, 0, memory_order_relaxed);
	/* Release: nothing of ours is read through r once another thread owns it. */
	atomic_store_explicit(&r->in_use, 0, memory_order_release);
	grace_self = NULL;
}

/*
 * The asymmetric fence.  A reader's announcement must be ordered before its
 * loads of published pointers, which on x86 takes a locked instruction
 * (~6 ns, a sixth of a small read).  With membarrier(2) the writer, which
 * is rare, issues that fence on every CPU running one of our threads
 * instead, and readers announce with a plain store.  Where membarrier is
 * missing or refused (old kernels, seccomp), readers keep the exchange.
 */
static int membarrier(int cmd)
{
	return (int)syscall(SYS_membarrier, cmd, 0, 0);
}

static void grace_setup(void)
{
	exit_key_error = pthread_key_create(&exit_key, grace_thread_exit);
	int cmds = membarrier(MEMBARRIER_CMD_QUERY);

	grace_asymmetric = cmds > 0 && (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED) &&
			   membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0;
}

struct grace_record *grace_register(void)
{
	struct grace_record *r;

	/* Once: also makes grace_asymmetric visible to this thread's sections. */
	pthread_once(&exit_once, grace_setup);
	if (exit_key_error)
		return NULL;
	for (r = atomic_load_explicit(&registry, memory_order_acquire); r; r = r->next) {
		int free_slot = 0;

		/* Acquire pairs with the release in grace_thread_exit. */
		if (atomic_compare_exchange_strong_explicit(&r->in_use, &free_slot, 1,
							    memory_order_acquire,
							    memory_order_relaxed))
			break;
	}
	if (!r) {
		r = aligned_alloc(64, sizeof(*r));
		if (!r)
			return NULL;
		atomic_init(&r->active, 0);
		atomic_init(&r->in_use, 1);
		r->next = atomic_load_explicit(&registry, memory_order_relaxed);
		/* Release: a scanner that finds r sees it initialised. */
		while (!atomic_compare_exchange_weak_explicit(&registry, &r->next, r,
							      memory_order_release,
							      memory_order_relaxed))
			;
	}
	if (pthread_setspecific(exit_key, r)) {
		atomic_store_explicit(&r->in_use, 0, memory_order_release);
		return NULL;
	}
	grace_self = r;
	return r;
}

void grace_wait(void)
{
	pthread_once(&exit_once, grace_setup);
	/* Every reader's announcement so far is now visible to the scan below,
	 * and every load a reader makes after it sees the caller's publication:
	 * the fence their plain stores left out.  Once registered, the command
	 * cannot fail; if it ever did, the global one does the same, slower. */
	if (grace_asymmetric && membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED))
		(void)membarrier(MEMBARRIER_CMD_GLOBAL);
	/* seq_cst: after the caller's seq_cst publication in the total order,
	 * so a section that reads the new epoch sees the new pointer. */
	uint64_t target = atomic_fetch_add_explicit(&grace_epoch, 1, memory_order_seq_cst) + 1;

	for (struct grace_record *r = atomic_load_explicit(&registry, memory_order_acquire); r;
	     r = r->next) {
		for (;;) {
			/* seq_cst: the scan side of the rule in grace.h; it also
			 * acquires, pairing with grace_exit's release. */
			uint64_t seen = atomic_load_explicit(&r->active, memory_order_seq_cst);

			if (seen == 0 || seen >= target)
				break;
			sched_yield();
		}
	}
}

unsigned grace_records(void)
{
	unsigned n = 0;

	for (struct grace_record *r = atomic_load_explicit(&registry, memory_order_acquire); r; r = r->next)
		n++;
	return n;
}
