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

static int sd_entry_key_compare(const void *a, const void *b)
{
    const sd_overlay_entry_t *x = *(const sd_overlay_entry_t *const *)a;
    const sd_overlay_entry_t *y = *(const sd_overlay_entry_t *const *)b;
    size_t common = x->key_length < y->key_length ? x->key_length : y->key_length;
    int order = memcmp(x->key, y->key, common);
    return order != 0 ? order : (x->key_length > y->key_length) - (x->key_length < y->key_length);
}

static void sd_overlay_put_entry(const sd_overlay_entry_t *entry, sd_storage_t *storage,
                                 sd_write_batch_t *write_batch)
{
    uint8_t value[SD_LEVEL_VALUE_BYTES];
    /* a changed level was loaded, and the checks kept it in range: read it back before it is
     * written (the codec round trip), as the reader will */
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

/* The changed levels go in key order (sorted_puts.h says why); in arrival order when memory
 * for the order cannot be had. */
void sd_overlay_put_changed(sd_overlay_t *overlay, sd_storage_t *storage,
                            sd_write_batch_t *write_batch)
{
    const sd_overlay_entry_t **order = sd_array_grow(overlay->order, &overlay->order_capacity,
                                                     overlay->count, sizeof(*overlay->order));
    size_t changed = 0;
    if (order != NULL) {
        overlay->order = order;
        for (size_t i = 0; i < overlay->count; i++) {
            if (overlay->entries[i].dirty) {
                order[changed++] = &overlay->entries[i];
            }
        }
        qsort(order, changed, sizeof(*order), sd_entry_key_compare);
        for (size_t i = 0; i < changed; i++) {
            sd_overlay_put_entry(order[i], storage, write_batch);
        }
        return;
    }
    for (size_t i = 0; i < overlay->count; i++) {
        if (overlay->entries[i].dirty) {
            sd_overlay_put_entry(&overlay->entries[i], storage, write_batch);
        }
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
    free(overlay->order);
    overlay->order = NULL;
    overlay->order_capacity = 0;
    overlay->count = overlay->capacity = 0;
}
