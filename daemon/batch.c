/* batch.c — see batch.h. The rules of the write requests, and only the rules: grouping lines
 * by item, the checks (floors of restricted decrements, the ±10^15 range, compare-and-set),
 * applying lines to the overlay and the ledger, and the answers.
 *
 * State kept elsewhere: the levels as the batch left them (overlay.c, loaded from the level
 * cache in level_cache.c or RocksDB on first touch), the request_id records (idempotency.c),
 * and the WriteBatch being built (storage.c). */
#include "batch.h"
#include "alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sd_limits.h"
#include "log.h"
#include "util.h"
#include "hashmap.h"
#include "level_cache.h"
#include "overlay.h"
#include "sorted_puts.h"
#include "idempotency.h"

/* The JSON subject of the largest item key with every id byte escaped (at most 6 bytes). */
#define SD_SUBJECT_BYTES_MAX                                                                       \
    (6 * (SD_LOCATION_BYTES_MAX + SD_APP_BYTES_MAX + SD_CATALOG_ITEM_BYTES_MAX +                   \
          SD_VARIANT_BYTES_MAX) +                                                                  \
     96)
_Static_assert(SD_SUBJECT_BYTES_MAX <= SD_ERROR_TEXT_BYTES_MAX, "a subject is never cut");

/* ---- batch state ---- */

/* One distinct item of the request being evaluated. */
typedef struct {
    uint32_t overlay_index;
    int64_t delta_total;
    size_t first_line;
    sd_overlay_entry_t before; /* undo copy, restored if the request cannot finish */
} sd_unique_t;

struct sd_batch {
    sd_storage_t *storage;
    int64_t idempotency_ttl_us;
    sd_write_batch_t *write_batch;
    uint64_t last_seq;
    size_t applied_count;
    sd_overlay_t overlay; /* the levels as this batch has left them */
    sd_map_t request_map; /* per request: key -> index into uniques */
    sd_unique_t *uniques;
    size_t uniques_capacity;
    uint32_t *line_uniques; /* per line of the current request: index into uniques */
    size_t line_uniques_capacity;
    sd_idempotency_records_t records; /* written by this batch, not yet committed */
    sd_sorted_puts_t index_puts;      /* ledger index keys, written in key order at commit */
    size_t index_puts_mark;           /* at the current request's save point */
    uint8_t *scratch;                 /* packing buffer for ledger entries */
    size_t scratch_capacity;
    sd_level_cache_t cache; /* committed levels, so hot items skip the RocksDB read */
};

sd_batch_t *sd_batch_new(sd_storage_t *storage, uint64_t last_seq, int64_t idempotency_ttl_us)
{
    sd_batch_t *batch = sd_calloc(1, sizeof(*batch));
    if (batch == NULL) {
        return NULL;
    }
    sd_level_cache_init(&batch->cache, SD_LEVEL_CACHE_ENTRIES_DEFAULT);
    batch->storage = storage;
    batch->idempotency_ttl_us = idempotency_ttl_us;
    batch->index_puts.cf = SD_CF_LEDGER_INDEX;
    batch->write_batch = sd_write_batch_new();
    batch->last_seq = last_seq;
    if (batch->write_batch == NULL) {
        free(batch);
        return NULL;
    }
    return batch;
}

void sd_batch_reset(sd_batch_t *batch, uint64_t last_seq)
{
    sd_write_batch_clear(batch->write_batch);
    sd_overlay_clear(&batch->overlay);
    sd_idempotency_records_clear(&batch->records);
    sd_sorted_puts_clear(&batch->index_puts);
    batch->applied_count = 0;
    batch->last_seq = last_seq;
}

void sd_batch_free(sd_batch_t *batch)
{
    if (batch == NULL) {
        return;
    }
    sd_batch_reset(batch, 0);
    sd_write_batch_free(batch->write_batch);
    sd_overlay_free(&batch->overlay);
    sd_map_free(&batch->request_map);
    sd_level_cache_free(&batch->cache);
    free(batch->uniques);
    free(batch->line_uniques);
    sd_idempotency_records_free(&batch->records);
    free(batch->scratch);
    sd_sorted_puts_free(&batch->index_puts);
    free(batch);
}

