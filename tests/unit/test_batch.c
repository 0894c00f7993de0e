/* Unit tests for batch.c, the write logic, against a real RocksDB in a temporary directory:
 * restricted decrements, atomicity, duplicate lines, floors, untracked items, the ±10^15
 * range, compare-and-set, idempotency, effects of earlier requests in the same batch, and a
 * failed commit storing nothing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "batch.h"
#include "sd_limits.h"
#include "test_helpers.h"
#include "alloc.h"
#include "util.h"

#define MAX_LINES 8

typedef struct {
    char *dir;
    sd_storage_t *storage;
    sd_batch_t *batch;
} env_t;

/* A request under construction, with storage for its lines. */
typedef struct {
    Stockd__V1__ItemRef items[MAX_LINES];
    Stockd__V1__Line lines[MAX_LINES];
    Stockd__V1__Line *line_pointers[MAX_LINES];
    Stockd__V1__SetLine set_lines[MAX_LINES];
    Stockd__V1__SetLine *set_pointers[MAX_LINES];
    Google__Protobuf__BoolValue tracked[MAX_LINES];
    Google__Protobuf__Int64Value floors[MAX_LINES];
    Google__Protobuf__UInt64Value versions[MAX_LINES];
    sd_write_request_t request;
} req_t;

static int setup(void **state)
{
    env_t *env = calloc(1, sizeof(*env));
    env->dir = th_temp_dir();
    env->storage = th_open_storage(env->dir);
    env->batch =
        sd_batch_new(env->storage, sd_storage_last_seq(env->storage), INT64_C(7) * 86400 * 1000000);
    *state = env;
    return env->storage && env->batch ? 0 : -1;
}

static int teardown(void **state)
{
    env_t *env = *state;
    sd_batch_free(env->batch);
    sd_storage_close(env->storage);
    th_remove_tree(env->dir);
    free(env->dir);
    free(env);
    return 0;
}

static void req_init(req_t *r, sd_write_kind_t kind)
{
    memset(r, 0, sizeof(*r));
    r->request.kind = kind;
    r->request.tenant_id = "t1";
    r->request.lines = r->line_pointers;
    r->request.set_lines = r->set_pointers;
    r->request.order_id = "order-1";
    r->request.reason_text = "";
    r->request.request_id = "";
}

static Stockd__V1__ItemRef *req_item(req_t *r, size_t i, const char *sku)
{
    stockd__v1__item_ref__init(&r->items[i]);
    r->items[i].app_id = "app";
    r->items[i].catalog_item_id = (char *)sku;
    return &r->items[i];
}

static void req_line(req_t *r, const char *sku, int64_t quantity)
{
    size_t i = r->request.lines_count++;
    stockd__v1__line__init(&r->lines[i]);
    r->lines[i].item = req_item(r, i, sku);
    r->lines[i].quantity = quantity;
    r->line_pointers[i] = &r->lines[i];
}

/* A SetStock line; tracked < 0 / floor == INT64_MIN / version < 0 mean "absent". */
static void req_set(req_t *r, const char *sku, int64_t available, int tracked, int64_t floor,
                    int64_t version)
{
    size_t i = r->request.lines_count++;
    stockd__v1__set_line__init(&r->set_lines[i]);
    r->set_lines[i].item = req_item(r, i, sku);
    r->set_lines[i].available = available;
    if (tracked >= 0) {
        google__protobuf__bool_value__init(&r->tracked[i]);
        r->tracked[i].value = tracked;
        r->set_lines[i].tracked = &r->tracked[i];
    }
    if (floor != INT64_MIN) {
        google__protobuf__int64_value__init(&r->floors[i]);
        r->floors[i].value = floor;
        r->set_lines[i].floor = &r->floors[i];
    }
    if (version >= 0) {
        google__protobuf__uint64_value__init(&r->versions[i]);
        r->versions[i].value = (uint64_t)version;
        r->set_lines[i].expected_version = &r->versions[i];
    }
    r->set_pointers[i] = &r->set_lines[i];
}

static sd_status_t apply(env_t *env, req_t *r, sd_write_result_t *result)
{
    sd_write_result_init(result);
    sd_batch_apply(env->batch, &r->request, 1000, result);
    return result->error.status;
}

