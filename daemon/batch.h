/* batch.h — the write logic: applies write requests one after another against the state
 * left by the earlier requests of the same batch, collecting every change into one RocksDB
 * WriteBatch that the writer commits with one WAL sync (group commit).
 *
 * Each request is all-or-nothing: all of its checks run before any of its changes are made.
 * Only the writer thread uses a batch. */
#ifndef STOCKD_BATCH_H
#define STOCKD_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rpc_status.h"
#include "stockd/v1/inventory.pb-c.h"
#include "storage.h"

typedef enum { SD_WRITE_DECREMENT, SD_WRITE_INCREMENT, SD_WRITE_SET } sd_write_kind_t;

/* A validated write request, as views into the unpacked protobuf message it came from. */
typedef struct {
    sd_write_kind_t kind;
    const char *tenant_id;
    size_t lines_count;
    Stockd__V1__Line *const *lines;        /* DECREMENT / INCREMENT */
    Stockd__V1__SetLine *const *set_lines; /* SET */
    bool restrict_inventory;
    const char *order_id;
    int reason;
    const char *reason_text;
    const char *request_id;
    const char *actor;        /* the caller's identity ("" without a policy) */
    const char *on_behalf_of; /* what it said it acted for ("" when it did not) */
} sd_write_request_t;

/* The outcome of one request. */
typedef struct {
    sd_error_t error;  /* status SD_OK on success */
    uint8_t *response; /* packed {Decrement,Increment,SetStock}Response; malloc'd */
    size_t response_length;
    bool applied; /* changes are in the batch (false for replays and failures) */
    bool replayed;
} sd_write_result_t;

typedef struct sd_batch sd_batch_t;

/* Committed levels kept in memory by the writer (0 = none). */
#define SD_LEVEL_CACHE_ENTRIES_DEFAULT 262144

/* Creates an empty batch that will assign ledger seqs after last_seq. The storage must
 * outlive the batch. Returns NULL when out of memory. */
sd_batch_t *sd_batch_new(sd_storage_t *storage, uint64_t last_seq, int64_t idempotency_ttl_us);
void sd_batch_free(sd_batch_t *batch);

/* Forgets everything in the batch and starts a new one after last_seq. */
void sd_batch_reset(sd_batch_t *batch, uint64_t last_seq);

/* Evaluates one request at time now_us; on success its changes join the batch. The result
 * must be released with sd_write_result_free. */
void sd_batch_apply(sd_batch_t *batch, const sd_write_request_t *request, int64_t now_us,
                    sd_write_result_t *result);

/* Number of requests whose changes are in the batch. */
size_t sd_batch_applied_count(const sd_batch_t *batch);

/* The last ledger seq assigned in this batch (== last_seq of reset when nothing applied). */
uint64_t sd_batch_last_seq(const sd_batch_t *batch);

/* Writes the batch to RocksDB (one atomic write; fsync of the WAL when sync). On failure
 * nothing of the batch is stored; the caller must fail every applied request and reset. */
sd_status_t sd_batch_commit(sd_batch_t *batch, bool sync);
/* The two halves of sd_batch_commit, for a commit made elsewhere (replication): the batch's
 * complete WriteBatch (levels, index keys, last seq, time index), and, once it is stored,
 * keeping its levels in the cache. */
sd_write_batch_t *sd_batch_seal(sd_batch_t *batch);
void sd_batch_committed(sd_batch_t *batch);

/* Bounds the writer's level cache (0 turns it off); empties it. */
void sd_batch_set_cache_entries(sd_batch_t *batch, size_t entries_max);

void sd_write_result_init(sd_write_result_t *result);
void sd_write_result_free(sd_write_result_t *result);

/* Writes the JSON object naming an item key into out (for PreconditionFailure subjects). */
void sd_item_subject(const Stockd__V1__ItemRef *item, char *out, size_t capacity);

#endif
