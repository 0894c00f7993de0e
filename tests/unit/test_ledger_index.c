/* Unit tests for the ledger's index in storage.c: a data directory written before the index
 * (by RocksDB directly, with the four column families stockd had then) is indexed at open,
 * once; a build killed mid-way (a real _exit in a child process) resumes where its last
 * synced chunk ended; ledger retention removes the pruned entries' index keys in bounded
 * passes; a checkpoint carries the index. History over the index answers what the scan does. */
#include <rocksdb/c.h>
#include <sys/wait.h>

#include "history_helpers.h"
#include "util.h"

#define OLD_TENANTS 3
static const char *const old_tenants[OLD_TENANTS] = {"a", "b", "ab"};

/* The entry seq of the old ledger: groups of 5 consecutive seqs ("requests") of one tenant;
 * three groups in four carry an order_id, some orders spanning groups back to back. */
static void old_entry(uint64_t seq, Stockd__V1__LedgerEntry *entry, Stockd__V1__ItemRef *item,
                      char *sku, char *order)
{
    uint64_t group = (seq - 1) / 5;
    snprintf(sku, 16, "s%u", (unsigned)(seq * 7 % 50));
    snprintf(order, 16, "o%u", (unsigned)(group / 2 % 40));
    stockd__v1__item_ref__init(item);
    item->app_id = "app";
    item->catalog_item_id = sku;
    item->variant = seq % 3 == 0 ? "v" : "";
    stockd__v1__ledger_entry__init(entry);
    entry->seq = seq;
    entry->time_us = 1000;
    entry->tenant_id = (char *)old_tenants[group % OLD_TENANTS];
    entry->op = STOCKD__V1__OP__OP_DECREMENT;
    entry->item = item;
    entry->delta = -1;
    entry->order_id = group % 4 == 3 ? "" : order;
}

/* Writes `entries` ledger entries the way stockd wrote them before the index, plus one
 * unreadable entry of tenant "bad" (History reports it; the build skips it). */
static void write_old_ledger(const char *dir, uint64_t entries)
{
    rocksdb_options_t *options = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(options, 1);
    rocksdb_options_set_create_missing_column_families(options, 1);
    const char *names[] = {"default", "levels", "ledger", "idempotency"};
    const rocksdb_options_t *cf_options[] = {options, options, options, options};
    rocksdb_column_family_handle_t *cf[4];
    char *error = NULL;
    rocksdb_t *db = rocksdb_open_column_families(options, dir, 4, names, cf_options, cf, &error);
    assert_null(error);
    rocksdb_writebatch_t *batch = rocksdb_writebatch_create();
    uint8_t key[SD_LEDGER_KEY_BYTES_MAX], value[1024];
    for (uint64_t seq = 1; seq <= entries; seq++) {
        Stockd__V1__LedgerEntry entry;
        Stockd__V1__ItemRef item;
        char sku[16], order[16];
        old_entry(seq, &entry, &item, sku, order);
        size_t key_length =
            sd_key_encode_ledger(sd_bytes_of(entry.tenant_id), seq, key, sizeof(key));
        size_t value_length = sd_ledger_value_encode(&entry, value, sizeof(value));
        rocksdb_writebatch_put_cf(batch, cf[2], (const char *)key, key_length, (const char *)value,
                                  value_length);
    }
    size_t key_length = sd_key_encode_ledger(sd_bytes_of("bad"), entries + 1, key, sizeof(key));
    rocksdb_writebatch_put_cf(batch, cf[2], (const char *)key, key_length, "\x09junk", 5);
    uint8_t last[8];
    sd_be64_put(last, entries + 1);
    rocksdb_writebatch_put_cf(batch, cf[0], "meta:last_ledger_seq", 20, (const char *)last, 8);
    rocksdb_writeoptions_t *write = rocksdb_writeoptions_create();
    rocksdb_write(db, write, batch, &error);
    assert_null(error);
    rocksdb_writeoptions_destroy(write);
    rocksdb_writebatch_destroy(batch);
    for (int i = 0; i < 4; i++) {
        rocksdb_column_family_handle_destroy(cf[i]);
    }
    rocksdb_close(db);
    rocksdb_options_destroy(options);
}

static size_t chunks_seen;

