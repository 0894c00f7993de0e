/* stockbench — load generator for stockd (gRPC) and stockd-gateway (Wix calls over HTTP).
 *
 *   stockbench --mode health|decrement|mixed|wix [--connections N] [--inflight N]
 *              [--lines-min A --lines-max B] [--skus N] [--restricted-share F]
 *              [--duration S] [--warmup S] [--compare]
 *
 * gRPC modes keep --inflight calls outstanding over --connections channels of their own
 * (GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL), driven asynchronously by one completion queue per
 * thread. wix mode sends pre-signed Wix calls over HTTP/1.1 keep-alive, one per connection.
 * Afterwards it checks through GetStock that every SKU lost exactly what was acknowledged.
 * The last line of every run is one JSON object. */
#include <arpa/inet.h>
#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "net.h"
#include "stockclient.h"
#include "util.h"
#include "wix_sign.h"

#define BENCH_THREADS_MAX 8
#define BENCH_CONNECTIONS_MAX 256
#define BENCH_INFLIGHT_MAX 4096
#define BENCH_LINES_MAX 16
#define BENCH_SAMPLES_MAX (4 * 1024 * 1024)
#define BENCH_WIX_TOKENS 512
#define BENCH_SEED_AVAILABLE INT64_C(1000000000000) /* 10^12: restricted decrements succeed */

typedef struct {
    const char *stockd;
    const char *gateway;
    const char *mode;
    const char *tenant;
    int64_t connections;
    int64_t inflight;
    int64_t lines_min, lines_max;
    int64_t skus;
    int64_t restricted_percent;
    int64_t duration_s;
    int64_t warmup_s;
    int64_t threads;
    bool compare;
    bool seed;
    const char *key;
    const char *app_id;
    /* TLS and the bearer token (docs/api.md §6); "" = not given */
    const char *tls_ca;
    bool insecure;
    const char *tls_cert;
    const char *tls_key;
    const char *token;
    const char *token_file;
    /* not options: --token-file's token, read at start */
    char token_from_file[SC_TOKEN_BYTES_MAX + 1];
} bench_config_t;

static const char *const bench_modes[] = {"health", "decrement", "mixed", "wix", NULL};

#define BENCH_OPT(flag, env, type, field, def, lo, hi, choices, help)                              \
    {                                                                                              \
        flag, env, type, offsetof(bench_config_t, field), def, lo, hi, choices, false, help        \
    }