size_t sd_batch_applied_count(const sd_batch_t *batch)
{
    return batch->applied_count;
}

uint64_t sd_batch_last_seq(const sd_batch_t *batch)
{
    return batch->last_seq;
}

void sd_write_result_init(sd_write_result_t *result)
{
    memset(result, 0, sizeof(*result));
    sd_error_init(&result->error);
}

void sd_write_result_free(sd_write_result_t *result)
{
    sd_error_free(&result->error);
    free(result->response);
    result->response = NULL;
}

/* ---- evaluation ---- */

void sd_item_subject(const Stockd__V1__ItemRef *item, char *out, size_t capacity)
{
    char location[SD_LOCATION_BYTES_MAX * 6 + 1], app[SD_APP_BYTES_MAX * 6 + 1];
    char catalog[SD_CATALOG_ITEM_BYTES_MAX * 6 + 1], variant[SD_VARIANT_BYTES_MAX * 6 + 1];
    util_json_escape(item->location_id, SD_LOCATION_BYTES_MAX, location, sizeof(location));
    util_json_escape(item->app_id, SD_APP_BYTES_MAX, app, sizeof(app));
    util_json_escape(item->catalog_item_id, SD_CATALOG_ITEM_BYTES_MAX, catalog, sizeof(catalog));
    util_json_escape(item->variant, SD_VARIANT_BYTES_MAX, variant, sizeof(variant));
    snprintf(out, capacity,
             "{\"location_id\":\"%s\",\"app_id\":\"%s\",\"catalog_item_id\":\"%s\","
             "\"variant\":\"%s\"}",
             location, app, catalog, variant);
}

static const Stockd__V1__ItemRef *sd_request_item(const sd_write_request_t *request, size_t line)
{
    return request->kind == SD_WRITE_SET ? request->set_lines[line]->item
                                         : request->lines[line]->item;
}

static int64_t sd_request_delta(const sd_write_request_t *request, size_t line)
{
    switch (request->kind) {
    case SD_WRITE_DECREMENT:
        return -request->lines[line]->quantity;
    case SD_WRITE_INCREMENT:
        return request->lines[line]->quantity;
    case SD_WRITE_SET:
        return 0;
    }
    return 0;
}

/* Groups the request's lines by item (summing deltas) and loads each item's current level.
 * Returns the number of distinct items through *count_out. */
static sd_status_t sd_collect_uniques(sd_batch_t *batch, const sd_write_request_t *request,
                                      size_t *count_out, sd_error_t *error)
{
    uint8_t key[SD_ITEM_KEY_BYTES_MAX];
    size_t count = 0;
    sd_map_clear(&batch->request_map);
    sd_unique_t *uniques = sd_array_grow(batch->uniques, &batch->uniques_capacity,
                                         request->lines_count, sizeof(*batch->uniques));
    if (uniques == NULL) {
        return SD_UNAVAILABLE;
    }
    batch->uniques = uniques;
    uint32_t *line_uniques = sd_array_grow(batch->line_uniques, &batch->line_uniques_capacity,
                                           request->lines_count, sizeof(*batch->line_uniques));
    if (line_uniques == NULL) {
        return SD_UNAVAILABLE;
    }
    batch->line_uniques = line_uniques;
    for (size_t line = 0; line < request->lines_count; line++) {
        sd_item_key_t parts = sd_item_key_of(request->tenant_id, sd_request_item(request, line));
        size_t key_length = sd_key_encode_item(&parts, key, sizeof(key));
        bool inserted = false;
        sd_map_slot_t *slot = key_length ? sd_map_upsert(&batch->request_map, key, key_length,
                                                         (uint32_t)count, &inserted)
                                         : NULL;
        if (slot == NULL) {
            return key_length ? SD_UNAVAILABLE : SD_INTERNAL;
        }
        if (inserted) {
            sd_unique_t *unique = &batch->uniques[count++];
            unique->delta_total = 0;
            unique->first_line = line;
            sd_status_t status = sd_overlay_get(&batch->overlay, &batch->cache, batch->storage, key,
                                                key_length, &unique->overlay_index);
            if (status != SD_OK) {
                return status;
            }
        } else if (request->kind == SD_WRITE_SET) {
            char field[64];
            snprintf(field, sizeof(field), "lines[%zu].item", line);
            sd_error_add_field(error, field, "repeats the item of lines[%zu]; set each item once",
                               batch->uniques[slot->index].first_line);
        }
        batch->uniques[slot->index].delta_total += sd_request_delta(request, line);
        batch->line_uniques[line] = slot->index;
    }
    *count_out = count;
    return error->status == SD_OK ? SD_OK : SD_INVALID_ARGUMENT;
}

