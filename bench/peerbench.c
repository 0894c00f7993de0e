/* peerbench — drives Redis or PostgreSQL with the workload of `stockbench --preset peers`, for
 * the comparison in BENCHMARKS.md (bench/peers.sh, `make bench-peers`):
 *
 *   peerbench --target redis --redis HOST:PORT
 *   peerbench --target postgres --postgres "host=... port=... user=... dbname=..."
 *
 * --connections clients, each a thread with a connection of its own and one call at a time
 * (closed loop). Each call takes 1 unit from each of --lines-min..--lines-max distinct random
 * SKUs out of --skus, all or nothing (a restricted decrement):
 *   Redis: one EVALSHA of a Lua script that checks every key, then decrements each;
 *   PostgreSQL: one call of a plpgsql function that locks the rows in key order, checks them,
 *   then updates them, in one transaction (autocommit).
 * Durability is the server's (bench/peers.sh: Redis appendfsync always, PostgreSQL fsync and
 * synchronous_commit on). Every SKU starts at 10^12, like stockbench's. After --warmup
 * unmeasured and --duration measured it reads every SKU back and checks that each lost exactly
 * what was acknowledged. The last line is one JSON object with stockbench's keys. */
#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "bench_load.h"
#include "bench_proc.h"
#include "config.h"
#include "util.h"

#define PEER_CONNECTIONS_MAX 1024
#define PEER_LINES_MAX 16
#define PEER_SAMPLES_MAX (4 * 1024 * 1024)
#define PEER_SEED_AVAILABLE INT64_C(1000000000000) /* 10^12, as stockbench seeds */
#define PEER_CHUNK 1000                            /* keys per seeding / reading command */
#define PEER_SKU_BYTES 32

typedef struct {
    const char *target;
    const char *redis;
    const char *postgres;
    int64_t connections;
    int64_t lines_min, lines_max;
    int64_t skus;
    int64_t duration_s, warmup_s;
    const char *server_pids;
} peer_config_t;

static const char *const peer_targets[] = {"redis", "postgres", NULL};

#define PEER_OPT(flag, env, type, field, def, lo, hi, choices, help)                               \
    {                                                                                              \
        flag, env, type, offsetof(peer_config_t, field), def, lo, hi, choices, false, help         \
    }

static const cfg_option_t peer_options[] = {
    PEER_OPT("target", "PEERBENCH_TARGET", CFG_CHOICE, target, "redis", 0, 0, peer_targets,
             "redis | postgres"),
    PEER_OPT("redis", "PEERBENCH_REDIS", CFG_STRING, redis, "127.0.0.1:6379", 0, 0, NULL,
             "Redis HOST:PORT"),
    PEER_OPT("postgres", "PEERBENCH_POSTGRES", CFG_STRING, postgres,
             "host=127.0.0.1 port=5432 dbname=postgres sslmode=disable", 0, 0, NULL,
             "PostgreSQL connection string (libpq)"),
    PEER_OPT("connections", "PEERBENCH_CONNECTIONS", CFG_INT, connections, "64", 1,
             PEER_CONNECTIONS_MAX, NULL, "clients, each one connection with one call at a time"),
    PEER_OPT("lines-min", "PEERBENCH_LINES_MIN", CFG_INT, lines_min, "1", 1, PEER_LINES_MAX, NULL,
             "SKUs per call, at least"),
    PEER_OPT("lines-max", "PEERBENCH_LINES_MAX", CFG_INT, lines_max, "3", 1, PEER_LINES_MAX, NULL,
             "SKUs per call, at most"),
    PEER_OPT("skus", "PEERBENCH_SKUS", CFG_INT, skus, "10000", 1, 10000000, NULL, "key-space size"),
    PEER_OPT("duration", "PEERBENCH_DURATION", CFG_DURATION, duration_s, "20s", 1, 3600, NULL,
             "measured time"),
    PEER_OPT("warmup", "PEERBENCH_WARMUP", CFG_DURATION, warmup_s, "3s", 0, 600, NULL,
             "unmeasured time first"),
    PEER_OPT("server-pids", "PEERBENCH_SERVER_PIDS", CFG_STRING, server_pids, "", 0, 0, NULL,
             "comma-separated pids whose CPU time (with their children's) over the measured "
             "phase is reported"),
};

