/* Unit tests for replication snapshots (replication_snapshot.h) over real RocksDB stores: a
 * snapshot taken from one store and restored into another makes every column family of the
 * second identical to the first (records it did not have removed), across several buffers;
 * a snapshot the store already holds is not restored; a damaged snapshot changes nothing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include "replication_snapshot.h"
#include "test_helpers.h"

/* ---- a store's whole content, as text, to compare two stores ---- */

typedef struct {
    char *text;
    size_t length, capacity;
} dump_t;

static bool dump_record(void *context, sd_cf_t cf, const uint8_t *key, size_t key_length,
                        const uint8_t *value, size_t value_length)
{
    dump_t *dump = context;
    size_t need = dump->length + 2 * (key_length + (value_length > 64 ? 0 : value_length)) + 96;
    if (need > dump->capacity) {
        dump->capacity = 2 * need;
        dump->text = realloc(dump->text, dump->capacity);
        assert_non_null(dump->text);
    }
    dump->length += (size_t)sprintf(dump->text + dump->length, "%d:", (int)cf);
    for (size_t i = 0; i < key_length; i++) {
        dump->length += (size_t)sprintf(dump->text + dump->length, "%02x", key[i]);
    }
    dump->text[dump->length++] = '=';
    if (value_length > 64) { /* large values by length and FNV-1a hash: the dump stays small */
        uint64_t hash = 14695981039346656037ULL;
        for (size_t i = 0; i < value_length; i++) {
            hash = (hash ^ value[i]) * 1099511628211ULL;
        }
        dump->length += (size_t)sprintf(dump->text + dump->length, "%zu#%016llx", value_length,
                                        (unsigned long long)hash);
        value_length = 0;
    }
    for (size_t i = 0; i < value_length; i++) {
        dump->length += (size_t)sprintf(dump->text + dump->length, "%02x", value[i]);
    }
    dump->text[dump->length++] = '\n';
    dump->text[dump->length] = '\0';
    return true;
}

static char *dump_store(sd_storage_t *storage)
{
    dump_t dump = {calloc(1, 1), 0, 1};
    assert_int_equal(sd_storage_export(storage, dump_record, &dump, NULL), SD_OK);
    return dump.text;
}

/* Applies one replicated entry putting `count` records of value_bytes each into every column
 * family, keys prefixed with `prefix`. */
static void fill(sd_storage_t *storage, const char *prefix, int count, size_t value_bytes,
                 uint64_t raft_index)
{
    sd_write_batch_t *batch = sd_write_batch_new();
    uint8_t *value = malloc(value_bytes);
    assert_non_null(value);
    for (int i = 0; i < count; i++) {
        char key[64];
        int key_length = snprintf(key, sizeof(key), "%s-%06d", prefix, i);
        memset(value, 'a' + i % 26, value_bytes);
        for (int cf = 0; cf < SD_CF_COUNT; cf++) {
            sd_write_batch_put(storage, batch, (sd_cf_t)cf, (const uint8_t *)key,
                               (size_t)key_length, value, value_bytes);
        }
    }
    size_t length = 0;
    const void *data = sd_write_batch_data(batch, &length);
    assert_int_equal(sd_storage_apply_replicated(storage, data, length, raft_index, 0), SD_OK);
    sd_write_batch_free(batch);
    free(value);
}

/* Reads one record with a point read (not through an export, which snapshots are made of). */
static char *get(sd_storage_t *storage, sd_cf_t cf, const char *key, size_t *length_out)
{
    char *value = NULL;
    assert_int_equal(
        sd_storage_get(storage, cf, (const uint8_t *)key, strlen(key), &value, length_out), SD_OK);
    return value;
}

/* The end of a snapshot's records (before its padding). */
static size_t records_end(const uint8_t *snapshot)
{
    return SD_SNAPSHOT_HEADER_BYTES + (size_t)sd_be64_get(snapshot + 24);
}

/* Writes the checksum again after a test changed the records (to reach the framing checks). */
static void reseal(uint8_t *snapshot)
{
    size_t end = records_end(snapshot);
    uLong crc = crc32_z(crc32_z(0L, Z_NULL, 0), snapshot + SD_SNAPSHOT_HEADER_BYTES,
                        end - SD_SNAPSHOT_HEADER_BYTES);
    sd_be32_put(snapshot + 4, (uint32_t)crc);
}

