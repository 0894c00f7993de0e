/* Integration tests of the real stockd binary through libstockclient over loopback gRPC.
 *
 * Goal: the contract holds end to end — every status code with its google.rpc details,
 * no oversell under racing restricted decrements (single- and multi-item), durability across
 * a clean SIGTERM restart, and no acknowledged decrement lost to a SIGKILL under load.
 * Method: each test starts stockd on 127.0.0.1:0 with a fresh temporary data directory and
 * drives it with real gRPC calls from many threads. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <grpc/grpc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "sd_limits.h"
#include "stockclient.h"
#include "storage.h"

#define DEADLINE_MS 10000

static const char *stockd_binary;

typedef struct {
    char *dir;
    th_daemon_t daemon;
    sc_client_t *client;
} env_t;

static env_t *env_start(const char *const *extra_args)
{
    env_t *env = calloc(1, sizeof(*env));
    env->dir = th_temp_dir();
    assert_true(th_daemon_start(&env->daemon, stockd_binary, env->dir, extra_args));
    env->client = sc_client_new(env->daemon.address, NULL);
    return env;
}

static void env_restart(env_t *env, int signal_number, int expected_exit)
{
    sc_client_free(env->client);
    assert_int_equal(th_daemon_stop(&env->daemon, signal_number), expected_exit);
    assert_true(th_daemon_start(&env->daemon, stockd_binary, env->dir, NULL));
    env->client = sc_client_new(env->daemon.address, NULL);
}

static void env_stop(env_t *env)
{
    sc_client_free(env->client);
    int code = th_daemon_stop(&env->daemon, SIGTERM);
    if (code != 0) {
        th_daemon_dump_log(&env->daemon);
    }
    assert_int_equal(code, 0);
    th_remove_tree(env->dir);
    char log_path[600];
    snprintf(log_path, sizeof(log_path), "%s.log", env->dir);
    unlink(log_path);
    free(env->dir);
    free(env);
}

/* ---- request builders ---- */

typedef struct {
    Stockd__V1__ItemRef items[4];
    Stockd__V1__Line lines[4];
    Stockd__V1__Line *pointers[4];
    Stockd__V1__DecrementRequest request;
} decrement_t;

static void decrement_init(decrement_t *d, bool restrict_inventory)
{
    memset(d, 0, sizeof(*d));
    stockd__v1__decrement_request__init(&d->request);
    d->request.tenant_id = "shop-1";
    d->request.restrict_inventory = restrict_inventory;
    d->request.lines = d->pointers;
    d->request.order_id = "order-1";
    d->request.reason = STOCKD__V1__REASON__REASON_ORDER_PLACED;
}

static void decrement_line(decrement_t *d, const char *sku, int64_t quantity)
{
    size_t i = d->request.n_lines++;
    stockd__v1__item_ref__init(&d->items[i]);
    d->items[i].app_id = "app";
    d->items[i].catalog_item_id = (char *)sku;
    stockd__v1__line__init(&d->lines[i]);
    d->lines[i].item = &d->items[i];
    d->lines[i].quantity = quantity;
    d->pointers[i] = &d->lines[i];
}

static int decrement(sc_client_t *client, decrement_t *d, sc_status_t *status)
{
    Stockd__V1__DecrementResponse *response = NULL;
    int code = sc_decrement(client, &d->request, &response, DEADLINE_MS, status);
    if (response != NULL) {
        stockd__v1__decrement_response__free_unpacked(response, NULL);
    }
    return code;
}

/* SetStock of one item; version < 0 = no compare-and-set. Returns the status code. */
static int set_stock(sc_client_t *client, const char *sku, int64_t available, int64_t version,
                     sc_status_t *status)
{
    Stockd__V1__ItemRef item = STOCKD__V1__ITEM_REF__INIT;
    item.app_id = "app";
    item.catalog_item_id = (char *)sku;
    Stockd__V1__SetLine line = STOCKD__V1__SET_LINE__INIT;
    line.item = &item;
    line.available = available;
    Google__Protobuf__UInt64Value expected = GOOGLE__PROTOBUF__UINT64_VALUE__INIT;
    if (version >= 0) {
        expected.value = (uint64_t)version;
        line.expected_version = &expected;
    }
    Stockd__V1__SetLine *lines[1] = {&line};
    Stockd__V1__SetStockRequest request = STOCKD__V1__SET_STOCK_REQUEST__INIT;
    request.tenant_id = "shop-1";
    request.n_lines = 1;
    request.lines = lines;
    request.reason = STOCKD__V1__REASON__REASON_RECOUNT;
    Stockd__V1__SetStockResponse *response = NULL;
    int code = sc_set_stock(client, &request, &response, DEADLINE_MS, status);
    if (response != NULL) {
        stockd__v1__set_stock_response__free_unpacked(response, NULL);
    }
    return code;
}