static const cfg_option_t bench_options[] = {
    BENCH_OPT("stockd", "STOCKD_ADDR", CFG_STRING, stockd, "127.0.0.1:50051", 0, 0, NULL,
              "stockd gRPC address"),
    BENCH_OPT("gateway", "STOCKD_BENCH_GATEWAY", CFG_STRING, gateway, "127.0.0.1:8080", 0, 0, NULL,
              "gateway HTTP address (wix mode)"),
    BENCH_OPT("mode", "STOCKD_BENCH_MODE", CFG_CHOICE, mode, "decrement", 0, 0, bench_modes,
              "health | decrement | mixed (half increments) | wix"),
    BENCH_OPT("tenant", "STOCKD_BENCH_TENANT", CFG_STRING, tenant, "bench", 0, 0, NULL,
              "tenant used for the load"),
    BENCH_OPT("connections", "STOCKD_BENCH_CONNECTIONS", CFG_INT, connections, "4", 1,
              BENCH_CONNECTIONS_MAX, NULL, "connections (wix: also the concurrency)"),
    BENCH_OPT("inflight", "STOCKD_BENCH_INFLIGHT", CFG_INT, inflight, "64", 1, BENCH_INFLIGHT_MAX,
              NULL, "calls in flight (gRPC modes)"),
    BENCH_OPT("lines-min", "STOCKD_BENCH_LINES_MIN", CFG_INT, lines_min, "1", 1, BENCH_LINES_MAX,
              NULL, "lines per request, at least"),
    BENCH_OPT("lines-max", "STOCKD_BENCH_LINES_MAX", CFG_INT, lines_max, "3", 1, BENCH_LINES_MAX,
              NULL, "lines per request, at most"),
    BENCH_OPT("skus", "STOCKD_BENCH_SKUS", CFG_INT, skus, "10000", 1, 100000000, NULL,
              "key-space size"),
    BENCH_OPT("restricted-percent", "STOCKD_BENCH_RESTRICTED_PERCENT", CFG_INT, restricted_percent,
              "100", 0, 100, NULL, "share of restricted decrements"),
    BENCH_OPT("duration", "STOCKD_BENCH_DURATION", CFG_DURATION, duration_s, "10s", 1, 3600, NULL,
              "measured time"),
    BENCH_OPT("warmup", "STOCKD_BENCH_WARMUP", CFG_DURATION, warmup_s, "2s", 0, 600, NULL,
              "unmeasured time first"),
    BENCH_OPT("threads", "STOCKD_BENCH_THREADS", CFG_INT, threads, "2", 1, BENCH_THREADS_MAX, NULL,
              "client threads (gRPC modes)"),
    BENCH_OPT("compare", "STOCKD_BENCH_COMPARE", CFG_BOOL, compare, "false", 0, 0, NULL,
              "run health then decrement at the same concurrency and report the ratio"),
    BENCH_OPT("seed", "STOCKD_BENCH_SEED", CFG_BOOL, seed, "true", 0, 0, NULL,
              "set every SKU to 10^12 before the run (needed for the check)"),
    BENCH_OPT("key", "STOCKD_WIX_PRIVATE_KEY", CFG_STRING, key,
              "./stockd-gateway-dev/wix-private.pem", 0, 0, NULL, "wix mode: signing key"),
    BENCH_OPT("app-id", "STOCKD_WIX_APP_ID", CFG_STRING, app_id, "", 0, 0, NULL,
              "wix mode: app id (default: the app-id file beside --key)"),
    BENCH_OPT("insecure", "STOCKD_INSECURE", CFG_BOOL, insecure, "false", 0, 0, NULL,
              "send --token in plaintext to a non-loopback stockd (without TLS it is refused)"),
    BENCH_OPT("tls-ca", "STOCKD_TLS_CA", CFG_STRING, tls_ca, "", 0, 0, NULL,
              "PEM file of the CA(s) that signed stockd's certificate; given: speak TLS"),
    BENCH_OPT("tls-cert", "STOCKD_TLS_CERT", CFG_STRING, tls_cert, "", 0, 0, NULL,
              "PEM file of this client's certificate for mTLS (with --tls-key)"),
    BENCH_OPT("tls-key", "STOCKD_TLS_KEY", CFG_STRING, tls_key, "", 0, 0, NULL,
              "PEM file of this client's private key (with --tls-cert)"),
    BENCH_OPT("token", "STOCKD_TOKEN", CFG_STRING, token, "", 0, 0, NULL,
              "bearer token sent with every call (a flag shows in ps: prefer --token-file)"),
    BENCH_OPT("token-file", "STOCKD_TOKEN_FILE", CFG_STRING, token_file, "", 0, 0, NULL,
              "file whose first line is the bearer token"),
};

static const cfg_spec_t bench_spec = {
    "stockbench", "stockbench — load generator for stockd and stockd-gateway.", bench_options,
    sizeof(bench_options) / sizeof(bench_options[0])};

/* ---- results ---- */

typedef struct {
    _Atomic uint64_t ops, errors;
    _Atomic int64_t *acked;     /* per SKU: units acknowledged as decremented */
    _Atomic int64_t *uncertain; /* per SKU: units of calls whose outcome is unknown */
    float *samples;             /* latencies in ms (measured phase only) */
    _Atomic size_t samples_count;
    _Atomic bool measuring, stop;
} bench_results_t;

static void bench_sample(bench_results_t *results, double latency_ms)
{
    if (!atomic_load(&results->measuring)) {
        return;
    }
    atomic_fetch_add(&results->ops, 1);
    size_t index = atomic_fetch_add(&results->samples_count, 1);
    if (index < BENCH_SAMPLES_MAX) {
        results->samples[index] = (float)latency_ms;
    }
}

static int bench_compare_floats(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y ? 1 : 0;
}

typedef struct {
    uint64_t ops, errors;
    double seconds, ops_per_s, p50, p90, p99, max;
} bench_summary_t;

static bench_summary_t bench_summarize(bench_results_t *results, double seconds)
{
    bench_summary_t summary = {
        atomic_load(&results->ops), atomic_load(&results->errors), seconds, 0, 0, 0, 0, 0};
    size_t count = atomic_load(&results->samples_count);
    count = count < BENCH_SAMPLES_MAX ? count : BENCH_SAMPLES_MAX;
    summary.ops_per_s = (double)summary.ops / seconds;
    if (count > 0) {
        qsort(results->samples, count, sizeof(float), bench_compare_floats);
        summary.p50 = results->samples[count / 2];
        summary.p90 = results->samples[count * 9 / 10];
        summary.p99 = results->samples[count * 99 / 100];
        summary.max = results->samples[count - 1];
    }
    return summary;
}

/* ---- requests ---- */

static uint64_t bench_random(uint64_t *state)
{
    /* xorshift64*: fast, and good enough to spread load over SKUs */
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return *state * 2685821657736338717ULL;
}