/* The buffers of a snapshot, joined (the library hands a restore one buffer); frees them. */
static uint8_t *join(struct raft_buffer *buffers, unsigned count, const sd_snapshot_info_t *info,
                     size_t *length_out)
{
    size_t total = 0;
    for (unsigned i = 0; i < count; i++) {
        total += buffers[i].len;
    }
    uint8_t *joined = raft_malloc(total);
    assert_non_null(joined);
    size_t at = 0;
    for (unsigned i = 0; i < count; i++) {
        memcpy(joined + at, buffers[i].base, buffers[i].len);
        at += buffers[i].len;
        raft_free(buffers[i].base);
    }
    raft_free(buffers);
    assert_int_equal(total, info->bytes);
    assert_int_equal(total % 8, 0);
    *length_out = total;
    return joined;
}

static uint8_t *take(sd_storage_t *storage, size_t *length_out, sd_snapshot_info_t *info_out,
                     unsigned *buffers_count_out)
{
    struct raft_buffer *buffers = NULL;
    unsigned count = 0;
    assert_int_equal(sd_snapshot_take(storage, &buffers, &count, info_out), SD_OK);
    *buffers_count_out = count;
    return join(buffers, count, info_out, length_out);
}

/* Restores a snapshot that must be restored (not held already); what it says of itself. */
static sd_snapshot_info_t restore_ok(sd_storage_t *storage, const uint8_t *bytes, size_t length)
{
    sd_snapshot_info_t info;
    char error[256] = "";
    bool restored = false;
    assert_int_equal(
        sd_snapshot_restore(storage, bytes, length, &info, &restored, error, sizeof(error)), SD_OK);
    assert_true(restored);
    return info;
}

/* Every record of every family the same in both stores. */
static void assert_same_store(sd_storage_t *want_store, sd_storage_t *got_store)
{
    char *want = dump_store(want_store), *got = dump_store(got_store);
    assert_string_equal(got, want);
    free(want);
    free(got);
}

typedef struct {
    char *dirs[2];
    sd_storage_t *stores[2];
} pair_t;

static int pair_setup(void **state)
{
    pair_t *pair = calloc(1, sizeof(*pair));
    for (int i = 0; i < 2; i++) {
        pair->dirs[i] = th_temp_dir();
        pair->stores[i] = th_open_storage(pair->dirs[i]);
        assert_non_null(pair->stores[i]);
    }
    *state = pair;
    return 0;
}

static int pair_teardown(void **state)
{
    pair_t *pair = *state;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(sd_storage_close(pair->stores[i]), SD_OK);
        th_remove_tree(pair->dirs[i]);
        free(pair->dirs[i]);
    }
    free(pair);
    return 0;
}

static void test_restore_makes_the_stores_identical(void **state)
{
    pair_t *pair = *state;
    sd_storage_t *leader = pair->stores[0], *behind = pair->stores[1];
    fill(leader, "shared", 50, 16, 10);
    fill(leader, "only-leader", 20, 40, 11);
    fill(behind, "shared", 50, 8, 4); /* older values of the same keys */
    fill(behind, "only-behind", 30, 8, 5);
    size_t length = 0;
    sd_snapshot_info_t info;
    unsigned buffers = 0;
    uint8_t *snapshot = take(leader, &length, &info, &buffers);
    assert_int_equal(info.applied_index, 11);
    /* every record of 5 families, plus the applied index and last-seq metadata */
    assert_true(info.records >= 5 * 70);
    sd_snapshot_info_t restored_info = restore_ok(behind, snapshot, length);
    assert_int_equal(restored_info.applied_index, 11);
    assert_int_equal(sd_storage_applied_index(behind), 11);
    char *want = dump_store(leader), *got = dump_store(behind);
    assert_string_equal(got, want);
    assert_null(strstr(got, "6f6e6c792d626568696e64")); /* "only-behind": gone */
    free(want);
    free(got);
    /* and by point reads, family by family: the leader's values, the others gone */
    for (int cf = 0; cf < SD_CF_COUNT; cf++) {
        size_t got_length = 0;
        char *value = get(behind, (sd_cf_t)cf, "shared-000007", &got_length);
        assert_non_null(value);
        assert_int_equal(got_length, 16);
        sd_storage_free(value);
        value = get(behind, (sd_cf_t)cf, "only-leader-000019", &got_length);
        assert_non_null(value);
        assert_int_equal(got_length, 40);
        sd_storage_free(value);
        assert_null(get(behind, (sd_cf_t)cf, "only-behind-000000", &got_length));
    }
    raft_free(snapshot);
}

