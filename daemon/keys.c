/* keys.c — see keys.h. Integers in values are little-endian, fixed width; integers in keys
 * are big-endian so they sort numerically. */
#include "keys.h"

#include <string.h>

sd_level_t sd_level_default(void)
{
    sd_level_t level = {
        .available = 0, .tracked = true, .floor = 0, .version = 0, .updated_at_us = 0};
    return level;
}

/* The low `width` bytes of value, most significant first (and back). */
static void sd_be_put(uint8_t *out, uint64_t value, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        out[i] = (uint8_t)(value & 0xFF);
        value >>= 8;
    }
}

static uint64_t sd_be_get(const uint8_t *in, int width)
{
    uint64_t value = 0;
    for (int i = 0; i < width; i++) {
        value = (value << 8) | in[i];
    }
    return value;
}

void sd_be64_put(uint8_t out[8], uint64_t value)
{
    sd_be_put(out, value, 8);
}

uint64_t sd_be64_get(const uint8_t in[8])
{
    return sd_be_get(in, 8);
}

void sd_be32_put(uint8_t out[4], uint32_t value)
{
    sd_be_put(out, value, 4);
}

uint32_t sd_be32_get(const uint8_t in[4])
{
    return (uint32_t)sd_be_get(in, 4);
}

static void sd_le64_put(uint8_t *out, uint64_t value)
{
    for (int i = 0; i < 8; i++) {
        out[i] = (uint8_t)(value >> (8 * i));
    }
}

static uint64_t sd_le64_get(const uint8_t *in)
{
    uint64_t value = 0;
    for (int i = 7; i >= 0; i--) {
        value = (value << 8) | in[i];
    }
    return value;
}

/* Appends a length-prefixed part (prefix of `prefix_bytes` bytes, big-endian). */
static bool sd_key_put_part(uint8_t *out, size_t capacity, size_t *used, sd_bytes_t part,
                            size_t prefix_bytes, size_t part_bytes_max)
{
    if (part.length > part_bytes_max || *used + prefix_bytes + part.length > capacity) {
        return false;
    }
    if (prefix_bytes == 2) {
        out[(*used)++] = (uint8_t)(part.length >> 8);
    }
    out[(*used)++] = (uint8_t)(part.length & 0xFF);
    if (part.length > 0) {
        memcpy(out + *used, part.data, part.length);
    }
    *used += part.length;
    return true;
}

static bool sd_key_get_part(const uint8_t *bytes, size_t length, size_t *used, sd_bytes_t *part,
                            size_t prefix_bytes)
{
    if (*used + prefix_bytes > length) {
        return false;
    }
    size_t part_length = bytes[*used];
    if (prefix_bytes == 2) {
        part_length = (part_length << 8) | bytes[*used + 1];
    }
    *used += prefix_bytes;
    if (*used + part_length > length) {
        return false;
    }
    part->data = (const char *)bytes + *used;
    part->length = part_length;
    *used += part_length;
    return true;
}

/* Appends a part and its NUL terminator. Ids never hold NUL (refused on the wire), so the
 * terminator cannot occur inside a part, and as the lowest byte it makes a part sort before
 * any longer part it begins ("mug-1" < "mug-10" < "mug-2"). */
static bool sd_key_put_terminated(uint8_t *out, size_t capacity, size_t *used, sd_bytes_t part,
                                  size_t part_bytes_max, bool terminated)
{
    if (part.length > part_bytes_max || *used + part.length + 1 > capacity ||
        (part.length > 0 && memchr(part.data, '\0', part.length) != NULL)) {
        return false;
    }
    if (part.length > 0) {
        memcpy(out + *used, part.data, part.length);
    }
    *used += part.length;
    if (terminated) {
        out[(*used)++] = 0;
    }
    return true;
}

