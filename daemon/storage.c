/* storage.c — RocksDB setup and access; see storage.h. All options are set explicitly. */
#include "storage.h"

#include <pthread.h>
#include <rocksdb/c.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

static const char *const sd_cf_names[SD_CF_COUNT] = {"default", "levels", "ledger", "idempotency",
                                                     "ledger_index"};
static const char sd_meta_last_seq_key[] = "meta:last_ledger_seq";
static const char sd_meta_pruned_key[] = "meta:ledger_pruned_through";
static const char sd_meta_raft_applied_key[] = "meta:raft_applied_index";
/* a store adopted as the base of a new Raft group (--restore-group): the ledger seq it held */
static const char sd_meta_group_base_key[] = "meta:raft_group_base";
/* replication's member directory: + node id (big-endian u64) -> the member's gRPC address */
static const char sd_meta_member_prefix[] = "meta:member:";
#define SD_MEMBER_KEY_BYTES (sizeof(sd_meta_member_prefix) - 1 + 8)
/* the index of the ledger (keys.h): built (a version byte), the build's position while it
 * runs, and how far pruning has removed its keys */
static const char sd_meta_index_built_key[] = "meta:ledger_index_built";
static const char sd_meta_index_cursor_key[] = "meta:ledger_index_build_cursor";
static const char sd_meta_index_pruned_key[] = "meta:ledger_index_pruned";
#define SD_LEDGER_INDEX_VERSION 1
static const char sd_time_index_prefix[] = "ledger_time:";
#define SD_TIME_INDEX_KEY_BYTES (sizeof(sd_time_index_prefix) - 1 + 8)

/* Removal of pruned entries' index keys: every key with seq <= cleaned is gone; a cycle in
 * progress (target > cleaned) removes those with seq <= target, and resumes at cursor. */
typedef struct {
    uint64_t cleaned, target;
    uint8_t cursor[SD_LEDGER_INDEX_KEY_BYTES_MAX];
    size_t cursor_length;
} sd_index_prune_t;

struct sd_storage {
    rocksdb_t *db;
    rocksdb_options_t *db_options;
    rocksdb_options_t *cf_options[SD_CF_COUNT];
    rocksdb_column_family_handle_t *cf[SD_CF_COUNT];
    rocksdb_block_based_table_options_t *table_options;
    /* the index is only ever seeked, never read by key: no bloom filter to build */
    rocksdb_block_based_table_options_t *index_table_options;
    rocksdb_cache_t *cache;
    rocksdb_filterpolicy_t *bloom; /* owned by table_options once set */
    rocksdb_compactionfilter_t *idempotency_filter;
    rocksdb_readoptions_t *read_options;
    rocksdb_writeoptions_t *write_sync;
    rocksdb_writeoptions_t *write_nosync;
    uint64_t last_seq;
    _Atomic uint64_t pruned_through;
    int64_t idempotency_ttl_us;
    atomic_int fail_write_countdown;
    atomic_bool failed; /* a write failed: see sd_storage_failed */
    int64_t wal_bytes_max;
    _Atomic int64_t wal_bytes_since_flush; /* the writer, and the Raft thread (replication) */
    sd_index_prune_t index_prune;          /* under maintenance */
    /* held by a retention pass (writer thread) and by a replacement of the whole state (a
     * replication snapshot, Raft thread): neither sees the other half done */
    pthread_mutex_t maintenance;
};

#define SD_ROCKSDB_INFO_LOG_INFO 1        /* InfoLogLevel::INFO_LEVEL */
#define SD_ROCKSDB_INFO_LOG_HEADER_ONLY 5 /* InfoLogLevel::HEADER_LEVEL */

struct sd_write_batch {
    rocksdb_writebatch_t *rocks;
};

static void sd_storage_flush_all(sd_storage_t *storage, bool wait);
/* The longest prefix a scan bounds (longer ones scan without an upper bound): every key prefix
 * stockd builds (tenant, location, app, item, order index) fits. */
#define SD_SCAN_PREFIX_BYTES_MAX 1024
static void sd_storage_bound_wal(sd_storage_t *storage, rocksdb_writebatch_t *batch);
static sd_status_t sd_storage_commit_chunk(sd_storage_t *storage, rocksdb_writebatch_t *batch,
                                           bool write, char *rocks_error,
                                           const char *failure_event);
static bool sd_storage_iter_at(rocksdb_iterator_t *iterator, const uint8_t *key, size_t length);
static sd_status_t sd_storage_load_index_prune(sd_storage_t *storage);

/* Idempotency records expire: compaction drops those older than the retention window, so
 * the column family does not grow without bound. Lookups check the age too, because
 * compaction runs at its own pace. The age is read with the same codec that wrote it
 * (keys.c); a value it does not understand is kept, never dropped on a guess. */
static unsigned char sd_idempotency_filter(void *state, int level, const char *key,
                                           size_t key_length, const char *value,
                                           size_t value_length, char **new_value,
                                           size_t *new_value_length, unsigned char *changed)
{
    (void)level, (void)key, (void)key_length, (void)new_value, (void)new_value_length;
    const sd_storage_t *storage = state;
    *changed = 0;
    sd_idempotency_value_t record;
    if (!sd_idempotency_value_decode((const uint8_t *)value, value_length, &record)) {
        return 0;
    }
    return sd_idempotency_expired(record.created_us, util_now_us(), storage->idempotency_ttl_us)
               ? 1
               : 0;
}

/* The filter's state is the storage itself, which outlives the filter: nothing to free, but
 * RocksDB calls the destructor unconditionally. */
static void sd_idempotency_filter_destroy(void *state)
{
    (void)state;
}

static const char *sd_idempotency_filter_name(void *state)
{
    (void)state;
    return "stockd.idempotency_ttl";
}

static void sd_storage_configure(sd_storage_t *storage, const sd_storage_options_t *options)
{
    storage->db_options = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(storage->db_options, 1);
    rocksdb_options_set_create_missing_column_families(storage->db_options, 1);
    rocksdb_options_set_max_background_jobs(storage->db_options, 2);
    rocksdb_options_set_max_open_files(storage->db_options, 512);
    rocksdb_options_set_keep_log_file_num(storage->db_options, 4);
    /* RocksDB's own info LOG lives in the data directory. Debian builds RocksDB with assertions
     * on, and a failed append to that LOG (a full disk) trips one and aborts the process
     * before stockd can fail-stop cleanly. stockd logs every failure itself, so by default
     * RocksDB writes only the header at open (HEADER_LEVEL) and nothing while running. */
    rocksdb_options_set_info_log_level(storage->db_options, options->rocksdb_info_log
                                                                ? SD_ROCKSDB_INFO_LOG_INFO
                                                                : SD_ROCKSDB_INFO_LOG_HEADER_ONLY);
    storage->wal_bytes_max = options->wal_bytes_max;
    /* Point-in-time recovery: after a crash, replay the WAL up to the first corrupt record. */
    rocksdb_options_set_wal_recovery_mode(storage->db_options, 2);
    storage->cache = rocksdb_cache_create_lru((size_t)options->block_cache_bytes);
    storage->table_options = rocksdb_block_based_options_create();
    rocksdb_block_based_options_set_block_cache(storage->table_options, storage->cache);
    storage->bloom = rocksdb_filterpolicy_create_bloom(10);
    rocksdb_block_based_options_set_filter_policy(storage->table_options, storage->bloom);
    storage->index_table_options = rocksdb_block_based_options_create();
    rocksdb_block_based_options_set_block_cache(storage->index_table_options, storage->cache);
    for (int cf = 0; cf < SD_CF_COUNT; cf++) {
        rocksdb_options_t *cf_options = rocksdb_options_create_copy(storage->db_options);
        rocksdb_options_set_write_buffer_size(cf_options, (size_t)options->write_buffer_bytes);
        rocksdb_options_set_max_write_buffer_number(cf_options, 3);
        rocksdb_options_set_block_based_table_factory(cf_options, cf == SD_CF_LEDGER_INDEX
                                                                      ? storage->index_table_options
                                                                      : storage->table_options);
        rocksdb_options_set_compression(cf_options, rocksdb_lz4_compression);
        storage->cf_options[cf] = cf_options;
    }
    storage->idempotency_ttl_us = options->idempotency_ttl_s * 1000000;
    storage->idempotency_filter = rocksdb_compactionfilter_create(
        storage, sd_idempotency_filter_destroy, sd_idempotency_filter, sd_idempotency_filter_name);
    rocksdb_options_set_compaction_filter(storage->cf_options[SD_CF_IDEMPOTENCY],
                                          storage->idempotency_filter);
    storage->read_options = rocksdb_readoptions_create();
    rocksdb_readoptions_set_verify_checksums(storage->read_options, 1);
    storage->write_sync = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(storage->write_sync, 1);
    storage->write_nosync = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(storage->write_nosync, 0);
}