static const cfg_spec_t peer_spec = {"peerbench",
                                     "peerbench — the peers' workload against Redis or PostgreSQL.",
                                     peer_options, sizeof(peer_options) / sizeof(peer_options[0])};

/* ---- the two targets ---- */

typedef enum { PEER_APPLIED, PEER_REFUSED, PEER_FAILED, PEER_UNKNOWN } peer_outcome_t;

typedef struct {
    /* a connection of one client; NULL after saying why on stderr */
    void *(*connect)(const peer_config_t *config);
    /* takes 1 of each SKU, all or nothing */
    peer_outcome_t (*take)(void *connection, char skus[][PEER_SKU_BYTES], int count);
    bool (*broken)(void *connection);
    void (*close)(void *connection);
    /* before the run: the script or function, and every SKU at 10^12 */
    bool (*prepare)(const peer_config_t *config, void *connection);
    /* after the run: levels[0..skus) */
    bool (*read)(const peer_config_t *config, void *connection, int64_t *levels);
} peer_target_t;

static void peer_sku_name(int64_t sku, char *out)
{
    snprintf(out, PEER_SKU_BYTES, "sku-%09lld", (long long)sku);
}

/* ---- Redis ---- */

/* KEYS: the SKUs. Checks all, then decrements all: all or nothing (a script runs alone). */
static const char peer_redis_script[] = "for i = 1, #KEYS do\n"
                                        "  local available = tonumber(redis.call('GET', KEYS[i]))\n"
                                        "  if available == nil or available < 1 then return 0 end\n"
                                        "end\n"
                                        "for i = 1, #KEYS do redis.call('DECR', KEYS[i]) end\n"
                                        "return 1\n";

static char peer_redis_sha[64]; /* SCRIPT LOAD's answer, set once before the clients start */

static void *peer_redis_connect(const peer_config_t *config)
{
    char host[256];
    const char *colon = strrchr(config->redis, ':');
    if (colon == NULL || (size_t)(colon - config->redis) >= sizeof(host)) {
        fprintf(stderr, "peerbench: --redis must be HOST:PORT\n");
        return NULL;
    }
    snprintf(host, sizeof(host), "%.*s", (int)(colon - config->redis), config->redis);
    struct timeval timeout = {5, 0};
    redisContext *context = redisConnectWithTimeout(host, atoi(colon + 1), timeout);
    if (context == NULL || context->err) {
        fprintf(stderr, "peerbench: redis %s: %s\n", config->redis,
                context ? context->errstr : "out of memory");
        redisFree(context);
        return NULL;
    }
    return context;
}

static peer_outcome_t peer_redis_take(void *connection, char skus[][PEER_SKU_BYTES], int count)
{
    const char *argv[3 + PEER_LINES_MAX];
    char keys_count[8];
    snprintf(keys_count, sizeof(keys_count), "%d", count);
    argv[0] = "EVALSHA";
    argv[1] = peer_redis_sha;
    argv[2] = keys_count;
    for (int i = 0; i < count; i++) {
        argv[3 + i] = skus[i];
    }
    redisReply *reply = redisCommandArgv(connection, 3 + count, argv, NULL);
    peer_outcome_t outcome = PEER_UNKNOWN; /* no answer: it may have run */
    if (reply != NULL && reply->type == REDIS_REPLY_INTEGER) {
        outcome = reply->integer == 1 ? PEER_APPLIED : PEER_REFUSED;
    } else if (reply != NULL && reply->type == REDIS_REPLY_ERROR) {
        fprintf(stderr, "peerbench: redis: %s\n", reply->str);
        outcome = PEER_FAILED; /* a script error (here: before any write) */
    }
    freeReplyObject(reply);
    return outcome;
}

static bool peer_redis_broken(void *connection)
{
    return ((redisContext *)connection)->err != 0;
}

