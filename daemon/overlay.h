/* overlay.h — the levels of the items a batch touches, as the batch has left them so far:
 * loaded on first touch (from the level cache, else RocksDB), changed in memory by each
 * request that is applied, and written to the WriteBatch at commit. Writer thread only. */
#ifndef STOCKD_OVERLAY_H
#define STOCKD_OVERLAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hashmap.h"
#include "keys.h"
#include "level_cache.h"
#include "storage.h"

typedef struct {
    sd_level_t level;
    bool exists;             /* stored, or written by this batch */
    bool dirty;              /* must be written at commit */
    sd_status_t load_status; /* not SD_OK: the read failed and the level is unknown */
    const uint8_t *key;      /* points at the map's copy */
    uint32_t key_length;
} sd_overlay_entry_t;

typedef struct {
    sd_map_t map; /* item key -> index into entries */
    sd_overlay_entry_t *entries;
    size_t count, capacity;
    const sd_overlay_entry_t **order; /* scratch: the changed entries in key order */
    size_t order_capacity;
} sd_overlay_t;

/* Finds the entry of key, loading it on first touch; *index_out is its index in entries.
 * Returns the entry's load status (a failed read stays attached to the item, so later
 * requests of the batch fail on it too instead of reading a default), or SD_UNAVAILABLE when
 * out of memory (nothing added then). */
sd_status_t sd_overlay_get(sd_overlay_t *overlay, const sd_level_cache_t *cache,
                           sd_storage_t *storage, const uint8_t *key, size_t key_length,
                           uint32_t *index_out);

/* Puts every changed level into write_batch, each checked by a read-back decode first (a
 * level outside the contract is a bug: the assertion stops the process before the commit). */
void sd_overlay_put_changed(sd_overlay_t *overlay, sd_storage_t *storage,
                            sd_write_batch_t *write_batch);

/* After a successful commit: records every level the batch read or wrote in the cache. */
void sd_overlay_remember_committed(const sd_overlay_t *overlay, sd_level_cache_t *cache);

void sd_overlay_clear(sd_overlay_t *overlay);
void sd_overlay_free(sd_overlay_t *overlay);

#endif