static void must_set(sc_client_t *client, const char *sku, int64_t available)
{
    sc_status_t status;
    assert_int_equal(set_stock(client, sku, available, -1, &status), 0);
    sc_status_free(&status);
}

/* Reads one level; returns available and stores the version. */
static int64_t available_of(sc_client_t *client, const char *sku, uint64_t *version_out)
{
    Stockd__V1__ItemRef item = STOCKD__V1__ITEM_REF__INIT;
    item.app_id = "app";
    item.catalog_item_id = (char *)sku;
    Stockd__V1__ItemRef *items[1] = {&item};
    Stockd__V1__GetStockRequest request = STOCKD__V1__GET_STOCK_REQUEST__INIT;
    request.tenant_id = "shop-1";
    request.n_items = 1;
    request.items = items;
    Stockd__V1__GetStockResponse *response = NULL;
    sc_status_t status;
    assert_int_equal(sc_get_stock(client, &request, &response, DEADLINE_MS, &status), 0);
    assert_int_equal(response->n_levels, 1);
    int64_t available = response->levels[0]->available;
    if (version_out != NULL) {
        *version_out = response->levels[0]->version;
    }
    stockd__v1__get_stock_response__free_unpacked(response, NULL);
    sc_status_free(&status);
    return available;
}

/* ---- status codes and their details ---- */

static void test_status_codes(void **state)
{
    (void)state;
    env_t *env = env_start(NULL);
    sc_status_t status;
    decrement_t d;

    /* INVALID_ARGUMENT with google.rpc.BadRequest naming the field */
    decrement_init(&d, true);
    decrement_line(&d, "a", 1);
    decrement_line(&d, "b", 0);
    assert_int_equal(decrement(env->client, &d, &status), 3);
    assert_non_null(status.bad_request);
    assert_int_equal(status.bad_request->n_field_violations, 1);
    assert_string_equal(status.bad_request->field_violations[0]->field, "lines[1].quantity");
    assert_non_null(strstr(status.message, "lines[1].quantity"));
    sc_status_free(&status);

    /* FAILED_PRECONDITION with google.rpc.PreconditionFailure, one violation per short item */
    must_set(env->client, "a", 2);
    decrement_init(&d, true);
    decrement_line(&d, "a", 3);
    decrement_line(&d, "never-seen", 1);
    assert_int_equal(decrement(env->client, &d, &status), 9);
    assert_non_null(status.precondition);
    assert_int_equal(status.precondition->n_violations, 2);
    assert_string_equal(status.precondition->violations[0]->type, "INSUFFICIENT_STOCK");
    assert_non_null(
        strstr(status.precondition->violations[0]->subject, "\"catalog_item_id\":\"a\""));
    assert_non_null(strstr(status.precondition->violations[0]->description, "requested 3"));
    assert_non_null(strstr(status.precondition->violations[0]->description, "available 2"));
    sc_status_free(&status);
    assert_int_equal(available_of(env->client, "a", NULL), 2);

    /* ABORTED: compare-and-set on a stale version */
    uint64_t version = 0;
    available_of(env->client, "a", &version);
    assert_int_equal(set_stock(env->client, "a", 9, (int64_t)version + 1, &status), 10);
    sc_status_free(&status);
    assert_int_equal(set_stock(env->client, "a", 9, (int64_t)version, &status), 0);
    sc_status_free(&status);

    /* ALREADY_EXISTS: request_id reused with different content; replay with the same */
    decrement_init(&d, false);
    d.request.request_id = "idem-1";
    decrement_line(&d, "a", 1);
    Stockd__V1__DecrementResponse *first = NULL, *again = NULL;
    assert_int_equal(sc_decrement(env->client, &d.request, &first, DEADLINE_MS, &status), 0);
    sc_status_free(&status);
    assert_int_equal(sc_decrement(env->client, &d.request, &again, DEADLINE_MS, &status), 0);
    sc_status_free(&status);
    assert_false(first->replayed);
    assert_true(again->replayed);
    assert_int_equal(first->ledger_seq, again->ledger_seq);
    stockd__v1__decrement_response__free_unpacked(first, NULL);
    stockd__v1__decrement_response__free_unpacked(again, NULL);
    assert_int_equal(available_of(env->client, "a", NULL), 8);
    d.lines[0].quantity = 2;
    assert_int_equal(decrement(env->client, &d, &status), 6);
    sc_status_free(&status);

    /* OUT_OF_RANGE */
    assert_int_equal(set_stock(env->client, "huge", SD_LEVEL_ABS_MAX + 1, -1, &status), 11);
    sc_status_free(&status);
    must_set(env->client, "huge", SD_LEVEL_ABS_MAX);
    Stockd__V1__IncrementRequest increment = STOCKD__V1__INCREMENT_REQUEST__INIT;
    decrement_init(&d, false);
    decrement_line(&d, "huge", 1);
    increment.tenant_id = "shop-1";
    increment.n_lines = 1;
    increment.lines = d.pointers;
    Stockd__V1__IncrementResponse *incremented = NULL;
    assert_int_equal(sc_increment(env->client, &increment, &incremented, DEADLINE_MS, &status), 11);
    sc_status_free(&status);

    /* UNIMPLEMENTED for unknown methods, at once */
    Stockd__V1__GetStockResponse *none = NULL;
    assert_int_equal(sc_call_unary(env->client, "/stockd.v1.Inventory/NoSuchMethod",
                                   &increment.base, &stockd__v1__get_stock_response__descriptor,
                                   (ProtobufCMessage **)&none, 2000, &status),
                     12);
    sc_status_free(&status);

    /* health: SERVING; unknown service NOT_FOUND */
    bool serving = false;
    assert_int_equal(sc_health_check(env->client, "", &serving, DEADLINE_MS, &status), 0);
    assert_true(serving);
    sc_status_free(&status);
    assert_int_equal(
        sc_health_check(env->client, "stockd.v1.Inventory", &serving, DEADLINE_MS, &status), 0);
    sc_status_free(&status);
    assert_int_equal(sc_health_check(env->client, "nope", &serving, DEADLINE_MS, &status), 5);
    sc_status_free(&status);

    /* UNAVAILABLE once the daemon is gone */
    sc_client_t *client = sc_client_new(env->daemon.address, NULL);
    env_stop(env);
    assert_int_equal(sc_health_check(client, "", &serving, 2000, &status), 14);
    sc_status_free(&status);
    sc_client_free(client);
}

