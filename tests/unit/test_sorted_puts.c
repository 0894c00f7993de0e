/* Unit tests for sorted_puts.c over a real RocksDB in a temporary directory: every gathered
 * put lands, in key order whatever the order they came in; a rollback forgets exactly the
 * puts after its mark (a refused request leaves no index key behind); a clear forgets all. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>

#include "sorted_puts.h"
#include "test_helpers.h"

typedef struct {
    char keys[16][16];
    char values[16][16];
    size_t count;
} seen_t;

static bool remember(void *context, const uint8_t *key, size_t key_length, const uint8_t *value,
                     size_t value_length)
{
    seen_t *seen = context;
    assert_true(seen->count < 16 && key_length < 16 && value_length < 16);
    memcpy(seen->keys[seen->count], key, key_length);
    memcpy(seen->values[seen->count], value, value_length);
    seen->count++;
    return true;
}

static void add(sd_sorted_puts_t *puts, sd_storage_t *storage, sd_write_batch_t *batch,
                const char *key, const char *value)
{
    sd_sorted_puts_add(puts, storage, batch, (const uint8_t *)key, strlen(key),
                       (const uint8_t *)value, strlen(value));
}

static seen_t commit_and_read(sd_storage_t *storage, sd_sorted_puts_t *puts,
                              sd_write_batch_t *batch)
{
    sd_sorted_puts_flush(puts, storage, batch);
    assert_int_equal(sd_sorted_puts_mark(puts), 0); /* flushed puts are forgotten */
    assert_int_equal(sd_storage_write(storage, batch, true), SD_OK);
    sd_write_batch_clear(batch);
    seen_t seen;
    memset(&seen, 0, sizeof(seen));
    bool more = false;
    assert_int_equal(sd_storage_scan(storage, SD_CF_LEDGER_INDEX, (const uint8_t *)"", 0, NULL, 0,
                                     false, SIZE_MAX, remember, &seen, &more),
                     SD_OK);
    return seen;
}

static void test_rollback_forgets_what_came_after_the_mark(void **state)
{
    (void)state;
    char *dir = th_temp_dir();
    sd_storage_options_t options = {dir, 8 << 20, 64 << 20, 7 * 86400, 0, false};
    sd_storage_t *storage = NULL;
    char error[256];
    assert_int_equal(sd_storage_open(&options, &storage, error, sizeof(error)), SD_OK);
    sd_write_batch_t *batch = sd_write_batch_new();
    sd_sorted_puts_t puts = {.cf = SD_CF_LEDGER_INDEX};

    add(&puts, storage, batch, "m", "1");
    add(&puts, storage, batch, "c", "2");
    size_t mark = sd_sorted_puts_mark(&puts);
    add(&puts, storage, batch, "x", "refused");
    add(&puts, storage, batch, "a", "refused");
    sd_sorted_puts_rollback(&puts, mark);
    add(&puts, storage, batch, "q", "3"); /* gathered after a rollback: kept */
    add(&puts, storage, batch, "b", "4");
    seen_t seen = commit_and_read(storage, &puts, batch);
    assert_int_equal(seen.count, 4);
    const char *keys[] = {"b", "c", "m", "q"}, *values[] = {"4", "2", "1", "3"};
    for (size_t i = 0; i < 4; i++) {
        assert_string_equal(seen.keys[i], keys[i]);
        assert_string_equal(seen.values[i], values[i]);
    }

    /* a batch that is reset forgets its gathered puts */
    add(&puts, storage, batch, "zz", "gone");
    sd_sorted_puts_clear(&puts);
    sd_write_batch_clear(batch);
    assert_int_equal(commit_and_read(storage, &puts, batch).count, 4);

    sd_sorted_puts_free(&puts);
    sd_write_batch_free(batch);
    sd_storage_close(storage);
    th_remove_tree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rollback_forgets_what_came_after_the_mark),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