static void bench_sku_name(int64_t sku, char *out, size_t capacity)
{
    snprintf(out, capacity, "sku-%09lld", (long long)sku);
}

/* Picks `count` distinct SKUs. */
static int bench_pick_skus(const bench_config_t *config, uint64_t *rng, int64_t *skus)
{
    int64_t span = config->lines_max - config->lines_min + 1;
    int count = (int)(config->lines_min + (int64_t)(bench_random(rng) % (uint64_t)span));
    if (count > config->skus) {
        count = (int)config->skus;
    }
    for (int i = 0; i < count; i++) {
        bool duplicate;
        do {
            skus[i] = (int64_t)(bench_random(rng) % (uint64_t)config->skus);
            duplicate = false;
            for (int j = 0; j < i; j++) {
                duplicate |= skus[j] == skus[i];
            }
        } while (duplicate);
    }
    return count;
}

/* Serializes a Decrement (or, when increment, an Increment) of 1 unit per SKU. */
static grpc_byte_buffer *bench_pack_move(const bench_config_t *config, const int64_t *skus,
                                         int count, bool restricted)
{
    char names[BENCH_LINES_MAX][32];
    Stockd__V1__ItemRef items[BENCH_LINES_MAX];
    Stockd__V1__Line lines[BENCH_LINES_MAX];
    Stockd__V1__Line *pointers[BENCH_LINES_MAX];
    for (int i = 0; i < count; i++) {
        bench_sku_name(skus[i], names[i], sizeof(names[i]));
        stockd__v1__item_ref__init(&items[i]);
        items[i].app_id = "bench";
        items[i].catalog_item_id = names[i];
        stockd__v1__line__init(&lines[i]);
        lines[i].item = &items[i];
        lines[i].quantity = 1;
        pointers[i] = &lines[i];
    }
    /* Decrement and Increment requests share their field numbers; restrict is field 3. */
    Stockd__V1__DecrementRequest request = STOCKD__V1__DECREMENT_REQUEST__INIT;
    request.tenant_id = (char *)config->tenant;
    request.n_lines = (size_t)count;
    request.lines = pointers;
    request.restrict_inventory = restricted;
    request.reason = STOCKD__V1__REASON__REASON_ORDER_PLACED;
    size_t length = stockd__v1__decrement_request__get_packed_size(&request);
    grpc_slice slice = grpc_slice_malloc(length);
    stockd__v1__decrement_request__pack(&request, GRPC_SLICE_START_PTR(slice));
    grpc_byte_buffer *buffer = grpc_raw_byte_buffer_create(&slice, 1);
    grpc_slice_unref(slice);
    return buffer;
}

/* ---- connections ---- */

/* A libstockclient client with --tls-* and the token; NULL after saying why on stderr. */
static sc_client_t *bench_client_new(const bench_config_t *config, bool own_connection)
{
    sc_client_options_t options = {.own_connection = own_connection,
                                   .tls_ca = config->tls_ca,
                                   .tls_cert = config->tls_cert,
                                   .tls_key = config->tls_key,
                                   .token = config->token,
                                   .allow_plaintext_token = config->insecure};
    char error[SC_ERROR_BYTES];
    sc_client_t *client = sc_client_new_with(config->stockd, &options, error, sizeof(error));
    if (client == NULL) {
        fprintf(stderr, "stockbench: %s (--tls-ca, --tls-cert, --tls-key, --token)\n", error);
    }
    return client;
}

/* The token: --token, or --token-file's first line (kept in config), not both. False after
 * saying why on stderr. */
static bool bench_resolve_token(bench_config_t *config)
{
    char error[SC_ERROR_BYTES];
    switch (sc_token_resolve(config->token, config->token_file, config->token_from_file,
                             &config->token, error, sizeof(error))) {
    case SC_TOKEN_SOURCE_BOTH:
        fprintf(stderr, "stockbench: give one of --token (STOCKD_TOKEN) and --token-file "
                        "(STOCKD_TOKEN_FILE), not both\n");
        return false;
    case SC_TOKEN_SOURCE_FILE_BAD:
        fprintf(stderr, "stockbench: --token-file (STOCKD_TOKEN_FILE): %s\n", error);
        return false;
    case SC_TOKEN_SOURCE_OK:
        break;
    }
    return true;
}

/* One connection of the gRPC engine: its own channel, and the metadata (the token) each of
 * its calls sends. */
typedef struct bench_connection {
    sc_client_t *client;
    grpc_metadata metadata[SC_METADATA_MAX];
    size_t metadata_count;
} bench_connection_t;

