/*
 * testutil.h: helpers shared by the Check programs.
 *
 * A passing ck_assert writes a mark point to Check's pipe under a lock, so
 * millions of them in a stress loop measure Check, not the library.  Loops
 * use require(), which calls into Check only when the condition fails.
 */
#ifndef SCRATCH_TESTUTIL_H
#define SCRATCH_TESTUTIL_H

#include <check.h>
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>

#define require(cond)                                                              \
	do {                                                                        \
		if (__builtin_expect(!(cond), 0))                                   \
			ck_abort_msg("%s:%d: failed: %s", __FILE__, __LINE__, #cond); \
	} while (0)

/* Skips the whole program (exit 77, which meson reports as SKIP). */
#define skip_all(...)                                                              \
	do {                                                                        \
		printf("SKIP: " __VA_ARGS__);                                       \
		putchar('\n');                                                      \
		exit(77);                                                           \
	} while (0)

/* Makes system call nr fail with err in this process from now on, as a
 * container's seccomp profile does.  Check runs each case in a child of
 * its own, so this ends with the case.  False if seccomp is unavailable. */
static inline bool deny_syscall(int nr, int err)
{
	struct sock_filter filter[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((unsigned)err & SECCOMP_RET_DATA)),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { sizeof(filter) / sizeof(filter[0]), filter };

	return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
	       prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0;
}

/* Runs suite s and returns main's exit status. */
static inline int run_suite(Suite *s)
{
	SRunner *sr = srunner_create(s);

	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);

	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif
