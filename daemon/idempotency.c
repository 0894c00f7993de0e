/* idempotency.c — see idempotency.h. */
#include "idempotency.h"
#include "alloc.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

static void sd_digest_text(EVP_MD_CTX *context, const char *text)
{
    uint8_t length[8];
    size_t text_length = strlen(text);
    sd_be64_put(length, text_length);
    EVP_DigestUpdate(context, length, sizeof(length));
    EVP_DigestUpdate(context, text, text_length);
}

static void sd_digest_int(EVP_MD_CTX *context, int64_t value)
{
    uint8_t bytes[8];
    sd_be64_put(bytes, (uint64_t)value);
    EVP_DigestUpdate(context, bytes, sizeof(bytes));
}

static void sd_digest_item(EVP_MD_CTX *context, const Stockd__V1__ItemRef *item)
{
    sd_digest_text(context, item->location_id);
    sd_digest_text(context, item->app_id);
    sd_digest_text(context, item->catalog_item_id);
    sd_digest_text(context, item->variant);
}

bool sd_fingerprint(const sd_write_request_t *request, uint8_t out[SD_FINGERPRINT_BYTES])
{
    EVP_MD_CTX *context = EVP_MD_CTX_new();
    if (context == NULL || EVP_DigestInit_ex(context, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(context);
        return false;
    }
    sd_digest_int(context, request->kind);
    sd_digest_text(context, request->tenant_id);
    sd_digest_int(context, request->restrict_inventory);
    sd_digest_text(context, request->order_id);
    sd_digest_int(context, request->reason);
    sd_digest_text(context, request->reason_text);
    sd_digest_int(context, (int64_t)request->lines_count);
    for (size_t i = 0; i < request->lines_count; i++) {
        if (request->kind == SD_WRITE_SET) {
            const Stockd__V1__SetLine *line = request->set_lines[i];
            sd_digest_item(context, line->item);
            sd_digest_int(context, line->available);
            sd_digest_int(context, line->tracked ? 1 + line->tracked->value : 0);
            sd_digest_int(context, line->floor ? 1 : 0);
            sd_digest_int(context, line->floor ? line->floor->value : 0);
            sd_digest_int(context, line->expected_version ? 1 : 0);
            sd_digest_int(context,
                          line->expected_version ? (int64_t)line->expected_version->value : 0);
        } else {
            const Stockd__V1__Line *line = request->lines[i];
            sd_digest_item(context, line->item);
            sd_digest_int(context, line->quantity);
            sd_digest_int(context, line->subscription_item);
        }
    }
    unsigned int length = 0;
    bool ok = EVP_DigestFinal_ex(context, out, &length) == 1 && length == SD_FINGERPRINT_BYTES;
    EVP_MD_CTX_free(context);
    return ok;
}

static sd_status_t sd_idempotency_decode(const uint8_t *value, size_t length, int64_t now_us,
                                         int64_t ttl_us, sd_idempotency_hit_t *hit)
{
    sd_idempotency_value_t record;
    if (!sd_idempotency_value_decode(value, length, &record)) {
        SD_LOG(LOG_ERROR, "storage_corrupt_idempotency", LF_UINT("value_bytes", length));
        return SD_INTERNAL;
    }
    if (sd_idempotency_expired(record.created_us, now_us, ttl_us)) {
        return SD_OK; /* expired: as if never seen */
    }
    hit->response = sd_malloc(record.response_length + sizeof(sd_replayed_suffix));
    if (hit->response == NULL) {
        return SD_UNAVAILABLE;
    }
    memcpy(hit->fingerprint, record.fingerprint, SD_FINGERPRINT_BYTES);
    memcpy(hit->response, record.response, record.response_length);
    hit->response_length = record.response_length;
    hit->found = true;
    return SD_OK;
}

sd_status_t sd_idempotency_find(const sd_idempotency_records_t *records, sd_storage_t *storage,
                                const uint8_t *key, size_t key_length, int64_t now_us,
                                int64_t ttl_us, sd_idempotency_hit_t *hit)
{
    memset(hit, 0, sizeof(*hit));
    for (size_t i = records->count; i-- > 0;) {
        const sd_idempotency_record_t *record = &records->records[i];
        if (record->key_length == key_length && memcmp(record->key, key, key_length) == 0) {
            hit->response = sd_malloc(record->response_length + sizeof(sd_replayed_suffix));
            if (hit->response == NULL) {
                return SD_UNAVAILABLE;
            }
            memcpy(hit->response, record->response, record->response_length);
            memcpy(hit->fingerprint, record->fingerprint, SD_FINGERPRINT_BYTES);
            hit->response_length = record->response_length;
            hit->found = true;
            return SD_OK;
        }
    }
    char *value = NULL;
    size_t value_length = 0;
    sd_status_t status =
        sd_storage_get(storage, SD_CF_IDEMPOTENCY, key, key_length, &value, &value_length);
    if (status != SD_OK || value == NULL) {
        return status;
    }
    status = sd_idempotency_decode((const uint8_t *)value, value_length, now_us, ttl_us, hit);
    sd_storage_free(value);
    return status;
}

bool sd_idempotency_remember(sd_idempotency_records_t *records, sd_storage_t *storage,
                             sd_write_batch_t *write_batch, const uint8_t *key, size_t key_length,
                             const uint8_t fingerprint[SD_FINGERPRINT_BYTES], int64_t now_us,
                             const uint8_t *response, size_t response_length)
{
    sd_idempotency_record_t *grown = sd_array_grow(records->records, &records->capacity,
                                                   records->count + 1, sizeof(*records->records));
    if (grown == NULL) {
        return false;
    }
    records->records = grown;
    size_t value_length = SD_IDEMPOTENCY_HEADER_BYTES + response_length;
    uint8_t *value = sd_malloc(value_length);
    uint8_t *response_copy = sd_malloc(response_length ? response_length : 1);
    if (value == NULL || response_copy == NULL) {
        free(value);
        free(response_copy);
        return false;
    }
    sd_idempotency_value_encode(now_us, fingerprint, response, response_length, value);
    sd_idempotency_value_t check; /* read back before it is written, as a lookup will */
    SD_ASSERT(sd_idempotency_value_decode(value, value_length, &check) &&
              check.created_us == now_us && check.response_length == response_length);
    sd_write_batch_put(storage, write_batch, SD_CF_IDEMPOTENCY, key, key_length, value,
                       value_length);
    free(value);
    sd_idempotency_record_t *record = &records->records[records->count++];
    memcpy(record->key, key, key_length);
    record->key_length = key_length;
    memcpy(record->fingerprint, fingerprint, SD_FINGERPRINT_BYTES);
    memcpy(response_copy, response, response_length);
    record->response = response_copy;
    record->response_length = response_length;
    return true;
}

void sd_idempotency_records_clear(sd_idempotency_records_t *records)
{
    for (size_t i = 0; i < records->count; i++) {
        free(records->records[i].response);
    }
    records->count = 0;
}

void sd_idempotency_records_free(sd_idempotency_records_t *records)
{
    sd_idempotency_records_clear(records);
    free(records->records);
    records->records = NULL;
    records->capacity = 0;
}
