/* history_helpers.h — for the unit tests of History and the ledger's index (test_queries.c,
 * test_ledger_index.c): writes through the real write path (sd_batch_apply + commit) on a
 * real RocksDB, and reads History as the RPC does (sd_query_history), with the index or with
 * the scan it replaced. */
#ifndef STOCKD_HISTORY_HELPERS_H
#define STOCKD_HISTORY_HELPERS_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "batch.h"
#include "queries.h"
#include "test_helpers.h"

#define HH_LINES_MAX 8192

typedef struct {
    char *dir;
    sd_storage_t *storage;
    sd_batch_t *batch;
} hh_env_t;

static inline void hh_open(hh_env_t *env, const char *dir)
{
    env->storage = th_open_storage(dir);
    assert_non_null(env->storage);
    env->batch =
        sd_batch_new(env->storage, sd_storage_last_seq(env->storage), INT64_C(7) * 86400 * 1000000);
    assert_non_null(env->batch);
}

static inline void hh_close(hh_env_t *env)
{
    sd_batch_free(env->batch);
    assert_int_equal(sd_storage_close(env->storage), SD_OK);
    env->batch = NULL;
    env->storage = NULL;
}

static inline hh_env_t *hh_env_new(void)
{
    hh_env_t *env = calloc(1, sizeof(*env));
    env->dir = th_temp_dir();
    hh_open(env, env->dir);
    return env;
}

static inline void hh_env_free(hh_env_t *env)
{
    hh_close(env);
    th_remove_tree(env->dir);
    free(env->dir);
    free(env);
}

/* The items of a request: catalog item ids "<sku>" in app "app", and variant. */
typedef struct {
    const char *sku;
    const char *variant;
} hh_item_t;

/* Applies one Increment (or Decrement when delta < 0) of lines_count lines of 1 unit each,
 * items[i % items_count], in tenant with order_id, and commits it. Returns its last seq. */
static inline uint64_t hh_write(hh_env_t *env, const char *tenant, const char *order_id,
                                const hh_item_t *items, size_t items_count, size_t lines_count,
                                int delta)
{
    static Stockd__V1__ItemRef refs[HH_LINES_MAX];
    static Stockd__V1__Line lines[HH_LINES_MAX];
    static Stockd__V1__Line *pointers[HH_LINES_MAX];
    assert_true(lines_count <= HH_LINES_MAX);
    for (size_t i = 0; i < lines_count; i++) {
        stockd__v1__item_ref__init(&refs[i]);
        refs[i].app_id = "app";
        refs[i].catalog_item_id = (char *)items[i % items_count].sku;
        refs[i].variant = (char *)items[i % items_count].variant;
        stockd__v1__line__init(&lines[i]);
        lines[i].item = &refs[i];
        lines[i].quantity = 1;
        pointers[i] = &lines[i];
    }
    sd_write_request_t request = {.kind = delta < 0 ? SD_WRITE_DECREMENT : SD_WRITE_INCREMENT,
                                  .tenant_id = tenant,
                                  .lines_count = lines_count,
                                  .lines = pointers,
                                  .order_id = order_id,
                                  .reason_text = "",
                                  .request_id = ""};
    sd_write_result_t result;
    sd_write_result_init(&result);
    sd_batch_apply(env->batch, &request, 1000, &result);
    assert_int_equal(result.error.status, SD_OK);
    sd_write_result_free(&result);
    assert_int_equal(sd_batch_commit(env->batch, false), SD_OK);
    uint64_t last = sd_batch_last_seq(env->batch);
    sd_batch_reset(env->batch, last);
    return last;
}

/* One History page. */
typedef struct {
    sd_status_t status;
    Stockd__V1__HistoryResponse *response; /* NULL unless SD_OK */
} hh_page_t;