size_t sd_key_encode_item(const sd_item_key_t *key, uint8_t *out, size_t capacity)
{
    size_t used = sd_key_encode_tenant(key->tenant_id, out, capacity);
    if (used == 0 || used + 1 > capacity) {
        return 0;
    }
    out[used++] = SD_ITEM_KEY_MARKER;
    bool ok =
        sd_key_put_terminated(out, capacity, &used, key->location_id, SD_LOCATION_BYTES_MAX,
                              true) &&
        sd_key_put_terminated(out, capacity, &used, key->app_id, SD_APP_BYTES_MAX, true) &&
        sd_key_put_terminated(out, capacity, &used, key->catalog_item_id, SD_CATALOG_ITEM_BYTES_MAX,
                              true) &&
        sd_key_put_terminated(out, capacity, &used, key->variant, SD_VARIANT_BYTES_MAX, false);
    return ok ? used : 0;
}

/* Reads a part up to its NUL (or, for the last, to the end). */
static bool sd_key_get_terminated(const uint8_t *bytes, size_t length, size_t *used,
                                  sd_bytes_t *part, bool terminated)
{
    const uint8_t *start = bytes + *used;
    size_t rest = length - *used;
    const uint8_t *end = memchr(start, 0, rest);
    if (terminated ? end == NULL : end != NULL) {
        return false;
    }
    part->data = (const char *)start;
    part->length = terminated ? (size_t)(end - start) : rest;
    *used += part->length + (terminated ? 1 : 0);
    return true;
}

bool sd_key_decode_item(const uint8_t *bytes, size_t length, sd_item_key_t *key_out)
{
    size_t used = 0;
    if (!sd_key_get_part(bytes, length, &used, &key_out->tenant_id, 1) || used >= length ||
        bytes[used++] != SD_ITEM_KEY_MARKER) {
        return false;
    }
    bool ok = sd_key_get_terminated(bytes, length, &used, &key_out->location_id, true) &&
              sd_key_get_terminated(bytes, length, &used, &key_out->app_id, true) &&
              sd_key_get_terminated(bytes, length, &used, &key_out->catalog_item_id, true) &&
              sd_key_get_terminated(bytes, length, &used, &key_out->variant, false);
    return ok && key_out->location_id.length <= SD_LOCATION_BYTES_MAX &&
           key_out->app_id.length <= SD_APP_BYTES_MAX &&
           key_out->catalog_item_id.length <= SD_CATALOG_ITEM_BYTES_MAX &&
           key_out->variant.length <= SD_VARIANT_BYTES_MAX;
}

size_t sd_key_encode_item_prefix(sd_bytes_t tenant_id, const sd_bytes_t *location_id,
                                 const sd_bytes_t *app_id, uint8_t *out, size_t capacity)
{
    size_t used = sd_key_encode_tenant(tenant_id, out, capacity);
    if (used == 0 || used + 1 > capacity) {
        return 0;
    }
    out[used++] = SD_ITEM_KEY_MARKER;
    bool ok =
        location_id == NULL ||
        (sd_key_put_terminated(out, capacity, &used, *location_id, SD_LOCATION_BYTES_MAX, true) &&
         (app_id == NULL ||
          sd_key_put_terminated(out, capacity, &used, *app_id, SD_APP_BYTES_MAX, true)));
    return ok ? used : 0;
}

bool sd_key_item_is_v1(const uint8_t *bytes, size_t length)
{
    /* after the tenant prefix, a v1 key has the location's length (at most 64) where a v2 key
     * has its marker */
    return length > 0 && (size_t)bytes[0] + 1 < length && bytes[bytes[0] + 1] != SD_ITEM_KEY_MARKER;
}

bool sd_key_decode_item_v1(const uint8_t *bytes, size_t length, sd_item_key_t *key_out)
{
    size_t used = 0;
    bool ok = sd_key_get_part(bytes, length, &used, &key_out->tenant_id, 1) &&
              sd_key_get_part(bytes, length, &used, &key_out->location_id, 1) &&
              sd_key_get_part(bytes, length, &used, &key_out->app_id, 1) &&
              sd_key_get_part(bytes, length, &used, &key_out->catalog_item_id, 2) &&
              sd_key_get_part(bytes, length, &used, &key_out->variant, 2);
    return ok && used == length;
}

size_t sd_key_encode_tenant(sd_bytes_t tenant_id, uint8_t *out, size_t capacity)
{
    size_t used = 0;
    return sd_key_put_part(out, capacity, &used, tenant_id, 1, SD_TENANT_BYTES_MAX) ? used : 0;
}