static void peer_redis_close(void *connection)
{
    redisFree(connection);
}

/* Runs a command given as argv; false (after saying why) unless the reply has `type`. */
static bool peer_redis_run(redisContext *context, int argc, const char **argv, int type,
                           redisReply **reply_out)
{
    redisReply *reply = redisCommandArgv(context, argc, argv, NULL);
    bool ok = reply != NULL && reply->type == type;
    if (!ok) {
        fprintf(stderr, "peerbench: redis %s: %s\n", argv[0],
                reply && reply->type == REDIS_REPLY_ERROR ? reply->str : context->errstr);
    }
    if (ok && reply_out != NULL) {
        *reply_out = reply;
    } else {
        freeReplyObject(reply);
    }
    return ok;
}

static bool peer_redis_prepare(const peer_config_t *config, void *connection)
{
    static char names[PEER_CHUNK][PEER_SKU_BYTES];
    static const char *argv[1 + 2 * PEER_CHUNK];
    char seed[32];
    snprintf(seed, sizeof(seed), "%lld", (long long)PEER_SEED_AVAILABLE);
    const char *load[] = {"SCRIPT", "LOAD", peer_redis_script};
    redisReply *reply = NULL;
    bool ok = peer_redis_run(connection, 3, load, REDIS_REPLY_STRING, &reply);
    if (ok) {
        snprintf(peer_redis_sha, sizeof(peer_redis_sha), "%s", reply->str);
        freeReplyObject(reply);
    }
    for (int64_t first = 0; ok && first < config->skus; first += PEER_CHUNK) {
        int count = (int)(config->skus - first < PEER_CHUNK ? config->skus - first : PEER_CHUNK);
        argv[0] = "MSET";
        for (int i = 0; i < count; i++) {
            peer_sku_name(first + i, names[i]);
            argv[1 + 2 * i] = names[i];
            argv[2 + 2 * i] = seed;
        }
        ok = peer_redis_run(connection, 1 + 2 * count, argv, REDIS_REPLY_STATUS, NULL);
    }
    return ok;
}

static bool peer_redis_read(const peer_config_t *config, void *connection, int64_t *levels)
{
    static char names[PEER_CHUNK][PEER_SKU_BYTES];
    static const char *argv[1 + PEER_CHUNK];
    bool ok = true;
    for (int64_t first = 0; ok && first < config->skus; first += PEER_CHUNK) {
        int count = (int)(config->skus - first < PEER_CHUNK ? config->skus - first : PEER_CHUNK);
        argv[0] = "MGET";
        for (int i = 0; i < count; i++) {
            peer_sku_name(first + i, names[i]);
            argv[1 + i] = names[i];
        }
        redisReply *reply = NULL;
        ok = peer_redis_run(connection, 1 + count, argv, REDIS_REPLY_ARRAY, &reply) &&
             reply->elements == (size_t)count;
        for (int i = 0; ok && i < count; i++) {
            redisReply *value = reply->element[i];
            ok = value->type == REDIS_REPLY_STRING &&
                 util_parse_int64(value->str, &levels[first + i]);
        }
        freeReplyObject(reply);
    }
    return ok;
}

static const peer_target_t peer_redis = {peer_redis_connect, peer_redis_take,    peer_redis_broken,
                                         peer_redis_close,   peer_redis_prepare, peer_redis_read};

/* ---- PostgreSQL ---- */

/* One transaction per call (autocommit): lock the rows in key order (no deadlock between
 * calls), check that every SKU exists with at least 1, then take 1 of each. */
