/*
 * metrics.c: metrics for observed stores.
 *
 * Not built yet: every call but the pass-through of scratch_observe(NULL,
 * ...) answers -ENOTSUP, as the header documents.
 */
#include <errno.h>

#include "scratch.h"

int scratch_metrics_new(scratch_metrics **out)
{
	if (!out)
		return -EINVAL;
	*out = NULL;
	return -ENOTSUP;
}

void scratch_metrics_free(scratch_metrics *m)
{
	(void)m;
}

int scratch_observe(scratch_metrics *m, scratch_store *inner, scratch_store **out)
{
	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!inner)
		return -EINVAL;
	if (!m) {
		*out = inner;
		return 0;
	}
	return -ENOTSUP;
}

int scratch_metrics_snapshot(const scratch_metrics *m, struct scratch_metrics_snapshot *out)
{
	if (!m || !out)
		return -EINVAL;
	return -ENOTSUP;
}

int scratch_metrics_write_prometheus(const scratch_metrics *m, int fd)
{
	if (!m || fd < 0)
		return -EINVAL;
	return -ENOTSUP;
}