static bool sd_in_range(int64_t value)
{
    return value >= -SD_LEVEL_ABS_MAX && value <= SD_LEVEL_ABS_MAX;
}

/* Checks a decrement or increment: a restricted decrement may not take a tracked item below
 * its floor (every short item is named in the details), and no level may leave ±10^15. */
static void sd_check_floors_and_range(sd_batch_t *batch, const sd_write_request_t *request,
                                      size_t uniques_count, sd_error_t *error)
{
    size_t short_count = 0;
    char subject[SD_SUBJECT_BYTES_MAX];
    for (size_t u = 0; u < uniques_count; u++) {
        const sd_unique_t *unique = &batch->uniques[u];
        const sd_level_t *level = &batch->overlay.entries[unique->overlay_index].level;
        if (!level->tracked) {
            continue;
        }
        int64_t after = level->available + unique->delta_total;
        const Stockd__V1__ItemRef *item = sd_request_item(request, unique->first_line);
        if (request->kind == SD_WRITE_DECREMENT && request->restrict_inventory &&
            after < level->floor) {
            sd_item_subject(item, subject, sizeof(subject));
            sd_error_add_precondition(error, "INSUFFICIENT_STOCK", subject,
                                      "requested %lld, available %lld, floor %lld",
                                      (long long)-unique->delta_total, (long long)level->available,
                                      (long long)level->floor);
            if (short_count++ == 0) {
                sd_error_set(error, SD_FAILED_PRECONDITION,
                             "insufficient stock for catalog_item_id \"%.64s\" variant "
                             "\"%.64s\": requested %lld, available %lld",
                             item->catalog_item_id, item->variant, (long long)-unique->delta_total,
                             (long long)level->available);
            }
        } else if (!sd_in_range(after) && error->status == SD_OK) {
            sd_error_set(error, SD_OUT_OF_RANGE,
                         "lines[%zu]: level of catalog_item_id \"%.64s\" would be %lld, outside "
                         "+-10^15",
                         unique->first_line, item->catalog_item_id, (long long)after);
        }
    }
    if (short_count > 1) {
        size_t length = strlen(error->message);
        snprintf(error->message + length, sizeof(error->message) - length,
                 " (and %zu more short items)", short_count - 1);
    }
}

static bool sd_expected_version_ok(const Stockd__V1__SetLine *line, const sd_overlay_entry_t *entry)
{
    if (line->expected_version == NULL) {
        return true;
    }
    if (line->expected_version->value == 0) {
        return !entry->exists;
    }
    return entry->exists && entry->level.version == line->expected_version->value;
}

/* Checks a SetStock: compare-and-set versions and the ±10^15 range of the new values. */
static void sd_check_versions_and_range(sd_batch_t *batch, const sd_write_request_t *request,
                                        size_t uniques_count, sd_error_t *error)
{
    for (size_t u = 0; u < uniques_count && error->status == SD_OK; u++) {
        const sd_unique_t *unique = &batch->uniques[u];
        const Stockd__V1__SetLine *line = request->set_lines[unique->first_line];
        const sd_overlay_entry_t *entry = &batch->overlay.entries[unique->overlay_index];
        if (!sd_in_range(line->available) || (line->floor && !sd_in_range(line->floor->value))) {
            sd_error_set(error, SD_OUT_OF_RANGE,
                         "lines[%zu]: available and floor must be within +-10^15",
                         unique->first_line);
        } else if (!sd_expected_version_ok(line, entry)) {
            sd_error_set(error, SD_ABORTED,
                         "lines[%zu]: expected_version %llu but the item is at version %llu%s",
                         unique->first_line, (unsigned long long)line->expected_version->value,
                         (unsigned long long)entry->level.version,
                         entry->exists ? "" : " (never written)");
        }
    }
}

