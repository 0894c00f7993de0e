/* keys.h — RocksDB key and value encodings.
 *
 * Keys are length-prefixed so no byte inside a field can be mistaken for a separator; they
 * sort by tenant first (so a tenant is one contiguous range), then location, app, item and
 * variant. Values start with a format-version byte so the layout can evolve. */
#ifndef STOCKD_KEYS_H
#define STOCKD_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "sd_limits.h"
#include "stockd/v1/inventory.pb-c.h"

#define SD_LEVEL_FORMAT_V1 1
#define SD_LEVEL_VALUE_BYTES 34
#define SD_LEDGER_FORMAT_V1 1
#define SD_IDEMPOTENCY_FORMAT_V1 1
#define SD_FINGERPRINT_BYTES 32
#define SD_IDEMPOTENCY_HEADER_BYTES (1 + 8 + SD_FINGERPRINT_BYTES)
#define SD_TENANT_PREFIX_BYTES_MAX (1 + SD_TENANT_BYTES_MAX)
#define SD_LEDGER_KEY_BYTES_MAX (SD_TENANT_PREFIX_BYTES_MAX + 8)
#define SD_IDEMPOTENCY_KEY_BYTES_MAX (SD_TENANT_PREFIX_BYTES_MAX + 1 + SD_REQUEST_ID_BYTES_MAX)

/* A view of one string (not NUL-terminated in keys). */
typedef struct {
    const char *data;
    size_t length;
} sd_bytes_t;

/* The five parts of an item key, as views. */
typedef struct {
    sd_bytes_t tenant_id;
    sd_bytes_t location_id;
    sd_bytes_t app_id;
    sd_bytes_t catalog_item_id;
    sd_bytes_t variant;
} sd_item_key_t;

/* One stock level as stored. */
typedef struct {
    int64_t available;
    bool tracked;
    int64_t floor;
    uint64_t version;
    int64_t updated_at_us;
} sd_level_t;

/* The five parts of the key of `item` in tenant_id, as views (the one item-key builder). */
sd_item_key_t sd_item_key_of(const char *tenant_id, const Stockd__V1__ItemRef *item);

/* The StockLevel message of item at `level` (the one level -> StockLevel conversion); item is
 * referenced, not copied. */
void sd_stock_level_fill(Stockd__V1__StockLevel *out, Stockd__V1__ItemRef *item,
                         const sd_level_t *level);

/* The level of a never-written item: available 0, tracked, floor 0, version 0. */
sd_level_t sd_level_default(void);

/* After the tenant prefix of a v2 item key (a v1 key has a length <= 64 there). */
#define SD_ITEM_KEY_MARKER 0xFE

/* Encodes an item key into out (capacity >= SD_ITEM_KEY_BYTES_MAX); returns its length, or 0
 * when a part exceeds its limit or holds a NUL (callers validate first, so 0 is a programmer
 * error). */
size_t sd_key_encode_item(const sd_item_key_t *key, uint8_t *out, size_t capacity);
/* Decodes an item key; the views point into `bytes`. False when malformed. */
bool sd_key_decode_item(const uint8_t *bytes, size_t length, sd_item_key_t *key_out);
/* The start of every item key of a tenant (location_id NULL), of one location of it (app_id
 * NULL), or of one app in one location. Returns its length (0 when a part is too long). */
size_t sd_key_encode_item_prefix(sd_bytes_t tenant_id, const sd_bytes_t *location_id,
                                 const sd_bytes_t *app_id, uint8_t *out, size_t capacity);
/* v1 item keys (before natural order), for the start-up migration only. */
bool sd_key_item_is_v1(const uint8_t *bytes, size_t length);
bool sd_key_decode_item_v1(const uint8_t *bytes, size_t length, sd_item_key_t *key_out);

/* Tenant prefix (u8 length + tenant): the start of all of that tenant's keys in every column
 * family. Returns its length. */
size_t sd_key_encode_tenant(sd_bytes_t tenant_id, uint8_t *out, size_t capacity);
/* Ledger key: tenant prefix + big-endian seq, so a tenant's ledger is in seq order. */
size_t sd_key_encode_ledger(sd_bytes_t tenant_id, uint64_t seq, uint8_t *out, size_t capacity);
/* ---- the ledger's index (column family "ledger_index") ----
 * History filtered by item or by order_id walks these keys instead of the whole ledger. Every
 * index key ends with a big-endian seq, so one item's (one order's) keys are in seq order.
 *
 * By item: the item key + 0x00 + seq, one per ledger entry, empty value. The item key starts
 *   with the tenant prefix and SD_ITEM_KEY_MARKER, and its parts never hold NUL, so the 0x00
 *   ends the variant: no item's keys begin with another item's prefix.
 * By order: tenant prefix + SD_ORDER_INDEX_MARKER + u8 length + order_id + seq of the last
 *   entry of a run of consecutive seqs (one request's lines) carrying that order_id; the
 *   value holds how many entries the run has, so one key covers a whole request. */
