/* lock.c: waiting for a lock (lock.h). */
#include <sched.h>
#include <time.h>

#include "lock.h"

#define LOCK_SPINS 64
#define LOCK_YIELDS 16
#define LOCK_NAP_MAX_NS 1000000

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ volatile("yield");
#endif
}

void lock_wait(scratch_lock *l)
{
	struct timespec nap = { 0, 1000 };

	for (unsigned n = 0; !lock_try(l); n++) {
		if (n < LOCK_SPINS) {
			cpu_relax();
		} else if (n < LOCK_SPINS + LOCK_YIELDS) {
			sched_yield();
		} else {
			nanosleep(&nap, NULL);
			if (nap.tv_nsec < LOCK_NAP_MAX_NS)
				nap.tv_nsec *= 2;
		}
	}
}