static void count_chunks(size_t chunks_written)
{
    chunks_seen = chunks_written;
}

static void die_after_two_chunks(size_t chunks_written)
{
    if (chunks_written == 2) {
        _exit(42); /* a crash: nothing flushed, nothing closed */
    }
}

/* Runs fn(dir, arg) in a child process (so this process starts no RocksDB threads before the
 * crash test forks) and returns its exit status. */
static int in_child(void (*fn)(const char *dir, uint64_t arg), const char *dir, uint64_t arg)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        fn(dir, arg);
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void open_and_crash(const char *dir, uint64_t unused)
{
    (void)unused;
    sd_storage_set_index_build_hook(die_after_two_chunks);
    th_open_storage(dir);
    _exit(1); /* the build finished without reaching the hook's crash */
}

/* Item keys and order keys of the index: the byte after the tenant prefix tells them apart. */
static bool kind_visit(void *context, const uint8_t *key, size_t key_length, const uint8_t *value,
                       size_t value_length)
{
    (void)value, (void)value_length;
    size_t *counts = context;
    assert_true(key_length > (size_t)key[0] + 1 + 8);
    counts[key[key[0] + 1] == SD_ITEM_KEY_MARKER ? 0 : 1]++;
    return true;
}

/* The index of the old ledger is complete and right: one item key per readable entry, one
 * order key per run, and History over it answers what the scan answers. */
static void check_old_ledger_indexed(sd_storage_t *storage, uint64_t entries)
{
    size_t counts[2] = {0, 0};
    bool more = false;
    assert_int_equal(sd_storage_scan(storage, SD_CF_LEDGER_INDEX, (const uint8_t *)"", 0, NULL, 0,
                                     false, SIZE_MAX, kind_visit, counts, &more),
                     SD_OK);
    assert_int_equal(counts[0], entries);
    assert_true(counts[1] > 0 && counts[1] < entries / 5);
    size_t total = 0;
    for (int t = 0; t < OLD_TENANTS; t++) {
        for (int i = 0; i < 40; i += 3) {
            char order[16], sku[16];
            snprintf(order, sizeof(order), "o%d", i);
            snprintf(sku, sizeof(sku), "s%d", i);
            total += hh_assert_same_as_scan(storage, old_tenants[t], NULL, NULL, order, 0, 7);
            hh_assert_same_as_scan(storage, old_tenants[t], sku, "v", NULL, 100, 0);
            hh_assert_same_as_scan(storage, old_tenants[t], sku, "", order, 0, 1);
        }
    }
    assert_true(total > entries / 20);
}

/* The crash test forks, so it runs first: before this process has RocksDB threads. */
static void test_index_build_resumes_after_a_crash(void **state)
{
    (void)state;
    char *dir = th_temp_dir();
    const uint64_t entries = 3 * SD_LEDGER_INDEX_BUILD_CHUNK + 100; /* 4 chunks */
    assert_int_equal(in_child(write_old_ledger, dir, entries), 0);
    assert_int_equal(in_child(open_and_crash, dir, 0), 42);
    sd_storage_set_index_build_hook(count_chunks);
    chunks_seen = 0;
    hh_env_t env = {0};
    hh_open(&env, dir);
    assert_int_equal(chunks_seen, 2); /* resumed after chunk 2, not from the start */
    check_old_ledger_indexed(env.storage, entries);
    hh_close(&env);
    sd_storage_set_index_build_hook(NULL);
    th_remove_tree(dir);
    free(dir);
}

/* An old ledger is indexed at the first open, once: the next open builds nothing. New writes
 * are indexed as they are made. */
