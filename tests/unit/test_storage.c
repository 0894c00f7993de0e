/* Unit tests for storage.c over a real RocksDB in a temporary directory: the write-ahead log
 * stays within its bound while writes flow (so a restart after a crash replays at most that
 * much), and a clean close flushes every memtable (so a restart replays nothing). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <dirent.h>
#include <sys/stat.h>

#include <rocksdb/c.h>
#include <stdio.h>

#include "test_helpers.h"
#include "util.h"

#define WAL_BOUND_BYTES (1 << 20)
#define WRITTEN_BYTES (16 << 20)
#define VALUE_BYTES 4000

/* The total size of the *.log files (the WAL) in dir. */
static int64_t wal_bytes(const char *dir)
{
    int64_t total = 0;
    DIR *listing = opendir(dir);
    assert_non_null(listing);
    for (struct dirent *entry = readdir(listing); entry != NULL; entry = readdir(listing)) {
        size_t length = strlen(entry->d_name);
        if (length > 4 && strcmp(entry->d_name + length - 4, ".log") == 0) {
            char path[1024];
            struct stat info;
            snprintf(path, sizeof(path), "%s/%s", dir, entry->d_name);
            if (stat(path, &info) == 0) {
                total += (int64_t)info.st_size;
            }
        }
    }
    closedir(listing);
    return total;
}

static sd_storage_t *open_with_wal_bound(const char *dir, int64_t wal_bytes_max)
{
    /* memtables larger than the WAL bound: only the bound can make RocksDB flush */
    sd_storage_options_t options = {dir, 8 << 20, 64 << 20, 7 * 86400, wal_bytes_max, false};
    sd_storage_t *storage = NULL;
    char error[256];
    assert_int_equal(sd_storage_open(&options, &storage, error, sizeof(error)), SD_OK);
    return storage;
}

/* Writes WRITTEN_BYTES of ledger-like values, each commit also touching the default family
 * (as every real commit does); returns the largest WAL size seen along the way. */
static int64_t write_load(sd_storage_t *storage, const char *dir)
{
    static char value[VALUE_BYTES];
    memset(value, 'v', sizeof(value));
    int64_t peak = 0;
    for (uint64_t seq = 1; seq <= WRITTEN_BYTES / VALUE_BYTES; seq++) {
        sd_write_batch_t *batch = sd_write_batch_new();
        uint8_t key[SD_LEDGER_KEY_BYTES_MAX];
        size_t key_length = sd_key_encode_ledger(sd_bytes_of("t"), seq, key, sizeof(key));
        sd_write_batch_put(storage, batch, SD_CF_LEDGER, key, key_length, (const uint8_t *)value,
                           sizeof(value));
        sd_storage_batch_put_last_seq(storage, batch, seq);
        assert_int_equal(sd_storage_write(storage, batch, false), SD_OK);
        sd_write_batch_free(batch);
        if (seq % 256 == 0) {
            int64_t now = wal_bytes(dir);
            peak = now > peak ? now : peak;
        }
    }
    return peak;
}

static void test_wal_stays_within_its_bound(void **state)
{
    (void)state;
    char *dir = th_temp_dir();
    sd_storage_t *storage = open_with_wal_bound(dir, WAL_BOUND_BYTES);
    int64_t peak = write_load(storage, dir);
    /* RocksDB switches memtables when the bound is passed and deletes the old log once the
     * flush is done, so the log can briefly hold a little more than the bound. */
    assert_true(peak <= 3 * WAL_BOUND_BYTES);
    sd_storage_close(storage);
    th_remove_tree(dir);
    free(dir);
}

/* Without a bound the log grows with everything written (the behaviour being fixed). */
static void test_unbounded_wal_grows(void **state)
{
    (void)state;
    char *dir = th_temp_dir();
    sd_storage_t *storage = open_with_wal_bound(dir, 0);
    int64_t peak = write_load(storage, dir);
    assert_true(peak >= WRITTEN_BYTES / 2);
    sd_storage_close(storage);
    th_remove_tree(dir);
    free(dir);
}