/* Reads a big-endian u64 metadata record (0 when absent). */
static sd_status_t sd_storage_load_meta(sd_storage_t *storage, const char *key, uint64_t *out)
{
    char *value = NULL;
    size_t value_length = 0;
    sd_status_t status = sd_storage_get(storage, SD_CF_DEFAULT, (const uint8_t *)key, strlen(key),
                                        &value, &value_length);
    *out = 0;
    if (status != SD_OK || value == NULL) {
        return status;
    }
    if (value_length == 8) {
        *out = sd_be64_get((const uint8_t *)value);
    }
    sd_storage_free(value);
    return value_length == 8 ? SD_OK : SD_INTERNAL;
}

/* Puts a big-endian u64 metadata record (what sd_storage_load_meta reads) into `rocks`. */
static void sd_batch_put_meta(sd_storage_t *storage, rocksdb_writebatch_t *rocks, const char *key,
                              uint64_t value)
{
    uint8_t bytes[8];
    sd_be64_put(bytes, value);
    rocksdb_writebatch_put_cf(rocks, storage->cf[SD_CF_DEFAULT], key, strlen(key),
                              (const char *)bytes, sizeof(bytes));
}

static sd_status_t sd_storage_load_last_seq(sd_storage_t *storage)
{
    uint64_t pruned = 0;
    sd_status_t status = sd_storage_load_meta(storage, sd_meta_last_seq_key, &storage->last_seq);
    if (status == SD_OK) {
        status = sd_storage_load_meta(storage, sd_meta_pruned_key, &pruned);
    }
    atomic_store(&storage->pruned_through, pruned);
    return status;
}

/* Rewrites one chunk of v1 item keys found from `seek` on (put v2 + delete v1 in one synced
 * batch, so a crash leaves each level under exactly one key and a restart finishes the rest).
 * *done_out tells whether the scan reached the end. */
#define SD_MIGRATION_CHUNK 4096

static sd_status_t sd_storage_migrate_chunk(sd_storage_t *storage, uint8_t *seek,
                                            size_t *seek_length, size_t *migrated, bool *done_out)
{
    rocksdb_iterator_t *iterator =
        rocksdb_create_iterator_cf(storage->db, storage->read_options, storage->cf[SD_CF_LEVELS]);
    rocksdb_writebatch_t *batch = rocksdb_writebatch_create();
    rocksdb_iter_seek(iterator, (const char *)seek, *seek_length);
    size_t in_batch = 0;
    bool corrupt = false;
    for (; rocksdb_iter_valid(iterator) && in_batch < SD_MIGRATION_CHUNK;
         rocksdb_iter_next(iterator)) {
        size_t key_length = 0, value_length = 0;
        const uint8_t *key = (const uint8_t *)rocksdb_iter_key(iterator, &key_length);
        if (!sd_key_item_is_v1(key, key_length)) {
            continue;
        }
        sd_item_key_t parts;
        uint8_t new_key[SD_ITEM_KEY_BYTES_MAX];
        size_t new_length = sd_key_decode_item_v1(key, key_length, &parts)
                                ? sd_key_encode_item(&parts, new_key, sizeof(new_key))
                                : 0;
        if (new_length == 0) {
            corrupt = true;
            break;
        }
        const char *value = rocksdb_iter_value(iterator, &value_length);
        rocksdb_writebatch_put_cf(batch, storage->cf[SD_CF_LEVELS], (const char *)new_key,
                                  new_length, value, value_length);
        rocksdb_writebatch_delete_cf(batch, storage->cf[SD_CF_LEVELS], (const char *)key,
                                     key_length);
        in_batch++;
        memcpy(seek, key, key_length); /* the next chunk starts after this key */
        *seek_length = key_length;
    }
    *done_out = !rocksdb_iter_valid(iterator) || corrupt;
    char *rocks_error = NULL;
    rocksdb_iter_get_error(iterator, &rocks_error);
    rocksdb_iter_destroy(iterator);
    if (sd_storage_commit_chunk(storage, batch, in_batch > 0, rocks_error,
                                "item_key_migration_failed") != SD_OK) {
        return SD_UNAVAILABLE;
    }
    *migrated += in_batch;
    return corrupt ? SD_INTERNAL : SD_OK;
}

/* Data directories written before item keys sorted in natural order hold v1 keys: rewrite
 * them before anything reads or writes a level. A no-op scan of the levels on later starts. */
static sd_status_t sd_storage_migrate_item_keys(sd_storage_t *storage)
{
    uint8_t seek[SD_ITEM_KEY_BYTES_MAX] = {0};
    size_t seek_length = 0, migrated = 0;
    bool done = false;
    sd_status_t status = SD_OK;
    while (status == SD_OK && !done) {
        status = sd_storage_migrate_chunk(storage, seek, &seek_length, &migrated, &done);
    }
    if (migrated > 0 || status != SD_OK) {
        SD_LOG(status == SD_OK ? LOG_INFO : LOG_ERROR, "item_keys_migrated",
               LF_UINT("levels", migrated), LF_STR("status", sd_status_name(status)));
    }
    return status;
}

/* ---- building the ledger's index for a ledger written without it ---- */

static void (*sd_index_build_hook)(size_t chunks_written);

void sd_storage_set_index_build_hook(void (*hook)(size_t chunks_written))
{
    sd_index_build_hook = hook;
}

/* A run of consecutive seqs of one tenant carrying one order_id, not yet written. */
typedef struct {
    uint8_t key[SD_ORDER_INDEX_KEY_BYTES_MAX]; /* the order's index prefix, then the last seq */
    size_t prefix_length;                      /* 0 = no run */
    uint64_t first_seq, last_seq;
} sd_order_run_t;

static void sd_order_run_flush(sd_storage_t *storage, rocksdb_writebatch_t *batch,
                               sd_order_run_t *run)
{
    if (run->prefix_length == 0) {
        return;
    }
    uint8_t value[SD_ORDER_INDEX_VALUE_BYTES];
    sd_be64_put(run->key + run->prefix_length, run->last_seq);
    sd_order_index_value_encode((uint32_t)(run->last_seq - run->first_seq + 1), value);
    rocksdb_writebatch_put_cf(batch, storage->cf[SD_CF_LEDGER_INDEX], (const char *)run->key,
                              run->prefix_length + 8, (const char *)value, sizeof(value));
    run->prefix_length = 0;
}

/* Adds the index keys of one ledger entry (key: tenant prefix + seq) to batch: its item's,
 * and its order's by extending or starting a run (consecutive entries of one order, such as
 * the lines of one request, share one key). The tenant is the key's, as History reads it. */
static void sd_index_build_entry(sd_storage_t *storage, rocksdb_writebatch_t *batch,
                                 const uint8_t *key, size_t key_length,
                                 const Stockd__V1__LedgerEntry *entry, sd_order_run_t *run)
{
    sd_bytes_t tenant = {(const char *)key + 1, key[0]};
    uint64_t seq = sd_be64_get(key + key_length - 8);
    if (entry->item != NULL) {
        sd_item_key_t parts = sd_item_key_of("", entry->item);
        parts.tenant_id = tenant;
        uint8_t item_key[SD_ITEM_KEY_BYTES_MAX], index_key[SD_ITEM_INDEX_KEY_BYTES_MAX];
        size_t item_length = sd_key_encode_item(&parts, item_key, sizeof(item_key));
        size_t index_length =
            sd_key_encode_item_index(item_key, item_length, seq, index_key, sizeof(index_key));
        if (index_length > 0) {
            rocksdb_writebatch_put_cf(batch, storage->cf[SD_CF_LEDGER_INDEX],
                                      (const char *)index_key, index_length, "", 0);
        }
    }
    uint8_t prefix[SD_ORDER_INDEX_KEY_BYTES_MAX];
    size_t prefix_length = entry->order_id[0] != '\0'
                               ? sd_key_encode_order_index_prefix(
                                     tenant, sd_bytes_of(entry->order_id), prefix, sizeof(prefix))
                               : 0;
    if (prefix_length > 0 && run->prefix_length == prefix_length &&
        memcmp(run->key, prefix, prefix_length) == 0 && seq == run->last_seq + 1) {
        run->last_seq = seq;
        return;
    }
    sd_order_run_flush(storage, batch, run);
    if (prefix_length > 0) {
        memcpy(run->key, prefix, prefix_length);
        run->prefix_length = prefix_length;
        run->first_seq = run->last_seq = seq;
    }
}

