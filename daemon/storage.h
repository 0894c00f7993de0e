/* storage.h — everything stockd keeps in RocksDB, and nothing else.
 *
 * Column families: "levels" (item key → level), "ledger" (tenant + seq → LedgerEntry),
 * "idempotency" (tenant + request_id → fingerprint + response), "ledger_index" (the ledger by
 * item and by order_id, keys.h; written in the same WriteBatch as the entries), and
 * "default" for metadata (the last ledger seq). Only the writer thread writes; readers use
 * the DB directly. */
#ifndef STOCKD_STORAGE_H
#define STOCKD_STORAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keys.h"
#include "status.h"

typedef enum {
    SD_CF_DEFAULT = 0,
    SD_CF_LEVELS,
    SD_CF_LEDGER,
    SD_CF_IDEMPOTENCY,
    SD_CF_LEDGER_INDEX,
    SD_CF_COUNT
} sd_cf_t;

typedef struct {
    const char *data_dir;
    int64_t block_cache_bytes;
    int64_t write_buffer_bytes;
    int64_t idempotency_ttl_s; /* compaction drops records older than this */
    /* Bound on the write-ahead log: past it RocksDB flushes the memtables that pin the oldest
     * log file, so a restart replays at most this much (0 = RocksDB's default, 4 x the
     * memtables, about 1.5 GiB here). */
    int64_t wal_bytes_max;
    /* RocksDB's own info LOG in the data directory: false (the default) writes only its
     * header; true logs flushes and compactions too, for diagnosis (a full disk then makes
     * Debian's RocksDB, built with assertions, abort on a failed LOG append). */
    bool rocksdb_info_log;
} sd_storage_options_t;

typedef struct sd_storage sd_storage_t;

/* A set of puts applied atomically by sd_storage_write (RocksDB's WriteBatch, kept private
 * to storage.c). */
typedef struct sd_write_batch sd_write_batch_t;

/* Returns an empty batch, or NULL when out of memory. */
sd_write_batch_t *sd_write_batch_new(void);
void sd_write_batch_free(sd_write_batch_t *batch);
void sd_write_batch_clear(sd_write_batch_t *batch);
/* Adds a put of key -> value in column family cf (both copied). */
void sd_write_batch_put(sd_storage_t *storage, sd_write_batch_t *batch, sd_cf_t cf,
                        const uint8_t *key, size_t key_length, const uint8_t *value,
                        size_t value_length);
/* Adds a delete of key in column family cf. */
void sd_write_batch_delete(sd_storage_t *storage, sd_write_batch_t *batch, sd_cf_t cf,
                           const uint8_t *key, size_t key_length);
/* Save points: everything put after the last set can be rolled back (one request of a group
 * commit that cannot finish), or kept (pop). */
void sd_write_batch_set_save_point(sd_write_batch_t *batch);
void sd_write_batch_rollback_to_save_point(sd_write_batch_t *batch);
void sd_write_batch_pop_save_point(sd_write_batch_t *batch);

/* Opens (creating if needed) the database in options->data_dir. On failure writes a reason
 * into error and returns SD_UNAVAILABLE. The caller owns *storage_out (sd_storage_close). */
sd_status_t sd_storage_open(const sd_storage_options_t *options, sd_storage_t **storage_out,
                            char *error, size_t error_capacity);
/* Flushes every memtable (so the next start replays no log) and closes; NULL is allowed.
 * SD_UNAVAILABLE when the storage had failed (then nothing is flushed) or the flush fails: the
 * process must then exit non-zero, and the next start recovers from the WAL. */
sd_status_t sd_storage_close(sd_storage_t *storage);

/* Call once on each thread that writes or reads storage on the hot path (the writer, the
 * RPC polling threads): turns RocksDB's per-thread perf counters off for it. They are on by
 * default, nobody here reads them, and in a shared librocksdb each one is a TLS lookup
 * (__tls_get_addr): ~8% of a durable decrement's instructions (`make profile`). */
void sd_storage_thread_init(void);

/* Reads a level. Not found is not an error: *found_out = false and *level_out = default.
 * Returns SD_INTERNAL for a corrupt record and SD_UNAVAILABLE for an I/O error. */
sd_status_t sd_storage_get_level(sd_storage_t *storage, const uint8_t *key, size_t key_length,
                                 sd_level_t *level_out, bool *found_out);

/* Reads a raw value of any column family. *value_out is NULL when not found; otherwise it is
 * owned by the caller and released with sd_storage_free. */
sd_status_t sd_storage_get(sd_storage_t *storage, sd_cf_t cf, const uint8_t *key, size_t key_length,
                           char **value_out, size_t *value_length_out);
void sd_storage_free(void *value);

/* Applies a batch atomically; with sync the WAL is fsynced before returning. A failure
 * leaves the fate of the batch unknown (the WAL may hold it, and RocksDB's state after a
 * failed write or sync is undefined), so it also marks the storage failed: see below. */
sd_status_t sd_storage_write(sd_storage_t *storage, sd_write_batch_t *batch, bool sync);

