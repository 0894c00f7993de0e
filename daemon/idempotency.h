/* idempotency.h — request_id records: the SHA-256 fingerprint of a request's content, the
 * records a batch writes (so a repeat inside the same batch is recognised too), and lookups
 * of records already stored. A record holds the fingerprint and the original packed response;
 * a repeat with the same fingerprint is answered from it (replayed), with another fingerprint
 * it is ALREADY_EXISTS. Writer thread only. */
#ifndef STOCKD_IDEMPOTENCY_H
#define STOCKD_IDEMPOTENCY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "batch.h"
#include "keys.h"
#include "storage.h"

/* Protobuf merges repeated occurrences of a scalar field with "last one wins", so appending
 * field 3 (replayed, varint) = true to a stored response marks it as a replay without
 * re-encoding it. All three write responses number `replayed` 3. */
static const uint8_t sd_replayed_suffix[2] = {(3 << 3) | 0, 1};

typedef struct {
    uint8_t key[SD_IDEMPOTENCY_KEY_BYTES_MAX];
    size_t key_length;
    uint8_t fingerprint[SD_FINGERPRINT_BYTES];
    uint8_t *response; /* owned */
    size_t response_length;
} sd_idempotency_record_t;

/* The records written by the batch being built (not yet committed). */
typedef struct {
    sd_idempotency_record_t *records;
    size_t count, capacity;
} sd_idempotency_records_t;

typedef struct {
    bool found;
    uint8_t fingerprint[SD_FINGERPRINT_BYTES];
    uint8_t *response; /* malloc'd copy with room for sd_replayed_suffix */
    size_t response_length;
} sd_idempotency_hit_t;

/* SHA-256 over a length-prefixed encoding of every field that affects the outcome, so that
 * "same content" does not depend on how a client serialized its protobuf. False when
 * OpenSSL fails (out of memory). */
bool sd_fingerprint(const sd_write_request_t *request, uint8_t out[SD_FINGERPRINT_BYTES]);

/* Looks key up among records (this batch's, newest first), then in storage. A stored record
 * older than ttl_us at now_us is as if never written. On a hit the caller owns hit->response.
 * SD_INTERNAL for a corrupt record, SD_UNAVAILABLE for an I/O error or out of memory. */
sd_status_t sd_idempotency_find(const sd_idempotency_records_t *records, sd_storage_t *storage,
                                const uint8_t *key, size_t key_length, int64_t now_us,
                                int64_t ttl_us, sd_idempotency_hit_t *hit);

/* Puts the record into write_batch and remembers it for the rest of the batch. False when out
 * of memory (nothing remembered; the caller rolls the request back). */
bool sd_idempotency_remember(sd_idempotency_records_t *records, sd_storage_t *storage,
                             sd_write_batch_t *write_batch, const uint8_t *key, size_t key_length,
                             const uint8_t fingerprint[SD_FINGERPRINT_BYTES], int64_t now_us,
                             const uint8_t *response, size_t response_length);

/* Forgets the batch's records (after a commit or a failed one); keeps the array. */
void sd_idempotency_records_clear(sd_idempotency_records_t *records);
void sd_idempotency_records_free(sd_idempotency_records_t *records);

#endif