static void test_a_large_state_spans_several_buffers(void **state)
{
    pair_t *pair = *state;
    /* 5 families x 3 records x 1 MiB: past one buffer of SD_SNAPSHOT_CHUNK_BYTES */
    fill(pair->stores[0], "big", 3, 1 << 20, 3);
    size_t length = 0;
    sd_snapshot_info_t info;
    unsigned buffers = 0;
    uint8_t *snapshot = take(pair->stores[0], &length, &info, &buffers);
    assert_true(buffers >= 3);
    restore_ok(pair->stores[1], snapshot, length);
    assert_same_store(pair->stores[0], pair->stores[1]);
    raft_free(snapshot);
}

static void test_a_snapshot_the_store_holds_is_not_restored(void **state)
{
    pair_t *pair = *state;
    fill(pair->stores[0], "old", 5, 8, 7);
    size_t length = 0;
    sd_snapshot_info_t info;
    unsigned buffers = 0;
    uint8_t *snapshot = take(pair->stores[0], &length, &info, &buffers);
    /* the store went on applying after the snapshot (at start Raft hands its last one back) */
    fill(pair->stores[0], "newer", 5, 8, 9);
    char *before = dump_store(pair->stores[0]);
    bool restored = true;
    char error[256] = "";
    assert_int_equal(sd_snapshot_restore(pair->stores[0], snapshot, length, &info, &restored, error,
                                         sizeof(error)),
                     SD_OK);
    assert_false(restored);
    char *after = dump_store(pair->stores[0]);
    assert_string_equal(after, before);
    assert_int_equal(sd_storage_applied_index(pair->stores[0]), 9);
    free(before);
    free(after);
    raft_free(snapshot);
}

/* A group restored from a store (--restore-group) holds data at applied index 0: adopting it
 * drops the old group's applied index and member directory, and its first snapshot must
 * reach a new member's empty store (which has applied nothing either). */
static void test_a_group_base_reaches_an_empty_store(void **state)
{
    pair_t *pair = *state;
    sd_storage_t *base = pair->stores[0], *empty = pair->stores[1];
    assert_int_equal(sd_storage_adopt_as_group_base(empty), SD_FAILED_PRECONDITION);
    fill(base, "base", 10, 8, 42); /* written by another group, up to its index 42 */
    sd_write_batch_t *batch = sd_write_batch_new();
    sd_storage_batch_put_last_seq(base, batch, 17);
    sd_storage_batch_put_member(base, batch, 1001, "old-member:50051");
    assert_int_equal(sd_storage_write(base, batch, true), SD_OK);
    sd_write_batch_free(batch);
    assert_int_equal(sd_storage_adopt_as_group_base(base), SD_OK);
    assert_int_equal(sd_storage_applied_index(base), 0);
    char address[64];
    assert_int_equal(sd_storage_get_member(base, 1001, address, sizeof(address)), SD_NOT_FOUND);
    uint64_t base_seq = 0;
    assert_int_equal(sd_storage_load_group_base(base, &base_seq), SD_OK);
    assert_int_equal(base_seq, 17);
    size_t length = 0;
    sd_snapshot_info_t info;
    unsigned buffers = 0;
    uint8_t *snapshot = take(base, &length, &info, &buffers);
    assert_int_equal(info.applied_index, 0);
    restore_ok(empty, snapshot, length);
    assert_same_store(base, empty);
    assert_int_equal(sd_storage_load_group_base(empty, &base_seq), SD_OK);
    assert_int_equal(base_seq, 17);
    assert_int_equal(sd_storage_read_last_seq(empty), 17);
    /* both hold the base now: a snapshot at applied index 0, handed back at a restart, is not
     * written again (a whole-store rewrite of what is there) */
    for (int i = 0; i < 2; i++) {
        bool restored = true;
        char error[256] = "";
        assert_int_equal(sd_snapshot_restore(pair->stores[i], snapshot, length, &info, &restored,
                                             error, sizeof(error)),
                         SD_OK);
        assert_false(restored);
    }
    raft_free(snapshot);
}