static const char peer_postgres_schema[] =
    "SET client_min_messages = warning;\n"
    "DROP TABLE IF EXISTS stock;\n"
    "CREATE TABLE stock (sku text PRIMARY KEY, available bigint NOT NULL);\n"
    "INSERT INTO stock SELECT 'sku-' || lpad(i::text, 9, '0'), 1000000000000\n"
    "  FROM generate_series(0, $SKUS - 1) AS i;\n"
    "CREATE OR REPLACE FUNCTION take(skus text[]) RETURNS boolean LANGUAGE plpgsql AS $f$\n"
    "DECLARE\n"
    "  locked integer;\n"
    "  lowest bigint;\n"
    "BEGIN\n"
    "  SELECT count(*), min(available) INTO locked, lowest\n"
    "    FROM (SELECT available FROM stock WHERE sku = ANY(skus) ORDER BY sku FOR UPDATE) AS s;\n"
    "  IF locked <> cardinality(skus) OR lowest < 1 THEN\n"
    "    RETURN false;\n"
    "  END IF;\n"
    "  UPDATE stock SET available = available - 1 WHERE sku = ANY(skus);\n"
    "  RETURN true;\n"
    "END\n"
    "$f$;\n";

typedef struct {
    PGconn *connection;
    bool prepared; /* "take" (the admin connection never prepares it) */
} peer_postgres_t;

static void *peer_postgres_connect(const peer_config_t *config)
{
    peer_postgres_t *postgres = calloc(1, sizeof(*postgres));
    if (postgres == NULL) {
        return NULL;
    }
    postgres->connection = PQconnectdb(config->postgres);
    if (PQstatus(postgres->connection) != CONNECTION_OK) {
        fprintf(stderr, "peerbench: postgres: %s", PQerrorMessage(postgres->connection));
        PQfinish(postgres->connection);
        free(postgres);
        return NULL;
    }
    return postgres;
}

/* Prepares "take" on a client's connection before its first call; false after saying why. */
static bool peer_postgres_prepare_take(peer_postgres_t *postgres)
{
    PGresult *result = PQprepare(postgres->connection, "take", "SELECT take($1::text[])", 1, NULL);
    postgres->prepared = PQresultStatus(result) == PGRES_COMMAND_OK;
    if (!postgres->prepared) {
        fprintf(stderr, "peerbench: postgres: prepare: %s", PQerrorMessage(postgres->connection));
    }
    PQclear(result);
    return postgres->prepared;
}

static peer_outcome_t peer_postgres_take(void *connection, char skus[][PEER_SKU_BYTES], int count)
{
    peer_postgres_t *postgres = connection;
    if (!postgres->prepared && !peer_postgres_prepare_take(postgres)) {
        return PEER_FAILED; /* nothing was sent */
    }
    char array[2 + PEER_LINES_MAX * PEER_SKU_BYTES];
    size_t used = 0;
    array[used++] = '{';
    for (int i = 0; i < count; i++) {
        used += (size_t)snprintf(array + used, sizeof(array) - used, "%s%s", i ? "," : "", skus[i]);
    }
    snprintf(array + used, sizeof(array) - used, "}");
    const char *values[1] = {array};
    PGresult *result = PQexecPrepared(postgres->connection, "take", 1, values, NULL, NULL, 0);
    peer_outcome_t outcome = PEER_UNKNOWN;
    if (PQresultStatus(result) == PGRES_TUPLES_OK && PQntuples(result) == 1) {
        outcome = PQgetvalue(result, 0, 0)[0] == 't' ? PEER_APPLIED : PEER_REFUSED;
    } else if (PQstatus(postgres->connection) == CONNECTION_OK) {
        /* an error answered on a live connection: the transaction was rolled back */
        fprintf(stderr, "peerbench: postgres: %s", PQerrorMessage(postgres->connection));
        outcome = PEER_FAILED;
    }
    PQclear(result);
    return outcome;
}

static bool peer_postgres_broken(void *connection)
{
    return PQstatus(((peer_postgres_t *)connection)->connection) != CONNECTION_OK;
}

static void peer_postgres_close(void *connection)
{
    PQfinish(((peer_postgres_t *)connection)->connection);
    free(connection);
}

static bool peer_postgres_exec(PGconn *connection, const char *sql)
{
    PGresult *result = PQexec(connection, sql);
    bool ok = PQresultStatus(result) == PGRES_COMMAND_OK;
    if (!ok) {
        fprintf(stderr, "peerbench: postgres: %s", PQerrorMessage(connection));
    }
    PQclear(result);
    return ok;
}

