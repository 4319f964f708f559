/* The public header compiles on its own, first, with nothing before it. */
#include <scratch.h>

int scratch_header_test(void);

int scratch_header_test(void)
{
	return SCRATCH_ENOTFOUND != 0 && SCRATCH_INVALID_HANDLE == 0;
}