/* Applies and commits one request on its own; returns its status. */
static sd_status_t run(env_t *env, req_t *r)
{
    sd_write_result_t result;
    sd_status_t status = apply(env, r, &result);
    assert_int_equal(sd_batch_commit(env->batch, true), SD_OK);
    sd_batch_reset(env->batch, sd_batch_last_seq(env->batch));
    sd_write_result_free(&result);
    return status;
}

static sd_level_t level_of(env_t *env, const char *sku)
{
    sd_item_key_t parts = {sd_bytes_of("t1"), sd_bytes_of(""), sd_bytes_of("app"), sd_bytes_of(sku),
                           sd_bytes_of("")};
    uint8_t key[SD_ITEM_KEY_BYTES_MAX];
    size_t length = sd_key_encode_item(&parts, key, sizeof(key));
    sd_level_t level;
    bool found;
    assert_int_equal(sd_storage_get_level(env->storage, key, length, &level, &found), SD_OK);
    return level;
}

/* Removes a request_id record, so the same request can be applied afresh. */
static void th_remove_idempotency(env_t *env, const char *request_id)
{
    uint8_t key[SD_IDEMPOTENCY_KEY_BYTES_MAX];
    size_t key_length =
        sd_key_encode_idempotency(sd_bytes_of("t1"), sd_bytes_of(request_id), key, sizeof(key));
    sd_write_batch_t *batch = sd_write_batch_new();
    sd_write_batch_delete(env->storage, batch, SD_CF_IDEMPOTENCY, key, key_length);
    assert_int_equal(sd_storage_write(env->storage, batch, true), SD_OK);
    sd_write_batch_free(batch);
}

static void set_stock(env_t *env, const char *sku, int64_t available)
{
    req_t r;
    req_init(&r, SD_WRITE_SET);
    req_set(&r, sku, available, -1, INT64_MIN, -1);
    assert_int_equal(run(env, &r), SD_OK);
}

static void test_restricted_refusal_changes_nothing(void **state)
{
    env_t *env = *state;
    set_stock(env, "a", 5);
    set_stock(env, "b", 1);
    uint64_t seq = sd_batch_last_seq(env->batch);
    req_t r;
    req_init(&r, SD_WRITE_DECREMENT);
    r.request.restrict_inventory = true;
    req_line(&r, "a", 3);
    req_line(&r, "b", 2);
    req_line(&r, "c", 1); /* never seen: available 0 */
    sd_write_result_t result;
    assert_int_equal(apply(env, &r, &result), SD_FAILED_PRECONDITION);
    assert_false(result.applied);
    assert_int_equal(result.error.precondition_violations_count, 2);
    assert_string_equal(result.error.precondition_violations[0].first, "INSUFFICIENT_STOCK");
    assert_non_null(strstr(result.error.precondition_violations[0].second, "\"b\""));
    assert_non_null(strstr(result.error.precondition_violations[0].third, "requested 2"));
    assert_non_null(strstr(result.error.precondition_violations[0].third, "available 1"));
    assert_non_null(strstr(result.error.precondition_violations[1].second, "\"c\""));
    sd_write_result_free(&result);
    assert_int_equal(sd_batch_applied_count(env->batch), 0);
    assert_int_equal(sd_batch_last_seq(env->batch), seq);
    assert_int_equal(level_of(env, "a").available, 5);
    assert_int_equal(level_of(env, "b").available, 1);
}

static void test_unrestricted_goes_negative(void **state)
{
    env_t *env = *state;
    set_stock(env, "a", 1);
    req_t r;
    req_init(&r, SD_WRITE_DECREMENT);
    req_line(&r, "a", 4);
    assert_int_equal(run(env, &r), SD_OK);
    sd_level_t level = level_of(env, "a");
    assert_int_equal(level.available, -3);
    assert_int_equal(level.version, 2);
    assert_int_equal(level.updated_at_us, 1000);
}

