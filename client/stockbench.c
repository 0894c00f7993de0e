/* stockbench — load generator for stockd (gRPC) and stockd-gateway (Wix calls over HTTP).
 *
 *   stockbench [--preset peers] --mode health|decrement|mixed|wix [--batch N] [--connections N]
 *              [--inflight N] [--lines-min A --lines-max B] [--skus N]
 *              [--restricted-percent P] [--duration S] [--warmup S] [--compare]
 *
 * gRPC modes keep --inflight calls outstanding over --connections channels of their own
 * (GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL: no two channels share a subchannel, so each is its own
 * TCP connection; the JSON line reports how many this process had open at the end of the
 * measured phase), driven asynchronously by one completion queue per thread. wix mode sends
 * signed Wix calls over HTTP/1.1 keep-alive, one at a time per connection; every call carries
 * its own metadata.requestId, as Wix's do, so each one is applied and writes an idempotency
 * record. The tokens are signed before the run (RS256 costs more CPU than the gateway's
 * verification) unless --wix-presign=false.
 * Afterwards it checks through GetStock that every SKU lost exactly what was acknowledged.
 * The last line of every run is one JSON object. */
#include <arpa/inet.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench_load.h"
#include "bench_proc.h"
#include "config.h"
#include "net.h"
#include "stockclient.h"
#include "util.h"
#include "wix_sign.h"

#define BENCH_THREADS_MAX 8
#define BENCH_CONNECTIONS_MAX 256
#define BENCH_INFLIGHT_MAX 4096
#define BENCH_LINES_MAX 16
#define BENCH_BATCH_MAX 1024 /* SD_BATCH_WRITES_MAX */
#define BENCH_SAMPLES_MAX (4 * 1024 * 1024)
#define BENCH_WIX_TOKENS_MAX 2000000 /* ~1.4 KB each */
#define BENCH_WIX_TOKEN_TTL_S 3600   /* exp - iat: the gateway's default --jwt-lifetime-max */
#define BENCH_SEED_AVAILABLE INT64_C(1000000000000) /* 10^12: restricted decrements succeed */

typedef struct {
    const char *stockd;
    const char *gateway;
    const char *mode;
    int64_t batch;
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
    const char *preset;
    bool wix_presign;
    int64_t wix_rate;
    int64_t wix_tokens;
    const char *wix_corpus;
    const char *server_pids;
    /* not options: --token-file's token, read at start */
    char token_from_file[SC_TOKEN_BYTES_MAX + 1];
} bench_config_t;

static const char *const bench_modes[] = {"health", "decrement", "mixed", "wix", NULL};
static const char *const bench_presets[] = {"none", "peers", NULL};

#define BENCH_OPT(flag, env, type, field, def, lo, hi, choices, help)                              \
    {                                                                                              \
        flag, env, type, offsetof(bench_config_t, field), def, lo, hi, choices, false, help        \
    }

static const cfg_option_t bench_options[] = {
    BENCH_OPT("stockd", "STOCKD_ADDR", CFG_STRING, stockd, "127.0.0.1:50051", 0, 0, NULL,
              "stockd gRPC address, or replicas A,B,C (calls follow the leader they name)"),
    BENCH_OPT("gateway", "STOCKD_BENCH_GATEWAY", CFG_STRING, gateway, "127.0.0.1:8080", 0, 0, NULL,
              "gateway HTTP address (wix mode)"),
    BENCH_OPT("batch", "STOCKD_BENCH_BATCH", CFG_INT, batch, "0", 0, BENCH_BATCH_MAX, NULL,
              "decrement/mixed: writes per Inventory/Batch call (0: each write its own call); "
              "ops count writes, and a write's latency is its Batch call's"),
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
    BENCH_OPT("token", "STOCKD_TOKEN", CFG_SECRET, token, "", 0, 0, NULL,
              "bearer token sent with every call (a flag shows in ps: prefer --token-file)"),
    BENCH_OPT("token-file", "STOCKD_TOKEN_FILE", CFG_STRING, token_file, "", 0, 0, NULL,
              "file whose first line is the bearer token"),
    BENCH_OPT("preset", "STOCKD_BENCH_PRESET", CFG_CHOICE, preset, "none", 0, 0, bench_presets,
              "none | peers (the peers' workload: 64 connections x 1 call in flight, 1-3 of "
              "10,000 SKUs taken all-or-nothing, 3s warm-up, 20s measured); a preset replaces "
              "the defaults: options and environment given with it still override it"),
    BENCH_OPT("wix-presign", "STOCKD_BENCH_WIX_PRESIGN", CFG_BOOL, wix_presign, "true", 0, 0, NULL,
              "wix mode: sign a corpus of unique tokens before the run (false: sign each call "
              "just before sending it, in the sending thread)"),
    BENCH_OPT("wix-rate", "STOCKD_BENCH_WIX_RATE", CFG_INT, wix_rate, "20000", 1, 1000000, NULL,
              "wix mode: calls/s expected at most; the corpus holds rate x (warmup + duration) "
              "tokens"),
    BENCH_OPT("wix-tokens", "STOCKD_BENCH_WIX_TOKENS", CFG_INT, wix_tokens, "0", 0,
              BENCH_WIX_TOKENS_MAX, NULL, "wix mode: corpus size (0: from --wix-rate)"),
    BENCH_OPT("wix-corpus", "STOCKD_BENCH_WIX_CORPUS", CFG_STRING, wix_corpus, "", 0, 0, NULL,
              "wix mode: file keeping the signed corpus for later runs (used again while its "
              "tokens are valid and match; only against a fresh stockd: a token applies once)"),
    BENCH_OPT("server-pids", "STOCKD_BENCH_SERVER_PIDS", CFG_STRING, server_pids, "", 0, 0, NULL,
              "comma-separated pids whose CPU time (with their children's) over the measured "
              "phase is reported"),
};