static void test_old_ledger_is_indexed_once(void **state)
{
    (void)state;
    char *dir = th_temp_dir();
    const uint64_t entries = 2 * SD_LEDGER_INDEX_BUILD_CHUNK + 7;
    write_old_ledger(dir, entries);
    sd_storage_set_index_build_hook(count_chunks);
    chunks_seen = 0;
    hh_env_t env = {0};
    hh_open(&env, dir);
    assert_int_equal(chunks_seen, 3);
    check_old_ledger_indexed(env.storage, entries);
    hh_page_t page = hh_history(env.storage, "bad", NULL, NULL, NULL, 0, 0);
    assert_int_equal(page.status, SD_INTERNAL); /* as before: the unreadable entry is reported */
    hh_item_t item = {"s7", ""};
    hh_write(&env, "a", "o3", &item, 1, 2, 1);
    hh_close(&env);
    chunks_seen = 0;
    hh_open(&env, dir);
    assert_int_equal(chunks_seen, 0);
    hh_all_t all = hh_history_all(env.storage, true, "a", NULL, NULL, "o3", entries, 0);
    assert_int_equal(all.entries, 2);
    free(all.bytes);
    check_old_ledger_indexed(env.storage, entries + 2);
    hh_close(&env);
    sd_storage_set_index_build_hook(NULL);
    th_remove_tree(dir);
    free(dir);
}

/* A new data directory is marked as indexed at once: nothing to build, ever. */
static void test_new_directory_builds_nothing(void **state)
{
    (void)state;
    char *dir = th_temp_dir();
    sd_storage_set_index_build_hook(count_chunks);
    chunks_seen = 0;
    hh_env_t env = {0};
    hh_open(&env, dir);
    assert_int_equal(chunks_seen, 1); /* one empty chunk, which writes the marker */
    hh_close(&env);
    chunks_seen = 0;
    hh_open(&env, dir);
    assert_int_equal(chunks_seen, 0);
    hh_close(&env);
    sd_storage_set_index_build_hook(NULL);
    th_remove_tree(dir);
    free(dir);
}

/* Retention removes the pruned entries' index keys, at most
 * SD_LEDGER_INDEX_PRUNE_KEYS_PER_PASS a pass; the live keys stay. */
static void test_pruning_removes_index_keys_in_bounded_passes(void **state)
{
    hh_env_t *env = *state;
    static hh_item_t items[1000];
    static char skus[1000][8];
    for (int i = 0; i < 1000; i++) {
        snprintf(skus[i], sizeof(skus[i]), "p%d", i);
        items[i] = (hh_item_t){skus[i], ""};
    }
    char order[16];
    for (int request = 0; request < 9; request++) {
        snprintf(order, sizeof(order), "ord-%d", request);
        hh_write(env, "t", order, items, 1000, 8192, -1);
    }
    uint64_t old_last = sd_batch_last_seq(env->batch);
    assert_true(old_last + 9 > SD_LEDGER_INDEX_PRUNE_KEYS_PER_PASS);
    sd_write_batch_t *mark = sd_write_batch_new(); /* committed an hour ago */
    sd_storage_batch_put_time_index(env->storage, mark, old_last,
                                    util_now_us() - INT64_C(3600) * 1000000);
    assert_int_equal(sd_storage_write(env->storage, mark, true), SD_OK);
    sd_write_batch_free(mark);
    hh_write(env, "t", "ord-new", items + 500, 1000, 10, 1);
    int64_t cutoff_us = util_now_us() - INT64_C(1800) * 1000000;
    assert_int_equal(sd_storage_prune_ledger(env->storage, cutoff_us), SD_OK);
    assert_int_equal(sd_storage_pruned_through(env->storage), old_last);
    size_t dead = hh_count_keys(env->storage, SD_CF_LEDGER_INDEX, old_last);
    assert_true(dead > 0);
    assert_true(dead >= old_last + 9 - SD_LEDGER_INDEX_PRUNE_KEYS_PER_PASS);
    assert_true(sd_storage_ledger_index_prune_pending(env->storage));
    /* the next pass (no new pruning) finishes the cycle */
    assert_int_equal(sd_storage_prune_ledger(env->storage, cutoff_us), SD_OK);
    assert_int_equal(hh_count_keys(env->storage, SD_CF_LEDGER_INDEX, old_last), 0);
    assert_false(sd_storage_ledger_index_prune_pending(env->storage));
    assert_int_equal(hh_count_keys(env->storage, SD_CF_LEDGER_INDEX, UINT64_MAX), 10 + 1);
    assert_int_equal(hh_assert_same_as_scan(env->storage, "t", "p503", "", NULL, old_last, 0), 1);
    assert_int_equal(hh_assert_same_as_scan(env->storage, "t", NULL, NULL, "ord-new", old_last, 3),
                     10);
    assert_int_equal(hh_assert_same_as_scan(env->storage, "t", NULL, NULL, "ord-3", old_last, 0),
                     0);
}