static void test_duplicate_lines_are_summed(void **state)
{
    env_t *env = *state;
    set_stock(env, "a", 5);
    req_t r;
    req_init(&r, SD_WRITE_DECREMENT);
    r.request.restrict_inventory = true;
    req_line(&r, "a", 3);
    req_line(&r, "a", 3);
    assert_int_equal(run(env, &r), SD_FAILED_PRECONDITION);
    assert_int_equal(level_of(env, "a").available, 5);
    set_stock(env, "a", 6);
    uint64_t seq = sd_batch_last_seq(env->batch);
    sd_write_result_t result;
    assert_int_equal(apply(env, &r, &result), SD_OK);
    /* one ledger entry per line, one level per distinct item */
    assert_int_equal(sd_batch_last_seq(env->batch), seq + 2);
    Stockd__V1__DecrementResponse *response =
        stockd__v1__decrement_response__unpack(NULL, result.response_length, result.response);
    assert_non_null(response);
    assert_int_equal(response->n_levels, 1);
    assert_int_equal(response->levels[0]->available, 0);
    assert_int_equal(response->ledger_seq, seq + 2);
    assert_false(response->replayed);
    stockd__v1__decrement_response__free_unpacked(response, NULL);
    sd_write_result_free(&result);
}

static void test_floor_allows_bounded_backorder(void **state)
{
    env_t *env = *state;
    req_t r;
    req_init(&r, SD_WRITE_SET);
    req_set(&r, "a", 0, -1, -2, -1);
    assert_int_equal(run(env, &r), SD_OK);
    req_init(&r, SD_WRITE_DECREMENT);
    r.request.restrict_inventory = true;
    req_line(&r, "a", 3);
    assert_int_equal(run(env, &r), SD_FAILED_PRECONDITION);
    req_init(&r, SD_WRITE_DECREMENT);
    r.request.restrict_inventory = true;
    req_line(&r, "a", 2);
    assert_int_equal(run(env, &r), SD_OK);
    assert_int_equal(level_of(env, "a").available, -2);
    assert_int_equal(level_of(env, "a").floor, -2);
}

static void test_untracked_items_never_fail(void **state)
{
    env_t *env = *state;
    req_t r;
    req_init(&r, SD_WRITE_SET);
    req_set(&r, "u", 2, 0, INT64_MIN, -1);
    assert_int_equal(run(env, &r), SD_OK);
    uint64_t seq = sd_batch_last_seq(env->batch);
    req_init(&r, SD_WRITE_DECREMENT);
    r.request.restrict_inventory = true;
    req_line(&r, "u", 1000);
    assert_int_equal(run(env, &r), SD_OK);
    assert_int_equal(sd_batch_last_seq(env->batch), seq + 1); /* the ledger still records it */
    sd_level_t level = level_of(env, "u");
    assert_int_equal(level.available, 2);
    assert_false(level.tracked);
    /* SetStock still sets it, and keeps tracked when the wrapper is absent */
    req_init(&r, SD_WRITE_SET);
    req_set(&r, "u", 7, -1, INT64_MIN, -1);
    assert_int_equal(run(env, &r), SD_OK);
    assert_int_equal(level_of(env, "u").available, 7);
    assert_false(level_of(env, "u").tracked);
}

static void test_range_limits(void **state)
{
    env_t *env = *state;
    set_stock(env, "big", SD_LEVEL_ABS_MAX);
    req_t r;
    req_init(&r, SD_WRITE_INCREMENT);
    req_line(&r, "big", 1);
    assert_int_equal(run(env, &r), SD_OUT_OF_RANGE);
    assert_int_equal(level_of(env, "big").available, SD_LEVEL_ABS_MAX);
    set_stock(env, "low", -SD_LEVEL_ABS_MAX);
    req_init(&r, SD_WRITE_DECREMENT);
    req_line(&r, "low", 1);
    assert_int_equal(run(env, &r), SD_OUT_OF_RANGE);
    req_init(&r, SD_WRITE_SET);
    req_set(&r, "x", SD_LEVEL_ABS_MAX + 1, -1, INT64_MIN, -1);
    assert_int_equal(run(env, &r), SD_OUT_OF_RANGE);
    req_init(&r, SD_WRITE_SET);
    req_set(&r, "x", 0, -1, -SD_LEVEL_ABS_MAX - 1, -1);
    assert_int_equal(run(env, &r), SD_OUT_OF_RANGE);
}