#define BENCH_OPTIONS_COUNT (sizeof(bench_options) / sizeof(bench_options[0]))

/* ---- presets: other defaults for a named workload ---- */

typedef struct {
    const char *flag;
    const char *value;
} bench_preset_value_t;

/* The workload BENCHMARKS.md compares with Redis and PostgreSQL (bench/peers.sh): 64 clients,
 * each with its own connection and one call at a time (closed loop), each call a restricted
 * Decrement of 1 unit from each of 1-3 distinct random SKUs out of 10,000 (all-or-nothing),
 * against a durable stockd (--sync=always, its default). */
static const bench_preset_value_t bench_preset_peers[] = {
    {"mode", "decrement"}, {"connections", "64"}, {"inflight", "64"},
    {"lines-min", "1"},    {"lines-max", "3"},    {"skus", "10000"},
    {"warmup", "3s"},      {"duration", "20s"},   {"restricted-percent", "100"},
    {"seed", "true"},      {NULL, NULL}};

/* The preset named by the last --preset on the command line, else STOCKD_BENCH_PRESET. */
static const char *bench_preset_named(int argc, char **argv)
{
    const char *name = getenv("STOCKD_BENCH_PRESET");
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strcmp(argv[i], "--preset") == 0 && i + 1 < argc) {
            name = argv[++i];
        } else if (strncmp(argv[i], "--preset=", 9) == 0) {
            name = argv[i] + 9;
        }
    }
    return name;
}

/* Fills options (BENCH_OPTIONS_COUNT entries) with bench_options whose defaults the named
 * preset replaces; an unknown name changes nothing (the parser then refuses it). */
static void bench_options_with_preset(const char *preset, cfg_option_t *options)
{
    memcpy(options, bench_options, sizeof(bench_options));
    if (preset == NULL || strcmp(preset, "peers") != 0) {
        return;
    }
    for (const bench_preset_value_t *value = bench_preset_peers; value->flag; value++) {
        for (size_t i = 0; i < BENCH_OPTIONS_COUNT; i++) {
            if (strcmp(options[i].flag, value->flag) == 0) {
                options[i].default_value = value->value;
            }
        }
    }
}

/* The port of HOST:PORT (also [v6]:PORT, ipv4:HOST:PORT), 0 when there is none. */
static int bench_port_of(const char *address)
{
    const char *colon = strrchr(address, ':');
    return colon != NULL ? (int)strtol(colon + 1, NULL, 10) : 0;
}

/* ---- results ---- */

typedef struct {
    _Atomic uint64_t ops, errors;
    _Atomic int64_t *acked;     /* per SKU: units acknowledged as decremented */
    _Atomic int64_t *uncertain; /* per SKU: units of calls whose outcome is unknown */
    float *samples;             /* latencies in ms (measured phase only) */
    _Atomic size_t samples_count;
    _Atomic bool measuring, stop;
    /* measured around the measured phase */
    int target_port;      /* connections to this port are counted */
    int tcp_connections;  /* this process's, at the end of the measured phase */
    double client_cpu_s;  /* this process's */
    double server_cpu_s;  /* --server-pids' (and their children's); -1: not measured */
    double machine_cpu_s; /* every process's */
    /* wix mode */
    size_t wix_tokens;      /* the corpus's size (0: signed per call) */
    size_t wix_tokens_used; /* sent, warm-up included */
    double wix_sign_s;      /* signing the corpus took (0: loaded from --wix-corpus) */
    bool wix_exhausted;     /* the corpus ran out: the run is not valid */
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
    int tcp_connections;
    double client_cpu_s, server_cpu_s, machine_cpu_s;
    size_t wix_tokens, wix_tokens_used;
    double wix_sign_s;
    bool wix_exhausted;
} bench_summary_t;