/* Applies an entry (a put of `key` in every family, or its delete) to `storage` as the loop
 * does, and hands it to `prep` (if any) as written after its point in time. */
static void apply_entry(sd_storage_t *storage, sd_snapshot_prep_t *prep, const char *key,
                        bool delete, uint64_t index)
{
    sd_write_batch_t *batch = sd_write_batch_new();
    for (int cf = 0; cf < SD_CF_COUNT; cf++) {
        if (delete) {
            sd_write_batch_delete(storage, batch, (sd_cf_t)cf, (const uint8_t *)key, strlen(key));
        } else {
            sd_write_batch_put(storage, batch, (sd_cf_t)cf, (const uint8_t *)key, strlen(key),
                               (const uint8_t *)"after", 5);
        }
    }
    size_t length = 0;
    const void *data = sd_write_batch_data(batch, &length);
    assert_int_equal(sd_storage_apply_replicated(storage, data, length, index, index), SD_OK);
    if (prep != NULL) {
        sd_snapshot_prep_add_delta(prep, data, length, index, index);
    }
    sd_write_batch_free(batch);
}

static uint8_t *finish(sd_snapshot_prep_t *prep, size_t *length_out, sd_snapshot_info_t *info)
{
    while (!sd_snapshot_prep_ready(prep)) {
        struct timespec pause = {0, 1000000};
        nanosleep(&pause, NULL);
    }
    struct raft_buffer *buffers = NULL;
    unsigned count = 0;
    assert_int_equal(sd_snapshot_prep_finish(prep, &buffers, &count, info), SD_OK);
    return join(buffers, count, info, length_out);
}

/* The records of a format-2 snapshot alone, as a format-1 snapshot (raft_malloc'ed). */
static uint8_t *records_only(const uint8_t *snapshot, const sd_snapshot_info_t *info,
                             size_t *length_out)
{
    uint64_t payload = info->deltas_offset - SD_SNAPSHOT_HEADER_BYTES;
    size_t length = (size_t)((info->deltas_offset + 7) / 8 * 8);
    uint8_t *copy = raft_calloc(1, length);
    assert_non_null(copy);
    memcpy(copy, snapshot, (size_t)info->deltas_offset);
    copy[3] = 1;
    sd_be64_put(copy + 8, info->deltas_base);
    sd_be64_put(copy + 24, payload);
    uLong crc = crc32_z(crc32_z(0L, Z_NULL, 0), copy + SD_SNAPSHOT_HEADER_BYTES, (size_t)payload);
    sd_be32_put(copy + 4, (uint32_t)crc);
    *length_out = length;
    return copy;
}

/* A snapshot prepared off the loop: the records as of its point in time (copied by its
 * thread while entries go on being applied: they are not in the records), then those entries
 * — puts and deletes — in order; restored on an empty store (records replaced, then the
 * entries) or on a store holding the records' state already (only the entries), it is
 * exactly the store at the end, and its applied index the last entry's. Damaged in the
 * entries' section, it is refused. */
