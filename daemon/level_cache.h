/* level_cache.h — committed stock levels the writer keeps in memory, so hot items skip the
 * RocksDB read. The writer is the only writer of levels, so an entry is never stale; entries
 * are added only after a successful commit, and the cache is emptied whole when it would pass
 * its bound (simple, and correct: a miss only costs a read). Writer thread only. */
#ifndef STOCKD_LEVEL_CACHE_H
#define STOCKD_LEVEL_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hashmap.h"
#include "keys.h"

typedef struct {
    sd_level_t level;
    bool exists;
} sd_cached_level_t;

typedef struct {
    sd_map_t map;              /* item key -> index into levels */
    sd_cached_level_t *levels; /* entries_max slots, allocated on first use */
    size_t count, entries_max; /* entries_max 0 = no cache */
} sd_level_cache_t;

/* Starts an empty cache of at most entries_max levels (0 = off). */
void sd_level_cache_init(sd_level_cache_t *cache, size_t entries_max);
void sd_level_cache_free(sd_level_cache_t *cache);

/* Copies the cached level of key into *level_out / *exists_out; false on a miss. */
bool sd_level_cache_get(const sd_level_cache_t *cache, const uint8_t *key, size_t key_length,
                        sd_level_t *level_out, bool *exists_out);

/* Makes room for `incoming` more entries: empties the cache when they would not fit. Call
 * before a run of sd_level_cache_put for one commit. */
void sd_level_cache_make_room(sd_level_cache_t *cache, size_t incoming);

/* Records the committed level of key. Out of memory empties the cache (still correct). */
void sd_level_cache_put(sd_level_cache_t *cache, const uint8_t *key, size_t key_length,
                        const sd_level_t *level, bool exists);

#endif
