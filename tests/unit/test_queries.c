/* Unit tests for queries.c's History over the ledger's index, on a real RocksDB written through
 * the real write path: a filtered first page comes back directly (the scan needed many short
 * pages), and every answer — pages followed to the end, with any page size and after_seq,
 * filters alone and combined, several tenants, pruned entries — is exactly what the scan it
 * replaced answers. */
#include "history_helpers.h"
#include "util.h"

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

static const hh_item_t mug = {"mug", ""};

/* 100 noise items n0..n99 */
static hh_item_t noise[100];
static char noise_names[100][8];

static void init_noise(void)
{
    for (int i = 0; i < 100; i++) {
        snprintf(noise_names[i], sizeof(noise_names[i]), "n%d", i);
        noise[i].sku = noise_names[i];
        noise[i].variant = "";
    }
}

/* A tenant of 5,000 entries in which one item has one entry in 500: the scan reads 1,000
 * entries a call and finds at most two; the index answers a full page at once. */
static void test_item_first_page_comes_directly(void **state)
{
    hh_env_t *env = *state;
    init_noise();
    for (int request = 0; request < 100; request++) {
        hh_write(env, "big", "", noise, 100, 50, 1);
        if (request % 10 == 9) {
            hh_write(env, "big", "", &mug, 1, 1, -1);
        }
    }
    hh_page_t page = hh_history(env->storage, "big", "mug", "", NULL, 0, 5);
    assert_int_equal(page.status, SD_OK);
    assert_int_equal(page.response->n_entries, 5);
    assert_int_equal(page.response->next_after_seq, page.response->entries[4]->seq);
    assert_string_equal(page.response->entries[0]->item->catalog_item_id, "mug");
    assert_int_equal(page.response->entries[0]->delta, -1);
    hh_page_free(&page);
    sd_query_history_use_index(false); /* the scan it replaced: a short first page */
    page = hh_history(env->storage, "big", "mug", "", NULL, 0, 5);
    sd_query_history_use_index(true);
    assert_true(page.response->n_entries < 5);
    assert_true(page.response->next_after_seq > 0);
    hh_page_free(&page);
    hh_all_t all = hh_history_all(env->storage, true, "big", "mug", "", NULL, 0, 5);
    assert_int_equal(all.entries, 10);
    assert_int_equal(all.calls, 2 + 1); /* two full pages, then an empty last one */
    free(all.bytes);
    for (int32_t page_size = 1; page_size <= 11; page_size += 5) {
        assert_int_equal(hh_assert_same_as_scan(env->storage, "big", "mug", "", NULL, 0, page_size),
                         10);
    }
    assert_true(hh_assert_same_as_scan(env->storage, "big", "n7", "", NULL, 1234, 100) > 50);
}

/* An order's key covers a whole request: pages that end inside one resume inside it. */
static void test_order_pages_resume_inside_a_request(void **state)
{
    hh_env_t *env = *state;
    init_noise();
    hh_item_t items[] = {{"mug", ""}, {"cup", "L"}, {"mug", ""}, {"cup", "S"}, {"pot", ""}};
    hh_write(env, "t", "o-1", items, 5, 5, -1); /* mug twice in one request */
    hh_write(env, "t", "o-2", items, 5, 3, -1);
    hh_write(env, "t", "", noise, 100, 30, 1);
    hh_write(env, "t", "o-1", items, 5, 5, 1); /* the same order again, later */
    hh_write(env, "t", "o-12", items, 5, 2, -1);
    for (int32_t page_size = 1; page_size <= 4; page_size++) {
        assert_int_equal(hh_assert_same_as_scan(env->storage, "t", NULL, NULL, "o-1", 0, page_size),
                         10);
        for (uint64_t after = 1; after < 46; after += 3) {
            hh_assert_same_as_scan(env->storage, "t", NULL, NULL, "o-1", after, page_size);
        }
    }
    assert_int_equal(hh_assert_same_as_scan(env->storage, "t", NULL, NULL, "o-2", 0, 0), 3);
    assert_int_equal(hh_assert_same_as_scan(env->storage, "t", NULL, NULL, "o-12", 0, 0), 2);
    assert_int_equal(hh_assert_same_as_scan(env->storage, "t", NULL, NULL, "o", 0, 0), 0);
    assert_int_equal(hh_assert_same_as_scan(env->storage, "t", "mug", "", NULL, 0, 1), 7);
    assert_int_equal(hh_assert_same_as_scan(env->storage, "t", "cup", "L", NULL, 0, 1), 4);
    assert_int_equal(hh_assert_same_as_scan(env->storage, "t", "cup", "", NULL, 0, 1), 0);
    hh_page_t page = hh_history(env->storage, "t", NULL, NULL, "o-1", 2, 2);
    assert_int_equal(page.response->n_entries, 2);
    assert_int_equal(page.response->entries[0]->seq, 3);
    assert_int_equal(page.response->entries[1]->seq, 4);
    assert_int_equal(page.response->next_after_seq, 4);
    hh_page_free(&page);
}