static void test_compare_and_set(void **state)
{
    env_t *env = *state;
    req_t r;
    req_init(&r, SD_WRITE_SET);
    req_set(&r, "c", 10, -1, INT64_MIN, 0); /* 0 = must not exist yet */
    assert_int_equal(run(env, &r), SD_OK);
    assert_int_equal(level_of(env, "c").version, 1);
    req_init(&r, SD_WRITE_SET);
    req_set(&r, "c", 11, -1, INT64_MIN, 0);
    assert_int_equal(run(env, &r), SD_ABORTED);
    req_init(&r, SD_WRITE_SET);
    req_set(&r, "c", 12, -1, INT64_MIN, 5);
    assert_int_equal(run(env, &r), SD_ABORTED);
    assert_int_equal(level_of(env, "c").available, 10);
    req_init(&r, SD_WRITE_SET);
    req_set(&r, "c", 13, -1, INT64_MIN, 1);
    req_set(&r, "d", 1, -1, INT64_MIN, 3); /* one line fails: the whole request fails */
    assert_int_equal(run(env, &r), SD_ABORTED);
    assert_int_equal(level_of(env, "c").available, 10);
    req_init(&r, SD_WRITE_SET);
    req_set(&r, "c", 13, -1, INT64_MIN, 1);
    assert_int_equal(run(env, &r), SD_OK);
    assert_int_equal(level_of(env, "c").available, 13);
    assert_int_equal(level_of(env, "c").version, 2);
}

static void test_set_stock_rejects_repeated_items(void **state)
{
    env_t *env = *state;
    req_t r;
    req_init(&r, SD_WRITE_SET);
    req_set(&r, "c", 1, -1, INT64_MIN, -1);
    req_set(&r, "c", 2, -1, INT64_MIN, -1);
    sd_write_result_t result;
    assert_int_equal(apply(env, &r, &result), SD_INVALID_ARGUMENT);
    assert_string_equal(result.error.field_violations[0].first, "lines[1].item");
    sd_write_result_free(&result);
}

static void test_idempotent_replay(void **state)
{
    env_t *env = *state;
    set_stock(env, "a", 10);
    req_t r;
    req_init(&r, SD_WRITE_DECREMENT);
    r.request.request_id = "req-1";
    req_line(&r, "a", 2);
    sd_write_result_t first, again, other;
    assert_int_equal(apply(env, &r, &first), SD_OK);
    /* a repeat inside the same batch is recognised too */
    assert_int_equal(apply(env, &r, &again), SD_OK);
    assert_true(again.replayed);
    assert_false(again.applied);
    assert_int_equal(sd_batch_commit(env->batch, true), SD_OK);
    sd_batch_reset(env->batch, sd_batch_last_seq(env->batch));
    sd_write_result_free(&again);
    /* and after the commit, from RocksDB */
    assert_int_equal(apply(env, &r, &again), SD_OK);
    assert_true(again.replayed);
    Stockd__V1__DecrementResponse *a =
        stockd__v1__decrement_response__unpack(NULL, first.response_length, first.response);
    Stockd__V1__DecrementResponse *b =
        stockd__v1__decrement_response__unpack(NULL, again.response_length, again.response);
    assert_false(a->replayed);
    assert_true(b->replayed);
    assert_int_equal(a->ledger_seq, b->ledger_seq);
    assert_int_equal(b->levels[0]->available, 8);
    stockd__v1__decrement_response__free_unpacked(a, NULL);
    stockd__v1__decrement_response__free_unpacked(b, NULL);
    assert_int_equal(level_of(env, "a").available, 8);
    /* same id, different content */
    r.lines[0].quantity = 3;
    assert_int_equal(apply(env, &r, &other), SD_ALREADY_EXISTS);
    sd_write_result_free(&other);
    /* same id on another method is different content too */
    r.lines[0].quantity = 2;
    r.request.kind = SD_WRITE_INCREMENT;
    assert_int_equal(apply(env, &r, &other), SD_ALREADY_EXISTS);
    sd_write_result_free(&other);
    sd_write_result_free(&first);
    sd_write_result_free(&again);
}

static void test_failed_requests_are_not_remembered(void **state)
{
    env_t *env = *state;
    req_t r;
    req_init(&r, SD_WRITE_DECREMENT);
    r.request.request_id = "retry-me";
    r.request.restrict_inventory = true;
    req_line(&r, "z", 1);
    assert_int_equal(run(env, &r), SD_FAILED_PRECONDITION);
    set_stock(env, "z", 1);
    assert_int_equal(run(env, &r), SD_OK);
    assert_int_equal(level_of(env, "z").available, 0);
}