static bench_summary_t bench_summarize(bench_results_t *results, double seconds)
{
    bench_summary_t summary = {.ops = atomic_load(&results->ops),
                               .errors = atomic_load(&results->errors),
                               .seconds = seconds,
                               .tcp_connections = results->tcp_connections,
                               .client_cpu_s = results->client_cpu_s,
                               .server_cpu_s = results->server_cpu_s,
                               .machine_cpu_s = results->machine_cpu_s,
                               .wix_tokens = results->wix_tokens,
                               .wix_tokens_used = results->wix_tokens_used,
                               .wix_sign_s = results->wix_sign_s,
                               .wix_exhausted = results->wix_exhausted};
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

/* Picks the SKUs of one call (bench_load.h: the same rule as peerbench's). */
static int bench_pick_skus(const bench_config_t *config, uint64_t *rng, int64_t *skus)
{
    return bench_load_pick_skus(rng, config->lines_min, config->lines_max, config->skus, skus);
}

static void bench_sku_name(int64_t sku, char *out, size_t capacity)
{
    snprintf(out, capacity, "sku-%09lld", (long long)sku);
}

/* Item refs, lines and the request of a move of 1 unit per SKU (Decrement and Increment
 * requests share their field numbers; restrict is field 3). */
typedef struct {
    char names[BENCH_LINES_MAX][32];
    Stockd__V1__ItemRef items[BENCH_LINES_MAX];
    Stockd__V1__Line lines[BENCH_LINES_MAX];
    Stockd__V1__Line *pointers[BENCH_LINES_MAX];
    Stockd__V1__DecrementRequest request;
    Stockd__V1__IncrementRequest increment; /* the same lines, for a Batch's increments */
} bench_move_t;

static void bench_move_fill(bench_move_t *move, const bench_config_t *config, const int64_t *skus,
                            int count, bool restricted)
{
    for (int i = 0; i < count; i++) {
        bench_sku_name(skus[i], move->names[i], sizeof(move->names[i]));
        stockd__v1__item_ref__init(&move->items[i]);
        move->items[i].app_id = "bench";
        move->items[i].catalog_item_id = move->names[i];
        stockd__v1__line__init(&move->lines[i]);
        move->lines[i].item = &move->items[i];
        move->lines[i].quantity = 1;
        move->pointers[i] = &move->lines[i];
    }
    stockd__v1__decrement_request__init(&move->request);
    move->request.tenant_id = (char *)config->tenant;
    move->request.n_lines = (size_t)count;
    move->request.lines = move->pointers;
    move->request.restrict_inventory = restricted;
    move->request.reason = STOCKD__V1__REASON__REASON_ORDER_PLACED;
    stockd__v1__increment_request__init(&move->increment);
    move->increment.tenant_id = (char *)config->tenant;
    move->increment.n_lines = (size_t)count;
    move->increment.lines = move->pointers;
    move->increment.reason = STOCKD__V1__REASON__REASON_ORDER_CANCELED;
}

static grpc_byte_buffer *bench_pack(const ProtobufCMessage *message)
{
    size_t length = protobuf_c_message_get_packed_size(message);
    grpc_slice slice = grpc_slice_malloc(length);
    protobuf_c_message_pack(message, GRPC_SLICE_START_PTR(slice));
    grpc_byte_buffer *buffer = grpc_raw_byte_buffer_create(&slice, 1);
    grpc_slice_unref(slice);
    return buffer;
}

/* Serializes a Decrement (or, when increment, an Increment) of 1 unit per SKU. */
static grpc_byte_buffer *bench_pack_move(const bench_config_t *config, const int64_t *skus,
                                         int count, bool restricted)
{
    bench_move_t move;
    bench_move_fill(&move, config, skus, count, restricted);
    return bench_pack(&move.request.base);
}

/* Serializes a Batch of `writes` moves, each with its SKUs, count and sign (-1: increment). */
static grpc_byte_buffer *bench_pack_batch(const bench_config_t *config,
                                          int64_t (*skus)[BENCH_LINES_MAX], const int *counts,
                                          const int *signs, const bool *restricted, int writes)
{
    bench_move_t *moves = malloc((size_t)writes * sizeof(*moves));
    Stockd__V1__BatchWrite *batch_writes = malloc((size_t)writes * sizeof(*batch_writes));
    Stockd__V1__BatchWrite **pointers = malloc((size_t)writes * sizeof(*pointers));
    if (moves == NULL || batch_writes == NULL || pointers == NULL) {
        fprintf(stderr, "stockbench: out of memory\n");
        exit(2);
    }
    for (int w = 0; w < writes; w++) {
        bench_move_fill(&moves[w], config, skus[w], counts[w], restricted[w] && signs[w] > 0);
        stockd__v1__batch_write__init(&batch_writes[w]);
        if (signs[w] > 0) {
            batch_writes[w].write_case = STOCKD__V1__BATCH_WRITE__WRITE_DECREMENT;
            batch_writes[w].decrement = &moves[w].request;
        } else {
            batch_writes[w].write_case = STOCKD__V1__BATCH_WRITE__WRITE_INCREMENT;
            batch_writes[w].increment = &moves[w].increment;
        }
        pointers[w] = &batch_writes[w];
    }
    Stockd__V1__BatchRequest request = STOCKD__V1__BATCH_REQUEST__INIT;
    request.n_writes = (size_t)writes;
    request.writes = pointers;
    grpc_byte_buffer *buffer = bench_pack(&request.base);
    free(moves);
    free(batch_writes);
    free(pointers);
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
    grpc_channel *channel; /* the replica the call went to */
    grpc_byte_buffer *send, *receive;
    grpc_metadata_array initial, trailing;
    grpc_status_code status;
    grpc_slice details;
    double started_ms;
    int64_t skus[BENCH_LINES_MAX];
    int count;
    int sign; /* +1 decrement, -1 increment, 0 health */
    /* --batch: each write's SKUs, count and sign (the lone fields above stay unused) */
    int64_t (*batch_skus)[BENCH_LINES_MAX];
    int *batch_counts;
    int *batch_signs;
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

/* --batch: picks each write as a lone call would be picked and packs them as one Batch. */
static void bench_slot_start_batch(bench_slot_t *slot)
{
    bench_worker_t *worker = slot->worker;
    int writes = (int)worker->config->batch;
    bool restricted[BENCH_BATCH_MAX];
    for (int w = 0; w < writes; w++) {
        bool increment = strcmp(worker->mode, "mixed") == 0 && bench_load_random(&worker->rng) % 2;
        restricted[w] =
            (int64_t)(bench_load_random(&worker->rng) % 100) < worker->config->restricted_percent;
        slot->batch_counts[w] = bench_pick_skus(worker->config, &worker->rng, slot->batch_skus[w]);
        slot->batch_signs[w] = increment ? -1 : 1;
    }
    slot->send = bench_pack_batch(worker->config, slot->batch_skus, slot->batch_counts,
                                  slot->batch_signs, restricted, writes);
}

static void bench_slot_start(bench_slot_t *slot)
{
    bench_worker_t *worker = slot->worker;
    const char *method = "/grpc.health.v1.Health/Check";
    slot->count = 0;
    slot->sign = 0;
    if (strcmp(worker->mode, "health") == 0) {
        grpc_slice empty = grpc_empty_slice();
        slot->send = grpc_raw_byte_buffer_create(&empty, 1);
    } else if (worker->config->batch > 0) {
        bench_slot_start_batch(slot);
        method = "/stockd.v1.Inventory/Batch";
    } else {
        bool increment = strcmp(worker->mode, "mixed") == 0 && bench_load_random(&worker->rng) % 2;
        bool restricted =
            (int64_t)(bench_load_random(&worker->rng) % 100) < worker->config->restricted_percent;
        slot->count = bench_pick_skus(worker->config, &worker->rng, slot->skus);
        slot->sign = increment ? -1 : 1;
        slot->send =
            bench_pack_move(worker->config, slot->skus, slot->count, restricted && !increment);
        method = increment ? "/stockd.v1.Inventory/Increment" : "/stockd.v1.Inventory/Decrement";
    }
    gpr_timespec deadline =
        gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_millis(10000, GPR_TIMESPAN));
    slot->channel = sc_client_channel(slot->connection->client);
    slot->call =
        grpc_channel_create_call(slot->channel, NULL, GRPC_PROPAGATE_DEFAULTS, worker->queue,
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

/* Records the outcome of one write (its gRPC code) for the check and the latencies. */
static void bench_record(bench_results_t *results, int code, const int64_t *skus, int count,
                         int sign, double latency_ms)
{
    if (code == GRPC_STATUS_OK) {
        bench_sample(results, latency_ms);
        for (int i = 0; i < count; i++) {
            atomic_fetch_add(&results->acked[skus[i]], sign);
        }
    } else if (code != GRPC_STATUS_FAILED_PRECONDITION) {
        /* not known to be refused: it may or may not have been applied */
        atomic_fetch_add(&results->errors, 1);
        for (int i = 0; i < count; i++) {
            atomic_fetch_add(&results->uncertain[skus[i]], 1);
        }
    } else {
        bench_sample(results, latency_ms); /* a refusal is a served call */
    }
}

/* The BatchResponse of a finished Batch call, or NULL (then every write's outcome is
 * unknown to this client). */
static Stockd__V1__BatchResponse *bench_batch_response(const bench_slot_t *slot)
{
    if (slot->status != GRPC_STATUS_OK || slot->receive == NULL) {
        return NULL;
    }
    grpc_byte_buffer_reader reader;
    if (!grpc_byte_buffer_reader_init(&reader, slot->receive)) {
        return NULL;
    }
    grpc_slice bytes = grpc_byte_buffer_reader_readall(&reader);
    grpc_byte_buffer_reader_destroy(&reader);
    Stockd__V1__BatchResponse *response = stockd__v1__batch_response__unpack(
        NULL, GRPC_SLICE_LENGTH(bytes), GRPC_SLICE_START_PTR(bytes));
    grpc_slice_unref(bytes);
    if (response != NULL && response->n_results != (size_t)slot->worker->config->batch) {
        stockd__v1__batch_response__free_unpacked(response, NULL);
        response = NULL;
    }
    return response;
}

/* Records a finished call and frees its resources. */
static void bench_slot_finish(bench_slot_t *slot)
{
    bench_results_t *results = slot->worker->results;
    double latency_ms = util_monotonic_ms() - slot->started_ms;
    int batch = (int)slot->worker->config->batch;
    if (batch > 0 && slot->sign == 0 && slot->batch_counts != NULL) {
        Stockd__V1__BatchResponse *response = bench_batch_response(slot);
        for (int w = 0; w < batch; w++) {
            const Stockd__V1__BatchResult *result = response ? response->results[w] : NULL;
            int code = result == NULL           ? GRPC_STATUS_UNKNOWN
                       : result->status != NULL ? result->status->code
                                                : GRPC_STATUS_OK;
            bench_record(results, code, slot->batch_skus[w], slot->batch_counts[w],
                         slot->batch_signs[w], latency_ms);
        }
        if (response != NULL) {
            stockd__v1__batch_response__free_unpacked(response, NULL);
        }
    } else {
        bench_record(results, slot->status, slot->skus, slot->count, slot->sign, latency_ms);
    }
    if (slot->status != GRPC_STATUS_OK) { /* replicas: the next calls go to the leader */
        sc_client_follow(slot->connection->client, slot->channel, slot->status, slot->details,
                         &slot->trailing);
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

/* Runs warm-up then the measured phase; returns the measured seconds. Also measures this
 * process's and --server-pids' CPU time over the measured phase, and counts the connections
 * open to results->target_port at its end. */
static double bench_timed_phases(const bench_config_t *config, bench_results_t *results)
{
    usleep((useconds_t)(config->warmup_s * 1000000));
    double client_cpu_s = bp_own_cpu_s();
    double server_cpu_s = bp_pids_cpu_s(config->server_pids);
    double machine_cpu_s = bp_machine_busy_s();
    atomic_store(&results->measuring, true);
    double started = util_monotonic_ms();
    usleep((useconds_t)(config->duration_s * 1000000));
    atomic_store(&results->measuring, false);
    double seconds = (util_monotonic_ms() - started) / 1000.0;
    results->machine_cpu_s = bp_machine_busy_s() - machine_cpu_s;
    results->client_cpu_s = bp_own_cpu_s() - client_cpu_s;
    results->server_cpu_s =
        server_cpu_s < 0 ? -1 : bp_pids_cpu_s(config->server_pids) - server_cpu_s;
    results->tcp_connections = bp_count_connections(results->target_port);
    atomic_store(&results->stop, true);
    return seconds;
}

/* --batch: room for each write's SKUs in a slot (health mode sends no writes). */
static void bench_slot_batch_alloc(const bench_config_t *config, bench_slot_t *slot)
{
    if (config->batch <= 0 || strcmp(config->mode, "health") == 0) {
        return;
    }
    size_t writes = (size_t)config->batch;
    slot->batch_skus = malloc(writes * sizeof(*slot->batch_skus));
    slot->batch_counts = malloc(writes * sizeof(*slot->batch_counts));
    slot->batch_signs = malloc(writes * sizeof(*slot->batch_signs));
    if (slot->batch_skus == NULL || slot->batch_counts == NULL || slot->batch_signs == NULL) {
        fprintf(stderr, "stockbench: out of memory\n");
        exit(2);
    }
}

static void bench_slot_batch_free(bench_slot_t *slot)
{
    free(slot->batch_skus);
    free(slot->batch_counts);
    free(slot->batch_signs);
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
            bench_slot_batch_alloc(config, &slots[s]);
        }
        if (pthread_create(&worker->thread, NULL, bench_worker_main, worker) != 0) {
            fprintf(stderr, "stockbench: cannot start a worker thread\n");
            exit(1);
        }
    }
    results->target_port = bench_port_of(config->stockd);
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
    for (int s = 0; s < config->inflight; s++) {
        bench_slot_batch_free(&slots[s]);
    }
    free(slots);
    return seconds;
}

/* ---- wix mode: signed Wix calls over HTTP/1.1 keep-alive ---- */

/* One Wix call: a restricted (or not) decrement of 1 unit of each of its SKUs. */
typedef struct {
    char *request; /* the whole HTTP request */
    size_t length;
    int64_t skus[BENCH_LINES_MAX];
    int count;
    bool restricted;
} bench_wix_call_t;

/* What every token is signed with. */
typedef struct {
    const bench_config_t *config;
    EVP_PKEY *key;
    const char *app_id;
    int64_t now_s; /* iat; exp = iat + BENCH_WIX_TOKEN_TTL_S */
} bench_wix_signer_t;

/* Tokens signed before the run, each sent once. */
typedef struct {
    bench_wix_call_t *calls;
    size_t count;
    _Atomic size_t next; /* the next unsent one */
    double sign_s;       /* signing took (0 when loaded from --wix-corpus) */
} bench_wix_corpus_t;

typedef struct {
    const bench_config_t *config;
    bench_results_t *results;
    bench_wix_corpus_t *corpus;       /* NULL: sign each call just before sending it */
    const bench_wix_signer_t *signer; /* for those */
    uint64_t rng;
    struct sockaddr_in address;
    pthread_t thread;
} bench_http_worker_t;

static void bench_wix_pick(const bench_config_t *config, uint64_t *rng, bench_wix_call_t *call)
{
    call->count = bench_pick_skus(config, rng, call->skus);
    call->restricted = (int64_t)(bench_load_random(rng) % 100) < config->restricted_percent;
}

/* A random version-4 UUID, the shape of Wix's requestId and orderId. */
static void bench_uuid(char out[37])
{
    unsigned char b[16];
    RAND_bytes(b, sizeof(b));
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
}

/* Signs the call as Wix would: Wix's envelope (sc_wix_claims: metadata with instanceId =
 * tenant, currency, identity, appExtensionType) with a requestId and an orderId of its own, so
 * that the gateway applies every call and stockd writes an idempotency record for each, as
 * with real Wix traffic. Returns a malloc'd token or NULL. */
static char *bench_wix_token(const bench_wix_signer_t *signer, const bench_wix_call_t *call)
{
    json_t *items = json_array();
    for (int i = 0; i < call->count; i++) {
        char name[32];
        bench_sku_name(call->skus[i], name, sizeof(name));
        json_array_append_new(items, json_pack("{s:{s:s,s:s},s:i,s:b}", "catalogReference",
                                               "catalogItemId", name, "appId", "bench", "quantity",
                                               1, "subscriptionItem", 0));
    }
    char request_id[37], order_id[37];
    bench_uuid(request_id);
    bench_uuid(order_id);
    json_t *input = json_pack("{s:o,s:b,s:s,s:s}", "items", items, "restrictInventoryValue",
                              call->restricted, "orderId", order_id, "reason", "ORDER_PLACED");
    sc_wix_sign_options_t options = {signer->app_id, signer->config->tenant, request_id,
                                     signer->now_s, BENCH_WIX_TOKEN_TTL_S};
    json_t *claims = input ? sc_wix_claims(input, &options) : NULL;
    char *token = claims ? sc_wix_sign(signer->key, "RS256", claims) : NULL;
    json_decref(claims);
    json_decref(input);
    return token;
}

/* Wraps the token in an HTTP request into call->request (malloc'd); false when out of memory. */
static bool bench_wix_request(const bench_config_t *config, const char *token,
                              bench_wix_call_t *call)
{
    size_t capacity = strlen(token) + strlen(config->gateway) + 128;
    call->request = malloc(capacity);
    if (call->request == NULL) {
        return false;
    }
    int n = snprintf(call->request, capacity,
                     "POST /v1/decrement HTTP/1.1\r\nHost: %s\r\nContent-Type: text/plain\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     config->gateway, strlen(token), token);
    call->length = (size_t)n;
    return true;
}

static bool bench_wix_sign_call(const bench_wix_signer_t *signer, bench_wix_call_t *call)
{
    char *token = bench_wix_token(signer, call);
    bool ok = token != NULL && bench_wix_request(signer->config, token, call);
    free(token);
    return ok;
}

/* ---- the corpus: signed in parallel before the run, optionally kept in a file ---- */

typedef struct {
    const bench_wix_signer_t *signer;
    bench_wix_call_t *calls;
    size_t first, last;
    bool ok;
    pthread_t thread;
} bench_sign_job_t;

static void *bench_sign_main(void *argument)
{
    bench_sign_job_t *job = argument;
    job->ok = true;
    for (size_t i = job->first; i < job->last && job->ok; i++) {
        job->ok = bench_wix_sign_call(job->signer, &job->calls[i]);
    }
    return NULL;
}

/* Signs calls[0..count) on one thread per CPU; false when a signature failed. */
static bool bench_wix_sign_all(const bench_wix_signer_t *signer, bench_wix_call_t *calls,
                               size_t count)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = cpus < 1 ? 1 : cpus > BENCH_THREADS_MAX ? BENCH_THREADS_MAX : (int)cpus;
    bench_sign_job_t jobs[BENCH_THREADS_MAX];
    bool ok = true;
    for (int t = 0; t < threads; t++) {
        jobs[t] = (bench_sign_job_t){signer,
                                     calls,
                                     count * (size_t)t / (size_t)threads,
                                     count * (size_t)(t + 1) / (size_t)threads,
                                     false,
                                     0};
        if (pthread_create(&jobs[t].thread, NULL, bench_sign_main, &jobs[t]) != 0) {
            fprintf(stderr, "stockbench: cannot start a signing thread\n");
            exit(1);
        }
    }
    for (int t = 0; t < threads; t++) {
        pthread_join(jobs[t].thread, NULL);
        ok = ok && jobs[t].ok;
    }
    return ok;
}

/* What a stored corpus must match to be used again (besides its expiry and size): the key, the
 * app id, the tenant and the shape of the calls. */
static void bench_wix_identity(const bench_wix_signer_t *signer, char *out, size_t capacity)
{
    const bench_config_t *config = signer->config;
    unsigned char *der = NULL, digest[EVP_MAX_MD_SIZE];
    unsigned int digest_length = 0;
    int der_length = i2d_PUBKEY(signer->key, &der);
    if (der_length <= 0 ||
        EVP_Digest(der, (size_t)der_length, digest, &digest_length, EVP_sha256(), NULL) != 1) {
        digest_length = 0;
    }
    OPENSSL_free(der);
    char key[17] = "unknown";
    for (unsigned int i = 0; i < 8 && digest_length >= 8; i++) {
        snprintf(key + 2 * i, 3, "%02x", digest[i]);
    }
    snprintf(out, capacity, "key=%s app=%s tenant=%s skus=%lld lines=%lld-%lld restricted=%lld\n",
             key, signer->app_id, config->tenant, (long long)config->skus,
             (long long)config->lines_min, (long long)config->lines_max,
             (long long)config->restricted_percent);
}

#define BENCH_CORPUS_MAGIC "stockbench-wix-corpus-v1"

/* Parses "SKU,SKU,... TOKEN" into call (its request built for this gateway). */
static bool bench_wix_parse_line(const bench_config_t *config, char *line, bench_wix_call_t *call)
{
    char *p = line;
    call->count = 0;
    call->restricted = true; /* unknown and unused: the token holds it */
    while (call->count < BENCH_LINES_MAX) {
        char *end = NULL;
        long long sku = strtoll(p, &end, 10);
        if (end == p || sku < 0 || sku >= config->skus) {
            return false;
        }
        call->skus[call->count++] = sku;
        p = end + 1;
        if (*end != ',') {
            break;
        }
    }
    line[strcspn(line, "\n")] = '\0';
    return p[-1] == ' ' && *p != '\0' && bench_wix_request(config, p, call);
}

/* Loads corpus->count calls from --wix-corpus when it holds at least as many that match and
 * stay valid until valid_until_s; false (nothing kept) otherwise. */
static bool bench_wix_corpus_load(const bench_config_t *config, const char *identity,
                                  int64_t valid_until_s, bench_wix_corpus_t *corpus)
{
    FILE *file = fopen(config->wix_corpus, "r");
    if (file == NULL) {
        return false;
    }
    char *line = NULL;
    size_t capacity = 0, loaded = 0;
    long long exp = 0;
    int offset = 0;
    bool ok = getline(&line, &capacity, file) > 0 &&
              sscanf(line, BENCH_CORPUS_MAGIC " %lld %n", &exp, &offset) == 1 && offset > 0 &&
              exp >= valid_until_s && strcmp(line + offset, identity) == 0;
    while (ok && loaded < corpus->count && getline(&line, &capacity, file) > 0) {
        ok = bench_wix_parse_line(config, line, &corpus->calls[loaded]);
        loaded += ok;
    }
    ok = ok && loaded == corpus->count;
    for (size_t i = 0; !ok && i < loaded; i++) {
        free(corpus->calls[i].request);
        corpus->calls[i].request = NULL;
    }
    free(line);
    fclose(file);
    return ok;
}

/* Writes the corpus to --wix-corpus (through a temporary file and a rename). */
static void bench_wix_corpus_save(const bench_wix_signer_t *signer, const char *identity,
                                  const bench_wix_corpus_t *corpus)
{
    const char *path = signer->config->wix_corpus;
    char temporary[4096];
    snprintf(temporary, sizeof(temporary), "%s.%ld.tmp", path, (long)getpid());
    FILE *file = fopen(temporary, "w");
    bool ok =
        file != NULL && fprintf(file, BENCH_CORPUS_MAGIC " %lld %s",
                                (long long)(signer->now_s + BENCH_WIX_TOKEN_TTL_S), identity) > 0;
    for (size_t i = 0; ok && i < corpus->count; i++) {
        const bench_wix_call_t *call = &corpus->calls[i];
        for (int j = 0; j < call->count; j++) {
            fprintf(file, "%lld%c", (long long)call->skus[j], j + 1 < call->count ? ',' : ' ');
        }
        ok = fprintf(file, "%s\n", strstr(call->request, "\r\n\r\n") + 4) > 0;
    }
    ok = file != NULL && fclose(file) == 0 && ok && rename(temporary, path) == 0;
    if (!ok) {
        fprintf(stderr, "stockbench: could not write --wix-corpus %s (the run goes on)\n", path);
        unlink(temporary);
    }
}

/* Fills the corpus: --wix-tokens calls (or --wix-rate x (warm-up + duration)), from
 * --wix-corpus when it holds them, else signed now (and then stored there). */
static bool bench_wix_corpus_build(const bench_wix_signer_t *signer, bench_wix_corpus_t *corpus)
{
    const bench_config_t *config = signer->config;
    int64_t count = config->wix_tokens > 0
                        ? config->wix_tokens
                        : config->wix_rate * (config->warmup_s + config->duration_s);
    corpus->count = (size_t)(count < BENCH_WIX_TOKENS_MAX ? count : BENCH_WIX_TOKENS_MAX);
    corpus->calls = calloc(corpus->count, sizeof(*corpus->calls));
    if (corpus->calls == NULL) {
        return false;
    }
    char identity[1024];
    bench_wix_identity(signer, identity, sizeof(identity));
    /* valid through this run: warm-up and measured time, seeding and checking, clock skew */
    int64_t valid_until_s = util_now_s() + config->warmup_s + config->duration_s + 300;
    if (config->wix_corpus[0] != '\0' &&
        bench_wix_corpus_load(config, identity, valid_until_s, corpus)) {
        fprintf(stderr, "wix: %zu unique tokens loaded from %s\n", corpus->count,
                config->wix_corpus);
        return true;
    }
    uint64_t rng = 0x2545F4914F6CDD1DULL ^ (uint64_t)signer->now_s;
    for (size_t i = 0; i < corpus->count; i++) {
        bench_wix_pick(config, &rng, &corpus->calls[i]);
    }
    double started = util_monotonic_ms();
    if (!bench_wix_sign_all(signer, corpus->calls, corpus->count)) {
        return false;
    }
    corpus->sign_s = (util_monotonic_ms() - started) / 1000.0;
    fprintf(stderr, "wix: signed %zu unique tokens in %.1f s (%.0f/s, RS256, one thread per CPU)\n",
            corpus->count, corpus->sign_s, (double)corpus->count / corpus->sign_s);
    if (config->wix_corpus[0] != '\0') {
        bench_wix_corpus_save(signer, identity, corpus);
    }
    return true;
}

static void bench_wix_corpus_free(bench_wix_corpus_t *corpus)
{
    for (size_t i = 0; corpus->calls != NULL && i < corpus->count; i++) {
        free(corpus->calls[i].request);
    }
    free(corpus->calls);
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

/* The next call to send: the corpus's next unsent one, or (without a corpus) one signed now
 * into *own. NULL when the corpus has run out or signing failed. */
static bench_wix_call_t *bench_wix_next(bench_http_worker_t *worker, bench_wix_call_t *own)
{
    if (worker->corpus != NULL) {
        size_t index = atomic_fetch_add(&worker->corpus->next, 1);
        return index < worker->corpus->count ? &worker->corpus->calls[index] : NULL;
    }
    bench_wix_pick(worker->config, &worker->rng, own);
    return bench_wix_sign_call(worker->signer, own) ? own : NULL;
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
        bench_wix_call_t own = {0};
        bench_wix_call_t *call = bench_wix_next(worker, &own);
        if (call == NULL) {
            break; /* out of tokens: reported after the run */
        }
        double started = util_monotonic_ms();
        int status = bench_http_exchange(fd, call);
        free(own.request);
        if (status == 200 || status == 428) {
            bench_sample(results, util_monotonic_ms() - started);
            /* each call has its own requestId: every 200 is a decrement of its own */
            for (int i = 0; status == 200 && i < call->count; i++) {
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

/* Runs --connections senders against the gateway; returns the measured seconds. */
static double bench_wix_drive(const bench_config_t *config, bench_results_t *results,
                              bench_wix_corpus_t *corpus, const bench_wix_signer_t *signer)
{
    struct sockaddr_in address;
    if (!net_parse_ipv4_host_port(config->gateway, &address)) {
        fprintf(stderr, "stockbench: --gateway must be IPv4 HOST:PORT\n");
        return -1;
    }
    bench_http_worker_t *workers = calloc((size_t)config->connections, sizeof(*workers));
    if (workers == NULL) {
        fprintf(stderr, "stockbench: out of memory\n");
        exit(2);
    }
    for (int i = 0; i < config->connections; i++) {
        workers[i] = (bench_http_worker_t){
            config, results, corpus, signer, 0x9E3779B97F4A7C15ULL * (uint64_t)(i + 1), address, 0};
        if (pthread_create(&workers[i].thread, NULL, bench_http_main, &workers[i]) != 0) {
            fprintf(stderr, "stockbench: cannot start a worker thread\n");
            exit(1);
        }
    }
    results->target_port = ntohs(address.sin_port);
    double seconds = bench_timed_phases(config, results);
    for (int i = 0; i < config->connections; i++) {
        pthread_join(workers[i].thread, NULL);
    }
    free(workers);
    return seconds;
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
    bench_wix_signer_t signer = {config, key, app_id, util_now_s()};
    bench_wix_corpus_t corpus;
    memset(&corpus, 0, sizeof(corpus));
    double seconds = -1;
    if (config->wix_presign && !bench_wix_corpus_build(&signer, &corpus)) {
        fprintf(stderr, "stockbench: cannot sign the Wix calls\n");
    } else {
        seconds = bench_wix_drive(config, results, config->wix_presign ? &corpus : NULL, &signer);
    }
    size_t next = atomic_load(&corpus.next);
    results->wix_tokens = corpus.count;
    results->wix_tokens_used = next < corpus.count ? next : corpus.count;
    results->wix_sign_s = corpus.sign_s;
    results->wix_exhausted = config->wix_presign && next > corpus.count;
    if (results->wix_exhausted) {
        fprintf(stderr,
                "stockbench: the %zu signed Wix calls ran out before the end: the rate "
                "is not valid; raise --wix-rate or --wix-tokens\n",
                corpus.count);
    }
    bench_wix_corpus_free(&corpus);
    EVP_PKEY_free(key);
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
    results->server_cpu_s = -1;
    results->tcp_connections = -1;
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
    if (summary->tcp_connections >= 0 && summary->tcp_connections != config->connections) {
        fprintf(stderr, "stockbench: %d connections were open at the end, not --connections %lld\n",
                summary->tcp_connections, (long long)config->connections);
    }
    fprintf(stderr, "%-9s %d connections open, CPU: client %.1f s", "", summary->tcp_connections,
            summary->client_cpu_s);
    if (summary->server_cpu_s >= 0) {
        fprintf(stderr, ", server %.1f s (%.0f us per call), other processes %.1f s",
                summary->server_cpu_s,
                summary->ops > 0 ? summary->server_cpu_s * 1e6 / (double)summary->ops : 0.0,
                summary->machine_cpu_s - summary->client_cpu_s - summary->server_cpu_s);
    }
    fprintf(stderr, "\n");
    bench_results_free(results);
    return mismatches;
}

/* The JSON line of a single-mode run: the settings that shape it, the results, the check,
 * and what was measured around the measured phase. */
static void bench_print_json(const bench_config_t *config, const bench_summary_t *summary,
                             int64_t mismatches)
{
    bool wix = strcmp(config->mode, "wix") == 0;
    printf("{\"mode\":\"%s\",\"batch\":%lld,\"preset\":\"%s\",\"connections\":%lld,"
           "\"inflight\":%lld,"
           "\"lines_min\":%lld,\"lines_max\":%lld,\"skus\":%lld,\"ops\":%llu,\"errors\":%llu,"
           "\"seconds\":%.3f,\"ops_per_s\":%.1f,\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,"
           "\"max_ms\":%.3f,\"check_mismatches\":%lld,\"tcp_connections\":%d,"
           "\"client_cpu_s\":%.3f",
           config->mode, (long long)config->batch, config->preset, (long long)config->connections,
           (long long)(wix ? config->connections : config->inflight), (long long)config->lines_min,
           (long long)config->lines_max, (long long)config->skus, (unsigned long long)summary->ops,
           (unsigned long long)summary->errors, summary->seconds, summary->ops_per_s, summary->p50,
           summary->p90, summary->p99, summary->max, (long long)mismatches,
           summary->tcp_connections, summary->client_cpu_s);
    if (summary->server_cpu_s >= 0) {
        printf(",\"server_cpu_s\":%.3f,\"server_cpu_us_per_op\":%.1f,\"other_cpu_s\":%.3f",
               summary->server_cpu_s,
               summary->ops > 0 ? summary->server_cpu_s * 1e6 / (double)summary->ops : 0.0,
               summary->machine_cpu_s - summary->client_cpu_s - summary->server_cpu_s);
    }
    if (wix) {
        printf(",\"wix_presigned\":%s,\"wix_tokens\":%zu,\"wix_tokens_used\":%zu,"
               "\"wix_sign_s\":%.2f,\"wix_tokens_exhausted\":%s",
               config->wix_presign ? "true" : "false", summary->wix_tokens,
               summary->wix_tokens_used, summary->wix_sign_s,
               summary->wix_exhausted ? "true" : "false");
    }
    printf("}\n");
}

int main(int argc, char **argv)
{
    bench_config_t config;
    memset(&config, 0, sizeof(config));
    cfg_option_t options[BENCH_OPTIONS_COUNT];
    bench_options_with_preset(bench_preset_named(argc, argv), options);
    const cfg_spec_t spec = {"stockbench",
                             "stockbench — load generator for stockd and stockd-gateway.", options,
                             BENCH_OPTIONS_COUNT};
    cfg_parse_result_t parsed = cfg_parse(&spec, &config, argc, argv, 1, NULL, stdout, stderr);
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
        exit_code = mismatches == 0 && !first.wix_exhausted ? 0 : 1;
        bench_print_json(&config, &first, mismatches);
    }
    sc_thread_release();
    grpc_shutdown();
    return exit_code;
}