/* True once a write has failed. stockd is fail-stop (README "How writes stay correct"): it
 * takes no more writes, reports NOT_SERVING, exits non-zero and recovers from the WAL on the
 * next start, as PostgreSQL does after a failed fsync. */
bool sd_storage_failed(const sd_storage_t *storage);

/* The last ledger seq recorded (0 for a new database). */
uint64_t sd_storage_last_seq(const sd_storage_t *storage);
/* Puts the "last ledger seq" metadata record into batch. */
void sd_storage_batch_put_last_seq(sd_storage_t *storage, sd_write_batch_t *batch, uint64_t seq);

/* A write batch's contents (RocksDB's serialized form; valid until the batch changes). */
const void *sd_write_batch_data(sd_write_batch_t *batch, size_t *length_out);
/* Replication (replication.h): applies the contents of a batch the leader computed, with the
 * Raft index of its entry in the same atomic write (not synced: the Raft log is the durable
 * record, replayed at start past sd_storage_applied_index). */
sd_status_t sd_storage_apply_replicated(sd_storage_t *storage, const void *data, size_t length,
                                        uint64_t raft_index, uint64_t last_seq);
/* The Raft index of the last entry applied (0 for none); SD_UNAVAILABLE/SD_INTERNAL when it
 * cannot be read. */
sd_status_t sd_storage_load_applied_index(sd_storage_t *storage, uint64_t *index_out);
/* The same, 0 when it cannot be read (tests, logs). */
uint64_t sd_storage_applied_index(sd_storage_t *storage);
/* The last ledger seq as stored now (replicas apply entries written by other nodes). */
uint64_t sd_storage_read_last_seq(sd_storage_t *storage);

/* Replication's member directory: the gRPC address of each member that joined the group (so
 * every replica can name the leader to clients), written through the Raft log like any state. */
void sd_storage_batch_put_member(sd_storage_t *storage, sd_write_batch_t *batch, uint64_t node_id,
                                 const char *grpc_address);
/* SD_NOT_FOUND when no address is recorded for node_id. */
sd_status_t sd_storage_get_member(sd_storage_t *storage, uint64_t node_id, char *grpc_address_out,
                                  size_t capacity);

/* Restoring a group (replication.h, --restore-group): a store written outside the group (a
 * one-node data directory, a backup checkpoint of one node or of a replica of another group)
 * becomes the base of a new group. In one synced write its applied Raft index and member
 * directory (the old group's) are dropped and a marker records the ledger seq it holds.
 * SD_FAILED_PRECONDITION for an empty store (nothing to restore). */
sd_status_t sd_storage_adopt_as_group_base(sd_storage_t *storage);
/* *seq_out: the ledger seq of the store adopted as a group base, 0 when it was not. */
sd_status_t sd_storage_load_group_base(sd_storage_t *storage, uint64_t *seq_out);

/* Called for each record of an export; return false to stop. key/value are valid only during
 * the call. */
typedef bool sd_export_fn(void *context, sd_cf_t cf, const uint8_t *key, size_t key_length,
                          const uint8_t *value, size_t value_length);
/* Visits every record of every column family, family by family in key order, as of one point
 * in time (a RocksDB snapshot), while writes go on; *applied_index_out (may be NULL) gets the
 * Raft index applied at that point. SD_CANCELLED when visit stopped it. */
sd_status_t sd_storage_export(sd_storage_t *storage, sd_export_fn *visit, void *context,
                              uint64_t *applied_index_out);
/* A point in time of the whole store (a RocksDB snapshot: O(1) to take; it keeps what it
 * sees from compaction until released). Any thread. */
typedef struct sd_storage_point sd_storage_point_t;
sd_storage_point_t *sd_storage_point_take(sd_storage_t *storage); /* NULL: out of memory */
void sd_storage_point_release(sd_storage_t *storage, sd_storage_point_t *point);
/* sd_storage_export as of `point`, on any thread while writes go on. */
sd_status_t sd_storage_export_at(sd_storage_t *storage, const sd_storage_point_t *point,
                                 sd_export_fn *visit, void *context, uint64_t *applied_index_out);
/* Hands every record of a replacement state to emit (see sd_storage_replace_all). */
typedef void sd_records_fn(void *context, sd_export_fn *emit, void *emit_context);
/* Replaces the whole state (every record of every column family) with the records `source`
 * emits, in one synced write: after a crash the old state or the new, whole. Retention passes
 * wait meanwhile, and what storage keeps in memory of the metadata is reloaded. A failed
 * write is the storage's failure (fail-stop). */
sd_status_t sd_storage_replace_all(sd_storage_t *storage, sd_records_fn *source, void *context);

/* Called for each entry of a scan; return false to stop. key/value are valid only during
 * the call. */
typedef bool sd_scan_fn(void *context, const uint8_t *key, size_t key_length, const uint8_t *value,
                        size_t value_length);

