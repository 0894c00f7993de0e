/* hashmap.h — a small open-addressing hash map from key bytes to a uint32 index, used by
 * the write batch for its overlay, for the distinct items of one request and for the level
 * cache. Keys are copied in; clearing costs O(entries), not O(capacity), so a map that once
 * grew large for a big request does not make every later small request pay for its size.
 * Not thread-safe: each map belongs to one thread (the writer). */
#ifndef STOCKD_HASHMAP_H
#define STOCKD_HASHMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint8_t *key; /* owned */
    uint32_t key_length;
    uint32_t index;
    uint64_t hash; /* 0 marks an empty slot */
} sd_map_slot_t;

typedef struct {
    sd_map_slot_t *slots;
    uint32_t *occupied; /* indices of the used slots, so clearing costs O(count) */
    size_t capacity;    /* power of two */
    size_t count;
} sd_map_t;

/* An empty map is all zeroes (no allocation until the first insert). */

/* Empties the map (keeps its memory). */
void sd_map_clear(sd_map_t *map);
/* Empties the map and frees its memory. */
void sd_map_free(sd_map_t *map);

/* The slot of key, or NULL when absent. */
sd_map_slot_t *sd_map_find(const sd_map_t *map, const uint8_t *key, size_t key_length);

/* Finds key; when absent inserts a copy of it with index new_index. Returns the slot, or NULL
 * when out of memory (the map is unchanged then); *inserted_out tells which happened. */
sd_map_slot_t *sd_map_upsert(sd_map_t *map, const uint8_t *key, size_t key_length,
                             uint32_t new_index, bool *inserted_out);

#endif
