/* example: put a blob, read it back through a reader, remove it. */
#include <stdio.h>
#include <string.h>

#include <scratch.h>

int main(void)
{
	static const char text[] = "hello, scratch space";
	scratch_store *store;
	scratch_handle h;
	scratch_reader *r;
	char buf[64];
	int err;

	if ((err = scratch_memory_new(&store)) ||
	    (err = scratch_put(store, text, sizeof(text), &h)) ||
	    (err = scratch_read(store, h, &r))) {
		fprintf(stderr, "example: %s\n", scratch_strerror(err));
		return 1;
	}
	ssize_t n = scratch_reader_read(r, buf, sizeof(buf));

	printf("put %zu bytes as handle %llu, read back %zd: \"%s\"\n", sizeof(text),
	       (unsigned long long)h, n, buf);
	scratch_reader_close(r);
	err = scratch_remove(store, h);
	printf("removed: %s; read again: %s\n", scratch_strerror(err),
	       scratch_strerror(scratch_read(store, h, &r)));
	scratch_store_close(store);
	return n == (ssize_t)sizeof(text) && memcmp(buf, text, sizeof(text)) == 0 ? 0 : 1;
}