static void test_clean_close_leaves_nothing_to_replay(void **state)
{
    (void)state;
    char *dir = th_temp_dir();
    sd_storage_t *storage = open_with_wal_bound(dir, 0);
    write_load(storage, dir);
    sd_storage_close(storage);
    /* the last log is empty (or gone) once every memtable was flushed */
    assert_true(wal_bytes(dir) < 64 * 1024);
    storage = open_with_wal_bound(dir, 0);
    assert_int_equal(sd_storage_last_seq(storage), WRITTEN_BYTES / VALUE_BYTES);
    sd_storage_close(storage);
    th_remove_tree(dir);
    free(dir);
}

static void put_ledger_entry(sd_storage_t *storage, const char *tenant, uint64_t seq,
                             int64_t time_us)
{
    sd_write_batch_t *batch = sd_write_batch_new();
    uint8_t key[SD_LEDGER_KEY_BYTES_MAX];
    size_t key_length = sd_key_encode_ledger(sd_bytes_of(tenant), seq, key, sizeof(key));
    sd_write_batch_put(storage, batch, SD_CF_LEDGER, key, key_length, (const uint8_t *)"\1", 1);
    sd_storage_batch_put_last_seq(storage, batch, seq);
    sd_storage_batch_put_time_index(storage, batch, seq, time_us);
    assert_int_equal(sd_storage_write(storage, batch, true), SD_OK);
    sd_write_batch_free(batch);
}

static bool count_visit(void *context, const uint8_t *key, size_t key_length, const uint8_t *value,
                        size_t value_length)
{
    (void)key, (void)key_length, (void)value, (void)value_length;
    (*(size_t *)context)++;
    return true;
}

/* Regression (found by review): pruning moved from one tenant to the next by seeking past the
 * tenant and then stepping once more, which skipped the next tenant's first entry, so a
 * tenant with exactly one entry was never pruned. */
static void test_retention_prunes_every_tenant(void **state)
{
    (void)state;
    char *dir = th_temp_dir();
    sd_storage_t *storage = open_with_wal_bound(dir, 0);
    int64_t old_us = util_now_us() - INT64_C(3600) * 1000000;
    const char *tenants[] = {"a", "a", "a", "b", "c", "c", "d"};
    for (uint64_t seq = 1; seq <= 7; seq++) {
        put_ledger_entry(storage, tenants[seq - 1], seq, old_us);
    }
    assert_int_equal(sd_storage_prune_ledger(storage, util_now_us()), SD_OK);
    assert_int_equal(sd_storage_pruned_through(storage), 7);
    size_t left = 0;
    bool more = false;
    assert_int_equal(sd_storage_scan(storage, SD_CF_LEDGER, (const uint8_t *)"", 0, NULL, 0, false,
                                     SIZE_MAX, count_visit, &left, &more),
                     SD_OK);
    assert_int_equal(left, 0);
    sd_storage_close(storage);
    th_remove_tree(dir);
    free(dir);
}

/* A data directory from before natural order holds v1 item keys: opening it rewrites every
 * one (levels unchanged), across several migration chunks, and a second open changes nothing. */
