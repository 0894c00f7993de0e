/* hashmap.c — see hashmap.h. */
#include "hashmap.h"
#include "alloc.h"

#include <stdlib.h>
#include <string.h>

static uint64_t sd_hash_bytes(const uint8_t *bytes, size_t length)
{
    uint64_t hash = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < length; i++) {
        hash = (hash ^ bytes[i]) * 1099511628211ULL;
    }
    return hash | 1; /* 0 marks an empty slot */
}

void sd_map_clear(sd_map_t *map)
{
    for (size_t i = 0; i < map->count; i++) {
        sd_map_slot_t *slot = &map->slots[map->occupied[i]];
        free(slot->key);
        memset(slot, 0, sizeof(*slot));
    }
    map->count = 0;
}

void sd_map_free(sd_map_t *map)
{
    sd_map_clear(map);
    free(map->slots);
    free(map->occupied);
    map->slots = NULL;
    map->occupied = NULL;
    map->capacity = 0;
}

static sd_map_slot_t *sd_map_probe(sd_map_slot_t *slots, size_t capacity, const uint8_t *key,
                                   size_t key_length, uint64_t hash)
{
    size_t mask = capacity - 1;
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
        sd_map_slot_t *slot = &slots[i];
        if (slot->hash == 0 || (slot->hash == hash && slot->key_length == key_length &&
                                memcmp(slot->key, key, key_length) == 0)) {
            return slot;
        }
    }
}

static bool sd_map_grow(sd_map_t *map)
{
    size_t capacity = map->capacity ? map->capacity * 2 : 64;
    sd_map_slot_t *slots = sd_calloc(capacity, sizeof(*slots));
    uint32_t *occupied = sd_calloc(capacity / 2 + 1, sizeof(*occupied));
    if (slots == NULL || occupied == NULL) {
        free(slots);
        free(occupied);
        return false;
    }
    for (size_t i = 0; i < map->count; i++) {
        sd_map_slot_t *old = &map->slots[map->occupied[i]];
        sd_map_slot_t *slot = sd_map_probe(slots, capacity, old->key, old->key_length, old->hash);
        *slot = *old;
        occupied[i] = (uint32_t)(slot - slots);
    }
    free(map->slots);
    free(map->occupied);
    map->slots = slots;
    map->occupied = occupied;
    map->capacity = capacity;
    return true;
}

sd_map_slot_t *sd_map_upsert(sd_map_t *map, const uint8_t *key, size_t key_length,
                             uint32_t new_index, bool *inserted_out)
{
    if ((map->count + 1) * 2 > map->capacity && !sd_map_grow(map)) {
        return NULL;
    }
    uint64_t hash = sd_hash_bytes(key, key_length);
    sd_map_slot_t *slot = sd_map_probe(map->slots, map->capacity, key, key_length, hash);
    *inserted_out = slot->hash == 0;
    if (*inserted_out) {
        slot->key = sd_malloc(key_length ? key_length : 1);
        if (slot->key == NULL) {
            return NULL;
        }
        memcpy(slot->key, key, key_length);
        slot->key_length = (uint32_t)key_length;
        slot->index = new_index;
        slot->hash = hash;
        map->occupied[map->count++] = (uint32_t)(slot - map->slots);
    }
    return slot;
}

sd_map_slot_t *sd_map_find(const sd_map_t *map, const uint8_t *key, size_t key_length)
{
    if (map->count == 0) {
        return NULL;
    }
    sd_map_slot_t *slot =
        sd_map_probe(map->slots, map->capacity, key, key_length, sd_hash_bytes(key, key_length));
    return slot->hash == 0 ? NULL : slot;
}