static void test_a_prepared_snapshot_holds_the_entries_applied_meanwhile(void **state)
{
    pair_t *pair = *state;
    sd_storage_t *source = pair->stores[0];
    fill(source, "base", 2000, 64, 5);
    sd_snapshot_prep_t *prep = sd_snapshot_prep_start(source);
    assert_non_null(prep);
    apply_entry(source, prep, "base-000001", true, 6);
    apply_entry(source, prep, "later", false, 7);
    assert_int_equal(sd_snapshot_prep_delta_count(prep), 2);
    size_t length = 0;
    sd_snapshot_info_t info;
    uint8_t *snapshot = finish(prep, &length, &info);
    assert_int_equal(info.applied_index, 7);
    assert_int_equal(info.deltas, 2);
    assert_int_equal(info.deltas_base, 5);
    assert_int_equal(info.records, 5 * 2000 + 2); /* and the applied index and its records */
    /* the records alone: the point in time, before both entries */
    size_t records_length = 0;
    uint8_t *records = records_only(snapshot, &info, &records_length);
    restore_ok(pair->stores[1], records, records_length);
    raft_free(records);
    assert_int_equal(sd_storage_applied_index(pair->stores[1]), 5);
    size_t value_length = 0;
    assert_null(get(pair->stores[1], SD_CF_LEVELS, "later", &value_length));
    char *value = get(pair->stores[1], SD_CF_LEVELS, "base-000001", &value_length);
    assert_non_null(value);
    sd_storage_free(value);
    /* that store applies the first entry itself (as a follower does from the log); then the
     * snapshot: only the entry past its own index */
    apply_entry(pair->stores[1], NULL, "base-000001", true, 6);
    restore_ok(pair->stores[1], snapshot, length);
    assert_same_store(source, pair->stores[1]);
    assert_int_equal(sd_storage_applied_index(pair->stores[1]), 7);
    /* on an empty store: the records, then the entries */
    char *dir = th_temp_dir();
    sd_storage_t *empty = th_open_storage(dir);
    restore_ok(empty, snapshot, length);
    assert_same_store(source, empty);
    assert_int_equal(sd_storage_applied_index(empty), 7);
    assert_int_equal(sd_storage_close(empty), SD_OK);
    th_remove_tree(dir);
    free(dir);
    char error[256] = "";
    sd_snapshot_info_t checked;
    sd_be64_put(snapshot + 8, 6); /* the header names another applied index than its last */
    assert_int_equal(sd_snapshot_check(snapshot, length, &checked, error, sizeof(error)),
                     SD_INVALID_ARGUMENT);
    assert_non_null(strstr(error, "last entry is not its applied index"));
    sd_be64_put(snapshot + 8, 7);
    /* one byte of the last entry changed: the checksum no longer matches */
    snapshot[length - 9] ^= 0x01;
    assert_int_equal(sd_snapshot_check(snapshot, length, &checked, error, sizeof(error)),
                     SD_INVALID_ARGUMENT);
    raft_free(snapshot);
}

/* Without entries after its point it is a format-1 snapshot; abandoned while its thread
 * copies, nothing is left behind (ASan, valgrind). */
static void test_a_prepared_snapshot_without_entries_and_an_abandoned_one(void **state)
{
    pair_t *pair = *state;
    fill(pair->stores[0], "base", 2000, 256, 3);
    sd_snapshot_prep_abandon(sd_snapshot_prep_start(pair->stores[0]));
    sd_snapshot_prep_t *prep = sd_snapshot_prep_start(pair->stores[0]);
    assert_non_null(prep);
    size_t length = 0;
    sd_snapshot_info_t info;
    uint8_t *snapshot = finish(prep, &length, &info);
    assert_int_equal(info.deltas, 0);
    assert_int_equal(snapshot[3], 1);
    size_t taken_length = 0;
    unsigned buffers = 0;
    sd_snapshot_info_t taken_info;
    uint8_t *taken = take(pair->stores[0], &taken_length, &taken_info, &buffers);
    assert_int_equal(taken_length, length);
    assert_memory_equal(taken, snapshot, length); /* the same bytes as a copy on the loop */
    raft_free(taken);
    raft_free(snapshot);
}

/* index u64, last seq u64, length u32 (replication_snapshot.h) */
#define SD_SNAPSHOT_DELTA_TEST_HEADER 20

/* Restores `bytes` into the second store and checks it was refused with nothing changed. */
static void assert_refused(pair_t *pair, const uint8_t *bytes, size_t length, const char *reason)
{
    char *before = dump_store(pair->stores[1]);
    sd_snapshot_info_t info;
    bool restored = true;
    char error[256] = "";
    assert_int_equal(
        sd_snapshot_restore(pair->stores[1], bytes, length, &info, &restored, error, sizeof(error)),
        SD_INVALID_ARGUMENT);
    assert_false(restored);
    assert_non_null(strstr(error, reason));
    char *after = dump_store(pair->stores[1]);
    assert_string_equal(after, before);
    free(before);
    free(after);
}