/* INTERNAL: a corrupt stored record is reported, not misread. */
static void test_corrupt_record_is_internal(void **state)
{
    (void)state;
    env_t *env = env_start(NULL);
    must_set(env->client, "c", 5);
    sc_client_free(env->client);
    assert_int_equal(th_daemon_stop(&env->daemon, SIGTERM), 0);
    sd_storage_options_t options = {env->dir, 8 << 20, 4 << 20, 3600, 64 << 20, false};
    sd_storage_t *storage = NULL;
    char error[256];
    assert_int_equal(sd_storage_open(&options, &storage, error, sizeof(error)), SD_OK);
    sd_item_key_t parts = {sd_bytes_of("shop-1"), sd_bytes_of(""), sd_bytes_of("app"),
                           sd_bytes_of("c"), sd_bytes_of("")};
    uint8_t key[SD_ITEM_KEY_BYTES_MAX];
    size_t key_length = sd_key_encode_item(&parts, key, sizeof(key));
    sd_write_batch_t *batch = sd_write_batch_new();
    sd_write_batch_put(storage, batch, SD_CF_LEVELS, key, key_length, (const uint8_t *)"garbage",
                       7);
    assert_int_equal(sd_storage_write(storage, batch, true), SD_OK);
    sd_write_batch_free(batch);
    sd_storage_close(storage);
    assert_true(th_daemon_start(&env->daemon, stockd_binary, env->dir, NULL));
    env->client = sc_client_new(env->daemon.address, NULL);
    Stockd__V1__ItemRef item = STOCKD__V1__ITEM_REF__INIT;
    item.app_id = "app";
    item.catalog_item_id = "c";
    Stockd__V1__ItemRef *items[1] = {&item};
    Stockd__V1__GetStockRequest request = STOCKD__V1__GET_STOCK_REQUEST__INIT;
    request.tenant_id = "shop-1";
    request.n_items = 1;
    request.items = items;
    Stockd__V1__GetStockResponse *response = NULL;
    sc_status_t status;
    assert_int_equal(sc_get_stock(env->client, &request, &response, DEADLINE_MS, &status), 13);
    sc_status_free(&status);
    decrement_t d;
    decrement_init(&d, false);
    decrement_line(&d, "c", 1);
    assert_int_equal(decrement(env->client, &d, &status), 13);
    sc_status_free(&status);
    env_stop(env);
}

