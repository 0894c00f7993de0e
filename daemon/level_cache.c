/* level_cache.c — see level_cache.h. */
#include "level_cache.h"
#include "alloc.h"

#include <stdlib.h>

void sd_level_cache_init(sd_level_cache_t *cache, size_t entries_max)
{
    *cache = (sd_level_cache_t){.entries_max = entries_max};
}

void sd_level_cache_free(sd_level_cache_t *cache)
{
    sd_map_free(&cache->map);
    free(cache->levels);
    cache->levels = NULL;
    cache->count = 0;
}

bool sd_level_cache_get(const sd_level_cache_t *cache, const uint8_t *key, size_t key_length,
                        sd_level_t *level_out, bool *exists_out)
{
    const sd_map_slot_t *slot = sd_map_find(&cache->map, key, key_length);
    if (slot == NULL) {
        return false;
    }
    *level_out = cache->levels[slot->index].level;
    *exists_out = cache->levels[slot->index].exists;
    return true;
}

static void sd_level_cache_empty(sd_level_cache_t *cache)
{
    sd_map_clear(&cache->map);
    cache->count = 0;
}

void sd_level_cache_make_room(sd_level_cache_t *cache, size_t incoming)
{
    if (cache->count + incoming > cache->entries_max) {
        sd_level_cache_empty(cache);
    }
}

void sd_level_cache_put(sd_level_cache_t *cache, const uint8_t *key, size_t key_length,
                        const sd_level_t *level, bool exists)
{
    if (cache->entries_max == 0 || cache->count >= cache->entries_max) {
        return; /* off, or full within one commit: a miss costs only a read */
    }
    if (cache->levels == NULL) {
        cache->levels = sd_malloc(cache->entries_max * sizeof(*cache->levels));
        if (cache->levels == NULL) {
            cache->entries_max = 0; /* no memory for a cache: run without one */
            return;
        }
    }
    bool inserted = false;
    sd_map_slot_t *slot =
        sd_map_upsert(&cache->map, key, key_length, (uint32_t)cache->count, &inserted);
    if (slot == NULL) {
        sd_level_cache_empty(cache); /* out of memory: start over, stay correct */
        return;
    }
    if (inserted) {
        cache->count++;
    }
    cache->levels[slot->index] = (sd_cached_level_t){*level, exists};
}