/* Where the build stands: the last ledger key indexed (empty: none yet). */
typedef struct {
    uint8_t cursor[SD_LEDGER_KEY_BYTES_MAX];
    size_t cursor_length;
    size_t indexed, skipped, chunks;
} sd_index_build_t;

/* Ends a chunk: records the position reached (or, at the end, that the index is built) in
 * the chunk's batch, and writes it synced. */
static sd_status_t sd_index_build_commit(sd_storage_t *storage, rocksdb_iterator_t *iterator,
                                         rocksdb_writebatch_t *batch, const sd_index_build_t *build,
                                         bool done)
{
    char *rocks_error = NULL;
    rocksdb_iter_get_error(iterator, &rocks_error);
    rocksdb_iter_destroy(iterator);
    rocksdb_column_family_handle_t *meta = storage->cf[SD_CF_DEFAULT];
    if (rocks_error == NULL && done) {
        const char version = SD_LEDGER_INDEX_VERSION;
        rocksdb_writebatch_put_cf(batch, meta, sd_meta_index_built_key,
                                  sizeof(sd_meta_index_built_key) - 1, &version, 1);
        rocksdb_writebatch_delete_cf(batch, meta, sd_meta_index_cursor_key,
                                     sizeof(sd_meta_index_cursor_key) - 1);
    } else if (rocks_error == NULL) {
        rocksdb_writebatch_put_cf(batch, meta, sd_meta_index_cursor_key,
                                  sizeof(sd_meta_index_cursor_key) - 1, (const char *)build->cursor,
                                  build->cursor_length);
    }
    return sd_storage_commit_chunk(storage, batch, true, rocks_error, "ledger_index_build_failed");
}

/* Indexes the entries of one chunk of the ledger; the chunk's index keys and the new
 * position (or, at the end, the built marker) go in one synced batch. */
static sd_status_t sd_index_build_chunk(sd_storage_t *storage, sd_index_build_t *build,
                                        bool *done_out)
{
    rocksdb_iterator_t *iterator =
        rocksdb_create_iterator_cf(storage->db, storage->read_options, storage->cf[SD_CF_LEDGER]);
    rocksdb_writebatch_t *batch = rocksdb_writebatch_create();
    rocksdb_iter_seek(iterator, (const char *)build->cursor, build->cursor_length);
    if (rocksdb_iter_valid(iterator) && build->cursor_length > 0 &&
        sd_storage_iter_at(iterator, build->cursor, build->cursor_length)) {
        rocksdb_iter_next(iterator);
    }
    sd_order_run_t run = {.prefix_length = 0};
    bool corrupt = false;
    for (size_t in_chunk = 0;
         rocksdb_iter_valid(iterator) && in_chunk < SD_LEDGER_INDEX_BUILD_CHUNK;
         rocksdb_iter_next(iterator), in_chunk++) {
        size_t key_length = 0, value_length = 0;
        const uint8_t *key = (const uint8_t *)rocksdb_iter_key(iterator, &key_length);
        const char *value = rocksdb_iter_value(iterator, &value_length);
        if (key_length > sizeof(build->cursor)) { /* no ledger key is that long */
            corrupt = true;
            break;
        }
        Stockd__V1__LedgerEntry *entry =
            key_length > 0 && key_length == (size_t)key[0] + 1 + 8
                ? sd_ledger_value_decode((const uint8_t *)value, value_length)
                : NULL;
        if (entry == NULL) { /* History reports it as corrupt; nothing to index */
            sd_order_run_flush(storage, batch, &run);
            build->skipped++;
        } else {
            sd_index_build_entry(storage, batch, key, key_length, entry, &run);
            stockd__v1__ledger_entry__free_unpacked(entry, NULL);
            build->indexed++;
        }
        memcpy(build->cursor, key, key_length);
        build->cursor_length = key_length;
    }
    *done_out = !rocksdb_iter_valid(iterator);
    sd_order_run_flush(storage, batch, &run);
    sd_status_t status = sd_index_build_commit(storage, iterator, batch, build, *done_out);
    return status == SD_OK && corrupt ? SD_INTERNAL : status;
}

/* Reads where an interrupted build stopped (nothing: from the start). */
static sd_status_t sd_index_build_resume(sd_storage_t *storage, sd_index_build_t *build)
{
    char *value = NULL;
    size_t value_length = 0;
    sd_status_t status =
        sd_storage_get(storage, SD_CF_DEFAULT, (const uint8_t *)sd_meta_index_cursor_key,
                       sizeof(sd_meta_index_cursor_key) - 1, &value, &value_length);
    if (status == SD_OK && value != NULL) {
        status = value_length <= sizeof(build->cursor) ? SD_OK : SD_INTERNAL;
        build->cursor_length = status == SD_OK ? value_length : 0;
        memcpy(build->cursor, value, build->cursor_length);
    }
    sd_storage_free(value);
    return status;
}

/* Indexes a ledger written before the index existed (once per data directory). */
static sd_status_t sd_storage_build_ledger_index(sd_storage_t *storage)
{
    char *value = NULL;
    size_t value_length = 0;
    sd_status_t status =
        sd_storage_get(storage, SD_CF_DEFAULT, (const uint8_t *)sd_meta_index_built_key,
                       sizeof(sd_meta_index_built_key) - 1, &value, &value_length);
    bool built = value != NULL;
    sd_storage_free(value);
    if (status != SD_OK || built) {
        return status;
    }
    sd_index_build_t build = {.cursor_length = 0};
    status = sd_index_build_resume(storage, &build);
    bool resumed = build.cursor_length > 0, done = false;
    double started_ms = util_monotonic_ms();
    while (status == SD_OK && !done) {
        status = sd_index_build_chunk(storage, &build, &done);
        build.chunks++;
        if (status == SD_OK && sd_index_build_hook != NULL) {
            sd_index_build_hook(build.chunks);
        }
    }
    if (build.indexed + build.skipped > 0 || resumed || status != SD_OK) {
        /* unreadable entries are left out of the index: a filtered History will not show
         * them (an unfiltered one answers INTERNAL at them), so this is a warning */
        log_level_t level = status != SD_OK ? LOG_ERROR : build.skipped > 0 ? LOG_WARN : LOG_INFO;
        SD_LOG(level, "ledger_index_built", LF_UINT("entries", build.indexed),
               LF_UINT("unreadable_entries", build.skipped), LF_UINT("chunks", build.chunks),
               LF_BOOL("resumed", resumed),
               LF_DBL("seconds", (util_monotonic_ms() - started_ms) / 1000),
               LF_STR("status", sd_status_name(status)));
    }
    return status;
}

sd_status_t sd_storage_open(const sd_storage_options_t *options, sd_storage_t **storage_out,
                            char *error, size_t error_capacity)
{
    sd_storage_t *storage = calloc(1, sizeof(*storage));
    if (storage == NULL) {
        snprintf(error, error_capacity, "out of memory");
        return SD_UNAVAILABLE;
    }
    sd_storage_configure(storage, options);
    pthread_mutex_init(&storage->maintenance, NULL);
    char *rocks_error = NULL;
    storage->db = rocksdb_open_column_families(
        storage->db_options, options->data_dir, SD_CF_COUNT, (const char *const *)sd_cf_names,
        (const rocksdb_options_t *const *)storage->cf_options, storage->cf, &rocks_error);
    if (rocks_error != NULL) {
        snprintf(error, error_capacity, "cannot open RocksDB in %s: %s", options->data_dir,
                 rocks_error);
        rocksdb_free(rocks_error);
        storage->db = NULL;
        sd_storage_close(storage);
        return SD_UNAVAILABLE;
    }
    if (sd_storage_load_last_seq(storage) != SD_OK) {
        snprintf(error, error_capacity, "cannot read the ledger sequence in %s", options->data_dir);
        sd_storage_close(storage);
        return SD_INTERNAL;
    }
    if (sd_storage_migrate_item_keys(storage) != SD_OK) {
        snprintf(error, error_capacity,
                 "cannot rewrite the item keys in %s in natural order (see the log)",
                 options->data_dir);
        sd_storage_close(storage);
        return SD_INTERNAL;
    }
    if (sd_storage_build_ledger_index(storage) != SD_OK ||
        sd_storage_load_index_prune(storage) != SD_OK) {
        snprintf(error, error_capacity, "cannot index the ledger in %s (see the log)",
                 options->data_dir);
        sd_storage_close(storage);
        return SD_INTERNAL;
    }
    *storage_out = storage;
    return SD_OK;
}

/* Flushes every column family's memtable to an SST file, so the log holds nothing that the
 * next start must replay (restart time after a clean stop does not grow with the data).
 * Without wait the flushes run in the background. */
