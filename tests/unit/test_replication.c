/* Unit tests for the replication pieces that need no Raft group: parsing --peers, and applying
 * a replicated entry to a real RocksDB (the index stored with it; applying it again, as a
 * replay after a crash does, leaves what applying it once did; a reopen keeps both). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "replication.h"
#include "test_helpers.h"

static size_t parse(const char *text, sd_replication_peer_t *peers, char *error)
{
    size_t count = 0;
    error[0] = '\0';
    return sd_replication_parse_peers(text, peers, &count, error, 256) ? count : 0;
}

static void test_peers_parse(void **state)
{
    (void)state;
    sd_replication_peer_t peers[SD_REPLICATION_PEERS_MAX];
    char error[256];
    assert_int_equal(
        parse("1=h1:7000=h1:50051,2=h2:7000=h2:50051,4294967295=h3:1=h3:2", peers, error), 3);
    assert_int_equal(peers[0].id, 1);
    assert_string_equal(peers[0].raft_address, "h1:7000");
    assert_string_equal(peers[1].grpc_address, "h2:50051");
    assert_int_equal(peers[2].id, 4294967295ULL);
}

static void test_peers_refused(void **state)
{
    (void)state;
    sd_replication_peer_t peers[SD_REPLICATION_PEERS_MAX];
    char error[256];
    const char *bad[] = {
        "",           "1=h:1",   "0=h:1=h:2",     "4294967296=h:1=h:2", "x=h:1=h:2",
        "-1=h:1=h:2", "1=h=h:2", "1=h:1=h:2=h:3", ",1=h:1=h:2",         "1=h:1=h:2,,2=h:3=h:4"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(parse(bad[i], peers, error), 0);
        assert_non_null(strstr(error, "--peers"));
    }
    assert_int_equal(parse("1=h:1=h:2,1=h:3=h:4", peers, error), 0);
    assert_non_null(strstr(error, "id 1 appears twice"));
    char many[1024] = "";
    for (int i = 1; i <= SD_REPLICATION_PEERS_MAX + 1; i++) {
        char entry[64];
        snprintf(entry, sizeof(entry), "%s%d=h:%d=h:%d", i > 1 ? "," : "", i, i, i);
        strcat(many, entry);
    }
    assert_int_equal(parse(many, peers, error), 0);
    assert_non_null(strstr(error, "more than"));
}

static uint64_t read_value(sd_storage_t *storage, const char *key)
{
    char *value = NULL;
    size_t length = 0;
    assert_int_equal(
        sd_storage_get(storage, SD_CF_LEVELS, (const uint8_t *)key, strlen(key), &value, &length),
        SD_OK);
    assert_non_null(value);
    uint64_t got = 0;
    memcpy(&got, value, length < sizeof(got) ? length : sizeof(got));
    sd_storage_free(value);
    return got;
}

static void test_apply_replicated_twice_is_applying_once(void **state)
{
    (void)state;
    char *dir = th_temp_dir();
    sd_storage_t *storage = th_open_storage(dir);
    assert_non_null(storage);
    assert_int_equal(sd_storage_applied_index(storage), 0);
    sd_write_batch_t *batch = sd_write_batch_new();
    uint64_t first = 5, second = 7;
    sd_write_batch_put(storage, batch, SD_CF_LEVELS, (const uint8_t *)"a", 1,
                       (const uint8_t *)&first, sizeof(first));
    sd_write_batch_put(storage, batch, SD_CF_LEVELS, (const uint8_t *)"b", 1,
                       (const uint8_t *)&second, sizeof(second));
    size_t length = 0;
    const void *data = sd_write_batch_data(batch, &length);
    assert_int_equal(sd_storage_apply_replicated(storage, data, length, 3, 0), SD_OK);
    assert_int_equal(sd_storage_applied_index(storage), 3);
    assert_int_equal(sd_storage_apply_replicated(storage, data, length, 4, 0), SD_OK);
    assert_int_equal(read_value(storage, "a"), 5);
    assert_int_equal(read_value(storage, "b"), 7);
    assert_int_equal(sd_storage_applied_index(storage), 4);
    /* a clean close flushes what the WAL-less writes left in the memtables */
    assert_int_equal(sd_storage_close(storage), SD_OK);
    storage = th_open_storage(dir);
    assert_non_null(storage);
    assert_int_equal(read_value(storage, "a"), 5);
    assert_int_equal(sd_storage_applied_index(storage), 4);
    sd_write_batch_free(batch);
    assert_int_equal(sd_storage_close(storage), SD_OK);
    th_remove_tree(dir);
    free(dir);
}

/* Regression (review): entries were applied without RocksDB's WAL; the default column family
 * (holding the applied index) could reach disk while the levels of the same entries were only
 * in memory, and a crash then lost them for good (Raft replays only past the index). A child
 * applies an entry, flushes only the default family and dies without closing; what it leaves
 * must hold the entry's levels whenever it holds its index. */
static void test_crash_after_a_partial_flush_keeps_the_entry(void **state)
{
    (void)state;
    char *dir = th_temp_dir();
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        sd_storage_t *storage = th_open_storage(dir);
        sd_write_batch_t *batch = sd_write_batch_new();
        uint64_t level = 42;
        sd_write_batch_put(storage, batch, SD_CF_LEVELS, (const uint8_t *)"k", 1,
                           (const uint8_t *)&level, sizeof(level));
        size_t length = 0;
        const void *data = sd_write_batch_data(batch, &length);
        bool ok = sd_storage_apply_replicated(storage, data, length, 9, 0) == SD_OK &&
                  sd_storage_flush_and_compact(storage, SD_CF_DEFAULT) == SD_OK;
        _exit(ok ? 0 : 1); /* a crash: nothing closed, nothing else flushed */
    }
    int status = 0;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    sd_storage_t *storage = th_open_storage(dir);
    assert_non_null(storage);
    assert_int_equal(sd_storage_applied_index(storage), 9);
    assert_int_equal(read_value(storage, "k"), 42);
    assert_int_equal(sd_storage_close(storage), SD_OK);
    th_remove_tree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        /* first: it forks, and RocksDB's thread pools must not exist yet in this process */
        cmocka_unit_test(test_crash_after_a_partial_flush_keeps_the_entry),
        cmocka_unit_test(test_peers_parse),
        cmocka_unit_test(test_peers_refused),
        cmocka_unit_test(test_apply_replicated_twice_is_applying_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