/* ---- concurrency ---- */

typedef struct {
    sc_client_t *client;
    pthread_barrier_t *barrier;
    int kind; /* 0: [a], 1: [b], 2: [a, b] */
    int code;
} racer_t;

static void *racer_main(void *argument)
{
    racer_t *racer = argument;
    decrement_t d;
    decrement_init(&d, true);
    if (racer->kind != 1) {
        decrement_line(&d, "a", 1);
    }
    if (racer->kind != 0) {
        decrement_line(&d, "b", 1);
    }
    sc_status_t status;
    pthread_barrier_wait(racer->barrier);
    racer->code = decrement(racer->client, &d, &status);
    sc_status_free(&status);
    return NULL;
}

/* Starts `count` racers (kind chosen by kind_of(i)) at once and counts successes per kind. */
static void race(env_t *env, int count, int (*kind_of)(int), int successes[3], int *refused)
{
    racer_t *racers = calloc((size_t)count, sizeof(*racers));
    pthread_t *threads = calloc((size_t)count, sizeof(*threads));
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, (unsigned)count);
    for (int i = 0; i < count; i++) {
        racers[i] = (racer_t){env->client, &barrier, kind_of(i), -1};
        assert_int_equal(pthread_create(&threads[i], NULL, racer_main, &racers[i]), 0);
    }
    *refused = 0;
    successes[0] = successes[1] = successes[2] = 0;
    for (int i = 0; i < count; i++) {
        pthread_join(threads[i], NULL);
        if (racers[i].code == 0) {
            successes[racers[i].kind]++;
        } else {
            assert_int_equal(racers[i].code, 9); /* only FAILED_PRECONDITION is acceptable */
            (*refused)++;
        }
    }
    pthread_barrier_destroy(&barrier);
    free(racers);
    free(threads);
}

static int kind_single_a(int i)
{
    (void)i;
    return 0;
}

static int kind_mixed(int i)
{
    return i % 3;
}

static void test_250_racing_restricted_decrements(void **state)
{
    (void)state;
    env_t *env = env_start(NULL);
    must_set(env->client, "a", 100);
    int successes[3], refused;
    race(env, 250, kind_single_a, successes, &refused);
    assert_int_equal(successes[0], 100);
    assert_int_equal(refused, 150);
    assert_int_equal(available_of(env->client, "a", NULL), 0);
    env_stop(env);
}

static void test_300_racing_mixed_decrements(void **state)
{
    (void)state;
    env_t *env = env_start(NULL);
    must_set(env->client, "a", 70);
    must_set(env->client, "b", 80);
    int successes[3], refused;
    race(env, 300, kind_mixed, successes, &refused);
    int64_t a = available_of(env->client, "a", NULL);
    int64_t b = available_of(env->client, "b", NULL);
    assert_int_equal(a, 70 - successes[0] - successes[2]);
    assert_int_equal(b, 80 - successes[1] - successes[2]);
    assert_true(a >= 0 && b >= 0);
    assert_int_equal(successes[0] + successes[1] + successes[2] + refused, 300);
    assert_true(refused > 0);
    env_stop(env);
}

/* A queue of one, a batch of one, and a burst of calls: some must be refused with
 * RESOURCE_EXHAUSTED, and only the accepted ones are applied. */
static void test_back_pressure(void **state)
{
    (void)state;
    const char *args[] = {"--queue-depth", "1", "--batch-max", "1", NULL};
    env_t *env = env_start(args);
    must_set(env->client, "a", 1000);
    racer_t racers[200];
    pthread_t threads[200];
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, 200);
    for (int i = 0; i < 200; i++) {
        racers[i] = (racer_t){env->client, &barrier, 0, -1};
        pthread_create(&threads[i], NULL, racer_main, &racers[i]);
    }
    int ok = 0, exhausted = 0;
    for (int i = 0; i < 200; i++) {
        pthread_join(threads[i], NULL);
        ok += racers[i].code == 0;
        exhausted += racers[i].code == 8;
    }
    pthread_barrier_destroy(&barrier);
    assert_int_equal(ok + exhausted, 200);
    assert_true(exhausted > 0);
    assert_int_equal(available_of(env->client, "a", NULL), 1000 - ok);
    env_stop(env);
}

/* ---- durability ---- */