static void sd_storage_flush_all(sd_storage_t *storage, bool wait)
{
    rocksdb_flushoptions_t *flush = rocksdb_flushoptions_create();
    rocksdb_flushoptions_set_wait(flush, wait ? 1 : 0);
    for (int cf = 0; cf < SD_CF_COUNT; cf++) {
        char *rocks_error = NULL;
        rocksdb_flush_cf(storage->db, flush, storage->cf[cf], &rocks_error);
        if (rocks_error != NULL) {
            SD_LOG(LOG_ERROR, "storage_flush_failed", LF_STR("cf", sd_cf_names[cf]),
                   LF_STR("error", rocks_error));
            rocksdb_free(rocks_error);
            atomic_store(&storage->failed, true); /* the disk failed: fail-stop */
        }
    }
    rocksdb_flushoptions_destroy(flush);
}

void sd_storage_thread_init(void)
{
    rocksdb_set_perf_level(1); /* rocksdb::PerfLevel::kDisable */
}

sd_status_t sd_storage_close(sd_storage_t *storage)
{
    if (storage == NULL) {
        return SD_OK;
    }
    /* After a failed write nothing more is written (the next start recovers from the WAL);
     * a flush that fails now marks the storage failed too. */
    bool failed = atomic_load(&storage->failed);
    if (storage->db != NULL) {
        if (!failed) {
            sd_storage_flush_all(storage, true);
            failed = atomic_load(&storage->failed);
        }
        for (int cf = 0; cf < SD_CF_COUNT; cf++) {
            rocksdb_column_family_handle_destroy(storage->cf[cf]);
        }
        rocksdb_close(storage->db);
    }
    for (int cf = 0; cf < SD_CF_COUNT; cf++) {
        if (storage->cf_options[cf] != NULL) {
            rocksdb_options_destroy(storage->cf_options[cf]);
        }
    }
    if (storage->idempotency_filter != NULL) {
        rocksdb_compactionfilter_destroy(storage->idempotency_filter);
    }
    rocksdb_options_destroy(storage->db_options);
    rocksdb_block_based_options_destroy(storage->table_options); /* frees the bloom policy */
    rocksdb_block_based_options_destroy(storage->index_table_options);
    rocksdb_cache_destroy(storage->cache);
    rocksdb_readoptions_destroy(storage->read_options);
    rocksdb_writeoptions_destroy(storage->write_sync);
    rocksdb_writeoptions_destroy(storage->write_nosync);

    pthread_mutex_destroy(&storage->maintenance);
    free(storage);
    return failed ? SD_UNAVAILABLE : SD_OK;
}

sd_status_t sd_storage_get(sd_storage_t *storage, sd_cf_t cf, const uint8_t *key, size_t key_length,
                           char **value_out, size_t *value_length_out)
{
    char *rocks_error = NULL;
    *value_out = rocksdb_get_cf(storage->db, storage->read_options, storage->cf[cf],
                                (const char *)key, key_length, value_length_out, &rocks_error);
    if (rocks_error != NULL) {
        SD_LOG(LOG_ERROR, "storage_read_failed", LF_STR("cf", sd_cf_names[cf]),
               LF_STR("error", rocks_error));
        bool corrupt = strstr(rocks_error, "Corruption") != NULL;
        rocksdb_free(rocks_error);
        return corrupt ? SD_INTERNAL : SD_UNAVAILABLE;
    }
    return SD_OK;
}

void sd_storage_free(void *value)
{
    rocksdb_free(value);
}

sd_status_t sd_storage_get_level(sd_storage_t *storage, const uint8_t *key, size_t key_length,
                                 sd_level_t *level_out, bool *found_out)
{
    char *value = NULL;
    size_t value_length = 0;
    *level_out = sd_level_default();
    *found_out = false;
    sd_status_t status =
        sd_storage_get(storage, SD_CF_LEVELS, key, key_length, &value, &value_length);
    if (status != SD_OK || value == NULL) {
        return status;
    }
    bool valid = sd_level_decode((const uint8_t *)value, value_length, level_out);
    sd_storage_free(value);
    if (!valid) {
        SD_LOG(LOG_ERROR, "storage_corrupt_level", LF_UINT("value_bytes", value_length));
        *level_out = sd_level_default();
        return SD_INTERNAL;
    }
    *found_out = true;
    return SD_OK;
}

/* Bounds the write-ahead log. The "default" family takes a tiny write on every commit and
 * never fills its memtable, so RocksDB would keep every log file since the last flush (its own
 * max_total_wal_size did not release them in 7.8 while the log kept growing). Instead, once
 * half the bound has been written since the last flush, every family is flushed (in the
 * background; the commit does not wait), after which RocksDB deletes the old log files. */
static void sd_storage_bound_wal(sd_storage_t *storage, rocksdb_writebatch_t *batch)
{
    size_t batch_bytes = 0;
    rocksdb_writebatch_data(batch, &batch_bytes);
    /* atomic: with replication, entries are applied on the Raft thread while retention
     * runs on the writer */
    int64_t since = atomic_fetch_add(&storage->wal_bytes_since_flush, (int64_t)batch_bytes) +
                    (int64_t)batch_bytes;
    if (storage->wal_bytes_max <= 0 || since < storage->wal_bytes_max / 2) {
        return;
    }
    atomic_store(&storage->wal_bytes_since_flush, 0);
    sd_storage_flush_all(storage, false);
}

/* Commits one chunk of a start-up migration (batch is consumed): written synced when `write`
 * and no earlier error (rocks_error, taken over) came, within the WAL bound like any commit;
 * a failure is logged as failure_event. */
static sd_status_t sd_storage_commit_chunk(sd_storage_t *storage, rocksdb_writebatch_t *batch,
                                           bool write, char *rocks_error, const char *failure_event)
{
    if (rocks_error == NULL && write) {
        rocksdb_write(storage->db, storage->write_sync, batch, &rocks_error);
        if (rocks_error == NULL) {
            sd_storage_bound_wal(storage, batch);
        }
    }
    rocksdb_writebatch_destroy(batch);
    if (rocks_error != NULL) {
        SD_LOG(LOG_ERROR, failure_event, LF_STR("error", rocks_error));
        rocksdb_free(rocks_error);
        return SD_UNAVAILABLE;
    }
    return SD_OK;
}

sd_write_batch_t *sd_write_batch_new(void)
{
    sd_write_batch_t *batch = malloc(sizeof(*batch));
    if (batch != NULL) {
        batch->rocks = rocksdb_writebatch_create();
    }
    return batch;
}

void sd_write_batch_free(sd_write_batch_t *batch)
{
    if (batch != NULL) {
        rocksdb_writebatch_destroy(batch->rocks);
        free(batch);
    }
}

void sd_write_batch_clear(sd_write_batch_t *batch)
{
    rocksdb_writebatch_clear(batch->rocks);
}

void sd_write_batch_put(sd_storage_t *storage, sd_write_batch_t *batch, sd_cf_t cf,
                        const uint8_t *key, size_t key_length, const uint8_t *value,
                        size_t value_length)
{
    rocksdb_writebatch_put_cf(batch->rocks, storage->cf[cf], (const char *)key, key_length,
                              (const char *)value, value_length);
}

void sd_write_batch_delete(sd_storage_t *storage, sd_write_batch_t *batch, sd_cf_t cf,
                           const uint8_t *key, size_t key_length)
{
    rocksdb_writebatch_delete_cf(batch->rocks, storage->cf[cf], (const char *)key, key_length);
}

void sd_write_batch_set_save_point(sd_write_batch_t *batch)
{
    rocksdb_writebatch_set_save_point(batch->rocks);
}

/* Both only fail when no save point is set, which the callers never do: an error is a bug. */
void sd_write_batch_rollback_to_save_point(sd_write_batch_t *batch)
{
    char *rocks_error = NULL;
    rocksdb_writebatch_rollback_to_save_point(batch->rocks, &rocks_error);
    if (rocks_error != NULL) {
        SD_LOG(LOG_ERROR, "invariant_violated", LF_STR("what", "rollback without save point"));
        rocksdb_free(rocks_error);
    }
}

void sd_write_batch_pop_save_point(sd_write_batch_t *batch)
{
    char *rocks_error = NULL;
    rocksdb_writebatch_pop_save_point(batch->rocks, &rocks_error);
    if (rocks_error != NULL) {
        SD_LOG(LOG_ERROR, "invariant_violated", LF_STR("what", "pop without save point"));
        rocksdb_free(rocks_error);
    }
}