/* Requests in one batch see the effects of the earlier ones: no oversell inside a batch. */
static void test_batch_sees_earlier_requests(void **state)
{
    env_t *env = *state;
    set_stock(env, "a", 5);
    req_t r;
    req_init(&r, SD_WRITE_DECREMENT);
    r.request.restrict_inventory = true;
    req_line(&r, "a", 3);
    sd_write_result_t one, two, three;
    assert_int_equal(apply(env, &r, &one), SD_OK);
    assert_int_equal(apply(env, &r, &two), SD_FAILED_PRECONDITION);
    r.lines[0].quantity = 2;
    assert_int_equal(apply(env, &r, &three), SD_OK);
    assert_int_equal(sd_batch_applied_count(env->batch), 2);
    assert_int_equal(level_of(env, "a").available, 5); /* nothing is stored before commit */
    assert_int_equal(sd_batch_commit(env->batch, true), SD_OK);
    assert_int_equal(level_of(env, "a").available, 0);
    sd_write_result_free(&one);
    sd_write_result_free(&two);
    sd_write_result_free(&three);
}

static void test_failed_commit_stores_nothing(void **state)
{
    env_t *env = *state;
    set_stock(env, "a", 5);
    uint64_t seq = sd_batch_last_seq(env->batch);
    req_t r;
    req_init(&r, SD_WRITE_DECREMENT);
    r.request.request_id = "will-fail";
    req_line(&r, "a", 1);
    sd_write_result_t result;
    assert_int_equal(apply(env, &r, &result), SD_OK);
    sd_storage_fail_write_after(env->storage, 1);
    assert_int_equal(sd_batch_commit(env->batch, true), SD_UNAVAILABLE);
    sd_write_result_free(&result);
    sd_batch_reset(env->batch, seq);
    assert_int_equal(level_of(env, "a").available, 5);
    /* the request_id was not remembered: the retry applies */
    assert_int_equal(run(env, &r), SD_OK);
    assert_int_equal(level_of(env, "a").available, 4);
}

static void test_ledger_seq_survives_reopen(void **state)
{
    env_t *env = *state;
    set_stock(env, "a", 1);
    set_stock(env, "b", 2);
    uint64_t seq = sd_batch_last_seq(env->batch);
    assert_int_equal(seq, 2);
    sd_batch_free(env->batch);
    sd_storage_close(env->storage);
    env->storage = th_open_storage(env->dir);
    assert_int_equal(sd_storage_last_seq(env->storage), seq);
    env->batch = sd_batch_new(env->storage, seq, INT64_C(86400) * 1000000);
    assert_int_equal(level_of(env, "b").available, 2);
}

/* A request_id is remembered for the retention window only: past it, the same request is new
 * again, and compaction drops the expired record from RocksDB. */
static void test_idempotency_expires(void **state)
{
    env_t *env = *state;
    set_stock(env, "e", 10);
    req_t r;
    req_init(&r, SD_WRITE_DECREMENT);
    r.request.request_id = "old-id";
    req_line(&r, "e", 1);
    sd_write_result_t result;
    sd_write_result_init(&result);
    sd_batch_apply(env->batch, &r.request, 1000, &result); /* created at t = 1 ms */
    assert_int_equal(result.error.status, SD_OK);
    sd_write_result_free(&result);
    assert_int_equal(sd_batch_commit(env->batch, true), SD_OK);
    sd_batch_reset(env->batch, sd_batch_last_seq(env->batch));
    int64_t ttl_us = INT64_C(7) * 86400 * 1000000;
    sd_write_result_init(&result);
    sd_batch_apply(env->batch, &r.request, 1000 + ttl_us - 1, &result); /* inside the window */
    assert_true(result.replayed);
    sd_write_result_free(&result);
    sd_write_result_init(&result);
    sd_batch_apply(env->batch, &r.request, 1000 + ttl_us + 1, &result); /* past it */
    assert_int_equal(result.error.status, SD_OK);
    assert_false(result.replayed);
    assert_true(result.applied);
    sd_write_result_free(&result);
    sd_batch_reset(env->batch, sd_batch_last_seq(env->batch) - 1); /* drop that apply */
    /* the stored record was created in 1970: compaction's TTL filter removes it */
    uint8_t key[SD_IDEMPOTENCY_KEY_BYTES_MAX];
    size_t key_length =
        sd_key_encode_idempotency(sd_bytes_of("t1"), sd_bytes_of("old-id"), key, sizeof(key));
    char *value = NULL;
    size_t value_length = 0;
    assert_int_equal(
        sd_storage_get(env->storage, SD_CF_IDEMPOTENCY, key, key_length, &value, &value_length),
        SD_OK);
    assert_non_null(value);
    sd_storage_free(value);
    assert_int_equal(sd_storage_flush_and_compact(env->storage, SD_CF_IDEMPOTENCY), SD_OK);
    value = NULL;
    assert_int_equal(
        sd_storage_get(env->storage, SD_CF_IDEMPOTENCY, key, key_length, &value, &value_length),
        SD_OK);
    assert_null(value);
}

