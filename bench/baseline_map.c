/* baseline_map.c: see baseline_map.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "baseline_map.h"

int baseline_map_init(struct baseline_map *m)
{
	memset(m, 0, sizeof(*m));
	m->nbuckets = 1024;
	m->buckets = calloc(m->nbuckets, sizeof(*m->buckets));
	m->next_key = 1;
	return m->buckets && !pthread_mutex_init(&m->lock, NULL) ? 0 : -ENOMEM;
}

void baseline_map_fini(struct baseline_map *m)
{
	for (size_t b = 0; b < m->nbuckets; b++) {
		for (struct baseline_node *n = m->buckets[b], *next; n; n = next) {
			next = n->next;
			free(n->data);
			free(n);
		}
	}
	free(m->buckets);
	pthread_mutex_destroy(&m->lock);
}

static size_t bucket_of(const struct baseline_map *m, uint64_t key)
{
	return (size_t)((key * 0x9e3779b97f4a7c15ull) >> 32) & (m->nbuckets - 1);
}

static void grow(struct baseline_map *m)
{
	size_t nb = m->nbuckets * 2;
	struct baseline_node **b = calloc(nb, sizeof(*b));

	if (!b)
		return;
	struct baseline_node **old = m->buckets;
	size_t onb = m->nbuckets;

	m->buckets = b;
	m->nbuckets = nb;
	for (size_t i = 0; i < onb; i++) {
		for (struct baseline_node *n = old[i], *next; n; n = next) {
			next = n->next;
			size_t k = bucket_of(m, n->key);

			n->next = b[k];
			b[k] = n;
		}
	}
	free(old);
}

int baseline_put(struct baseline_map *m, const void *p, size_t n, uint64_t *key)
{
	struct baseline_node *node = malloc(sizeof(*node));
	unsigned char *data = malloc(n ? n : 1);

	if (!node || !data) {
		free(node);
		free(data);
		return -ENOMEM;
	}
	memcpy(data, p, n);
	node->data = data;
	node->size = n;
	pthread_mutex_lock(&m->lock);
	if (m->count >= m->nbuckets)
		grow(m);
	node->key = m->next_key++;
	size_t b = bucket_of(m, node->key);

	node->next = m->buckets[b];
	m->buckets[b] = node;
	m->count++;
	*key = node->key;
	pthread_mutex_unlock(&m->lock);
	return 0;
}

long baseline_read(struct baseline_map *m, uint64_t key, void *buf, size_t cap)
{
	long size = -1;

	pthread_mutex_lock(&m->lock);
	for (struct baseline_node *n = m->buckets[bucket_of(m, key)]; n; n = n->next) {
		if (n->key == key) {
			memcpy(buf, n->data, n->size < cap ? n->size : cap);
			size = (long)n->size;
			break;
		}
	}
	pthread_mutex_unlock(&m->lock);
	return size;
}

int baseline_remove(struct baseline_map *m, uint64_t key)
{
	struct baseline_node *found = NULL;

	pthread_mutex_lock(&m->lock);
	for (struct baseline_node **p = &m->buckets[bucket_of(m, key)]; *p; p = &(*p)->next) {
		if ((*p)->key == key) {
			found = *p;
			*p = found->next;
			m->count--;
			break;
		}
	}
	pthread_mutex_unlock(&m->lock);
	if (!found)
		return -1;
	free(found->data);
	free(found);
	return 0;
}