sd_status_t sd_storage_write(sd_storage_t *storage, sd_write_batch_t *batch, bool sync)
{
    int countdown = atomic_load(&storage->fail_write_countdown);
    if (countdown > 0 && atomic_fetch_sub(&storage->fail_write_countdown, 1) == 1) {
        SD_LOG(LOG_ERROR, "storage_write_failed", LF_STR("error", "injected failure"));
        atomic_store(&storage->failed, true);
        return SD_UNAVAILABLE;
    }
    char *rocks_error = NULL;
    rocksdb_write(storage->db, sync ? storage->write_sync : storage->write_nosync, batch->rocks,
                  &rocks_error);
    if (rocks_error != NULL) {
        SD_LOG(LOG_ERROR, "storage_write_failed", LF_STR("error", rocks_error));
        rocksdb_free(rocks_error);
        atomic_store(&storage->failed, true);
        return SD_UNAVAILABLE;
    }
    sd_storage_bound_wal(storage, batch->rocks);
    return SD_OK;
}

bool sd_storage_failed(const sd_storage_t *storage)
{
    return atomic_load(&storage->failed);
}

uint64_t sd_storage_last_seq(const sd_storage_t *storage)
{
    return storage->last_seq;
}

void sd_storage_batch_put_last_seq(sd_storage_t *storage, sd_write_batch_t *batch, uint64_t seq)
{
    sd_batch_put_meta(storage, batch->rocks, sd_meta_last_seq_key, seq);
}

const void *sd_write_batch_data(sd_write_batch_t *batch, size_t *length_out)
{
    return rocksdb_writebatch_data(batch->rocks, length_out);
}

sd_status_t sd_storage_apply_replicated(sd_storage_t *storage, const void *data, size_t length,
                                        uint64_t raft_index, uint64_t last_seq)
{
    sd_write_batch_t batch = {rocksdb_writebatch_create_from(data, length)};
    if (batch.rocks == NULL) {
        return SD_INTERNAL;
    }
    sd_batch_put_meta(storage, batch.rocks, sd_meta_raft_applied_key, raft_index);
    /* RocksDB's WAL on, not synced: the Raft log is the durable copy (a lost tail is applied
     * again from it, past the stored index). The WAL is still needed: column families flush
     * at different times, and only the WAL brings them back to one consistent point after a
     * crash — without it the index could be on disk while the levels it covers were not
     * (review finding: writes without the WAL lost applied entries for good). */
    sd_status_t status = sd_storage_write(storage, &batch, false);
    rocksdb_writebatch_destroy(batch.rocks);
    (void)last_seq; /* stored by the batch itself (its last-seq record) */
    return status;
}

sd_status_t sd_storage_load_applied_index(sd_storage_t *storage, uint64_t *index_out)
{
    return sd_storage_load_meta(storage, sd_meta_raft_applied_key, index_out);
}

uint64_t sd_storage_applied_index(sd_storage_t *storage)
{
    uint64_t index = 0;
    return sd_storage_load_applied_index(storage, &index) == SD_OK ? index : 0;
}

uint64_t sd_storage_read_last_seq(sd_storage_t *storage)
{
    uint64_t seq = 0;
    sd_storage_load_meta(storage, sd_meta_last_seq_key, &seq);
    return seq;
}

sd_status_t sd_storage_adopt_as_group_base(sd_storage_t *storage)
{
    uint64_t seq = sd_storage_read_last_seq(storage);
    if (seq == 0) {
        return SD_FAILED_PRECONDITION;
    }
    sd_write_batch_t batch = {rocksdb_writebatch_create()};
    rocksdb_column_family_handle_t *meta = storage->cf[SD_CF_DEFAULT];
    rocksdb_writebatch_delete_cf(batch.rocks, meta, sd_meta_raft_applied_key,
                                 sizeof(sd_meta_raft_applied_key) - 1);
    /* every member record: "meta:member:" up to the next prefix (':' + 1 = ';') */
    char members_end[sizeof(sd_meta_member_prefix)];
    memcpy(members_end, sd_meta_member_prefix, sizeof(members_end));
    members_end[sizeof(members_end) - 2] = ';';
    rocksdb_writebatch_delete_range_cf(batch.rocks, meta, sd_meta_member_prefix,
                                       sizeof(sd_meta_member_prefix) - 1, members_end,
                                       sizeof(members_end) - 1);
    sd_batch_put_meta(storage, batch.rocks, sd_meta_group_base_key, seq);
    sd_status_t status = sd_storage_write(storage, &batch, true);
    rocksdb_writebatch_destroy(batch.rocks);
    return status;
}

sd_status_t sd_storage_load_group_base(sd_storage_t *storage, uint64_t *seq_out)
{
    return sd_storage_load_meta(storage, sd_meta_group_base_key, seq_out);
}

static void sd_member_key(uint64_t node_id, uint8_t key[SD_MEMBER_KEY_BYTES])
{
    memcpy(key, sd_meta_member_prefix, sizeof(sd_meta_member_prefix) - 1);
    sd_be64_put(key + sizeof(sd_meta_member_prefix) - 1, node_id);
}

void sd_storage_batch_put_member(sd_storage_t *storage, sd_write_batch_t *batch, uint64_t node_id,
                                 const char *grpc_address)
{
    uint8_t key[SD_MEMBER_KEY_BYTES];
    sd_member_key(node_id, key);
    sd_write_batch_put(storage, batch, SD_CF_DEFAULT, key, sizeof(key),
                       (const uint8_t *)grpc_address, strlen(grpc_address));
}

sd_status_t sd_storage_get_member(sd_storage_t *storage, uint64_t node_id, char *grpc_address_out,
                                  size_t capacity)
{
    uint8_t key[SD_MEMBER_KEY_BYTES];
    sd_member_key(node_id, key);
    char *value = NULL;
    size_t length = 0;
    sd_status_t status = sd_storage_get(storage, SD_CF_DEFAULT, key, sizeof(key), &value, &length);
    grpc_address_out[0] = '\0';
    if (status == SD_OK && value == NULL) {
        status = SD_NOT_FOUND;
    } else if (status == SD_OK && length >= capacity) {
        status = SD_INTERNAL;
    } else if (status == SD_OK) {
        memcpy(grpc_address_out, value, length);
        grpc_address_out[length] = '\0';
    }
    sd_storage_free(value);
    return status;
}

/* ---- whole-state copies (replication snapshots) ---- */

/* Visits every record of one column family through `options` (which may pin a snapshot). */
static sd_status_t sd_storage_visit_cf(sd_storage_t *storage, rocksdb_readoptions_t *options,
                                       sd_cf_t cf, sd_export_fn *visit, void *context,
                                       bool *stopped_out)
{
    rocksdb_iterator_t *iterator =
        rocksdb_create_iterator_cf(storage->db, options, storage->cf[cf]);
    for (rocksdb_iter_seek_to_first(iterator); rocksdb_iter_valid(iterator);
         rocksdb_iter_next(iterator)) {
        size_t key_length = 0, value_length = 0;
        const char *key = rocksdb_iter_key(iterator, &key_length);
        const char *value = rocksdb_iter_value(iterator, &value_length);
        if (!visit(context, cf, (const uint8_t *)key, key_length, (const uint8_t *)value,
                   value_length)) {
            *stopped_out = true;
            break;
        }
    }
    char *rocks_error = NULL;
    rocksdb_iter_get_error(iterator, &rocks_error);
    rocksdb_iter_destroy(iterator);
    if (rocks_error != NULL) {
        SD_LOG(LOG_ERROR, "storage_export_failed", LF_STR("cf", sd_cf_names[cf]),
               LF_STR("error", rocks_error));
        rocksdb_free(rocks_error);
        return SD_UNAVAILABLE;
    }
    return SD_OK;
}

/* The applied Raft index as of `options` (0 when absent). */
static sd_status_t sd_storage_read_applied(sd_storage_t *storage, rocksdb_readoptions_t *options,
                                           uint64_t *index_out)
{
    char *rocks_error = NULL;
    size_t length = 0;
    char *value =
        rocksdb_get_cf(storage->db, options, storage->cf[SD_CF_DEFAULT], sd_meta_raft_applied_key,
                       sizeof(sd_meta_raft_applied_key) - 1, &length, &rocks_error);
    *index_out = value != NULL && length == 8 ? sd_be64_get((const uint8_t *)value) : 0;
    sd_status_t status = rocks_error != NULL            ? SD_UNAVAILABLE
                         : value != NULL && length != 8 ? SD_INTERNAL
                                                        : SD_OK;
    rocksdb_free(rocks_error);
    rocksdb_free(value);
    return status;
}

struct sd_storage_point {
    const rocksdb_snapshot_t *snapshot;
};

