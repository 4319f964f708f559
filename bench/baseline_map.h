/*
 * baseline_map.h: what a user would write by hand instead of libscratch:
 * malloc + memcpy for the bytes, a chained hash map behind one mutex for
 * the handles.  The benchmarks run it beside the store, same workload.
 */
#ifndef SCRATCH_BASELINE_MAP_H
#define SCRATCH_BASELINE_MAP_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

struct baseline_node {
	struct baseline_node *next;
	uint64_t key;
	size_t size;
	unsigned char *data;
};

struct baseline_map {
	pthread_mutex_t lock;
	struct baseline_node **buckets;
	size_t nbuckets, count;
	uint64_t next_key;
};

int baseline_map_init(struct baseline_map *m);
void baseline_map_fini(struct baseline_map *m);
/* 0 or -ENOMEM */
int baseline_put(struct baseline_map *m, const void *p, size_t n, uint64_t *key);
/* Copies up to cap bytes of key's blob into buf; returns its size or -1. */
long baseline_read(struct baseline_map *m, uint64_t key, void *buf, size_t cap);
int baseline_remove(struct baseline_map *m, uint64_t key);

#endif