/* ---- applying ---- */

#define SD_LEDGER_VALUE_BYTES_MAX 4096
_Static_assert(SD_LEDGER_VALUE_BYTES_MAX >
                   1 + 16 * 8 + SD_TENANT_BYTES_MAX + SD_ITEM_KEY_BYTES_MAX +
                       SD_ORDER_ID_BYTES_MAX + SD_REASON_TEXT_BYTES_MAX + SD_REQUEST_ID_BYTES_MAX +
                       SD_IDENTITY_NAME_BYTES_MAX + SD_ON_BEHALF_OF_BYTES_MAX,
               "a ledger entry always fits the scratch buffer");

static Stockd__V1__Op sd_op_of(sd_write_kind_t kind)
{
    switch (kind) {
    case SD_WRITE_DECREMENT:
        return STOCKD__V1__OP__OP_DECREMENT;
    case SD_WRITE_INCREMENT:
        return STOCKD__V1__OP__OP_INCREMENT;
    case SD_WRITE_SET:
        return STOCKD__V1__OP__OP_SET;
    }
    return STOCKD__V1__OP__OP_UNSPECIFIED;
}

/* Adds the index keys of the ledger entry `seq` of a request's line (keys.h): one under the
 * line's item, empty-valued; and after the request's last line, when it has an order_id, one
 * under the order covering all of its entries. Every line of a request appends its entry in
 * turn (sd_apply_lines), so a request's seqs are consecutive: seq - lines_count + 1 .. seq. */
static void sd_ledger_index_append(sd_batch_t *batch, const sd_write_request_t *request,
                                   size_t line, uint64_t seq)
{
    const sd_overlay_entry_t *level =
        &batch->overlay.entries[batch->uniques[batch->line_uniques[line]].overlay_index];
    uint8_t key[SD_LEDGER_INDEX_KEY_BYTES_MAX];
    size_t key_length =
        sd_key_encode_item_index(level->key, level->key_length, seq, key, sizeof(key));
    SD_ASSERT(key_length > 0);
    sd_sorted_puts_add(&batch->index_puts, batch->storage, batch->write_batch, key, key_length,
                       (const uint8_t *)"", 0);
    if (line + 1 < request->lines_count || request->order_id[0] == '\0') {
        return;
    }
    uint8_t value[SD_ORDER_INDEX_VALUE_BYTES];
    key_length = sd_key_encode_order_index(sd_bytes_of(request->tenant_id),
                                           sd_bytes_of(request->order_id), seq, key, sizeof(key));
    SD_ASSERT(key_length > 0); /* order_id is validated */
    sd_order_index_value_encode((uint32_t)request->lines_count, value);
    sd_sorted_puts_add(&batch->index_puts, batch->storage, batch->write_batch, key, key_length,
                       value, sizeof(value));
}

/* Appends one ledger entry (seq = ++last_seq) and its index keys to the WriteBatch. Cannot
 * fail: the scratch buffer is allocated before any change is made. */