sd_storage_point_t *sd_storage_point_take(sd_storage_t *storage)
{
    sd_storage_point_t *point = malloc(sizeof(*point));
    if (point != NULL) {
        point->snapshot = rocksdb_create_snapshot(storage->db);
    }
    return point;
}

void sd_storage_point_release(sd_storage_t *storage, sd_storage_point_t *point)
{
    if (point != NULL) {
        rocksdb_release_snapshot(storage->db, point->snapshot);
        free(point);
    }
}

sd_status_t sd_storage_export(sd_storage_t *storage, sd_export_fn *visit, void *context,
                              uint64_t *applied_index_out)
{
    /* one RocksDB snapshot for every family: the copy is of a single point in time even while
     * entries are applied and retention prunes */
    sd_storage_point_t *point = sd_storage_point_take(storage);
    if (point == NULL) {
        return SD_RESOURCE_EXHAUSTED;
    }
    sd_status_t status = sd_storage_export_at(storage, point, visit, context, applied_index_out);
    sd_storage_point_release(storage, point);
    return status;
}

sd_status_t sd_storage_export_at(sd_storage_t *storage, const sd_storage_point_t *point,
                                 sd_export_fn *visit, void *context, uint64_t *applied_index_out)
{
    rocksdb_readoptions_t *options = rocksdb_readoptions_create();
    rocksdb_readoptions_set_snapshot(options, point->snapshot);
    rocksdb_readoptions_set_fill_cache(options, 0); /* a one-off pass: keep the hot blocks */
    uint64_t applied = 0;
    sd_status_t status = sd_storage_read_applied(storage, options, &applied);
    if (applied_index_out != NULL) {
        *applied_index_out = applied;
    }
    bool stopped = false;
    for (int cf = 0; cf < SD_CF_COUNT && status == SD_OK && !stopped; cf++) {
        status = sd_storage_visit_cf(storage, options, (sd_cf_t)cf, visit, context, &stopped);
    }
    rocksdb_readoptions_destroy(options);
    return status == SD_OK && stopped ? SD_CANCELLED : status;
}

typedef struct {
    sd_storage_t *storage;
    sd_write_batch_t *batch;
    uint64_t pruned_through; /* the replacement's, when it has the record */
} sd_replace_t;

static bool sd_storage_clear_visit(void *context, sd_cf_t cf, const uint8_t *key, size_t key_length,
                                   const uint8_t *value, size_t value_length)
{
    sd_replace_t *replace = context;
    (void)value, (void)value_length;
    sd_write_batch_delete(replace->storage, replace->batch, cf, key, key_length);
    return true;
}

static bool sd_storage_replace_visit(void *context, sd_cf_t cf, const uint8_t *key,
                                     size_t key_length, const uint8_t *value, size_t value_length)
{
    sd_replace_t *replace = context;
    sd_write_batch_put(replace->storage, replace->batch, cf, key, key_length, value, value_length);
    if (cf == SD_CF_DEFAULT && key_length == sizeof(sd_meta_pruned_key) - 1 &&
        memcmp(key, sd_meta_pruned_key, key_length) == 0 && value_length == 8) {
        replace->pruned_through = sd_be64_get(value);
    }
    return true;
}

sd_status_t sd_storage_replace_all(sd_storage_t *storage, sd_records_fn *source, void *context)
{
    sd_replace_t replace = {storage, sd_write_batch_new(), 0};
    if (replace.batch == NULL) {
        return SD_RESOURCE_EXHAUSTED;
    }
    pthread_mutex_lock(&storage->maintenance);
    /* deletes first, then puts: a key in both ends up put (a WriteBatch applies in order) */
    sd_status_t status = sd_storage_export(storage, sd_storage_clear_visit, &replace, NULL);
    if (status == SD_OK) {
        source(context, sd_storage_replace_visit, &replace);
        /* History and Watch answer OUT_OF_RANGE below pruned_through: raised before the new
         * state is visible, so no reader takes entries the replacement lacks for a gap */
        uint64_t before = atomic_load(&storage->pruned_through);
        atomic_store(&storage->pruned_through,
                     replace.pruned_through > before ? replace.pruned_through : before);
        status = sd_storage_write(storage, replace.batch, true);
        atomic_store(&storage->pruned_through, status == SD_OK ? replace.pruned_through : before);
    }
    if (status == SD_OK) {
        storage->index_prune = (sd_index_prune_t){0};
        status = sd_storage_load_index_prune(storage);
    }
    pthread_mutex_unlock(&storage->maintenance);
    sd_write_batch_free(replace.batch);
    return status;
}

sd_status_t sd_storage_flush_and_compact(sd_storage_t *storage, sd_cf_t cf)
{
    char *rocks_error = NULL;
    rocksdb_flushoptions_t *flush = rocksdb_flushoptions_create();
    rocksdb_flushoptions_set_wait(flush, 1);
    rocksdb_flush_cf(storage->db, flush, storage->cf[cf], &rocks_error);
    rocksdb_flushoptions_destroy(flush);
    if (rocks_error != NULL) {
        SD_LOG(LOG_ERROR, "storage_flush_failed", LF_STR("cf", sd_cf_names[cf]),
               LF_STR("error", rocks_error));
        rocksdb_free(rocks_error);
        return SD_UNAVAILABLE;
    }
    rocksdb_compact_range_cf(storage->db, storage->cf[cf], NULL, 0, NULL, 0);
    return SD_OK;
}

void sd_storage_fail_write_after(sd_storage_t *storage, int writes_count)
{
    atomic_store(&storage->fail_write_countdown, writes_count);
}

/* The smallest key after every key that starts with prefix: the prefix cut after its last
 * byte that is not 0xFF, that byte incremented. Returns its length; 0 when there is none (an
 * empty or all-0xFF prefix) or it does not fit. */
static size_t sd_prefix_successor(const uint8_t *prefix, size_t prefix_length, uint8_t *out,
                                  size_t capacity)
{
    size_t length = prefix_length;
    while (length > 0 && prefix[length - 1] == 0xFF) {
        length--;
    }
    if (length == 0 || length > capacity) {
        return 0;
    }
    memcpy(out, prefix, length);
    out[length - 1]++;
    return length;
}

sd_status_t sd_storage_scan(sd_storage_t *storage, sd_cf_t cf, const uint8_t *prefix,
                            size_t prefix_length, const uint8_t *start, size_t start_length,
                            bool start_exclusive, size_t entries_max, sd_scan_fn *visit,
                            void *context, bool *more_out)
{
    /* The iterator stops at the first key after the prefix (iterate_upper_bound): without it,
     * finding the end of the prefix steps over every deletion tombstone that follows it —
     * another item's or tenant's pruned ledger — which made a one-entry History take 50 ms. */
    uint8_t bound[SD_SCAN_PREFIX_BYTES_MAX];
    size_t bound_length = sd_prefix_successor(prefix, prefix_length, bound, sizeof(bound));
    rocksdb_readoptions_t *options = rocksdb_readoptions_create();
    rocksdb_readoptions_set_verify_checksums(options, 1);
    if (bound_length > 0) {
        rocksdb_readoptions_set_iterate_upper_bound(options, (const char *)bound, bound_length);
    }
    rocksdb_iterator_t *iterator =
        rocksdb_create_iterator_cf(storage->db, options, storage->cf[cf]);
    const uint8_t *seek = start ? start : prefix;
    size_t seek_length = start ? start_length : prefix_length;
    rocksdb_iter_seek(iterator, (const char *)seek, seek_length);
    size_t visited = 0;
    *more_out = false;
    for (; rocksdb_iter_valid(iterator); rocksdb_iter_next(iterator)) {
        size_t key_length = 0, value_length = 0;
        const char *key = rocksdb_iter_key(iterator, &key_length);
        if (key_length < prefix_length || memcmp(key, prefix, prefix_length) != 0) {
            break;
        }
        if (start_exclusive && start && key_length == start_length &&
            memcmp(key, start, start_length) == 0) {
            continue;
        }
        if (visited == entries_max) {
            *more_out = true;
            break;
        }
        visited++;
        const char *value = rocksdb_iter_value(iterator, &value_length);
        if (!visit(context, (const uint8_t *)key, key_length, (const uint8_t *)value,
                   value_length)) {
            *more_out = true;
            break;
        }
    }
    char *rocks_error = NULL;
    rocksdb_iter_get_error(iterator, &rocks_error);
    rocksdb_iter_destroy(iterator);
    rocksdb_readoptions_destroy(options); /* after the iterator: it reads the bound */
    if (rocks_error != NULL) {
        SD_LOG(LOG_ERROR, "storage_scan_failed", LF_STR("cf", sd_cf_names[cf]),
               LF_STR("error", rocks_error));
        rocksdb_free(rocks_error);
        return SD_UNAVAILABLE;
    }
    return SD_OK;
}