static bool peer_postgres_prepare(const peer_config_t *config, void *connection)
{
    char sql[sizeof(peer_postgres_schema) + 32];
    const char *mark = strstr(peer_postgres_schema, "$SKUS");
    snprintf(sql, sizeof(sql), "%.*s%lld%s", (int)(mark - peer_postgres_schema),
             peer_postgres_schema, (long long)config->skus, mark + 5);
    /* VACUUM cannot run in the implicit transaction of a multi-statement string */
    PGconn *admin = ((peer_postgres_t *)connection)->connection;
    return peer_postgres_exec(admin, sql) && peer_postgres_exec(admin, "VACUUM ANALYZE stock");
}

static bool peer_postgres_read(const peer_config_t *config, void *admin, int64_t *levels)
{
    PGconn *connection = ((peer_postgres_t *)admin)->connection;
    PGresult *result = PQexec(connection, "SELECT sku, available FROM stock");
    bool ok = PQresultStatus(result) == PGRES_TUPLES_OK && PQntuples(result) == config->skus;
    for (int row = 0; ok && row < PQntuples(result); row++) {
        const char *sku = PQgetvalue(result, row, 0);
        int64_t index = -1;
        ok = strncmp(sku, "sku-", 4) == 0 && util_parse_int64(sku + 4, &index) && index >= 0 &&
             index < config->skus && util_parse_int64(PQgetvalue(result, row, 1), &levels[index]);
    }
    if (!ok) {
        fprintf(stderr, "peerbench: postgres: reading the levels failed: %s",
                PQerrorMessage(connection));
    }
    PQclear(result);
    return ok;
}

static const peer_target_t peer_postgres = {peer_postgres_connect, peer_postgres_take,
                                            peer_postgres_broken,  peer_postgres_close,
                                            peer_postgres_prepare, peer_postgres_read};

/* ---- the clients ---- */

typedef struct {
    const peer_config_t *config;
    const peer_target_t *target;
    _Atomic uint64_t ops, errors, refused;
    _Atomic int64_t *acked;     /* per SKU: units acknowledged as taken */
    _Atomic int64_t *uncertain; /* per SKU: units of calls whose outcome is unknown */
    float *samples;             /* latencies in ms (measured phase only) */
    _Atomic size_t samples_count;
    _Atomic bool measuring, stop;
} peer_results_t;

typedef struct {
    peer_results_t *results;
    uint64_t rng;
    pthread_t thread;
} peer_worker_t;

static void peer_record(peer_results_t *results, peer_outcome_t outcome, const int64_t *skus,
                        int count, double latency_ms)
{
    bool served = outcome == PEER_APPLIED || outcome == PEER_REFUSED;
    if (served && atomic_load(&results->measuring)) {
        atomic_fetch_add(&results->ops, 1);
        size_t index = atomic_fetch_add(&results->samples_count, 1);
        if (index < PEER_SAMPLES_MAX) {
            results->samples[index] = (float)latency_ms;
        }
    }
    if (outcome == PEER_REFUSED) {
        atomic_fetch_add(&results->refused, 1);
    }
    if (!served) {
        atomic_fetch_add(&results->errors, 1);
    }
    for (int i = 0; i < count; i++) {
        if (outcome == PEER_APPLIED) {
            atomic_fetch_add(&results->acked[skus[i]], 1);
        } else if (outcome == PEER_UNKNOWN) {
            atomic_fetch_add(&results->uncertain[skus[i]], 1);
        }
    }
}