size_t sd_key_encode_ledger(sd_bytes_t tenant_id, uint64_t seq, uint8_t *out, size_t capacity)
{
    size_t used = sd_key_encode_tenant(tenant_id, out, capacity);
    if (used == 0 || used + 8 > capacity) {
        return 0;
    }
    sd_be64_put(out + used, seq);
    return used + 8;
}

size_t sd_key_encode_item_index_prefix(const uint8_t *item_key, size_t item_key_length,
                                       uint8_t *out, size_t capacity)
{
    if (item_key_length == 0 || item_key_length + 1 > capacity) {
        return 0;
    }
    memcpy(out, item_key, item_key_length);
    out[item_key_length] = 0; /* ends the variant */
    return item_key_length + 1;
}

size_t sd_key_encode_item_index(const uint8_t *item_key, size_t item_key_length, uint64_t seq,
                                uint8_t *out, size_t capacity)
{
    size_t used = sd_key_encode_item_index_prefix(item_key, item_key_length, out, capacity);
    if (used == 0 || used + 8 > capacity) {
        return 0;
    }
    sd_be64_put(out + used, seq);
    return used + 8;
}

size_t sd_key_encode_order_index_prefix(sd_bytes_t tenant_id, sd_bytes_t order_id, uint8_t *out,
                                        size_t capacity)
{
    size_t used = sd_key_encode_tenant(tenant_id, out, capacity);
    if (used == 0 || used + 1 > capacity || order_id.length == 0) {
        return 0;
    }
    out[used++] = SD_ORDER_INDEX_MARKER;
    return sd_key_put_part(out, capacity, &used, order_id, 1, SD_ORDER_ID_BYTES_MAX) ? used : 0;
}

size_t sd_key_encode_order_index(sd_bytes_t tenant_id, sd_bytes_t order_id, uint64_t last_seq,
                                 uint8_t *out, size_t capacity)
{
    size_t used = sd_key_encode_order_index_prefix(tenant_id, order_id, out, capacity);
    if (used == 0 || used + 8 > capacity) {
        return 0;
    }
    sd_be64_put(out + used, last_seq);
    return used + 8;
}

bool sd_key_index_seq(const uint8_t *key, size_t key_length, uint64_t *seq_out)
{
    if (key_length < 8 + 2) { /* at least a tenant prefix, a marker and the seq */
        return false;
    }
    *seq_out = sd_be64_get(key + key_length - 8);
    return true;
}

void sd_order_index_value_encode(uint32_t count, uint8_t out[SD_ORDER_INDEX_VALUE_BYTES])
{
    out[0] = SD_ORDER_INDEX_FORMAT_V1;
    for (int i = 0; i < 4; i++) {
        out[1 + i] = (uint8_t)(count >> (8 * i));
    }
}

bool sd_order_index_value_decode(const uint8_t *value, size_t length, uint64_t last_seq,
                                 uint64_t *first_seq_out)
{
    if (length != SD_ORDER_INDEX_VALUE_BYTES || value[0] != SD_ORDER_INDEX_FORMAT_V1) {
        return false;
    }
    uint32_t count = 0;
    for (int i = 3; i >= 0; i--) {
        count = (count << 8) | value[1 + i];
    }
    if (count == 0 || count > last_seq) {
        return false;
    }
    *first_seq_out = last_seq - count + 1;
    return true;
}

size_t sd_key_encode_idempotency(sd_bytes_t tenant_id, sd_bytes_t request_id, uint8_t *out,
                                 size_t capacity)
{
    size_t used = sd_key_encode_tenant(tenant_id, out, capacity);
    if (used == 0 ||
        !sd_key_put_part(out, capacity, &used, request_id, 1, SD_REQUEST_ID_BYTES_MAX)) {
        return 0;
    }
    return used;
}

void sd_level_encode(const sd_level_t *level, uint8_t out[SD_LEVEL_VALUE_BYTES])
{
    out[0] = SD_LEVEL_FORMAT_V1;
    sd_le64_put(out + 1, (uint64_t)level->available);
    out[9] = level->tracked ? 1 : 0;
    sd_le64_put(out + 10, (uint64_t)level->floor);
    sd_le64_put(out + 18, level->version);
    sd_le64_put(out + 26, (uint64_t)level->updated_at_us);
}