/* Visits, in key order, the entries of `cf` whose key starts with prefix, beginning at start
 * (or at the prefix when start is NULL), skipping start itself when start_exclusive. Visits
 * at most entries_max entries; *more_out tells whether the scan stopped before the end of
 * the prefix. Returns SD_UNAVAILABLE/SD_INTERNAL on I/O errors. */
sd_status_t sd_storage_scan(sd_storage_t *storage, sd_cf_t cf, const uint8_t *prefix,
                            size_t prefix_length, const uint8_t *start, size_t start_length,
                            bool start_exclusive, size_t entries_max, sd_scan_fn *visit,
                            void *context, bool *more_out);

/* ---- ledger retention ----
 * Each commit records (its second → the last seq committed in it) in a small time index,
 * one record per second; pruning finds the highest seq committed before the cutoff second and
 * deletes every tenant's ledger entries up to it, remembering that seq so that History and Watch
 * can say OUT_OF_RANGE for it. */
void sd_storage_batch_put_time_index(sd_storage_t *storage, sd_write_batch_t *batch, uint64_t seq,
                                     int64_t time_us);
/* Deletes ledger entries committed before cutoff_us; call from the writer thread only. */
sd_status_t sd_storage_prune_ledger(sd_storage_t *storage, int64_t cutoff_us);
/* The highest seq deleted by retention (0 = none). */
uint64_t sd_storage_pruned_through(const sd_storage_t *storage);

/* ---- the ledger's index (keys.h) ----
 * Every pruning pass also removes the index keys of pruned entries: it walks the index from
 * where the last pass stopped, deletes keys whose seq is pruned (an item's or an order's
 * pruned keys are the first of its keys, so the rest of it is skipped with one seek) and
 * stops after examining SD_LEDGER_INDEX_PRUNE_KEYS_PER_PASS keys, in synced chunks of
 * SD_LEDGER_INDEX_PRUNE_CHUNK. Queries never read them meanwhile: they start after the
 * pruned seq. */
#define SD_LEDGER_INDEX_PRUNE_CHUNK 8192
#define SD_LEDGER_INDEX_PRUNE_KEYS_PER_PASS (8 * SD_LEDGER_INDEX_PRUNE_CHUNK)
/* True while index keys of pruned entries may remain (a pass has more to do). */
bool sd_storage_ledger_index_prune_pending(const sd_storage_t *storage);

/* A data directory whose ledger was written without the index gets it at open, before
 * anything reads or writes: the ledger is read in chunks of SD_LEDGER_INDEX_BUILD_CHUNK
 * entries, each chunk's index keys written with the position reached in one synced batch (a
 * crash resumes there), and a marker records that it is done, so later opens skip it. */
#define SD_LEDGER_INDEX_BUILD_CHUNK 4096
/* Test hook: called after each chunk of that build is durable (NULL = none). */
void sd_storage_set_index_build_hook(void (*hook)(size_t chunks_written));

/* ---- RocksDB's own figures, for /metrics ---- */

/* A figure RocksDB did not give (an unknown property): left out of /metrics, never shown as 0. */
#define SD_STORAGE_STAT_UNKNOWN UINT64_MAX

typedef struct {
    /* per column family (index sd_cf_t) */
    uint64_t memtable_bytes[SD_CF_COUNT];           /* active + immutable memtables */
    uint64_t pending_compaction_bytes[SD_CF_COUNT]; /* estimated bytes compaction must rewrite */
    uint64_t live_sst_bytes[SD_CF_COUNT];           /* SST files of the current version */
    uint64_t estimated_keys[SD_CF_COUNT];
    /* the whole database (the block cache is shared by every column family) */
    uint64_t block_cache_bytes;
    uint64_t block_cache_pinned_bytes;
    uint64_t block_cache_capacity_bytes;
    uint64_t delayed_write_rate_bytes; /* per second, while writes are slowed down; else 0 */
    uint64_t write_stopped;            /* 1 while RocksDB stops writes (a write stall) */
    uint64_t background_errors;        /* flush or compaction errors since open */
} sd_storage_stats_t;

/* Reads the figures above from RocksDB (rocksdb_property_int_cf and the block cache); cheap
 * enough to call on every scrape, from any thread, while the database is open. */
void sd_storage_stats(sd_storage_t *storage, sd_storage_stats_t *stats_out);
/* The RocksDB name of a column family ("levels", ...), for logs and metrics labels. */
const char *sd_storage_cf_name(sd_cf_t cf);

/* Writes a consistent checkpoint of the database into directory (which must not exist; its
 * parent must). SD_ALREADY_EXISTS when it exists, SD_UNAVAILABLE on I/O errors. */
sd_status_t sd_storage_checkpoint(sd_storage_t *storage, const char *directory, char *error,
                                  size_t error_capacity);

/* Flushes the memtable of cf and compacts its whole key range, so compaction filters run
 * over every record (tests and operators' maintenance). */
sd_status_t sd_storage_flush_and_compact(sd_storage_t *storage, sd_cf_t cf);

/* Test hook: make the Nth next write fail with an I/O error (0 = never). */
void sd_storage_fail_write_after(sd_storage_t *storage, int writes_count);

#endif
