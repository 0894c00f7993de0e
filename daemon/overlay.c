/* overlay.c — see overlay.h. */
#include "overlay.h"
#include "alloc.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

sd_status_t sd_overlay_get(sd_overlay_t *overlay, const sd_level_cache_t *cache,
                           sd_storage_t *storage, const uint8_t *key, size_t key_length,
                           uint32_t *index_out)
{
    /* the entry's room first: a map slot must never refer to an entry that does not exist */
    sd_overlay_entry_t *entries = sd_array_grow(overlay->entries, &overlay->capacity,
                                                overlay->count + 1, sizeof(*overlay->entries));
    if (entries == NULL) {
        return SD_UNAVAILABLE;
    }
    overlay->entries = entries;
    bool inserted = false;
    sd_map_slot_t *slot =
        sd_map_upsert(&overlay->map, key, key_length, (uint32_t)overlay->count, &inserted);
    if (slot == NULL) {
        return SD_UNAVAILABLE;
    }
    *index_out = slot->index;
    if (!inserted) {
        return overlay->entries[slot->index].load_status;
    }
    sd_overlay_entry_t *entry = &overlay->entries[overlay->count++];
    memset(entry, 0, sizeof(*entry));
    entry->key = slot->key;
    entry->key_length = slot->key_length;
    entry->load_status = SD_OK;
    if (!sd_level_cache_get(cache, key, key_length, &entry->level, &entry->exists)) {
        entry->load_status =
            sd_storage_get_level(storage, key, key_length, &entry->level, &entry->exists);
    }
    return entry->load_status;
}

void sd_overlay_put_changed(const sd_overlay_t *overlay, sd_storage_t *storage,
                            sd_write_batch_t *write_batch)
{
    uint8_t value[SD_LEVEL_VALUE_BYTES];
    for (size_t i = 0; i < overlay->count; i++) {
        const sd_overlay_entry_t *entry = &overlay->entries[i];
        if (!entry->dirty) {
            continue;
        }
        /* a changed level was loaded, and the checks kept it in range: read it back before
         * it is written (the codec round trip), as the reader will */
        SD_ASSERT(entry->load_status == SD_OK);
        SD_ASSERT(entry->exists && entry->level.version > 0); /* written by this batch */
        sd_level_encode(&entry->level, value);
        sd_level_t check;
        SD_ASSERT(sd_level_decode(value, sizeof(value), &check));
        SD_ASSERT(check.available == entry->level.available && check.floor == entry->level.floor &&
                  check.version == entry->level.version && check.tracked == entry->level.tracked);
        sd_write_batch_put(storage, write_batch, SD_CF_LEVELS, entry->key, entry->key_length, value,
                           sizeof(value));
    }
}

void sd_overlay_remember_committed(const sd_overlay_t *overlay, sd_level_cache_t *cache)
{
    sd_level_cache_make_room(cache, overlay->count);
    for (size_t i = 0; i < overlay->count; i++) {
        const sd_overlay_entry_t *entry = &overlay->entries[i];
        if (entry->load_status == SD_OK) {
            sd_level_cache_put(cache, entry->key, entry->key_length, &entry->level, entry->exists);
        }
    }
}

void sd_overlay_clear(sd_overlay_t *overlay)
{
    sd_map_clear(&overlay->map);
    overlay->count = 0;
}

void sd_overlay_free(sd_overlay_t *overlay)
{
    sd_map_free(&overlay->map);
    free(overlay->entries);
    overlay->entries = NULL;
    overlay->count = overlay->capacity = 0;
}