static void *peer_worker_main(void *argument)
{
    peer_worker_t *worker = argument;
    peer_results_t *results = worker->results;
    const peer_target_t *target = results->target;
    void *connection = NULL;
    while (!atomic_load(&results->stop)) {
        if (connection == NULL && (connection = target->connect(results->config)) == NULL) {
            atomic_fetch_add(&results->errors, 1);
            usleep(100000);
            continue;
        }
        int64_t skus[PEER_LINES_MAX];
        char names[PEER_LINES_MAX][PEER_SKU_BYTES];
        int count = bench_load_pick_skus(&worker->rng, results->config->lines_min,
                                         results->config->lines_max, results->config->skus, skus);
        for (int i = 0; i < count; i++) {
            peer_sku_name(skus[i], names[i]);
        }
        double started = util_monotonic_ms();
        peer_outcome_t outcome = target->take(connection, names, count);
        peer_record(results, outcome, skus, count, util_monotonic_ms() - started);
        if (target->broken(connection)) {
            target->close(connection);
            connection = NULL;
        }
    }
    if (connection != NULL) {
        target->close(connection);
    }
    return NULL;
}

/* ---- the run ---- */

static int peer_compare_floats(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y ? 1 : 0;
}

typedef struct {
    double seconds, client_cpu_s, server_cpu_s, machine_cpu_s;
    int tcp_connections;
    int64_t mismatches;
} peer_measured_t;

/* Warm-up, then the measured phase with CPU time and connections measured around it. */
static void peer_timed_phases(const peer_config_t *config, peer_results_t *results,
                              peer_measured_t *measured)
{
    usleep((useconds_t)(config->warmup_s * 1000000));
    double client_cpu_s = bp_own_cpu_s();
    double server_cpu_s = bp_pids_cpu_s(config->server_pids);
    double machine_cpu_s = bp_machine_busy_s();
    atomic_store(&results->measuring, true);
    double started = util_monotonic_ms();
    usleep((useconds_t)(config->duration_s * 1000000));
    atomic_store(&results->measuring, false);
    measured->seconds = (util_monotonic_ms() - started) / 1000.0;
    measured->machine_cpu_s = bp_machine_busy_s() - machine_cpu_s;
    measured->client_cpu_s = bp_own_cpu_s() - client_cpu_s;
    measured->server_cpu_s =
        server_cpu_s < 0 ? -1 : bp_pids_cpu_s(config->server_pids) - server_cpu_s;
    measured->tcp_connections = bp_count_connections(0);
    atomic_store(&results->stop, true);
}

/* Reads every level back; returns the SKUs that did not lose what was acknowledged (within
 * the calls whose outcome is unknown), -1 when they could not be read. */
static int64_t peer_check(const peer_config_t *config, peer_results_t *results, void *connection)
{
    int64_t *levels = calloc((size_t)config->skus, sizeof(*levels));
    int64_t mismatches = 0;
    if (levels == NULL || !results->target->read(config, connection, levels)) {
        free(levels);
        return -1;
    }
    for (int64_t sku = 0; sku < config->skus; sku++) {
        int64_t taken = PEER_SEED_AVAILABLE - levels[sku];
        int64_t acked = atomic_load(&results->acked[sku]);
        int64_t uncertain = atomic_load(&results->uncertain[sku]);
        mismatches += taken < acked || taken > acked + uncertain;
    }
    free(levels);
    return mismatches;
}