static void test_a_damaged_snapshot_changes_nothing(void **state)
{
    pair_t *pair = *state;
    fill(pair->stores[0], "k", 4, 8, 20);
    fill(pair->stores[1], "mine", 3, 8, 2);
    size_t length = 0;
    sd_snapshot_info_t info;
    unsigned buffers = 0;
    uint8_t *snapshot = take(pair->stores[0], &length, &info, &buffers);
    uint8_t *copy = malloc(length + 8);
    /* cut anywhere before the padding: refused (cut inside the padding it is still whole) */
    for (size_t cut = 0; cut < records_end(snapshot); cut++) {
        char error[256] = "";
        sd_snapshot_info_t ignored;
        assert_int_equal(sd_snapshot_check(snapshot, cut, &ignored, error, sizeof(error)),
                         SD_INVALID_ARGUMENT);
    }
    assert_refused(pair, snapshot, 16, "not a stockd snapshot");
    memcpy(copy, snapshot, length);
    copy[0] = 'X';
    assert_refused(pair, copy, length, "not a stockd snapshot");
    memcpy(copy, snapshot, length);
    copy[3] = 3; /* a format this version does not know */
    assert_refused(pair, copy, length, "not a stockd snapshot");
    memcpy(copy, snapshot, length);
    copy[3] = 2; /* format 2 names entries after the records: there are none */
    assert_refused(pair, copy, length, "entries section is cut off");
    memcpy(copy, snapshot, length);
    copy[records_end(snapshot) - 1] ^= 1; /* one bit of the last value */
    assert_refused(pair, copy, length, "checksum does not match");
    memcpy(copy, snapshot, length);
    copy[SD_SNAPSHOT_HEADER_BYTES] = SD_CF_COUNT; /* the first record's family */
    reseal(copy);
    assert_refused(pair, copy, length, "record 1");
    memcpy(copy, snapshot, length);
    copy[SD_SNAPSHOT_HEADER_BYTES + 1] = 0x7f; /* the first record's key length */
    reseal(copy);
    assert_refused(pair, copy, length, "record 1 runs past the end");
    memcpy(copy, snapshot, length);
    copy[SD_SNAPSHOT_HEADER_BYTES + 5] = 0xff; /* its value length: past the end on its own */
    reseal(copy);
    assert_refused(pair, copy, length, "record 1 runs past the end");
    memcpy(copy, snapshot, length);
    copy[23] += 1; /* one record more than there is */
    assert_refused(pair, copy, length, "record");
    memcpy(copy, snapshot, length);
    copy[23] -= 1; /* one record less: bytes left over */
    assert_refused(pair, copy, length, "after its last record");
    memcpy(copy, snapshot, length);
    copy[24] = 0xff; /* a record length past the buffer */
    assert_refused(pair, copy, length, "shorter than its header says");
    memcpy(copy, snapshot, length);
    memset(copy + length, 0, 8); /* 8 more bytes of padding than a snapshot has */
    assert_refused(pair, copy, length + 8, "longer than its header says");
    if (records_end(snapshot) < length) {
        memcpy(copy, snapshot, length);
        copy[length - 1] = 1; /* padding that is not zeros */
        assert_refused(pair, copy, length, "after its last record");
    }
    free(copy);
    raft_free(snapshot);
}

static void test_a_failed_restore_write_leaves_the_old_state(void **state)
{
    pair_t *pair = *state;
    fill(pair->stores[0], "new", 10, 8, 30);
    fill(pair->stores[1], "old", 10, 8, 3);
    char *before = dump_store(pair->stores[1]);
    size_t length = 0;
    sd_snapshot_info_t info;
    unsigned buffers = 0;
    uint8_t *snapshot = take(pair->stores[0], &length, &info, &buffers);
    sd_storage_fail_write_after(pair->stores[1], 1); /* the restore's write fails */
    bool restored = true;
    char error[256] = "";
    assert_int_not_equal(sd_snapshot_restore(pair->stores[1], snapshot, length, &info, &restored,
                                             error, sizeof(error)),
                         SD_OK);
    assert_false(restored);
    assert_true(sd_storage_failed(pair->stores[1])); /* fail-stop, as any failed write */
    /* reopened: the old state whole (one atomic write, or none) */
    assert_int_equal(sd_storage_close(pair->stores[1]), SD_UNAVAILABLE);
    pair->stores[1] = th_open_storage(pair->dirs[1]);
    assert_non_null(pair->stores[1]);
    char *after = dump_store(pair->stores[1]);
    assert_string_equal(after, before);
    free(before);
    free(after);
    raft_free(snapshot);
}