static void test_sigterm_restart_keeps_everything(void **state)
{
    (void)state;
    env_t *env = env_start(NULL);
    must_set(env->client, "a", 10);
    decrement_t d;
    decrement_init(&d, true);
    d.request.request_id = "before-restart";
    decrement_line(&d, "a", 4);
    sc_status_t status;
    assert_int_equal(decrement(env->client, &d, &status), 0);
    sc_status_free(&status);
    uint64_t version_before = 0;
    available_of(env->client, "a", &version_before);
    env_restart(env, SIGTERM, 0);
    uint64_t version_after = 0;
    assert_int_equal(available_of(env->client, "a", &version_after), 6);
    assert_int_equal(version_after, version_before);
    /* the idempotency record survived too: the repeat is a replay, not a second decrement */
    Stockd__V1__DecrementResponse *response = NULL;
    assert_int_equal(sc_decrement(env->client, &d.request, &response, DEADLINE_MS, &status), 0);
    assert_true(response->replayed);
    assert_int_equal(response->ledger_seq, 2);
    stockd__v1__decrement_response__free_unpacked(response, NULL);
    sc_status_free(&status);
    assert_int_equal(available_of(env->client, "a", NULL), 6);
    env_stop(env);
}

#define KILL_WORKERS 8
#define KILL_ITEMS 4

typedef struct {
    sc_client_t *client;
    int index;
    _Atomic bool *stop;
    int64_t acked[KILL_ITEMS];
    int64_t failed[KILL_ITEMS];
} killer_load_t;

static void *kill_worker(void *argument)
{
    killer_load_t *load = argument;
    static const char *const skus[KILL_ITEMS] = {"k0", "k1", "k2", "k3"};
    for (int n = 0; !atomic_load(load->stop); n++) {
        int item = (load->index + n) % KILL_ITEMS;
        decrement_t d;
        decrement_init(&d, false);
        decrement_line(&d, skus[item], 1);
        sc_status_t status;
        Stockd__V1__DecrementResponse *response = NULL;
        int code = sc_decrement(load->client, &d.request, &response, 2000, &status);
        if (response != NULL) {
            stockd__v1__decrement_response__free_unpacked(response, NULL);
        }
        sc_status_free(&status);
        if (code == 0) {
            load->acked[item]++;
        } else {
            load->failed[item]++; /* may or may not have been applied */
            usleep(1000);
        }
    }
    return NULL;
}

static void test_sigkill_under_load_loses_no_acknowledged_write(void **state)
{
    (void)state;
    env_t *env = env_start(NULL);
    _Atomic bool stop = false;
    killer_load_t loads[KILL_WORKERS];
    pthread_t threads[KILL_WORKERS];
    for (int i = 0; i < KILL_WORKERS; i++) {
        memset(&loads[i], 0, sizeof(loads[i]));
        loads[i].client = env->client;
        loads[i].index = i;
        loads[i].stop = &stop;
        pthread_create(&threads[i], NULL, kill_worker, &loads[i]);
    }
    usleep(1500 * 1000);
    kill(env->daemon.pid, SIGKILL);
    usleep(300 * 1000);
    atomic_store(&stop, true);
    for (int i = 0; i < KILL_WORKERS; i++) {
        pthread_join(threads[i], NULL);
    }
    env_restart(env, SIGKILL, 128 + SIGKILL); /* already dead: reaps it */
    static const char *const skus[KILL_ITEMS] = {"k0", "k1", "k2", "k3"};
    int64_t total_acked = 0;
    for (int item = 0; item < KILL_ITEMS; item++) {
        int64_t acked = 0, failed = 0;
        for (int i = 0; i < KILL_WORKERS; i++) {
            acked += loads[i].acked[item];
            failed += loads[i].failed[item];
        }
        int64_t applied = -available_of(env->client, skus[item], NULL);
        if (applied < acked || applied > acked + failed) {
            fail_msg("item %s: applied %lld, acknowledged %lld, failed %lld", skus[item],
                     (long long)applied, (long long)acked, (long long)failed);
        }
        total_acked += acked;
    }
    assert_true(total_acked > 50); /* the load really ran */
    env_stop(env);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s PATH-TO-STOCKD\n", argv[0]);
        return 2;
    }
    stockd_binary = argv[1];
    signal(SIGPIPE, SIG_IGN);
    grpc_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_codes),
        cmocka_unit_test(test_corrupt_record_is_internal),
        cmocka_unit_test(test_250_racing_restricted_decrements),
        cmocka_unit_test(test_300_racing_mixed_decrements),
        cmocka_unit_test(test_back_pressure),
        cmocka_unit_test(test_sigterm_restart_keeps_everything),
        cmocka_unit_test(test_sigkill_under_load_loses_no_acknowledged_write),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    sc_thread_release();
    grpc_shutdown();
    return failed;
}