static inline hh_page_t hh_history(sd_storage_t *storage, const char *tenant, const char *sku,
                                   const char *variant, const char *order_id, uint64_t after_seq,
                                   int32_t page_size)
{
    Stockd__V1__ItemRef item = STOCKD__V1__ITEM_REF__INIT;
    Stockd__V1__HistoryRequest request = STOCKD__V1__HISTORY_REQUEST__INIT;
    request.tenant_id = (char *)tenant;
    if (sku != NULL) {
        item.app_id = "app";
        item.catalog_item_id = (char *)sku;
        item.variant = (char *)(variant ? variant : "");
        request.item = &item;
    }
    request.order_id = (char *)(order_id ? order_id : "");
    request.after_seq = after_seq;
    request.page_size = page_size;
    sd_error_t error;
    sd_error_init(&error);
    uint8_t *packed = NULL;
    size_t packed_length = 0;
    hh_page_t page = {sd_query_history(storage, sd_storage_pruned_through(storage), &request,
                                       &error, &packed, &packed_length),
                      NULL};
    sd_error_free(&error);
    if (page.status == SD_OK) {
        page.response = stockd__v1__history_response__unpack(NULL, packed_length, packed);
        assert_non_null(page.response);
    }
    free(packed);
    return page;
}

static inline void hh_page_free(hh_page_t *page)
{
    if (page->response != NULL) {
        stockd__v1__history_response__free_unpacked(page->response, NULL);
    }
}

/* Everything History answers for a filter, following next_after_seq from after_seq: the
 * packed entries one after another (malloc'd), how many, and how many calls it took. */
typedef struct {
    uint8_t *bytes;
    size_t length, entries, calls;
    uint64_t seqs_sum;
} hh_all_t;

static inline hh_all_t hh_history_all(sd_storage_t *storage, bool use_index, const char *tenant,
                                      const char *sku, const char *variant, const char *order_id,
                                      uint64_t after_seq, int32_t page_size)
{
    hh_all_t all = {NULL, 0, 0, 0, 0};
    sd_query_history_use_index(use_index);
    for (uint64_t after = after_seq;;) {
        hh_page_t page = hh_history(storage, tenant, sku, variant, order_id, after, page_size);
        assert_int_equal(page.status, SD_OK);
        all.calls++;
        for (size_t i = 0; i < page.response->n_entries; i++) {
            const Stockd__V1__LedgerEntry *entry = page.response->entries[i];
            size_t size = stockd__v1__ledger_entry__get_packed_size(entry);
            all.bytes = realloc(all.bytes, all.length + size + 1);
            assert_non_null(all.bytes);
            stockd__v1__ledger_entry__pack(entry, all.bytes + all.length);
            all.length += size;
            all.entries++;
            all.seqs_sum += entry->seq;
            assert_true(entry->seq > after); /* ascending, after the cursor */
            after = entry->seq;
        }
        after = page.response->next_after_seq;
        hh_page_free(&page);
        if (after == 0) {
            break;
        }
    }
    sd_query_history_use_index(true);
    return all;
}

/* The index answers exactly what the scan answered; returns how many entries. */
static inline size_t hh_assert_same_as_scan(sd_storage_t *storage, const char *tenant,
                                            const char *sku, const char *variant,
                                            const char *order_id, uint64_t after_seq,
                                            int32_t page_size)
{
    hh_all_t indexed =
        hh_history_all(storage, true, tenant, sku, variant, order_id, after_seq, page_size);
    hh_all_t scanned =
        hh_history_all(storage, false, tenant, sku, variant, order_id, after_seq, page_size);
    assert_int_equal(indexed.entries, scanned.entries);
    assert_int_equal(indexed.length, scanned.length);
    if (indexed.length > 0) {
        assert_memory_equal(indexed.bytes, scanned.bytes, indexed.length);
    }
    free(indexed.bytes);
    free(scanned.bytes);
    return indexed.entries;
}

/* Counts the keys of a column family (all of them, or those with a seq <= seq_max at the
 * end, for the index). */
typedef struct {
    size_t count;
    uint64_t seq_max;
} hh_count_t;

static inline bool hh_count_visit(void *context, const uint8_t *key, size_t key_length,
                                  const uint8_t *value, size_t value_length)
{
    (void)value, (void)value_length;
    hh_count_t *count = context;
    uint64_t seq = 0;
    if (count->seq_max == UINT64_MAX ||
        (sd_key_index_seq(key, key_length, &seq) && seq <= count->seq_max)) {
        count->count++;
    }
    return true;
}

static inline size_t hh_count_keys(sd_storage_t *storage, sd_cf_t cf, uint64_t seq_max)
{
    hh_count_t count = {0, seq_max};
    bool more = false;
    assert_int_equal(sd_storage_scan(storage, cf, (const uint8_t *)"", 0, NULL, 0, false, SIZE_MAX,
                                     hh_count_visit, &count, &more),
                     SD_OK);
    return count.count;
}

#endif
