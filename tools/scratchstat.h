/*
 * scratchstat.h: what the two halves of tools/scratchstat share.
 * scratchstat.c holds main, the DIR listing and the text and JSON helpers;
 * scratchstat_registry.c the modes that read the metrics registry.  The
 * user's documentation (modes, fields, exit status) is the top comment of
 * scratchstat.c.
 */
#ifndef SCRATCHSTAT_H
#define SCRATCHSTAT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

/* The states an entry is listed in, in both listings. */
enum state { STATE_LIVE, STATE_STALE, STATE_UNKNOWN, STATE_SKIPPED };

extern const char *const state_names[];

/* "regular", "symlink", "directory", ...: the "type" field. */
const char *type_name(mode_t mode);

/* Prints s with every byte but printable ASCII escaped (\xHH, \\), padded
 * with spaces to width. */
void text_put(FILE *out, const char *s, size_t width);

/* v (n elements of size bytes, room for *cap) with room for one more:
 * doubled when full, *cap updated; NULL when out of memory (v is then
 * unchanged). */
void *grow(void *v, size_t n, size_t *cap, size_t size);

/* Prints an error about path on stderr, after flushing what stdout holds
 * (so it comes after the output it follows). */
void complain(const char *path, int err);

/* JSON: a string field (with a "<key>_hex" twin when value is not UTF-8;
 * first: no comma before it), and a number field (always after a comma). */
void json_field(FILE *out, const char *key, const char *value, bool first);
void json_number(FILE *out, const char *key, uint64_t v);

/* The registry modes (scratchstat_registry.c).  Each returns false when it
 * failed (and said why on stderr).  *tables counts the tables printed so
 * far, to put a blank line between them. */
bool registry_list(bool json, unsigned *tables);
bool registry_prometheus(const char *path);
bool registry_clean(void);

#endif /* SCRATCHSTAT_H */