#define SD_ORDER_INDEX_MARKER 0xFD
#define SD_ORDER_INDEX_FORMAT_V1 1
#define SD_ORDER_INDEX_VALUE_BYTES 5
#define SD_ITEM_INDEX_KEY_BYTES_MAX (SD_ITEM_KEY_BYTES_MAX + 1 + 8)
#define SD_ORDER_INDEX_KEY_BYTES_MAX (SD_TENANT_PREFIX_BYTES_MAX + 2 + SD_ORDER_ID_BYTES_MAX + 8)
#define SD_LEDGER_INDEX_KEY_BYTES_MAX                                                              \
    (SD_ITEM_INDEX_KEY_BYTES_MAX > SD_ORDER_INDEX_KEY_BYTES_MAX ? SD_ITEM_INDEX_KEY_BYTES_MAX      \
                                                                : SD_ORDER_INDEX_KEY_BYTES_MAX)

/* The start of every index key of one item, from its encoded item key (item_key_length 0 is
 * refused). Returns its length, or 0 when it does not fit. */
size_t sd_key_encode_item_index_prefix(const uint8_t *item_key, size_t item_key_length,
                                       uint8_t *out, size_t capacity);
/* The index key of the ledger entry `seq` of one item. */
size_t sd_key_encode_item_index(const uint8_t *item_key, size_t item_key_length, uint64_t seq,
                                uint8_t *out, size_t capacity);
/* The start of every index key of one order_id (non-empty, <= SD_ORDER_ID_BYTES_MAX). */
size_t sd_key_encode_order_index_prefix(sd_bytes_t tenant_id, sd_bytes_t order_id, uint8_t *out,
                                        size_t capacity);
/* The index key of a run of entries of one order ending at last_seq. */
size_t sd_key_encode_order_index(sd_bytes_t tenant_id, sd_bytes_t order_id, uint64_t last_seq,
                                 uint8_t *out, size_t capacity);
/* The seq at the end of any index key (false when the key is too short to hold one). */
bool sd_key_index_seq(const uint8_t *key, size_t key_length, uint64_t *seq_out);
/* An order index value: format byte, then the run's entry count (u32, little-endian). */
void sd_order_index_value_encode(uint32_t count, uint8_t out[SD_ORDER_INDEX_VALUE_BYTES]);
/* The run's first seq from its key's last seq and its value. False when the value is not a
 * known format, or the count is 0 or reaches below seq 1. */
bool sd_order_index_value_decode(const uint8_t *value, size_t length, uint64_t last_seq,
                                 uint64_t *first_seq_out);

/* Idempotency key: tenant prefix + u8 length + request_id. */
size_t sd_key_encode_idempotency(sd_bytes_t tenant_id, sd_bytes_t request_id, uint8_t *out,
                                 size_t capacity);

void sd_level_encode(const sd_level_t *level, uint8_t out[SD_LEVEL_VALUE_BYTES]);
/* False when the value is not a known format or has the wrong size. */
bool sd_level_decode(const uint8_t *bytes, size_t length, sd_level_t *level_out);

/* Idempotency record value: format byte, big-endian creation time (unix microseconds), the
 * request fingerprint, then the packed response. */
typedef struct {
    int64_t created_us;
    const uint8_t *fingerprint; /* SD_FINGERPRINT_BYTES, a view into the value */
    const uint8_t *response;    /* a view into the value */
    size_t response_length;
} sd_idempotency_value_t;

/* Writes the record into out (SD_IDEMPOTENCY_HEADER_BYTES + response_length bytes). */
void sd_idempotency_value_encode(int64_t created_us,
                                 const uint8_t fingerprint[SD_FINGERPRINT_BYTES],
                                 const uint8_t *response, size_t response_length, uint8_t *out);
/* Reads a record (views into value). False when the value is not a known format: callers
 * then keep the record and report corruption, never guess its age or content. */
bool sd_idempotency_value_decode(const uint8_t *value, size_t length,
                                 sd_idempotency_value_t *record_out);

/* Ledger entry value: format byte, then the packed LedgerEntry. Writes it into out (capacity
 * at least 1 + the entry's packed size) and returns its length, or 0 when it does not fit. */
size_t sd_ledger_value_encode(const Stockd__V1__LedgerEntry *entry, uint8_t *out, size_t capacity);
/* The packed LedgerEntry inside a stored value (a view into it). False when the value is not
 * a known format: the caller reports corruption. */
bool sd_ledger_value_payload(const uint8_t *value, size_t length, const uint8_t **payload_out,
                             size_t *payload_length_out);
/* The LedgerEntry of a stored value (caller frees it with
 * stockd__v1__ledger_entry__free_unpacked), or NULL when the value is not a known format or
 * does not unpack. */
Stockd__V1__LedgerEntry *sd_ledger_value_decode(const uint8_t *value, size_t length);

/* True when a record created at created_us is past the retention window at now_us. Written
 * without subtracting created_us, so no stored value can overflow it. */
static inline bool sd_idempotency_expired(int64_t created_us, int64_t now_us, int64_t ttl_us)
{
    return created_us < now_us - ttl_us;
}

void sd_be64_put(uint8_t out[8], uint64_t value);
uint64_t sd_be64_get(const uint8_t in[8]);
void sd_be32_put(uint8_t out[4], uint32_t value);
uint32_t sd_be32_get(const uint8_t in[4]);

static inline sd_bytes_t sd_bytes_of(const char *text)
{
    sd_bytes_t bytes = {text, text ? strlen(text) : 0};
    return bytes;
}

#endif