static void sd_ledger_append(sd_batch_t *batch, const sd_write_request_t *request, size_t line,
                             int64_t delta, int64_t available_after, int64_t now_us)
{
    Stockd__V1__LedgerEntry entry = STOCKD__V1__LEDGER_ENTRY__INIT;
    entry.seq = ++batch->last_seq;
    entry.time_us = now_us;
    entry.tenant_id = (char *)request->tenant_id;
    entry.op = sd_op_of(request->kind);
    entry.item = (Stockd__V1__ItemRef *)sd_request_item(request, line);
    entry.delta = delta;
    entry.available_after = available_after;
    entry.order_id = (char *)request->order_id;
    entry.reason = (Stockd__V1__Reason)request->reason;
    entry.reason_text = (char *)request->reason_text;
    entry.request_id = (char *)request->request_id;
    entry.actor = (char *)(request->actor ? request->actor : "");
    entry.on_behalf_of = (char *)(request->on_behalf_of ? request->on_behalf_of : "");
    uint8_t key[SD_LEDGER_KEY_BYTES_MAX];
    size_t key_length =
        sd_key_encode_ledger(sd_bytes_of(request->tenant_id), entry.seq, key, sizeof(key));
    size_t value_length = sd_ledger_value_encode(&entry, batch->scratch, SD_LEDGER_VALUE_BYTES_MAX);
    SD_ASSERT(key_length > 0 && value_length > 0); /* validated ids always fit (static assert) */
    sd_write_batch_put(batch->storage, batch->write_batch, SD_CF_LEDGER, key, key_length,
                       batch->scratch, value_length);
    sd_ledger_index_append(batch, request, line, entry.seq);
}

static void sd_apply_set_line(sd_batch_t *batch, const sd_write_request_t *request, size_t line,
                              int64_t now_us)
{
    const Stockd__V1__SetLine *set = request->set_lines[line];
    sd_overlay_entry_t *entry =
        &batch->overlay.entries[batch->uniques[batch->line_uniques[line]].overlay_index];
    int64_t delta = set->available - entry->level.available;
    entry->level.available = set->available;
    if (set->tracked != NULL) {
        entry->level.tracked = set->tracked->value;
    }
    if (set->floor != NULL) {
        entry->level.floor = set->floor->value;
    }
    entry->level.version++;
    entry->level.updated_at_us = now_us;
    entry->exists = true;
    entry->dirty = true;
    sd_ledger_append(batch, request, line, delta, entry->level.available, now_us);
}

/* Applies every line to the overlay and the ledger; the checks have all passed. */
static void sd_apply_lines(sd_batch_t *batch, const sd_write_request_t *request,
                           size_t uniques_count, int64_t now_us)
{
    for (size_t u = 0; u < uniques_count; u++) {
        batch->uniques[u].before = batch->overlay.entries[batch->uniques[u].overlay_index];
    }
    for (size_t line = 0; line < request->lines_count; line++) {
        if (request->kind == SD_WRITE_SET) {
            sd_apply_set_line(batch, request, line, now_us);
            continue;
        }
        sd_unique_t *unique = &batch->uniques[batch->line_uniques[line]];
        sd_overlay_entry_t *entry = &batch->overlay.entries[unique->overlay_index];
        int64_t delta = sd_request_delta(request, line);
        if (entry->level.tracked) {
            entry->level.available += delta;
        }
        sd_ledger_append(batch, request, line, delta, entry->level.available, now_us);
    }
    if (request->kind == SD_WRITE_SET) {
        return;
    }
    for (size_t u = 0; u < uniques_count; u++) {
        sd_overlay_entry_t *entry = &batch->overlay.entries[batch->uniques[u].overlay_index];
        if (entry->level.tracked) { /* untracked levels do not change */
            entry->level.version++;
            entry->level.updated_at_us = now_us;
            entry->exists = true;
            entry->dirty = true;
        }
    }
}