static void test_v1_item_keys_are_migrated_at_open(void **state)
{
    (void)state;
    char *dir = th_temp_dir();
    sd_storage_t *storage = open_with_wal_bound(dir, 0);
    enum { ITEMS = 10000 };
    for (int i = 0; i < ITEMS; i++) {
        char item[32];
        snprintf(item, sizeof(item), "mug-%d", i);
        uint8_t key[64];
        size_t used = 0;
        key[used++] = 1;
        key[used++] = 't';
        key[used++] = 0; /* location "" */
        key[used++] = 3;
        memcpy(key + used, "app", 3);
        used += 3;
        key[used++] = 0;
        key[used++] = (uint8_t)strlen(item);
        memcpy(key + used, item, strlen(item));
        used += strlen(item);
        key[used++] = 0;
        key[used++] = 0; /* variant "" */
        sd_level_t level = sd_level_default();
        level.available = i;
        level.version = 1;
        uint8_t value[SD_LEVEL_VALUE_BYTES];
        sd_level_encode(&level, value);
        sd_write_batch_t *batch = sd_write_batch_new();
        sd_write_batch_put(storage, batch, SD_CF_LEVELS, key, used, value, sizeof(value));
        assert_int_equal(sd_storage_write(storage, batch, false), SD_OK);
        sd_write_batch_free(batch);
    }
    assert_int_equal(sd_storage_close(storage), SD_OK);
    for (int round = 0; round < 2; round++) {
        storage = open_with_wal_bound(dir, 0);
        size_t count = 0;
        bool more = false;
        assert_int_equal(sd_storage_scan(storage, SD_CF_LEVELS, (const uint8_t *)"", 0, NULL, 0,
                                         false, SIZE_MAX, count_visit, &count, &more),
                         SD_OK);
        assert_int_equal(count, ITEMS); /* each level under exactly one key */
        for (int i = 0; i < ITEMS; i += 997) {
            char item[32];
            snprintf(item, sizeof(item), "mug-%d", i);
            sd_item_key_t parts = {sd_bytes_of("t"), sd_bytes_of(""), sd_bytes_of("app"),
                                   sd_bytes_of(item), sd_bytes_of("")};
            uint8_t key[SD_ITEM_KEY_BYTES_MAX];
            size_t length = sd_key_encode_item(&parts, key, sizeof(key));
            sd_level_t level;
            bool found = false;
            assert_int_equal(sd_storage_get_level(storage, key, length, &level, &found), SD_OK);
            assert_true(found);
            assert_int_equal(level.available, i);
        }
        assert_int_equal(sd_storage_close(storage), SD_OK);
    }
    th_remove_tree(dir);
    free(dir);
}

/* Regression (review finding): a prefix scan went on past the prefix over every deletion
 * tombstone that followed it (another item's pruned index keys) before it could stop, so a
 * one-entry History paid for the neighbour's whole pruned history. With an upper bound the
 * scan skips none of them: RocksDB's own counter of skipped deletions says so. */
static void test_scan_stops_at_the_end_of_its_prefix(void **state)
{
    (void)state;
    char *dir = th_temp_dir();
    sd_storage_t *storage = open_with_wal_bound(dir, 0);
    sd_write_batch_t *batch = sd_write_batch_new();
    sd_write_batch_put(storage, batch, SD_CF_LEDGER_INDEX, (const uint8_t *)"a1", 2,
                       (const uint8_t *)"", 0);
    char key[16];
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof(key), "b%04d", i);
        sd_write_batch_put(storage, batch, SD_CF_LEDGER_INDEX, (const uint8_t *)key, 5,
                           (const uint8_t *)"", 0);
    }
    assert_int_equal(sd_storage_write(storage, batch, true), SD_OK);
    sd_write_batch_clear(batch);
    for (int i = 0; i < 1000; i++) { /* the neighbour's history, pruned */
        snprintf(key, sizeof(key), "b%04d", i);
        sd_write_batch_delete(storage, batch, SD_CF_LEDGER_INDEX, (const uint8_t *)key, 5);
    }
    assert_int_equal(sd_storage_write(storage, batch, true), SD_OK);
    rocksdb_set_perf_level(2); /* count (this thread only) */
    rocksdb_perfcontext_t *perf = rocksdb_perfcontext_create();
    rocksdb_perfcontext_reset(perf);
    size_t found = 0;
    bool more = false;
    assert_int_equal(sd_storage_scan(storage, SD_CF_LEDGER_INDEX, (const uint8_t *)"a", 1, NULL, 0,
                                     false, SIZE_MAX, count_visit, &found, &more),
                     SD_OK);
    assert_int_equal(found, 1);
    assert_int_equal(rocksdb_perfcontext_metric(perf, rocksdb_internal_delete_skipped_count), 0);
    rocksdb_perfcontext_destroy(perf);
    rocksdb_set_perf_level(1);
    sd_write_batch_free(batch);
    sd_storage_close(storage);
    th_remove_tree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wal_stays_within_its_bound),
        cmocka_unit_test(test_unbounded_wal_grows),
        cmocka_unit_test(test_clean_close_leaves_nothing_to_replay),
        cmocka_unit_test(test_retention_prunes_every_tenant),
        cmocka_unit_test(test_scan_stops_at_the_end_of_its_prefix),
        cmocka_unit_test(test_v1_item_keys_are_migrated_at_open),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