bool sd_level_decode(const uint8_t *bytes, size_t length, sd_level_t *level_out)
{
    if (length != SD_LEVEL_VALUE_BYTES || bytes[0] != SD_LEVEL_FORMAT_V1 || bytes[9] > 1) {
        return false;
    }
    level_out->available = (int64_t)sd_le64_get(bytes + 1);
    level_out->tracked = bytes[9] == 1;
    level_out->floor = (int64_t)sd_le64_get(bytes + 10);
    level_out->version = sd_le64_get(bytes + 18);
    level_out->updated_at_us = (int64_t)sd_le64_get(bytes + 26);
    /* Read-back check: a stored level is always inside the contract's range. */
    return level_out->available >= -SD_LEVEL_ABS_MAX && level_out->available <= SD_LEVEL_ABS_MAX &&
           level_out->floor >= -SD_LEVEL_ABS_MAX && level_out->floor <= SD_LEVEL_ABS_MAX;
}

void sd_idempotency_value_encode(int64_t created_us,
                                 const uint8_t fingerprint[SD_FINGERPRINT_BYTES],
                                 const uint8_t *response, size_t response_length, uint8_t *out)
{
    out[0] = SD_IDEMPOTENCY_FORMAT_V1;
    sd_be64_put(out + 1, (uint64_t)created_us);
    memcpy(out + 9, fingerprint, SD_FINGERPRINT_BYTES);
    memcpy(out + SD_IDEMPOTENCY_HEADER_BYTES, response, response_length);
}

bool sd_idempotency_value_decode(const uint8_t *value, size_t length,
                                 sd_idempotency_value_t *record_out)
{
    if (length < SD_IDEMPOTENCY_HEADER_BYTES || value[0] != SD_IDEMPOTENCY_FORMAT_V1) {
        return false;
    }
    record_out->created_us = (int64_t)sd_be64_get(value + 1);
    record_out->fingerprint = value + 9;
    record_out->response = value + SD_IDEMPOTENCY_HEADER_BYTES;
    record_out->response_length = length - SD_IDEMPOTENCY_HEADER_BYTES;
    return true;
}

size_t sd_ledger_value_encode(const Stockd__V1__LedgerEntry *entry, uint8_t *out, size_t capacity)
{
    size_t packed_length = stockd__v1__ledger_entry__get_packed_size(entry);
    if (capacity < 1 || packed_length > capacity - 1) {
        return 0;
    }
    out[0] = SD_LEDGER_FORMAT_V1;
    stockd__v1__ledger_entry__pack(entry, out + 1);
    return packed_length + 1;
}

bool sd_ledger_value_payload(const uint8_t *value, size_t length, const uint8_t **payload_out,
                             size_t *payload_length_out)
{
    if (length < 1 || value[0] != SD_LEDGER_FORMAT_V1) {
        return false;
    }
    *payload_out = value + 1;
    *payload_length_out = length - 1;
    return true;
}

sd_item_key_t sd_item_key_of(const char *tenant_id, const Stockd__V1__ItemRef *item)
{
    sd_item_key_t key = {sd_bytes_of(tenant_id), sd_bytes_of(item->location_id),
                         sd_bytes_of(item->app_id), sd_bytes_of(item->catalog_item_id),
                         sd_bytes_of(item->variant)};
    return key;
}

void sd_stock_level_fill(Stockd__V1__StockLevel *out, Stockd__V1__ItemRef *item,
                         const sd_level_t *level)
{
    stockd__v1__stock_level__init(out);
    out->item = item;
    out->available = level->available;
    out->tracked = level->tracked;
    out->floor = level->floor;
    out->version = level->version;
    out->updated_at_us = level->updated_at_us;
}

Stockd__V1__LedgerEntry *sd_ledger_value_decode(const uint8_t *value, size_t length)
{
    const uint8_t *payload = NULL;
    size_t payload_length = 0;
    if (!sd_ledger_value_payload(value, length, &payload, &payload_length)) {
        return NULL;
    }
    return stockd__v1__ledger_entry__unpack(NULL, payload_length, payload);
}