/* The state of a pass survives a restart: a cycle left half done is finished later. */
static void test_index_pruning_resumes_after_reopen(void **state)
{
    hh_env_t *env = *state;
    static hh_item_t items[3000];
    static char skus[3000][8];
    for (int i = 0; i < 3000; i++) {
        snprintf(skus[i], sizeof(skus[i]), "q%d", i);
        items[i] = (hh_item_t){skus[i], ""};
    }
    for (int request = 0; request < 10; request++) {
        hh_write(env, "t", "", items, 3000, 8000, -1);
    }
    uint64_t old_last = sd_batch_last_seq(env->batch);
    sd_write_batch_t *mark = sd_write_batch_new();
    sd_storage_batch_put_time_index(env->storage, mark, old_last,
                                    util_now_us() - INT64_C(3600) * 1000000);
    assert_int_equal(sd_storage_write(env->storage, mark, true), SD_OK);
    sd_write_batch_free(mark);
    int64_t cutoff_us = util_now_us() - INT64_C(1800) * 1000000;
    assert_int_equal(sd_storage_prune_ledger(env->storage, cutoff_us), SD_OK);
    assert_true(sd_storage_ledger_index_prune_pending(env->storage));
    hh_close(env);
    hh_open(env, env->dir);
    assert_true(sd_storage_ledger_index_prune_pending(env->storage));
    assert_int_equal(sd_storage_prune_ledger(env->storage, cutoff_us), SD_OK);
    assert_false(sd_storage_ledger_index_prune_pending(env->storage));
    assert_int_equal(hh_count_keys(env->storage, SD_CF_LEDGER_INDEX, UINT64_MAX), 0);
}

/* A checkpoint holds the index: opened as a data directory, it builds nothing and answers
 * History over the index exactly as the original did. */
static void test_checkpoint_carries_the_index(void **state)
{
    hh_env_t *env = *state;
    hh_item_t items[] = {{"mug", ""}, {"cup", "L"}, {"pot", ""}};
    for (int i = 0; i < 200; i++) {
        hh_write(env, i % 2 ? "t" : "u", i % 3 ? "o-a" : "o-b", items, 3, 1 + i % 4, -1);
    }
    char path[1024];
    snprintf(path, sizeof(path), "%s/checkpoint", env->dir);
    char error[256];
    assert_int_equal(sd_storage_checkpoint(env->storage, path, error, sizeof(error)), SD_OK);
    hh_all_t before = hh_history_all(env->storage, true, "t", "cup", "L", NULL, 0, 7);
    hh_all_t order_before = hh_history_all(env->storage, true, "u", NULL, NULL, "o-b", 0, 3);
    sd_storage_set_index_build_hook(count_chunks);
    chunks_seen = 0;
    hh_env_t restored = {0};
    hh_open(&restored, path);
    assert_int_equal(chunks_seen, 0);
    hh_all_t after = hh_history_all(restored.storage, true, "t", "cup", "L", NULL, 0, 7);
    hh_all_t order_after = hh_history_all(restored.storage, true, "u", NULL, NULL, "o-b", 0, 3);
    assert_true(before.entries > 0 && order_before.entries > 0);
    assert_int_equal(after.length, before.length);
    assert_memory_equal(after.bytes, before.bytes, before.length);
    assert_int_equal(order_after.length, order_before.length);
    assert_memory_equal(order_after.bytes, order_before.bytes, order_before.length);
    hh_assert_same_as_scan(restored.storage, "t", "mug", "", "o-a", 0, 2);
    free(before.bytes);
    free(after.bytes);
    free(order_before.bytes);
    free(order_after.bytes);
    hh_close(&restored);
    sd_storage_set_index_build_hook(NULL);
}

static int setup(void **state)
{
    *state = hh_env_new();
    return 0;
}

static int teardown(void **state)
{
    hh_env_free(*state);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_index_build_resumes_after_a_crash),
        cmocka_unit_test(test_old_ledger_is_indexed_once),
        cmocka_unit_test(test_new_directory_builds_nothing),
        cmocka_unit_test_setup_teardown(test_pruning_removes_index_keys_in_bounded_passes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_index_pruning_resumes_after_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_carries_the_index, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