void sd_storage_batch_put_time_index(sd_storage_t *storage, sd_write_batch_t *batch, uint64_t seq,
                                     int64_t time_us)
{
    /* keyed by the second, holding the last seq committed in it: every commit of a second
     * overwrites the same key, so the index keeps one record per second once flushed */
    uint8_t key[SD_TIME_INDEX_KEY_BYTES], value[8];
    memcpy(key, sd_time_index_prefix, sizeof(sd_time_index_prefix) - 1);
    sd_be64_put(key + sizeof(sd_time_index_prefix) - 1, (uint64_t)(time_us / 1000000));
    sd_be64_put(value, seq);
    rocksdb_writebatch_put_cf(batch->rocks, storage->cf[SD_CF_DEFAULT], (const char *)key,
                              sizeof(key), (const char *)value, sizeof(value));
}

uint64_t sd_storage_pruned_through(const sd_storage_t *storage)
{
    return atomic_load(&storage->pruned_through);
}

typedef struct {
    int64_t cutoff_s;    /* seconds strictly before this one are past retention */
    uint64_t cutoff_seq; /* the last seq committed in them */
} sd_cutoff_scan_t;

static bool sd_cutoff_visit(void *context, const uint8_t *key, size_t key_length,
                            const uint8_t *value, size_t value_length)
{
    sd_cutoff_scan_t *scan = context;
    if (key_length != SD_TIME_INDEX_KEY_BYTES || value_length != 8 ||
        (int64_t)sd_be64_get(key + key_length - 8) >= scan->cutoff_s) {
        return false;
    }
    uint64_t seq = sd_be64_get(value);
    scan->cutoff_seq = seq > scan->cutoff_seq ? seq : scan->cutoff_seq;
    return true;
}

/* True when the iterator stands exactly at key. */
static bool sd_storage_iter_at(rocksdb_iterator_t *iterator, const uint8_t *key, size_t length)
{
    size_t key_length = 0;
    const char *at = rocksdb_iter_key(iterator, &key_length);
    return key_length == length && memcmp(at, key, length) == 0;
}

/* Adds deletes of every tenant's ledger entries with seq <= cutoff_seq to batch. An I/O error
 * of the scan is returned: a partial list of tenants must not be pruned as if complete. */
static sd_status_t sd_storage_delete_ledger_through(sd_storage_t *storage,
                                                    rocksdb_writebatch_t *batch,
                                                    uint64_t cutoff_seq)
{
    rocksdb_iterator_t *iterator =
        rocksdb_create_iterator_cf(storage->db, storage->read_options, storage->cf[SD_CF_LEDGER]);
    uint8_t begin[SD_LEDGER_KEY_BYTES_MAX], end[SD_LEDGER_KEY_BYTES_MAX];
    for (rocksdb_iter_seek_to_first(iterator); rocksdb_iter_valid(iterator);) {
        size_t key_length = 0;
        const uint8_t *key = (const uint8_t *)rocksdb_iter_key(iterator, &key_length);
        size_t tenant_length = key_length > 0 ? (size_t)key[0] + 1 : 0;
        if (tenant_length == 0 || tenant_length + 8 != key_length) {
            break; /* not a ledger key: leave the rest alone */
        }
        memcpy(begin, key, tenant_length);
        memcpy(end, key, tenant_length);
        sd_be64_put(begin + tenant_length, 0);
        sd_be64_put(end + tenant_length, cutoff_seq + 1);
        rocksdb_writebatch_delete_range_cf(batch, storage->cf[SD_CF_LEDGER], (const char *)begin,
                                           tenant_length + 8, (const char *)end, tenant_length + 8);
        /* then on to the next tenant: the first key after this tenant's last possible one
         * (stepping past that key only if it exists; never past the next tenant's first) */
        sd_be64_put(end + tenant_length, UINT64_MAX);
        rocksdb_iter_seek(iterator, (const char *)end, tenant_length + 8);
        if (rocksdb_iter_valid(iterator) && sd_storage_iter_at(iterator, end, tenant_length + 8)) {
            rocksdb_iter_next(iterator);
        }
    }
    char *rocks_error = NULL;
    rocksdb_iter_get_error(iterator, &rocks_error);
    rocksdb_iter_destroy(iterator);
    if (rocks_error != NULL) {
        SD_LOG(LOG_ERROR, "storage_scan_failed", LF_STR("cf", "ledger"),
               LF_STR("error", rocks_error));
        rocksdb_free(rocks_error);
        return SD_UNAVAILABLE;
    }
    return SD_OK;
}

/* Deletes every tenant's ledger entries committed before cutoff_us (range deletes). */
static sd_status_t sd_storage_prune_ledger_entries(sd_storage_t *storage, int64_t cutoff_us)
{
    sd_cutoff_scan_t scan = {cutoff_us / 1000000, 0};
    bool more = false;
    sd_status_t status = sd_storage_scan(
        storage, SD_CF_DEFAULT, (const uint8_t *)sd_time_index_prefix,
        sizeof(sd_time_index_prefix) - 1, NULL, 0, false, SIZE_MAX, sd_cutoff_visit, &scan, &more);
    if (status != SD_OK || scan.cutoff_seq <= atomic_load(&storage->pruned_through)) {
        return status;
    }
    sd_write_batch_t *batch = sd_write_batch_new();
    if (batch == NULL ||
        sd_storage_delete_ledger_through(storage, batch->rocks, scan.cutoff_seq) != SD_OK) {
        sd_write_batch_free(batch);
        return SD_UNAVAILABLE; /* retried at the next interval; nothing was deleted */
    }
    uint8_t begin[SD_TIME_INDEX_KEY_BYTES], end[SD_TIME_INDEX_KEY_BYTES];
    memcpy(begin, sd_time_index_prefix, sizeof(sd_time_index_prefix) - 1);
    memcpy(end, sd_time_index_prefix, sizeof(sd_time_index_prefix) - 1);
    sd_be64_put(begin + sizeof(sd_time_index_prefix) - 1, 0);
    sd_be64_put(end + sizeof(sd_time_index_prefix) - 1, (uint64_t)scan.cutoff_s);
    rocksdb_writebatch_delete_range_cf(batch->rocks, storage->cf[SD_CF_DEFAULT],
                                       (const char *)begin, sizeof(begin), (const char *)end,
                                       sizeof(end));
    sd_batch_put_meta(storage, batch->rocks, sd_meta_pruned_key, scan.cutoff_seq);
    status = sd_storage_write(storage, batch, true);
    sd_write_batch_free(batch);
    if (status == SD_OK) {
        atomic_store(&storage->pruned_through, scan.cutoff_seq);
        SD_LOG(LOG_INFO, "ledger_pruned", LF_UINT("through_seq", scan.cutoff_seq));
    }
    return status;
}

/* ---- removing the index keys of pruned entries ---- */

/* The state record: cleaned, target (big-endian), then the cursor. */
static void sd_index_prune_put_state(sd_storage_t *storage, sd_write_batch_t *batch,
                                     const sd_index_prune_t *state)
{
    uint8_t value[16 + SD_LEDGER_INDEX_KEY_BYTES_MAX];
    sd_be64_put(value, state->cleaned);
    sd_be64_put(value + 8, state->target);
    memcpy(value + 16, state->cursor, state->cursor_length);
    sd_write_batch_put(storage, batch, SD_CF_DEFAULT, (const uint8_t *)sd_meta_index_pruned_key,
                       sizeof(sd_meta_index_pruned_key) - 1, value, 16 + state->cursor_length);
}

static sd_status_t sd_storage_load_index_prune(sd_storage_t *storage)
{
    char *value = NULL;
    size_t length = 0;
    sd_index_prune_t *state = &storage->index_prune;
    sd_status_t status =
        sd_storage_get(storage, SD_CF_DEFAULT, (const uint8_t *)sd_meta_index_pruned_key,
                       sizeof(sd_meta_index_pruned_key) - 1, &value, &length);
    if (status == SD_OK && value != NULL) {
        const uint8_t *bytes = (const uint8_t *)value;
        bool valid = length >= 16 && length - 16 <= sizeof(state->cursor);
        state->cleaned = valid ? sd_be64_get(bytes) : 0;
        state->target = valid ? sd_be64_get(bytes + 8) : 0;
        state->cursor_length = valid ? length - 16 : 0;
        memcpy(state->cursor, bytes + 16, state->cursor_length);
        status = valid && state->cleaned <= state->target ? SD_OK : SD_INTERNAL;
    }
    sd_storage_free(value);
    return status;
}