/* Item and order_id together: the order's entries of that item only. */
static void test_filters_combine(void **state)
{
    hh_env_t *env = *state;
    hh_item_t items[] = {{"mug", ""}, {"cup", ""}, {"mug", "L"}};
    hh_write(env, "t", "o-1", items, 3, 6, -1);
    hh_write(env, "t", "o-2", items, 3, 3, -1);
    hh_write(env, "t", "o-1", items, 3, 1, 1);
    assert_int_equal(hh_assert_same_as_scan(env->storage, "t", "mug", "", "o-1", 0, 1), 3);
    assert_int_equal(hh_assert_same_as_scan(env->storage, "t", "mug", "L", "o-1", 0, 0), 2);
    assert_int_equal(hh_assert_same_as_scan(env->storage, "t", "cup", "", "o-2", 0, 0), 1);
    assert_int_equal(hh_assert_same_as_scan(env->storage, "t", "pot", "", "o-2", 0, 0), 0);
    hh_page_t page = hh_history(env->storage, "t", "mug", "", "o-1", 0, 0);
    assert_int_equal(page.response->n_entries, 3);
    assert_int_equal(page.response->entries[0]->seq, 1);
    assert_int_equal(page.response->entries[1]->seq, 4);
    assert_int_equal(page.response->entries[2]->seq, 10);
    assert_int_equal(page.response->next_after_seq, 0);
    hh_page_free(&page);
}

/* Tenants whose ids prefix one another share items and order ids, and see only their own. */
static void test_other_tenants_are_invisible(void **state)
{
    hh_env_t *env = *state;
    const char *tenants[] = {"t", "tt", "t2", "t"};
    for (int round = 0; round < 3; round++) {
        for (size_t t = 0; t < 4; t++) {
            hh_write(env, tenants[t], "o-1", &mug, 1, t + 1, -1);
        }
    }
    size_t expected[] = {3 * (1 + 4), 3 * 2, 3 * 3};
    for (size_t t = 0; t < 3; t++) {
        assert_int_equal(hh_assert_same_as_scan(env->storage, tenants[t], "mug", "", NULL, 0, 2),
                         expected[t]);
        assert_int_equal(hh_assert_same_as_scan(env->storage, tenants[t], NULL, NULL, "o-1", 0, 3),
                         expected[t]);
        hh_all_t all = hh_history_all(env->storage, true, tenants[t], "mug", "", "o-1", 0, 0);
        assert_int_equal(all.entries, expected[t]);
        free(all.bytes);
    }
    assert_int_equal(hh_assert_same_as_scan(env->storage, "t3", "mug", "", NULL, 0, 0), 0);
}

/* With both filters, History walks the order and reads each of its entries: a huge order
 * with the item only at its end costs several short pages, each bounded like the scan's. */
static void test_combined_walk_is_bounded(void **state)
{
    hh_env_t *env = *state;
    init_noise();
    static hh_item_t items[3001];
    for (size_t i = 0; i < 3000; i++) {
        items[i] = noise[i % 100];
    }
    items[3000] = mug;
    uint64_t last = hh_write(env, "t", "huge", items, 3001, 3001, -1);
    uint64_t first = last - 3000;
    hh_page_t page = hh_history(env->storage, "t", "mug", "", "huge", 0, 1);
    assert_int_equal(page.response->n_entries, 0);
    assert_int_equal(page.response->next_after_seq, first + SD_SCAN_ENTRIES_MIN - 1);
    hh_page_free(&page);
    hh_all_t all = hh_history_all(env->storage, true, "t", "mug", "", "huge", 0, 1);
    assert_int_equal(all.entries, 1);
    assert_int_equal(all.seqs_sum, last);
    assert_int_equal(all.calls, 5); /* 3 x 1,000 entries, the mug, then the end */
    free(all.bytes);
    hh_assert_same_as_scan(env->storage, "t", "mug", "", "huge", 0, 1);
    hh_assert_same_as_scan(env->storage, "t", "n3", "", "huge", 17, 7);
}

/* Retention: pruned seqs are OUT_OF_RANGE as before; after them the index answers what the
 * scan answers, and the pruning pass removed the pruned entries' index keys. */
