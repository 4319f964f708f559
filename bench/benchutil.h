/*
 * benchutil.h: timing, medians and argument lists shared by the benchmarks.
 */
#ifndef SCRATCH_BENCHUTIL_H
#define SCRATCH_BENCHUTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BENCH_MAX_REPS 64

static inline double bench_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline uint64_t bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Sorts v in place and returns its median. */
static inline double bench_median(double *v, unsigned n)
{
	qsort(v, n, sizeof(*v), bench_cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Parses "a,b,c", each number with an optional k/M/G suffix, in powers
 * of `unit` (1000 for counts, 1024 for bytes), into out; returns how
 * many, or 0 on a bad list.  0 is accepted only if zero_ok. */
static inline unsigned bench_parse_list(const char *s, size_t *out, unsigned max,
					unsigned long long unit, bool zero_ok)
{
	unsigned n = 0;

	while (*s && n < max) {
		char *end;
		unsigned long long v = strtoull(s, &end, 10);

		if (end == s)
			return 0;
		switch (*end) {
		case 'G': v *= unit; /* fall through */
		case 'M': v *= unit; /* fall through */
		case 'k': v *= unit, end++; break;
		}
		if ((v == 0 && !zero_ok) || (*end && *end != ','))
			return 0;
		out[n++] = (size_t)v;
		s = *end ? end + 1 : end;
	}
	return *s ? 0 : n;
}

/* Counts: "1000,10M" (powers of 1000), never 0. */
static inline unsigned bench_parse_list_size(const char *s, size_t *out, unsigned max)
{
	return bench_parse_list(s, out, max, 1000, false);
}

/* Byte sizes: "64,4k,1M" (powers of 1024); 0 is a valid size. */
static inline unsigned bench_parse_list_bytes(const char *s, size_t *out, unsigned max)
{
	return bench_parse_list(s, out, max, 1024, true);
}

static inline unsigned bench_parse_list_unsigned(const char *s, unsigned *out, unsigned max,
						 unsigned limit)
{
	size_t v[16];
	unsigned n = bench_parse_list_size(s, v, max < 16 ? max : 16);

	for (unsigned i = 0; i < n; i++) {
		if (v[i] > limit)
			return 0;
		out[i] = (unsigned)v[i];
	}
	return n;
}

#endif