/* ---- the gRPC engine ---- */

typedef struct bench_worker bench_worker_t;

typedef struct {
    bench_worker_t *worker;
    grpc_call *call;
    grpc_byte_buffer *send, *receive;
    grpc_metadata_array initial, trailing;
    grpc_status_code status;
    grpc_slice details;
    double started_ms;
    int64_t skus[BENCH_LINES_MAX];
    int count;
    int sign; /* +1 decrement, -1 increment, 0 health */
    const bench_connection_t *connection;
    bool active;
} bench_slot_t;

struct bench_worker {
    const bench_config_t *config;
    bench_results_t *results;
    const char *mode;
    grpc_completion_queue *queue;
    bench_slot_t *slots;
    int slots_count;
    uint64_t rng;
    pthread_t thread;
};

static void bench_slot_start(bench_slot_t *slot)
{
    bench_worker_t *worker = slot->worker;
    const char *method = "/grpc.health.v1.Health/Check";
    slot->count = 0;
    slot->sign = 0;
    if (strcmp(worker->mode, "health") == 0) {
        grpc_slice empty = grpc_empty_slice();
        slot->send = grpc_raw_byte_buffer_create(&empty, 1);
    } else {
        bool increment = strcmp(worker->mode, "mixed") == 0 && bench_random(&worker->rng) % 2;
        bool restricted =
            (int64_t)(bench_random(&worker->rng) % 100) < worker->config->restricted_percent;
        slot->count = bench_pick_skus(worker->config, &worker->rng, slot->skus);
        slot->sign = increment ? -1 : 1;
        slot->send =
            bench_pack_move(worker->config, slot->skus, slot->count, restricted && !increment);
        method = increment ? "/stockd.v1.Inventory/Increment" : "/stockd.v1.Inventory/Decrement";
    }
    gpr_timespec deadline =
        gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_millis(10000, GPR_TIMESPAN));
    slot->call = grpc_channel_create_call(
        sc_client_channel(slot->connection->client), NULL, GRPC_PROPAGATE_DEFAULTS, worker->queue,
        grpc_slice_from_static_string(method), NULL, deadline, NULL);
    grpc_metadata_array_init(&slot->initial);
    grpc_metadata_array_init(&slot->trailing);
    slot->receive = NULL;
    slot->details = grpc_empty_slice();
    grpc_op ops[6];
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = slot->connection->metadata_count;
    ops[0].data.send_initial_metadata.metadata = (grpc_metadata *)slot->connection->metadata;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = slot->send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &slot->initial;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &slot->receive;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &slot->trailing;
    ops[5].data.recv_status_on_client.status = &slot->status;
    ops[5].data.recv_status_on_client.status_details = &slot->details;
    slot->started_ms = util_monotonic_ms();
    slot->active = grpc_call_start_batch(slot->call, ops, 6, slot, NULL) == GRPC_CALL_OK;
}

/* Records a finished call and frees its resources. */
static void bench_slot_finish(bench_slot_t *slot)
{
    bench_results_t *results = slot->worker->results;
    double latency_ms = util_monotonic_ms() - slot->started_ms;
    if (slot->status == GRPC_STATUS_OK) {
        bench_sample(results, latency_ms);
        for (int i = 0; i < slot->count; i++) {
            atomic_fetch_add(&results->acked[slot->skus[i]], slot->sign);
        }
    } else if (slot->status != GRPC_STATUS_FAILED_PRECONDITION) {
        /* not known to be refused: it may or may not have been applied */
        atomic_fetch_add(&results->errors, 1);
        for (int i = 0; i < slot->count; i++) {
            atomic_fetch_add(&results->uncertain[slot->skus[i]], 1);
        }
    } else {
        bench_sample(results, latency_ms); /* a refusal is a served call */
    }
    grpc_metadata_array_destroy(&slot->initial);
    grpc_metadata_array_destroy(&slot->trailing);
    grpc_slice_unref(slot->details);
    grpc_byte_buffer_destroy(slot->send);
    if (slot->receive != NULL) {
        grpc_byte_buffer_destroy(slot->receive);
    }
    grpc_call_unref(slot->call);
    slot->active = false;
}

static void *bench_worker_main(void *argument)
{
    bench_worker_t *worker = argument;
    int active = 0;
    for (int i = 0; i < worker->slots_count; i++) {
        bench_slot_start(&worker->slots[i]);
        active += worker->slots[i].active;
    }
    while (active > 0) {
        gpr_timespec until =
            gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_millis(200, GPR_TIMESPAN));
        grpc_event event = grpc_completion_queue_next(worker->queue, until, NULL);
        if (event.type != GRPC_OP_COMPLETE) {
            continue;
        }
        bench_slot_t *slot = event.tag;
        bench_slot_finish(slot);
        active--;
        if (!atomic_load(&worker->results->stop)) {
            bench_slot_start(slot);
            active += slot->active;
        }
    }
    return NULL;
}

