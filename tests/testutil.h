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
#include <stdio.h>
#include <stdlib.h>

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