/* Ends a chunk of index pruning: writes its deletes with the state reached. */
static sd_status_t sd_index_prune_commit(sd_storage_t *storage, rocksdb_iterator_t *iterator,
                                         sd_write_batch_t *batch, const sd_index_prune_t *next)
{
    char *rocks_error = NULL;
    rocksdb_iter_get_error(iterator, &rocks_error);
    rocksdb_iter_destroy(iterator);
    if (rocks_error != NULL || batch == NULL) {
        SD_LOG(LOG_ERROR, "storage_scan_failed", LF_STR("cf", "ledger_index"),
               LF_STR("error", rocks_error ? rocks_error : "out of memory"));
        rocksdb_free(rocks_error);
        sd_write_batch_free(batch);
        return SD_UNAVAILABLE; /* nothing deleted; the next pass tries again */
    }
    sd_index_prune_put_state(storage, batch, next);
    sd_status_t status = sd_storage_write(storage, batch, true);
    sd_write_batch_free(batch);
    if (status == SD_OK) {
        storage->index_prune = *next;
    }
    return status;
}

/* Examines up to SD_LEDGER_INDEX_PRUNE_CHUNK index keys from the cursor on: deletes those of
 * pruned entries, skips the rest of an item or order at its first live key (its keys are in
 * seq order). Writes the deletes and the new state in one synced batch. */
static sd_status_t sd_index_prune_chunk(sd_storage_t *storage, size_t *examined_out, bool *done_out)
{
    sd_index_prune_t next = storage->index_prune;
    rocksdb_iterator_t *iterator = rocksdb_create_iterator_cf(storage->db, storage->read_options,
                                                              storage->cf[SD_CF_LEDGER_INDEX]);
    sd_write_batch_t *batch = sd_write_batch_new();
    rocksdb_iter_seek(iterator, (const char *)next.cursor, next.cursor_length);
    size_t examined = 0;
    uint8_t skip[SD_LEDGER_INDEX_KEY_BYTES_MAX];
    while (batch != NULL && rocksdb_iter_valid(iterator) &&
           examined < SD_LEDGER_INDEX_PRUNE_CHUNK) {
        examined++;
        size_t key_length = 0;
        const uint8_t *key = (const uint8_t *)rocksdb_iter_key(iterator, &key_length);
        uint64_t seq = 0;
        if (!sd_key_index_seq(key, key_length, &seq) || key_length > sizeof(skip)) {
            rocksdb_iter_next(iterator); /* not an index key: left alone */
        } else if (seq <= next.target) {
            sd_write_batch_delete(storage, batch, SD_CF_LEDGER_INDEX, key, key_length);
            rocksdb_iter_next(iterator);
        } else { /* on to the next item or order: past the last key this one could have */
            memcpy(skip, key, key_length - 8);
            sd_be64_put(skip + key_length - 8, UINT64_MAX);
            rocksdb_iter_seek(iterator, (const char *)skip, key_length);
            if (rocksdb_iter_valid(iterator) && sd_storage_iter_at(iterator, skip, key_length)) {
                rocksdb_iter_next(iterator);
            }
        }
    }
    *done_out = !rocksdb_iter_valid(iterator);
    next.cursor_length = 0;
    if (!*done_out) {
        const char *at = rocksdb_iter_key(iterator, &next.cursor_length);
        next.cursor_length = next.cursor_length <= sizeof(next.cursor) ? next.cursor_length : 0;
        memcpy(next.cursor, at, next.cursor_length);
    }
    next.cleaned = *done_out ? next.target : next.cleaned;
    *examined_out = examined;
    return sd_index_prune_commit(storage, iterator, batch, &next);
}

bool sd_storage_ledger_index_prune_pending(const sd_storage_t *storage)
{
    return storage->index_prune.target > storage->index_prune.cleaned ||
           atomic_load(&storage->pruned_through) > storage->index_prune.cleaned;
}

/* One bounded pass: continues the cycle in progress, or starts one when retention has pruned
 * past what is cleaned. */
static sd_status_t sd_storage_prune_ledger_index(sd_storage_t *storage)
{
    sd_index_prune_t *state = &storage->index_prune;
    uint64_t pruned = atomic_load(&storage->pruned_through);
    if (state->target == state->cleaned) {
        if (pruned <= state->cleaned) {
            return SD_OK;
        }
        state->target = pruned; /* a new cycle, from the first index key */
        state->cursor_length = 0;
    }
    sd_status_t status = SD_OK;
    size_t examined_total = 0;
    bool done = false;
    while (status == SD_OK && !done && examined_total < SD_LEDGER_INDEX_PRUNE_KEYS_PER_PASS) {
        size_t examined = 0;
        status = sd_index_prune_chunk(storage, &examined, &done);
        examined_total += examined;
    }
    if (status == SD_OK && done) {
        SD_LOG(LOG_INFO, "ledger_index_pruned", LF_UINT("through_seq", state->cleaned));
    }
    return status;
}

sd_status_t sd_storage_prune_ledger(sd_storage_t *storage, int64_t cutoff_us)
{
    pthread_mutex_lock(&storage->maintenance);
    sd_status_t status = sd_storage_prune_ledger_entries(storage, cutoff_us);
    status = status == SD_OK ? sd_storage_prune_ledger_index(storage) : status;
    pthread_mutex_unlock(&storage->maintenance);
    return status;
}

sd_status_t sd_storage_checkpoint(sd_storage_t *storage, const char *directory, char *error,
                                  size_t error_capacity)
{
    if (access(directory, F_OK) == 0) {
        snprintf(error, error_capacity, "%s already exists", directory);
        return SD_ALREADY_EXISTS;
    }
    char *rocks_error = NULL;
    rocksdb_checkpoint_t *checkpoint = rocksdb_checkpoint_object_create(storage->db, &rocks_error);
    if (checkpoint != NULL && rocks_error == NULL) {
        /* log_size_for_flush 0: flush the memtables, so the checkpoint holds no WAL to replay */
        rocksdb_checkpoint_create(checkpoint, directory, 0, &rocks_error);
    }
    if (checkpoint != NULL) {
        rocksdb_checkpoint_object_destroy(checkpoint);
    }
    if (rocks_error != NULL) {
        snprintf(error, error_capacity, "checkpoint failed: %s", rocks_error);
        SD_LOG(LOG_ERROR, "checkpoint_failed", LF_STR("error", rocks_error));
        rocksdb_free(rocks_error);
        return SD_UNAVAILABLE;
    }
    SD_LOG(LOG_INFO, "checkpoint_written", LF_STR("path", directory));
    return SD_OK;
}

const char *sd_storage_cf_name(sd_cf_t cf)
{
    return cf < SD_CF_COUNT ? sd_cf_names[cf] : "unknown";
}

/* One integer property of a column family (NULL: of the database). */
static uint64_t sd_storage_property(sd_storage_t *storage, rocksdb_column_family_handle_t *cf,
                                    const char *name)
{
    uint64_t value = 0;
    int failed = cf != NULL ? rocksdb_property_int_cf(storage->db, cf, name, &value)
                            : rocksdb_property_int(storage->db, name, &value);
    return failed ? SD_STORAGE_STAT_UNKNOWN : value;
}

void sd_storage_stats(sd_storage_t *storage, sd_storage_stats_t *stats_out)
{
    for (int cf = 0; cf < SD_CF_COUNT; cf++) {
        rocksdb_column_family_handle_t *handle = storage->cf[cf];
        stats_out->memtable_bytes[cf] =
            sd_storage_property(storage, handle, "rocksdb.cur-size-all-mem-tables");
        stats_out->pending_compaction_bytes[cf] =
            sd_storage_property(storage, handle, "rocksdb.estimate-pending-compaction-bytes");
        stats_out->live_sst_bytes[cf] =
            sd_storage_property(storage, handle, "rocksdb.live-sst-files-size");
        stats_out->estimated_keys[cf] =
            sd_storage_property(storage, handle, "rocksdb.estimate-num-keys");
    }
    stats_out->block_cache_bytes = rocksdb_cache_get_usage(storage->cache);
    stats_out->block_cache_pinned_bytes = rocksdb_cache_get_pinned_usage(storage->cache);
    stats_out->block_cache_capacity_bytes = rocksdb_cache_get_capacity(storage->cache);
    stats_out->delayed_write_rate_bytes =
        sd_storage_property(storage, NULL, "rocksdb.actual-delayed-write-rate");
    stats_out->write_stopped = sd_storage_property(storage, NULL, "rocksdb.is-write-stopped");
    stats_out->background_errors = sd_storage_property(storage, NULL, "rocksdb.background-errors");
}