/* Applies a one-line increment with request_id at now_us and commits it on its own. */
static void remember_at(env_t *env, const char *request_id, int64_t now_us)
{
    req_t r;
    req_init(&r, SD_WRITE_INCREMENT);
    r.request.request_id = request_id;
    req_line(&r, "k", 1);
    sd_write_result_t result;
    sd_write_result_init(&result);
    sd_batch_apply(env->batch, &r.request, now_us, &result);
    assert_int_equal(result.error.status, SD_OK);
    assert_false(result.replayed);
    sd_write_result_free(&result);
    assert_int_equal(sd_batch_commit(env->batch, true), SD_OK);
    sd_batch_reset(env->batch, sd_batch_last_seq(env->batch));
}

static bool record_stored(env_t *env, const char *request_id)
{
    uint8_t key[SD_IDEMPOTENCY_KEY_BYTES_MAX];
    size_t key_length =
        sd_key_encode_idempotency(sd_bytes_of("t1"), sd_bytes_of(request_id), key, sizeof(key));
    char *value = NULL;
    size_t value_length = 0;
    assert_int_equal(
        sd_storage_get(env->storage, SD_CF_IDEMPOTENCY, key, key_length, &value, &value_length),
        SD_OK);
    sd_storage_free(value);
    return value != NULL;
}

/* Regression: the compaction filter read the record's creation time in the wrong byte order,
 * so any compaction dropped about half of the records, even seconds-old ones, and their
 * retries were applied again. Records of every age are written (real clock: the filter uses
 * it), the family is flushed and compacted, and then every record younger than the TTL still
 * answers `replayed` while every older one is gone from RocksDB. */
static void test_idempotency_records_survive_compaction(void **state)
{
    env_t *env = *state;
    const int64_t ttl_us = INT64_C(7) * 86400 * 1000000;
    const int records = 200;
    int64_t now_us = util_now_us();
    char id[32];
    for (int i = 0; i < records; i++) {
        snprintf(id, sizeof(id), "young-%d", i);
        remember_at(env, id, now_us - (int64_t)i * 997 * 1000 * 1000); /* 0 .. ~2.3 days old */
        snprintf(id, sizeof(id), "old-%d", i);
        remember_at(env, id, now_us - ttl_us - 1000000 - (int64_t)i * 7919 * 1000);
    }
    assert_int_equal(sd_storage_flush_and_compact(env->storage, SD_CF_IDEMPOTENCY), SD_OK);
    for (int i = 0; i < records; i++) {
        snprintf(id, sizeof(id), "young-%d", i);
        assert_true(record_stored(env, id));
        req_t r;
        req_init(&r, SD_WRITE_INCREMENT);
        r.request.request_id = id;
        req_line(&r, "k", 1);
        sd_write_result_t result;
        sd_write_result_init(&result);
        sd_batch_apply(env->batch, &r.request, util_now_us(), &result);
        assert_int_equal(result.error.status, SD_OK);
        assert_true(result.replayed);
        assert_false(result.applied);
        sd_write_result_free(&result);
        snprintf(id, sizeof(id), "old-%d", i);
        assert_false(record_stored(env, id));
    }
    assert_int_equal(level_of(env, "k").available, 2 * records);
}

/* Closes and reopens the storage and the batch, as a restart would: what is read back is what
 * was stored. */