static void test_an_empty_store_takes_a_valid_snapshot(void **state)
{
    pair_t *pair = *state;
    size_t length = 0;
    sd_snapshot_info_t info;
    unsigned buffers = 0;
    uint8_t *snapshot = take(pair->stores[0], &length, &info, &buffers);
    assert_int_equal(info.applied_index, 0);
    char error[256] = "";
    sd_snapshot_info_t checked;
    assert_int_equal(sd_snapshot_check(snapshot, length, &checked, error, sizeof(error)), SD_OK);
    assert_int_equal(checked.records, info.records);
    /* a store that applied nothing takes it (a restored group's base is at index 0 too,
     * test_a_group_base_reaches_an_empty_store), and stays as empty as the snapshot */
    restore_ok(pair->stores[1], snapshot, length);
    assert_same_store(pair->stores[0], pair->stores[1]);
    raft_free(snapshot);
}

/* The entries section of a format-2 snapshot, damaged and sealed again (so past the
 * checksum): a count that lies either way or is 0, an entry at or before the records' index
 * or out of order, a length past the end or shorter than a WriteBatch. Refused, nothing
 * changed. */
static void test_a_damaged_entries_section_changes_nothing(void **state)
{
    pair_t *pair = *state;
    fill(pair->stores[0], "base", 50, 16, 5);
    fill(pair->stores[1], "mine", 3, 8, 2);
    sd_snapshot_prep_t *prep = sd_snapshot_prep_start(pair->stores[0]);
    assert_non_null(prep);
    apply_entry(pair->stores[0], prep, "one", false, 6);
    apply_entry(pair->stores[0], prep, "two", false, 8);
    size_t length = 0;
    sd_snapshot_info_t info;
    uint8_t *snapshot = finish(prep, &length, &info);
    size_t section = (size_t)info.deltas_offset, first = section + 16;
    size_t second = first + SD_SNAPSHOT_DELTA_TEST_HEADER + sd_be32_get(snapshot + first + 16);
    struct {
        size_t at;
        uint64_t value;
        int bytes;
        const char *reason;
    } cases[] = {
        {section, 3, 8, "entry 3 is cut off"},
        {section, 1, 8, "bytes after its last entry"},
        {section, 0, 8, "without entries"},
        {first, 5, 8, "entry 1 is cut off or out of order"},
        {second, 6, 8, "entry 2 is cut off or out of order"},
        {first + 16, 0x7fffffff, 4, "entry 1 is cut off"},
        {first + 16, 4, 4, "entry 1 is cut off"},
    };
    uint8_t *copy = malloc(length);
    assert_non_null(copy);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memcpy(copy, snapshot, length);
        if (cases[i].bytes == 8) {
            sd_be64_put(copy + cases[i].at, cases[i].value);
        } else {
            sd_be32_put(copy + cases[i].at, (uint32_t)cases[i].value);
        }
        reseal(copy);
        assert_refused(pair, copy, length, cases[i].reason);
    }
    free(copy);
    raft_free(snapshot);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_restore_makes_the_stores_identical, pair_setup,
                                        pair_teardown),
        cmocka_unit_test_setup_teardown(test_a_large_state_spans_several_buffers, pair_setup,
                                        pair_teardown),
        cmocka_unit_test_setup_teardown(test_a_group_base_reaches_an_empty_store, pair_setup,
                                        pair_teardown),
        cmocka_unit_test_setup_teardown(
            test_a_prepared_snapshot_holds_the_entries_applied_meanwhile, pair_setup,
            pair_teardown),
        cmocka_unit_test_setup_teardown(
            test_a_prepared_snapshot_without_entries_and_an_abandoned_one, pair_setup,
            pair_teardown),
        cmocka_unit_test_setup_teardown(test_a_damaged_entries_section_changes_nothing, pair_setup,
                                        pair_teardown),
        cmocka_unit_test_setup_teardown(test_a_snapshot_the_store_holds_is_not_restored, pair_setup,
                                        pair_teardown),
        cmocka_unit_test_setup_teardown(test_a_damaged_snapshot_changes_nothing, pair_setup,
                                        pair_teardown),
        cmocka_unit_test_setup_teardown(test_a_failed_restore_write_leaves_the_old_state,
                                        pair_setup, pair_teardown),
        cmocka_unit_test_setup_teardown(test_an_empty_store_takes_a_valid_snapshot, pair_setup,
                                        pair_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