/* Builds the packed response: the resulting level of every distinct item. */
static bool sd_pack_response(sd_batch_t *batch, const sd_write_request_t *request,
                             size_t uniques_count, sd_write_result_t *result)
{
    /* The three write responses are wire-identical ({levels, ledger_seq, replayed}). */
    Stockd__V1__DecrementResponse response = STOCKD__V1__DECREMENT_RESPONSE__INIT;
    Stockd__V1__StockLevel *levels = sd_calloc(uniques_count, sizeof(*levels));
    Stockd__V1__StockLevel **pointers = sd_calloc(uniques_count, sizeof(*pointers));
    if (levels == NULL || pointers == NULL) { /* found by the out-of-memory loop test */
        free(levels);
        free(pointers);
        return false;
    }
    for (size_t u = 0; u < uniques_count; u++) {
        const sd_overlay_entry_t *entry = &batch->overlay.entries[batch->uniques[u].overlay_index];
        sd_stock_level_fill(
            &levels[u],
            (Stockd__V1__ItemRef *)sd_request_item(request, batch->uniques[u].first_line),
            &entry->level);
        pointers[u] = &levels[u];
    }
    response.n_levels = uniques_count;
    response.levels = pointers;
    response.ledger_seq = batch->last_seq;
    result->response_length = stockd__v1__decrement_response__get_packed_size(&response);
    result->response = sd_malloc(result->response_length + sizeof(sd_replayed_suffix));
    if (result->response != NULL) {
        stockd__v1__decrement_response__pack(&response, result->response);
    }
    free(levels);
    free(pointers);
    return result->response != NULL;
}

/* Undoes the overlay and WriteBatch changes of a request that could not finish. */
static void sd_rollback_request(sd_batch_t *batch, size_t uniques_count, uint64_t seq_before)
{
    for (size_t u = 0; u < uniques_count; u++) {
        batch->overlay.entries[batch->uniques[u].overlay_index] = batch->uniques[u].before;
    }
    sd_write_batch_rollback_to_save_point(batch->write_batch);
    sd_sorted_puts_rollback(&batch->index_puts, batch->index_puts_mark);
    batch->last_seq = seq_before;
}

/* A request whose answer would not fit a default gRPC client's 4 MiB receive limit is refused
 * before it is applied: a client that cannot read the answer cannot know the outcome. */
static void sd_refuse_oversized_answer(sd_batch_t *batch, size_t uniques_count, uint64_t seq_before,
                                       sd_write_result_t *result)
{
    size_t answer_bytes = result->response_length;
    sd_rollback_request(batch, uniques_count, seq_before);
    free(result->response);
    result->response = NULL;
    result->response_length = 0;
    sd_error_add_field(&result->error, "lines",
                       "the answer would be %zu bytes, more than the %d a gRPC client accepts by "
                       "default; split the request",
                       answer_bytes, SD_RESPONSE_BYTES_MAX);
}

static void sd_replay(const sd_idempotency_hit_t *hit, const uint8_t *fingerprint,
                      const sd_write_request_t *request, sd_write_result_t *result)
{
    if (memcmp(hit->fingerprint, fingerprint, SD_FINGERPRINT_BYTES) != 0) {
        sd_error_set(&result->error, SD_ALREADY_EXISTS,
                     "request_id \"%.128s\" was already used with different content",
                     request->request_id);
        free(hit->response);
        return;
    }
    memcpy(hit->response + hit->response_length, sd_replayed_suffix, sizeof(sd_replayed_suffix));
    result->response = hit->response;
    result->response_length = hit->response_length + sizeof(sd_replayed_suffix);
    result->replayed = true;
}

static bool sd_batch_prepare_scratch(sd_batch_t *batch)
{
    if (batch->scratch == NULL) {
        batch->scratch = sd_malloc(SD_LEDGER_VALUE_BYTES_MAX);
        batch->scratch_capacity = batch->scratch ? SD_LEDGER_VALUE_BYTES_MAX : 0;
    }
    return batch->scratch != NULL;
}