static void env_reopen(env_t *env)
{
    sd_batch_free(env->batch);
    sd_storage_close(env->storage);
    env->storage = th_open_storage(env->dir);
    env->batch =
        sd_batch_new(env->storage, sd_storage_last_seq(env->storage), INT64_C(7) * 86400 * 1000000);
    assert_non_null(env->batch);
}

/* Applies a three-line restricted decrement (a repeated item, a request_id) on a fresh batch
 * with the k-th allocation of the apply failing. Returns the hooked allocations it made. */
static long apply_failing_nth(env_t *env, long k, sd_write_result_t *result)
{
    env_reopen(env);    /* a fresh batch over what is stored */
    static req_t first; /* an earlier request of the same batch, applied without failures */
    req_init(&first, SD_WRITE_INCREMENT);
    req_line(&first, "m0", 1);
    sd_write_result_t first_result;
    sd_write_result_init(&first_result);
    sd_batch_apply(env->batch, &first.request, util_now_us(), &first_result);
    assert_true(first_result.applied);
    sd_write_result_free(&first_result);
    static req_t r;
    req_init(&r, SD_WRITE_DECREMENT);
    r.request.restrict_inventory = true;
    r.request.request_id = "oom-request";
    req_line(&r, "m1", 1);
    req_line(&r, "m2", 2);
    req_line(&r, "m1", 3);
    sd_write_result_init(result);
    sd_alloc_fail_nth(k);
    sd_batch_apply(env->batch, &r.request, util_now_us(), result);
    return sd_alloc_fail_nth(0);
}

/* Out of memory, in a loop (SQLite's and libuv's OOM tests): the k-th allocation of a batch
 * apply fails, for every k until the apply makes no more allocations. Each time the request is
 * either refused cleanly (UNAVAILABLE "out of memory; not applied", nothing in the batch, and
 * a commit stores nothing) or, where the failing allocation was optional, applied exactly
 * once. Nothing is ever half-applied; ASan and valgrind runs check that nothing leaks. */
static void test_out_of_memory_in_apply_changes_nothing(void **state)
{
    env_t *env = *state;
    set_stock(env, "m1", 10);
    set_stock(env, "m2", 10);
    long k = 1;
    for (;; k++) {
        sd_write_result_t result;
        long calls = apply_failing_nth(env, k, &result);
        uint64_t seq_before = sd_storage_last_seq(env->storage);
        bool applied = result.applied;
        if (!applied) {
            assert_int_equal(result.error.status, SD_UNAVAILABLE);
            assert_non_null(strstr(result.error.message, "not applied"));
            assert_int_equal(sd_batch_applied_count(env->batch), 1); /* the earlier one */
        }
        sd_write_result_free(&result);
        assert_int_equal(sd_batch_commit(env->batch, true), SD_OK);
        env_reopen(env);
        int64_t m1 = level_of(env, "m1").available, m2 = level_of(env, "m2").available;
        /* the earlier request of the batch is stored whatever happened to this one */
        assert_int_equal(level_of(env, "m0").available, k);
        if (!applied) {
            assert_int_equal(sd_storage_last_seq(env->storage), seq_before + 1);
            assert_int_equal(m1, 10);
            assert_int_equal(m2, 10);
        } else {
            assert_int_equal(m1, 6); /* 1 + 3 taken, once */
            assert_int_equal(m2, 8);
            set_stock(env, "m1", 10); /* and a fresh request_id store for the next k */
            set_stock(env, "m2", 10);
            th_remove_idempotency(env, "oom-request");
        }
        if (k > calls) {
            assert_true(applied); /* no allocation failed: the request went through */
            break;
        }
    }
    assert_true(k > 5); /* the loop did reach the allocations of the write path */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_restricted_refusal_changes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unrestricted_goes_negative, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_lines_are_summed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_floor_allows_bounded_backorder, setup, teardown),
        cmocka_unit_test_setup_teardown(test_untracked_items_never_fail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_range_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compare_and_set, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_stock_rejects_repeated_items, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idempotent_replay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_requests_are_not_remembered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_sees_earlier_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_commit_stores_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ledger_seq_survives_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idempotency_expires, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idempotency_records_survive_compaction, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_out_of_memory_in_apply_changes_nothing, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