static void test_pruned_entries_are_gone(void **state)
{
    hh_env_t *env = *state;
    hh_item_t items[] = {{"mug", ""}, {"cup", ""}};
    for (int i = 0; i < 100; i++) {
        hh_write(env, "t", i % 2 ? "odd" : "even", items, 2, 3, -1);
    }
    uint64_t old_last = sd_batch_last_seq(env->batch);
    sd_write_batch_t *mark = sd_write_batch_new(); /* these were committed an hour ago */
    sd_storage_batch_put_time_index(env->storage, mark, old_last,
                                    util_now_us() - INT64_C(3600) * 1000000);
    assert_int_equal(sd_storage_write(env->storage, mark, true), SD_OK);
    sd_write_batch_free(mark);
    for (int i = 0; i < 10; i++) {
        hh_write(env, "t", i % 2 ? "odd" : "even", items, 2, 3, -1);
    }
    assert_true(hh_count_keys(env->storage, SD_CF_LEDGER_INDEX, old_last) > 0);
    assert_int_equal(sd_storage_prune_ledger(env->storage, util_now_us() - 1800 * INT64_C(1000000)),
                     SD_OK);
    assert_int_equal(sd_storage_pruned_through(env->storage), old_last);
    assert_false(sd_storage_ledger_index_prune_pending(env->storage));
    assert_int_equal(hh_count_keys(env->storage, SD_CF_LEDGER_INDEX, old_last), 0);
    /* what is left: 30 entries, 30 item keys and 10 order keys */
    assert_int_equal(hh_count_keys(env->storage, SD_CF_LEDGER_INDEX, UINT64_MAX), 30 + 10);
    hh_page_t page = hh_history(env->storage, "t", "mug", "", NULL, 0, 0);
    assert_int_equal(page.status, SD_OUT_OF_RANGE);
    page = hh_history(env->storage, "t", NULL, NULL, "odd", old_last - 1, 0);
    assert_int_equal(page.status, SD_OUT_OF_RANGE);
    assert_int_equal(hh_assert_same_as_scan(env->storage, "t", "mug", "", NULL, old_last, 2), 20);
    assert_int_equal(hh_assert_same_as_scan(env->storage, "t", NULL, NULL, "odd", old_last, 4), 15);
    assert_int_equal(hh_assert_same_as_scan(env->storage, "t", "cup", "", "even", old_last, 1), 5);
}

/* A deterministic mixed workload (three tenants, items with variants, orders spread over
 * many requests, lines repeated in a request, requests without an order): for every item,
 * every order and some pairs, with many page sizes and cursors, the index answers exactly
 * what the scan answers. */
static uint32_t next_random(uint32_t *state)
{
    *state = *state * 1103515245u + 12345u;
    return (*state >> 8) & 0xFFFFFF;
}

static void test_index_answers_what_the_scan_answered(void **state)
{
    hh_env_t *env = *state;
    const char *tenants[] = {"a", "b", "ab"};
    static char skus[20][8], orders[30][8];
    hh_item_t items[40];
    for (int i = 0; i < 20; i++) {
        snprintf(skus[i], sizeof(skus[i]), "s%d", i);
        items[2 * i] = (hh_item_t){skus[i], ""};
        items[2 * i + 1] = (hh_item_t){skus[i], "v"};
    }
    for (int i = 0; i < 30; i++) {
        snprintf(orders[i], sizeof(orders[i]), "o%d", i);
    }
    uint32_t random = 7;
    for (int request = 0; request < 600; request++) {
        hh_item_t lines[6];
        size_t count = 1 + next_random(&random) % 6;
        for (size_t i = 0; i < count; i++) {
            lines[i] = items[next_random(&random) % 40];
        }
        uint32_t order = next_random(&random) % 40; /* >= 30: no order */
        hh_write(env, tenants[next_random(&random) % 3], order < 30 ? orders[order] : "", lines,
                 count, count, next_random(&random) % 2 ? 1 : -1);
    }
    uint64_t last = sd_batch_last_seq(env->batch);
    for (int query = 0; query < 150; query++) {
        const hh_item_t *item = query % 3 != 1 ? &items[next_random(&random) % 40] : NULL;
        const char *order = query % 3 != 0 ? orders[next_random(&random) % 30] : NULL;
        uint64_t after = query % 4 == 0 ? 0 : next_random(&random) % last;
        hh_assert_same_as_scan(env->storage, tenants[query % 3], item ? item->sku : NULL,
                               item ? item->variant : NULL, order, after,
                               (int32_t)(next_random(&random) % 12));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_item_first_page_comes_directly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_order_pages_resume_inside_a_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_filters_combine, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_tenants_are_invisible, setup, teardown),
        cmocka_unit_test_setup_teardown(test_combined_walk_is_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pruned_entries_are_gone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_index_answers_what_the_scan_answered, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