/* Runs warm-up then the measured phase; returns the measured seconds. */
static double bench_timed_phases(const bench_config_t *config, bench_results_t *results)
{
    usleep((useconds_t)(config->warmup_s * 1000000));
    atomic_store(&results->measuring, true);
    double started = util_monotonic_ms();
    usleep((useconds_t)(config->duration_s * 1000000));
    atomic_store(&results->measuring, false);
    double seconds = (util_monotonic_ms() - started) / 1000.0;
    atomic_store(&results->stop, true);
    return seconds;
}

static double bench_run_grpc(const bench_config_t *config, const char *mode,
                             bench_results_t *results)
{
    bench_connection_t *connections = calloc((size_t)config->connections, sizeof(*connections));
    for (int i = 0; connections != NULL && i < config->connections; i++) {
        /* each its own connection (GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL) */
        connections[i].client = bench_client_new(config, true);
        if (connections[i].client == NULL) {
            exit(2); /* the options were checked at start: only memory can run out here */
        }
        connections[i].metadata_count =
            sc_client_metadata(connections[i].client, connections[i].metadata);
    }
    if (connections == NULL) {
        fprintf(stderr, "stockbench: out of memory\n");
        exit(2);
    }
    int threads = (int)config->threads;
    bench_worker_t workers[BENCH_THREADS_MAX];
    bench_slot_t *slots = calloc((size_t)config->inflight, sizeof(*slots));
    for (int t = 0; t < threads; t++) {
        bench_worker_t *worker = &workers[t];
        memset(worker, 0, sizeof(*worker));
        worker->config = config;
        worker->results = results;
        worker->mode = mode;
        worker->queue = grpc_completion_queue_create_for_next(NULL);
        worker->rng = 0x9E3779B97F4A7C15ULL * (uint64_t)(t + 1);
        int first = (int)(config->inflight * t / threads);
        int last = (int)(config->inflight * (t + 1) / threads);
        worker->slots = slots + first;
        worker->slots_count = last - first;
        for (int s = first; s < last; s++) {
            slots[s].worker = worker;
            slots[s].connection = &connections[s % config->connections];
        }
        if (pthread_create(&worker->thread, NULL, bench_worker_main, worker) != 0) {
            fprintf(stderr, "stockbench: cannot start a worker thread\n");
            exit(1);
        }
    }
    double seconds = bench_timed_phases(config, results);
    for (int t = 0; t < threads; t++) {
        pthread_join(workers[t].thread, NULL);
        grpc_completion_queue_shutdown(workers[t].queue);
        while (
            grpc_completion_queue_next(workers[t].queue, gpr_inf_future(GPR_CLOCK_REALTIME), NULL)
                .type != GRPC_QUEUE_SHUTDOWN) {
        }
        grpc_completion_queue_destroy(workers[t].queue);
    }
    for (int i = 0; i < config->connections; i++) {
        sc_client_free(connections[i].client);
    }
    free(connections);
    free(slots);
    return seconds;
}

/* ---- wix mode: pre-signed calls over HTTP/1.1 keep-alive ---- */

typedef struct {
    char *request; /* the whole HTTP request */
    size_t length;
    int64_t skus[BENCH_LINES_MAX];
    int count;
    _Atomic bool applied; /* a 200 was seen: the gateway applies a token at most once */
} bench_wix_call_t;

typedef struct {
    const bench_config_t *config;
    bench_results_t *results;
    bench_wix_call_t *calls;
    int calls_count;
    int index;
    struct sockaddr_in address;
    pthread_t thread;
} bench_http_worker_t;

/* Builds a signed call without metadata.requestId. Sent again and again, it is applied once
 * (the gateway's derived request_id) and answered as a replay afterwards, so this mode
 * measures mostly the replay path: see BENCHMARKS.md. */