static void peer_print(const peer_config_t *config, peer_results_t *results,
                       const peer_measured_t *measured)
{
    size_t count = atomic_load(&results->samples_count);
    count = count < PEER_SAMPLES_MAX ? count : PEER_SAMPLES_MAX;
    qsort(results->samples, count, sizeof(float), peer_compare_floats);
    double p50 = count ? results->samples[count / 2] : 0;
    double p90 = count ? results->samples[count * 9 / 10] : 0;
    double p99 = count ? results->samples[count * 99 / 100] : 0;
    double max = count ? results->samples[count - 1] : 0;
    uint64_t ops = atomic_load(&results->ops);
    double rate = (double)ops / measured->seconds;
    fprintf(stderr,
            "%-9s %8.0f ops/s  %llu ops  %llu errors  p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  "
            "max %.2f ms  check: %s\n",
            config->target, rate, (unsigned long long)ops,
            (unsigned long long)atomic_load(&results->errors), p50, p90, p99, max,
            measured->mismatches == 0 ? "every SKU matches" : "MISMATCH");
    printf("{\"target\":\"%s\",\"connections\":%lld,\"inflight\":%lld,\"lines_min\":%lld,"
           "\"lines_max\":%lld,\"skus\":%lld,\"ops\":%llu,\"errors\":%llu,\"refused\":%llu,"
           "\"seconds\":%.3f,\"ops_per_s\":%.1f,\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,"
           "\"max_ms\":%.3f,\"check_mismatches\":%lld,\"tcp_connections\":%d,"
           "\"client_cpu_s\":%.3f",
           config->target, (long long)config->connections, (long long)config->connections,
           (long long)config->lines_min, (long long)config->lines_max, (long long)config->skus,
           (unsigned long long)ops, (unsigned long long)atomic_load(&results->errors),
           (unsigned long long)atomic_load(&results->refused), measured->seconds, rate, p50, p90,
           p99, max, (long long)measured->mismatches, measured->tcp_connections,
           measured->client_cpu_s);
    if (measured->server_cpu_s >= 0) {
        printf(",\"server_cpu_s\":%.3f,\"server_cpu_us_per_op\":%.1f,\"other_cpu_s\":%.3f",
               measured->server_cpu_s, ops ? measured->server_cpu_s * 1e6 / (double)ops : 0.0,
               measured->machine_cpu_s - measured->client_cpu_s - measured->server_cpu_s);
    }
    printf("}\n");
}

/* Prepares the target, runs the clients, checks; returns the mismatches or -1. */
static int64_t peer_run(const peer_config_t *config, peer_results_t *results)
{
    void *admin = results->target->connect(config);
    bool prepared = admin != NULL && results->target->prepare(config, admin);
    if (admin != NULL) {
        results->target->close(admin); /* not open during the run: only the clients' count */
    }
    if (!prepared) {
        return -1;
    }
    peer_worker_t *workers = calloc((size_t)config->connections, sizeof(*workers));
    if (workers == NULL) {
        return -1;
    }
    for (int i = 0; i < config->connections; i++) {
        workers[i] = (peer_worker_t){results, 0x9E3779B97F4A7C15ULL * (uint64_t)(i + 1), 0};
        if (pthread_create(&workers[i].thread, NULL, peer_worker_main, &workers[i]) != 0) {
            fprintf(stderr, "peerbench: cannot start a client thread\n");
            exit(1);
        }
    }
    peer_measured_t measured = {0};
    peer_timed_phases(config, results, &measured);
    for (int i = 0; i < config->connections; i++) {
        pthread_join(workers[i].thread, NULL);
    }
    free(workers);
    admin = results->target->connect(config);
    measured.mismatches = admin != NULL ? peer_check(config, results, admin) : -1;
    if (admin != NULL) {
        results->target->close(admin);
    }
    peer_print(config, results, &measured);
    return measured.mismatches;
}

int main(int argc, char **argv)
{
    peer_config_t config;
    memset(&config, 0, sizeof(config));
    cfg_parse_result_t parsed = cfg_parse(&peer_spec, &config, argc, argv, 1, NULL, stdout, stderr);
    if (parsed != CFG_PARSE_OK) {
        return parsed == CFG_PARSE_EXIT_SUCCESS ? 0 : 2;
    }
    if (config.lines_min > config.lines_max) {
        fprintf(stderr, "peerbench: --lines-min must not exceed --lines-max\n");
        return 2;
    }
    peer_results_t *results = calloc(1, sizeof(*results));
    if (results == NULL) {
        return 2;
    }
    results->config = &config;
    results->target = strcmp(config.target, "redis") == 0 ? &peer_redis : &peer_postgres;
    results->acked = calloc((size_t)config.skus, sizeof(*results->acked));
    results->uncertain = calloc((size_t)config.skus, sizeof(*results->uncertain));
    results->samples = malloc(PEER_SAMPLES_MAX * sizeof(float));
    int64_t mismatches = -1;
    if (results->acked && results->uncertain && results->samples) {
        mismatches = peer_run(&config, results);
    }
    free(results->acked);
    free(results->uncertain);
    free(results->samples);
    free(results);
    return mismatches == 0 ? 0 : 1;
}