/* Runs the checks and, when they pass, applies the request. */
static void sd_evaluate(sd_batch_t *batch, const sd_write_request_t *request, int64_t now_us,
                        const uint8_t *fingerprint, const uint8_t *idempotency_key,
                        size_t idempotency_key_length, sd_write_result_t *result)
{
    size_t uniques_count = 0;
    sd_status_t status = sd_collect_uniques(batch, request, &uniques_count, &result->error);
    if (status != SD_OK) {
        if (result->error.status == SD_OK) {
            sd_error_set(&result->error, status, "%s; not applied", sd_status_message(status));
        }
        return;
    }
    if (request->kind == SD_WRITE_SET) {
        sd_check_versions_and_range(batch, request, uniques_count, &result->error);
    } else {
        sd_check_floors_and_range(batch, request, uniques_count, &result->error);
    }
    if (result->error.status != SD_OK) {
        return;
    }
    uint64_t seq_before = batch->last_seq;
    sd_write_batch_set_save_point(batch->write_batch);
    batch->index_puts_mark = sd_sorted_puts_mark(&batch->index_puts);
    sd_apply_lines(batch, request, uniques_count, now_us);
    bool ok = sd_pack_response(batch, request, uniques_count, result);
    if (ok && result->response_length > SD_RESPONSE_BYTES_MAX) {
        sd_refuse_oversized_answer(batch, uniques_count, seq_before, result);
        return;
    }
    if (ok && idempotency_key_length > 0) {
        ok = sd_idempotency_remember(&batch->records, batch->storage, batch->write_batch,
                                     idempotency_key, idempotency_key_length, fingerprint, now_us,
                                     result->response, result->response_length);
    }
    if (!ok) {
        sd_rollback_request(batch, uniques_count, seq_before);
        free(result->response);
        result->response = NULL;
        sd_error_set(&result->error, SD_UNAVAILABLE, "out of memory; not applied");
        return;
    }
    sd_write_batch_pop_save_point(batch->write_batch);
    result->applied = true;
    batch->applied_count++;
}

void sd_batch_apply(sd_batch_t *batch, const sd_write_request_t *request, int64_t now_us,
                    sd_write_result_t *result)
{
    uint8_t fingerprint[SD_FINGERPRINT_BYTES] = {0};
    uint8_t key[SD_IDEMPOTENCY_KEY_BYTES_MAX];
    size_t key_length = 0;
    if (!sd_batch_prepare_scratch(batch)) {
        sd_error_set(&result->error, SD_UNAVAILABLE, "out of memory; not applied");
        return;
    }
    if (request->request_id[0] != '\0') {
        key_length = sd_key_encode_idempotency(sd_bytes_of(request->tenant_id),
                                               sd_bytes_of(request->request_id), key, sizeof(key));
        sd_idempotency_hit_t hit;
        sd_status_t status =
            key_length == 0 || !sd_fingerprint(request, fingerprint)
                ? SD_INTERNAL
                : sd_idempotency_find(&batch->records, batch->storage, key, key_length, now_us,
                                      batch->idempotency_ttl_us, &hit);
        if (status != SD_OK) {
            sd_error_set(&result->error, status, "cannot check request_id: %s; not applied",
                         sd_status_message(status));
            return;
        }
        if (hit.found) {
            sd_replay(&hit, fingerprint, request, result);
            return;
        }
    }
    sd_evaluate(batch, request, now_us, fingerprint, key, key_length, result);
}

sd_write_batch_t *sd_batch_seal(sd_batch_t *batch)
{
    sd_overlay_put_changed(&batch->overlay, batch->storage, batch->write_batch);
    sd_sorted_puts_flush(&batch->index_puts, batch->storage, batch->write_batch);
    sd_storage_batch_put_last_seq(batch->storage, batch->write_batch, batch->last_seq);
    sd_storage_batch_put_time_index(batch->storage, batch->write_batch, batch->last_seq,
                                    util_now_us());
    return batch->write_batch;
}

void sd_batch_committed(sd_batch_t *batch)
{
    sd_overlay_remember_committed(&batch->overlay, &batch->cache);
}

sd_status_t sd_batch_commit(sd_batch_t *batch, bool sync)
{
    if (batch->applied_count == 0) {
        return SD_OK;
    }
    sd_status_t status = sd_storage_write(batch->storage, sd_batch_seal(batch), sync);
    if (status == SD_OK) {
        sd_batch_committed(batch);
    }
    return status;
}

void sd_batch_set_cache_entries(sd_batch_t *batch, size_t entries_max)
{
    sd_level_cache_free(&batch->cache);
    sd_level_cache_init(&batch->cache, entries_max);
}