static bool bench_wix_prepare(const bench_config_t *config, EVP_PKEY *key, const char *app_id,
                              uint64_t *rng, bench_wix_call_t *call)
{
    call->count = bench_pick_skus(config, rng, call->skus);
    json_t *items = json_array();
    for (int i = 0; i < call->count; i++) {
        char name[32];
        bench_sku_name(call->skus[i], name, sizeof(name));
        json_array_append_new(items, json_pack("{s:{s:s,s:s},s:i,s:b}", "catalogReference",
                                               "catalogItemId", name, "appId", "bench", "quantity",
                                               1, "subscriptionItem", 0));
    }
    bool restricted = (int64_t)(bench_random(rng) % 100) < config->restricted_percent;
    /* a distinct order per token: RS256 signatures are deterministic, so two tokens with the
     * same claims would be one call to the gateway (its request_id derives from them) */
    char order_id[48];
    snprintf(order_id, sizeof(order_id), "bench-order-%016llx",
             (unsigned long long)bench_random(rng));
    json_t *input = json_pack("{s:{s:{s:o,s:b,s:s,s:s},s:{s:s,s:s}}}", "data", "request", "items",
                              items, "restrictInventoryValue", restricted, "orderId", order_id,
                              "reason", "ORDER_PLACED", "metadata", "instanceId", config->tenant,
                              "appExtensionType", "ECOM_INVENTORY");
    sc_wix_sign_options_t options = {app_id, config->tenant, NULL, util_now_s(), 3600};
    json_t *claims = sc_wix_claims(input, &options);
    char *token = claims ? sc_wix_sign(key, "RS256", claims) : NULL;
    json_decref(claims);
    json_decref(input);
    if (token == NULL) {
        return false;
    }
    size_t capacity = strlen(token) + 256;
    call->request = malloc(capacity);
    int n = snprintf(call->request, capacity,
                     "POST /v1/decrement HTTP/1.1\r\nHost: %s\r\nContent-Type: text/plain\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     config->gateway, strlen(token), token);
    call->length = (size_t)n;
    free(token);
    return true;
}

static int bench_http_connect(const struct sockaddr_in *address)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (fd >= 0 && connect(fd, (const struct sockaddr *)address, sizeof(*address)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Sends one request and reads the response; returns the HTTP status or -1. */
static int bench_http_exchange(int fd, const bench_wix_call_t *call)
{
    if (send(fd, call->request, call->length, MSG_NOSIGNAL) != (ssize_t)call->length) {
        return -1;
    }
    char buffer[8192];
    size_t used = 0;
    char *end = NULL;
    while (end == NULL) {
        ssize_t n = recv(fd, buffer + used, sizeof(buffer) - 1 - used, 0);
        if (n <= 0) {
            return -1;
        }
        used += (size_t)n;
        buffer[used] = '\0';
        end = strstr(buffer, "\r\n\r\n");
    }
    int status = (int)strtol(buffer + 9, NULL, 10);
    const char *length_header = strstr(buffer, "Content-Length:") /* the gateway writes it so */;
    size_t body_length = length_header ? (size_t)strtol(length_header + 15, NULL, 10) : 0;
    size_t have = used - (size_t)(end + 4 - buffer);
    while (have < body_length) {
        ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
        if (n <= 0) {
            return -1;
        }
        have += (size_t)n;
    }
    return status;
}

static void *bench_http_main(void *argument)
{
    bench_http_worker_t *worker = argument;
    bench_results_t *results = worker->results;
    int fd = -1;
    while (!atomic_load(&results->stop)) {
        if (fd < 0 && (fd = bench_http_connect(&worker->address)) < 0) {
            atomic_fetch_add(&results->errors, 1);
            usleep(10000);
            continue;
        }
        bench_wix_call_t *call = &worker->calls[worker->index++ % worker->calls_count];
        double started = util_monotonic_ms();
        int status = bench_http_exchange(fd, call);
        if (status == 200 || status == 428) {
            bench_sample(results, util_monotonic_ms() - started);
            /* a token without requestId is applied once (the gateway derives its request_id
             * from the signature): later 200s for it are replays, not new decrements */
            bool first = status == 200 && !atomic_exchange(&call->applied, true);
            for (int i = 0; first && i < call->count; i++) {
                atomic_fetch_add(&results->acked[call->skus[i]], 1);
            }
            continue;
        }
        atomic_fetch_add(&results->errors, 1);
        for (int i = 0; i < call->count; i++) {
            atomic_fetch_add(&results->uncertain[call->skus[i]], 1);
        }
        close(fd);
        fd = -1;
    }
    if (fd >= 0) {
        close(fd);
    }
    return NULL;
}

static double bench_run_wix(const bench_config_t *config, bench_results_t *results)
{
    char app_id[128];
    EVP_PKEY *key = sc_wix_load_private_key(config->key);
    if (key == NULL || !sc_wix_app_id(config->app_id, config->key, app_id, sizeof(app_id))) {
        fprintf(stderr, "stockbench: wix mode needs --key and --app-id (or the dev key dir)\n");
        EVP_PKEY_free(key);
        return -1;
    }
    bench_wix_call_t *calls = calloc(BENCH_WIX_TOKENS, sizeof(*calls));
    uint64_t rng = 0x2545F4914F6CDD1DULL;
    for (int i = 0; i < BENCH_WIX_TOKENS; i++) {
        if (!bench_wix_prepare(config, key, app_id, &rng, &calls[i])) {
            fprintf(stderr, "stockbench: cannot sign a Wix call\n");
            return -1;
        }
    }
    EVP_PKEY_free(key);
    bench_http_worker_t *workers = calloc((size_t)config->connections, sizeof(*workers));
    struct sockaddr_in address;
    if (!net_parse_ipv4_host_port(config->gateway, &address)) {
        fprintf(stderr, "stockbench: --gateway must be IPv4 HOST:PORT\n");
        return -1;
    }
    for (int i = 0; i < config->connections; i++) {
        workers[i] =
            (bench_http_worker_t){config, results, calls, BENCH_WIX_TOKENS, i * 37, address, 0};
        if (pthread_create(&workers[i].thread, NULL, bench_http_main, &workers[i]) != 0) {
            fprintf(stderr, "stockbench: cannot start a worker thread\n");
            exit(1);
        }
    }
    double seconds = bench_timed_phases(config, results);
    for (int i = 0; i < config->connections; i++) {
        pthread_join(workers[i].thread, NULL);
    }
    for (int i = 0; i < BENCH_WIX_TOKENS; i++) {
        free(calls[i].request);
    }
    free(calls);
    free(workers);
    return seconds;
}

/* ---- seeding and checking ---- */

#define BENCH_CHUNK 8192

/* Sets (set = true) or reads every SKU in chunks; when reading, counts mismatches against
 * what was acknowledged. Returns -1 when stockd could not be reached. */
static int64_t bench_walk_skus(const bench_config_t *config, bench_results_t *results, bool set)
{
    sc_client_t *client = bench_client_new(config, false);
    int64_t mismatches = client != NULL ? 0 : -1;
    static char names[BENCH_CHUNK][32];
    static Stockd__V1__ItemRef items[BENCH_CHUNK];
    static Stockd__V1__ItemRef *item_pointers[BENCH_CHUNK];
    static Stockd__V1__SetLine lines[BENCH_CHUNK];
    static Stockd__V1__SetLine *line_pointers[BENCH_CHUNK];
    for (int64_t first = 0; first < config->skus && mismatches >= 0; first += BENCH_CHUNK) {
        int64_t count = config->skus - first < BENCH_CHUNK ? config->skus - first : BENCH_CHUNK;
        for (int64_t i = 0; i < count; i++) {
            bench_sku_name(first + i, names[i], sizeof(names[i]));
            stockd__v1__item_ref__init(&items[i]);
            items[i].app_id = "bench";
            items[i].catalog_item_id = names[i];
            item_pointers[i] = &items[i];
            stockd__v1__set_line__init(&lines[i]);
            lines[i].item = &items[i];
            lines[i].available = BENCH_SEED_AVAILABLE;
            line_pointers[i] = &lines[i];
        }
        sc_status_t status;
        if (set) {
            Stockd__V1__SetStockRequest request = STOCKD__V1__SET_STOCK_REQUEST__INIT;
            request.tenant_id = (char *)config->tenant;
            request.n_lines = (size_t)count;
            request.lines = line_pointers;
            Stockd__V1__SetStockResponse *response = NULL;
            if (sc_set_stock(client, &request, &response, 60000, &status) != 0) {
                fprintf(stderr, "stockbench: seeding failed: %s: %s\n", sc_code_name(status.code),
                        status.message);
                mismatches = -1;
            }
            if (response != NULL) {
                stockd__v1__set_stock_response__free_unpacked(response, NULL);
            }
        } else {
            Stockd__V1__GetStockRequest request = STOCKD__V1__GET_STOCK_REQUEST__INIT;
            request.tenant_id = (char *)config->tenant;
            request.n_items = (size_t)count;
            request.items = item_pointers;
            Stockd__V1__GetStockResponse *response = NULL;
            if (sc_get_stock(client, &request, &response, 60000, &status) != 0) {
                fprintf(stderr, "stockbench: check failed: %s: %s\n", sc_code_name(status.code),
                        status.message);
                mismatches = -1;
            }
            for (size_t i = 0; response != NULL && i < response->n_levels; i++) {
                int64_t sku = first + (int64_t)i;
                int64_t applied = BENCH_SEED_AVAILABLE - response->levels[i]->available;
                int64_t acked = atomic_load(&results->acked[sku]);
                int64_t uncertain = atomic_load(&results->uncertain[sku]);
                if (applied < acked - uncertain || applied > acked + uncertain) {
                    mismatches++;
                }
            }
            if (response != NULL) {
                stockd__v1__get_stock_response__free_unpacked(response, NULL);
            }
        }
        sc_status_free(&status);
    }
    sc_client_free(client);
    return mismatches;
}

static bench_results_t *bench_results_new(int64_t skus)
{
    bench_results_t *results = calloc(1, sizeof(*results));
    results->acked = calloc((size_t)skus, sizeof(*results->acked));
    results->uncertain = calloc((size_t)skus, sizeof(*results->uncertain));
    results->samples = malloc(BENCH_SAMPLES_MAX * sizeof(float));
    if (!results->acked || !results->uncertain || !results->samples) {
        fprintf(stderr, "stockbench: out of memory\n");
        exit(2);
    }
    return results;
}

static void bench_results_free(bench_results_t *results)
{
    free(results->acked);
    free(results->uncertain);
    free(results->samples);
    free(results);
}

/* One run of one mode; prints a human line and fills *summary. Returns the mismatches found
 * by the check (0 = every acknowledged change is there), or -1 on failure. */
static int64_t bench_run(const bench_config_t *config, const char *mode, bench_summary_t *summary)
{
    bench_results_t *results = bench_results_new(config->skus);
    bool moves = strcmp(mode, "health") != 0;
    if (moves && config->seed && bench_walk_skus(config, results, true) < 0) {
        bench_results_free(results);
        return -1;
    }
    double seconds = strcmp(mode, "wix") == 0 ? bench_run_wix(config, results)
                                              : bench_run_grpc(config, mode, results);
    if (seconds <= 0) {
        bench_results_free(results);
        return -1;
    }
    *summary = bench_summarize(results, seconds);
    int64_t mismatches = moves && config->seed ? bench_walk_skus(config, results, false) : 0;
    fprintf(stderr,
            "%-9s %8.0f ops/s  %llu ops  %llu errors  p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  "
            "max %.2f ms  check: %s\n",
            mode, summary->ops_per_s, (unsigned long long)summary->ops,
            (unsigned long long)summary->errors, summary->p50, summary->p90, summary->p99,
            summary->max,
            !moves || !config->seed ? "skipped"
            : mismatches == 0       ? "every SKU matches"
                                    : "MISMATCH");
    bench_results_free(results);
    return mismatches;
}

int main(int argc, char **argv)
{
    bench_config_t config;
    memset(&config, 0, sizeof(config));
    cfg_parse_result_t parsed =
        cfg_parse(&bench_spec, &config, argc, argv, 1, NULL, stdout, stderr);
    if (parsed != CFG_PARSE_OK) {
        return parsed == CFG_PARSE_EXIT_SUCCESS ? 0 : 2;
    }
    if (config.lines_min > config.lines_max) {
        fprintf(stderr, "stockbench: --lines-min must not exceed --lines-max\n");
        return 2;
    }
    if (!bench_resolve_token(&config)) {
        return 2;
    }
    grpc_init();
    sc_client_t *probe = bench_client_new(&config, false); /* bad TLS files or token: stop now */
    if (probe == NULL) {
        grpc_shutdown();
        return 2;
    }
    sc_client_free(probe);
    bench_summary_t first = {0}, second = {0};
    int exit_code = 0;
    if (config.compare) {
        int64_t a = bench_run(&config, "health", &first);
        int64_t b = a < 0 ? -1 : bench_run(&config, "decrement", &second);
        exit_code = a == 0 && b == 0 ? 0 : 1;
        printf("{\"health_per_s\":%.1f,\"decrement_per_s\":%.1f,\"ratio\":%.3f,"
               "\"decrement_p99_ms\":%.3f,\"check_mismatches\":%lld}\n",
               first.ops_per_s, second.ops_per_s,
               first.ops_per_s > 0 ? second.ops_per_s / first.ops_per_s : 0, second.p99,
               (long long)(b < 0 ? -1 : b));
    } else {
        int64_t mismatches = bench_run(&config, config.mode, &first);
        exit_code = mismatches == 0 ? 0 : 1;
        printf("{\"mode\":\"%s\",\"ops\":%llu,\"errors\":%llu,\"seconds\":%.3f,"
               "\"ops_per_s\":%.1f,\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,"
               "\"max_ms\":%.3f,\"check_mismatches\":%lld}\n",
               config.mode, (unsigned long long)first.ops, (unsigned long long)first.errors,
               first.seconds, first.ops_per_s, first.p50, first.p90, first.p99, first.max,
               (long long)mismatches);
    }
    sc_thread_release();
    grpc_shutdown();
    return exit_code;
}
