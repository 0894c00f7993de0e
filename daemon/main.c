/* main.c — stockd: configuration, start-up, signal handling and the shutdown order. */
#include <grpc/grpc.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"
#include "checkpoints.h"
#include "config.h"
#include "sd_limits.h"
#include "log.h"
#include "net.h"
#include "metrics.h"
#include "replication.h"
#include "server.h"
#include "storage.h"
#include "tls.h"
#include "watch.h"
#include "writer.h"

typedef struct {
    const char *listen;
    const char *data_dir;
    const char *backup_dir;
    const char *sync;
    const char *metrics_listen;
    int64_t idempotency_ttl_s;
    int64_t ledger_retention_s;
    int64_t ledger_prune_interval_s;
    int64_t watch_lag_max;
    int64_t queue_depth;
    int64_t batch_max;
    int64_t block_cache_mb;
    int64_t level_cache_entries;
    int64_t write_buffer_mb;
    int64_t wal_max_mb;
    bool rocksdb_info_log;
    int64_t threads;
    int64_t inflight_mb;
    int64_t streams_per_connection;
    int64_t grpc_memory_mb;
    int64_t watches_max;
    int64_t health_watches_max;
    int64_t shutdown_grace_s;
    int64_t failure_exit_delay_s;
    const char *log_level;
    const char *tls_cert;
    const char *tls_key;
    const char *tls_client_ca;
    const char *auth_policy;
    bool insecure;
    const char *admin_listen;
    int64_t checkpoints_max;
    int64_t checkpoint_interval_s;
    int64_t node_id; /* 0 = one node (no replication) */
    const char *raft_listen;
    const char *peers;
    int64_t election_timeout_ms;
    int64_t snapshot_threshold, snapshot_trailing;
    bool join;
    bool restore_group;
} sd_config_t;

static const char *const sd_sync_choices[] = {"always", "never", NULL};
static const char *const sd_level_choices[] = {"debug", "info", "warn", "error", NULL};

#define SD_OPT(flag, env, type, field, def, lo, hi, choices, help)                                 \
    {                                                                                              \
        flag, env, type, offsetof(sd_config_t, field), def, lo, hi, choices, false, help           \
    }

static const cfg_option_t sd_options[] = {
    SD_OPT("listen", "STOCKD_LISTEN", CFG_STRING, listen, "127.0.0.1:50051", 0, 0, NULL,
           "gRPC listen address HOST:PORT (port 0 = any free port, logged)"),
    SD_OPT("data-dir", "STOCKD_DATA_DIR", CFG_STRING, data_dir, "./stockd-data", 0, 0, NULL,
           "RocksDB data directory (created if missing)"),
    SD_OPT("backup-dir", "STOCKD_BACKUP_DIR", CFG_STRING, backup_dir, "", 0, 0, NULL,
           "where Admin.Checkpoint writes (default <data-dir>/backups; same filesystem)"),
    SD_OPT("sync", "STOCKD_SYNC", CFG_CHOICE, sync, "always", 0, 0, sd_sync_choices,
           "fsync the WAL before acknowledging writes: always|never (never is for tests)"),
    SD_OPT("metrics-listen", "STOCKD_METRICS_LISTEN", CFG_STRING, metrics_listen, "", 0, 0, NULL,
           "HOST:PORT serving GET /metrics (Prometheus); empty = off"),
    SD_OPT("idempotency-ttl", "STOCKD_IDEMPOTENCY_TTL", CFG_DURATION, idempotency_ttl_s, "7d", 60,
           366 * 86400, NULL, "how long a request_id is remembered (e.g. 7d, 12h)"),
    SD_OPT("ledger-retention", "STOCKD_LEDGER_RETENTION", CFG_DURATION, ledger_retention_s, "90d",
           0, 100LL * 366 * 86400, NULL,
           "how long ledger entries are kept (0 = forever); older ones are deleted"),
    SD_OPT("ledger-prune-interval", "STOCKD_LEDGER_PRUNE_INTERVAL", CFG_DURATION,
           ledger_prune_interval_s, "10m", 1, 86400, NULL, "how often retention runs"),
    SD_OPT("watch-lag-max", "STOCKD_WATCH_LAG_MAX", CFG_INT, watch_lag_max, "1000000", 1, INT64_MAX,
           NULL,
           "entries of its tenant a Watch may have still to receive before it is ended (it can "
           "resume)"),
    SD_OPT("queue-depth", "STOCKD_QUEUE_DEPTH", CFG_INT, queue_depth, "4096", 1, 1 << 20, NULL,
           "write requests that may wait; beyond it RESOURCE_EXHAUSTED"),
    SD_OPT("batch-max", "STOCKD_BATCH_MAX", CFG_INT, batch_max, "256", 1, 65536, NULL,
           "write requests per group commit"),
    SD_OPT("block-cache-mb", "STOCKD_BLOCK_CACHE_MB", CFG_INT, block_cache_mb, "64", 1, 65536, NULL,
           "RocksDB block cache size in MiB"),
    SD_OPT("level-cache-entries", "STOCKD_LEVEL_CACHE_ENTRIES", CFG_INT, level_cache_entries,
           "262144", 0, 1LL << 26, NULL,
           "committed levels the writer keeps in memory (about 200 bytes each; 0 = off)"),
    SD_OPT("write-buffer-mb", "STOCKD_WRITE_BUFFER_MB", CFG_INT, write_buffer_mb, "32", 1, 4096,
           NULL, "RocksDB memtable size per column family in MiB (up to 3 each)"),
    SD_OPT("wal-max-mb", "STOCKD_WAL_MAX_MB", CFG_INT, wal_max_mb, "64", 1, 65536, NULL,
           "write-ahead log bound in MiB: bounds what a restart after a crash replays"),
    SD_OPT("rocksdb-info-log", "STOCKD_ROCKSDB_INFO_LOG", CFG_BOOL, rocksdb_info_log, "false", 0, 0,
           NULL,
           "RocksDB's own LOG in the data directory logs flushes and compactions "
           "(diagnosis; by default only its header)"),
    SD_OPT("threads", "STOCKD_THREADS", CFG_INT, threads, "2", 1, 16, NULL,
           "gRPC completion-queue polling threads"),
    SD_OPT("inflight-mb", "STOCKD_INFLIGHT_MB", CFG_INT, inflight_mb, "64", 1, 65536, NULL,
           "MiB of requests held at once (received and unpacked); beyond it RESOURCE_EXHAUSTED"),
    SD_OPT("streams-per-connection", "STOCKD_STREAMS_PER_CONNECTION", CFG_INT,
           streams_per_connection, "256", 1, 65536, NULL,
           "concurrent calls one HTTP/2 connection may have open"),
    SD_OPT("grpc-memory-mb", "STOCKD_GRPC_MEMORY_MB", CFG_INT, grpc_memory_mb, "64", 16, 65536,
           NULL, "memory quota of the gRPC transport (connection and message buffers), MiB"),
    SD_OPT("watches-max", "STOCKD_WATCHES_MAX", CFG_INT, watches_max, "1024", 1, 65536, NULL,
           "open Inventory/Watch streams; beyond it RESOURCE_EXHAUSTED"),
    SD_OPT("health-watches-max", "STOCKD_HEALTH_WATCHES_MAX", CFG_INT, health_watches_max, "256", 1,
           65536, NULL, "open grpc.health.v1.Health/Watch streams (a limit of their own)"),
    SD_OPT("shutdown-grace", "STOCKD_SHUTDOWN_GRACE", CFG_DURATION, shutdown_grace_s, "20s", 0,
           3600, NULL, "how long in-flight calls may take to finish at shutdown"),
    SD_OPT("failure-exit-delay", "STOCKD_FAILURE_EXIT_DELAY", CFG_DURATION, failure_exit_delay_s,
           "2s", 0, 60, NULL,
           "after a storage failure: how long to answer NOT_SERVING before exiting (status 3)"),
    SD_OPT("log-level", "STOCKD_LOG_LEVEL", CFG_CHOICE, log_level, "info", 0, 0, sd_level_choices,
           "debug|info|warn|error"),
    SD_OPT("tls-cert", "STOCKD_TLS_CERT", CFG_STRING, tls_cert, "", 0, 0, NULL,
           "PEM server certificate (chain); with --tls-key serves TLS; re-read when it changes"),
    SD_OPT("tls-key", "STOCKD_TLS_KEY", CFG_STRING, tls_key, "", 0, 0, NULL,
           "PEM private key of --tls-cert; re-read when it changes"),
    SD_OPT("tls-client-ca", "STOCKD_TLS_CLIENT_CA", CFG_STRING, tls_client_ca, "", 0, 0, NULL,
           "PEM CA bundle: client certificates are requested and verified against it (mTLS)"),
    SD_OPT("auth-policy", "STOCKD_AUTH_POLICY", CFG_STRING, auth_policy, "", 0, 0, NULL,
           "JSON policy file: identities, their tenants and roles (README \"Security\"); "
           "re-read when it changes. Without it every caller is allowed (loopback only)"),
    SD_OPT("insecure", "STOCKD_INSECURE", CFG_BOOL, insecure, "false", 0, 0, NULL,
           "allow plaintext gRPC on a non-loopback address (logged as a warning)"),
    SD_OPT("admin-listen", "STOCKD_ADMIN_LISTEN", CFG_STRING, admin_listen, "", 0, 0, NULL,
           "HOST:PORT serving stockd.v1.Admin (checkpoints); empty = off"),
    SD_OPT("checkpoints-max", "STOCKD_CHECKPOINTS_MAX", CFG_INT, checkpoints_max, "8", 1, 1000,
           NULL, "checkpoints that may exist in the backup directory at once"),
    SD_OPT("checkpoint-interval", "STOCKD_CHECKPOINT_INTERVAL", CFG_DURATION, checkpoint_interval_s,
           "60s", 0, 7 * 86400, NULL, "least time between two checkpoints"),
    SD_OPT("node-id", "STOCKD_NODE_ID", CFG_INT, node_id, "0", 0, 4294967295LL, NULL,
           "replication (docs/api.md 7): this replica's id, stable for its data directory; "
           "0 = one node, no replication"),
    SD_OPT("raft-listen", "STOCKD_RAFT_LISTEN", CFG_STRING, raft_listen, "", 0, 0, NULL,
           "replication: HOST:PORT for traffic between replicas"),
    SD_OPT("peers", "STOCKD_PEERS", CFG_STRING, peers, "", 0, 0, NULL,
           "replication: the initial members, ID=RAFT_HOST:PORT=GRPC_HOST:PORT,... (this node "
           "included)"),
    SD_OPT("election-timeout-ms", "STOCKD_ELECTION_TIMEOUT_MS", CFG_INT, election_timeout_ms,
           "1000", 100, 60000, NULL, "replication: Raft's election timeout in milliseconds"),
    SD_OPT("snapshot-threshold", "STOCKD_SNAPSHOT_THRESHOLD", CFG_INT, snapshot_threshold, "8192",
           16, 1048576, NULL,
           "replication: take a snapshot (a copy of the whole state) after this many applied "
           "Raft entries, so the log stays bounded"),
    SD_OPT("snapshot-trailing", "STOCKD_SNAPSHOT_TRAILING", CFG_INT, snapshot_trailing, "2048", 8,
           1048576, NULL,
           "replication: Raft entries kept behind a snapshot, for followers a little behind"),
    SD_OPT("join", "STOCKD_JOIN", CFG_BOOL, join, "false", 0, 0, NULL,
           "replication: a new replica with an empty log waits to be added by the leader "
           "(stockctl cluster add-member) instead of starting a group of --peers"),
    SD_OPT("restore-group", "STOCKD_RESTORE_GROUP", CFG_BOOL, restore_group, "false", 0, 0, NULL,
           "replication: on an empty log, start a new group of this replica alone from the "
           "store in --data-dir (a backup checkpoint or a one-node data directory), keeping its "
           "ledger and idempotency records; the others join it (--join)"),
};

static const cfg_spec_t sd_spec = {
    "stockd", "stockd — the inventory daemon: stock levels in RocksDB, served over gRPC.",
    sd_options, sizeof(sd_options) / sizeof(sd_options[0])};

static const char *sd_method_names[SD_METRICS_METHODS_MAX];

/* Exit status after a storage failure (fail-stop; see README "How writes stay correct"). */
#define SD_EXIT_STORAGE_FAILED 3
#define SD_FAILURE_STOP_GRACE_MS 1000
/* Sent to the main thread by the writer when storage fails; blocked everywhere, like SIGTERM. */
#define SD_SIGNAL_STORAGE_FAILED SIGUSR1

/* How often the --auth-policy file is checked for changes. */
#define SD_POLICY_RELOAD_INTERVAL_MS 1000

static pthread_t sd_main_thread;

/* The writer's storage-failure callback: wakes the main thread's sigwait. */
static void sd_on_storage_failed(void *context)
{
    (void)context;
    pthread_kill(sd_main_thread, SD_SIGNAL_STORAGE_FAILED);
}

/* Raises the soft limit on open files to the hard one: every client connection takes a
 * descriptor, and running out of them would make RocksDB fail to open a file, which stockd
 * must treat as a storage failure. */
static void sd_raise_open_files_limit(void)
{
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        rlim_t was = limit.rlim_cur;
        limit.rlim_cur = limit.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &limit) == 0) {
            SD_LOG(LOG_INFO, "open_files_limit_raised", LF_UINT("from", was),
                   LF_UINT("to", limit.rlim_cur));
        }
    }
}

/* Blocks SIGINT/SIGTERM in every thread (gRPC's included: they inherit the mask) so that the
 * main thread can sigwait for them. */
static void sd_block_signals(sigset_t *signals)
{
    sigemptyset(signals);
    sigaddset(signals, SIGINT);
    sigaddset(signals, SIGTERM);
    sigaddset(signals, SD_SIGNAL_STORAGE_FAILED);
    pthread_sigmask(SIG_BLOCK, signals, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* The running parts, in start order; stopped in reverse. */
typedef struct {
    sd_metrics_t *metrics;
    sd_storage_t *storage;
    sd_watch_hub_t *hub;
    sd_writer_t *writer;
    sd_replication_t *replication; /* NULL: one node */
    sd_auth_t *auth;
    sd_tls_t *tls;
    sd_checkpoints_t *checkpoints;
    sd_server_t *server;
    sd_server_t *admin_server; /* NULL without --admin-listen */
} sd_daemon_t;

static bool sd_open_storage(const sd_config_t *config, sd_daemon_t *daemon)
{
    char error[512];
    mkdir(config->data_dir, 0750); /* RocksDB creates one level only; EEXIST is fine */
    sd_storage_options_t options = {
        config->data_dir,          config->block_cache_mb << 20, config->write_buffer_mb << 20,
        config->idempotency_ttl_s, config->wal_max_mb << 20,     config->rocksdb_info_log};
    if (sd_storage_open(&options, &daemon->storage, error, sizeof(error)) != SD_OK) {
        SD_LOG(LOG_ERROR, "storage_open_failed", LF_STR("error", error));
        return false;
    }
    return true;
}

/* The watch hub and the writer, which tells the hub about every commit. */
static bool sd_start_writer(const sd_config_t *config, sd_daemon_t *daemon)
{
    bool sync = strcmp(config->sync, "always") == 0;
    if (!sync) {
        SD_LOG(LOG_WARN, "sync_disabled",
               LF_STR("warning", "--sync=never: acknowledged writes can be LOST on a crash or "
                                 "power failure. Use only for tests and benchmarks."));
    }
    daemon->hub = sd_watch_hub_new(daemon->storage, sd_storage_last_seq(daemon->storage),
                                   (uint64_t)config->watch_lag_max);
    sd_writer_options_t options = {.storage = daemon->storage,
                                   .sync = sync,
                                   .queue_depth_max = (size_t)config->queue_depth,
                                   .batch_jobs_max = (size_t)config->batch_max,
                                   .batch_lines_max = 4 * SD_LINES_MAX,
                                   .idempotency_ttl_s = config->idempotency_ttl_s,
                                   .level_cache_entries = (size_t)config->level_cache_entries,
                                   .ledger_retention_s = config->ledger_retention_s,
                                   .prune_interval_s = config->ledger_prune_interval_s,
                                   .metrics = daemon->metrics,
                                   .on_commit = sd_watch_hub_on_commit,
                                   .on_commit_context = daemon->hub,
                                   .on_storage_failed = sd_on_storage_failed};
    if (daemon->hub == NULL || sd_writer_start(&options, &daemon->writer) != SD_OK) {
        SD_LOG(LOG_ERROR, "writer_start_failed", LF_END);
        return false;
    }
    return true;
}

/* Scrapes read the running parts from now on (until sd_metrics_detach). */
static bool sd_attach_metrics(const sd_config_t *config, sd_daemon_t *daemon)
{
    sd_metrics_sources_t sources = {daemon->storage, daemon->writer, daemon->hub,
                                    (size_t)config->queue_depth, daemon->replication};
    sd_metrics_attach(daemon->metrics, &sources);
    return true;
}

/* Replication: Health/Watch streams hear when this replica loses its leader or catches up
 * again. The servers are registered once started and removed before they stop, under a lock,
 * because the news comes from the replication thread. */
static pthread_mutex_t sd_health_mutex = PTHREAD_MUTEX_INITIALIZER;
static sd_server_t *sd_health_servers[2];

static void sd_health_servers_set(sd_server_t *server, sd_server_t *admin)
{
    pthread_mutex_lock(&sd_health_mutex);
    sd_health_servers[0] = server;
    sd_health_servers[1] = admin;
    pthread_mutex_unlock(&sd_health_mutex);
}

static void sd_on_ready_changed(void *context, bool ready)
{
    (void)context;
    pthread_mutex_lock(&sd_health_mutex);
    for (int i = 0; i < 2; i++) {
        if (sd_health_servers[i] != NULL) {
            sd_health_report(sd_health_servers[i], ready);
        }
    }
    pthread_mutex_unlock(&sd_health_mutex);
    SD_LOG(LOG_INFO, "replication_serving", LF_BOOL("serving", ready));
}

/* With --node-id: this stockd is one replica of a Raft group (docs/api.md 7); the Raft log
 * lives in DATA_DIR/raft. */
static bool sd_start_replication(const sd_config_t *config, sd_daemon_t *daemon)
{
    if (config->node_id == 0) {
        if (config->peers[0] != '\0' || config->raft_listen[0] != '\0' || config->join ||
            config->restore_group) {
            SD_LOG(LOG_ERROR, "replication_config_invalid",
                   LF_STR("error",
                          "--peers, --raft-listen, --join and --restore-group need --node-id"));
            return false;
        }
        return true;
    }
    static sd_replication_peer_t peers[SD_REPLICATION_PEERS_MAX];
    size_t peers_count = 0;
    char error[512];
    if (config->raft_listen[0] == '\0') {
        snprintf(error, sizeof(error), "--node-id needs --raft-listen and --peers");
    } else if (sd_replication_parse_peers(config->peers, peers, &peers_count, error,
                                          sizeof(error))) {
        char dir[4096];
        snprintf(dir, sizeof(dir), "%s/raft", config->data_dir);
        sd_replication_options_t options = {
            .node_id = (uint64_t)config->node_id,
            .raft_listen = config->raft_listen,
            .peers = peers,
            .peers_count = peers_count,
            .dir = dir,
            .storage = daemon->storage,
            .on_applied = sd_writer_on_applied,
            .on_applied_context = daemon->writer,
            .on_failed = sd_on_storage_failed,
            .on_ready_changed = sd_on_ready_changed,
            .election_timeout_ms = (unsigned)config->election_timeout_ms,
            .snapshot_threshold = (unsigned)config->snapshot_threshold,
            .snapshot_trailing = (unsigned)config->snapshot_trailing,
            .join = config->join,
            .restore_group = config->restore_group};
        if (!net_address_is_loopback(config->raft_listen)) {
            SD_LOG(LOG_WARN, "raft_plaintext", LF_STR("address", config->raft_listen),
                   LF_STR("warning", "replication traffic is neither encrypted nor "
                                     "authenticated: only the other replicas may reach this "
                                     "address (firewall, NetworkPolicy)"));
        }
        if (sd_replication_start(&options, &daemon->replication, error, sizeof(error)) == SD_OK) {
            sd_writer_set_replication(daemon->writer, daemon->replication);
            return true;
        }
    }
    SD_LOG(LOG_ERROR, "replication_start_failed", LF_STR("error", error));
    return false;
}

static bool sd_start_metrics(const sd_config_t *config, sd_daemon_t *daemon)
{
    if (config->metrics_listen[0] == '\0') {
        return true;
    }
    int port = 0;
    if (sd_metrics_listen(daemon->metrics, config->metrics_listen, &port) != SD_OK) {
        SD_LOG(LOG_ERROR, "metrics_listen_failed", LF_STR("address", config->metrics_listen));
        return false;
    }
    SD_LOG(LOG_INFO, "metrics_listening", LF_STR("address", config->metrics_listen),
           LF_INT("port", port));
    return true;
}

/* The security rules of docs/api.md §6, checked before anything listens: plaintext only on
 * loopback (or with --insecure), and without a policy only on loopback. */
static bool sd_check_listener_security(const sd_config_t *config, const char *flag,
                                       const char *address)
{
    bool loopback = net_address_is_loopback(address);
    bool tls = config->tls_cert[0] != '\0';
    if (!loopback && !tls && !config->insecure) {
        SD_LOG(LOG_ERROR, "refusing_plaintext", LF_STR("flag", flag), LF_STR("address", address),
               LF_STR("fix", "serve TLS with --tls-cert and --tls-key, listen on loopback, or "
                             "pass --insecure to allow plaintext"));
        return false;
    }
    if (!loopback && config->auth_policy[0] == '\0') {
        SD_LOG(LOG_ERROR, "refusing_without_policy", LF_STR("flag", flag),
               LF_STR("address", address),
               LF_STR("fix", "give --auth-policy (who may call) or listen on loopback"));
        return false;
    }
    if (!loopback && !tls) {
        SD_LOG(LOG_WARN, "insecure_plaintext", LF_STR("flag", flag), LF_STR("address", address),
               LF_STR("warning", "--insecure: gRPC in plaintext on a non-loopback address; "
                                 "tokens and stock levels can be read on the network"));
    }
    return true;
}

static bool sd_start_security(const sd_config_t *config, sd_daemon_t *daemon)
{
    bool cert = config->tls_cert[0] != '\0', key = config->tls_key[0] != '\0';
    if (cert != key || (config->tls_client_ca[0] != '\0' && !cert)) {
        SD_LOG(LOG_ERROR, "tls_config_invalid",
               LF_STR("error", "--tls-cert and --tls-key go together; --tls-client-ca needs both"));
        return false;
    }
    if (config->insecure) {
        SD_LOG(LOG_WARN, "insecure_allowed",
               LF_STR("warning", "--insecure: plaintext gRPC is allowed on non-loopback "
                                 "addresses; tokens and stock levels could be read on the "
                                 "network"));
    }
    if (!sd_check_listener_security(config, "--listen", config->listen) ||
        (config->admin_listen[0] != '\0' &&
         !sd_check_listener_security(config, "--admin-listen", config->admin_listen))) {
        return false;
    }
    char error[1024] = "";
    if (cert && (daemon->tls = sd_tls_open(config->tls_cert, config->tls_key, config->tls_client_ca,
                                           error, sizeof(error))) == NULL) {
        SD_LOG(LOG_ERROR, "tls_load_failed", LF_STR("error", error));
        return false;
    }
    daemon->auth =
        sd_auth_open(config->auth_policy, SD_POLICY_RELOAD_INTERVAL_MS, error, sizeof(error));
    if (daemon->auth == NULL) {
        SD_LOG(LOG_ERROR, "auth_policy_invalid", LF_STR("error", error));
        return false;
    }
    return true;
}

#define SD_ADMIN_THREADS 3

static sd_server_t *sd_start_listener(const sd_config_t *config, sd_daemon_t *daemon,
                                      const char *address, bool admin)
{
    sd_services_t services = {daemon->storage, daemon->writer,      daemon->metrics,
                              daemon->hub,     daemon->checkpoints, daemon->replication};
    sd_server_options_t options = {
        .listen = address,
        /* admin: a membership change waits up to ~90 s on its thread; the others keep
         * answering status, backups and the preStop hand-over meanwhile */
        .polling_threads_count = admin ? SD_ADMIN_THREADS : (int)config->threads,
        .message_bytes_max = SD_REQUEST_BYTES_MAX,
        .inflight_bytes_max = (size_t)config->inflight_mb << 20,
        .streams_per_connection_max = (int)config->streams_per_connection,
        .grpc_memory_bytes_max = (size_t)config->grpc_memory_mb << 20,
        .watches_max = (size_t)config->watches_max,
        .health_watches_max = (size_t)config->health_watches_max,
        .credentials = daemon->tls ? sd_tls_server_credentials(daemon->tls) : NULL,
        .auth = daemon->auth,
        .admin = admin};
    if (daemon->tls != NULL && options.credentials == NULL) {
        SD_LOG(LOG_ERROR, "tls_credentials_failed", LF_STR("address", address));
        return NULL;
    }
    char bound[128];
    sd_server_t *server = sd_server_start(&options, &services, bound, sizeof(bound));
    if (server != NULL) {
        SD_LOG(LOG_INFO, admin ? "admin_listening" : "listening", LF_STR("address", bound),
               LF_BOOL("tls", daemon->tls != NULL),
               LF_BOOL("client_certificates", config->tls_client_ca[0] != '\0'),
               LF_BOOL("auth_policy", sd_auth_enforced(daemon->auth)),
               LF_UINT("ledger_seq", sd_storage_last_seq(daemon->storage)));
    }
    return server;
}

static bool sd_start_server(const sd_config_t *config, sd_daemon_t *daemon)
{
    char backup_dir[1024];
    snprintf(backup_dir, sizeof(backup_dir), "%s", config->backup_dir);
    if (backup_dir[0] == '\0') {
        snprintf(backup_dir, sizeof(backup_dir), "%s/backups", config->data_dir);
    }
    char error[1024];
    daemon->checkpoints =
        sd_checkpoints_new(backup_dir, config->data_dir, (size_t)config->checkpoints_max,
                           config->checkpoint_interval_s, error, sizeof(error));
    if (daemon->checkpoints == NULL) {
        SD_LOG(LOG_ERROR, "backup_dir_invalid", LF_STR("error", error));
        return false;
    }
    /* admin first: make run and tests wait for "listening", by then both are up */
    if (config->admin_listen[0] != '\0' &&
        (daemon->admin_server = sd_start_listener(config, daemon, config->admin_listen, true)) ==
            NULL) {
        return false;
    }
    daemon->server = sd_start_listener(config, daemon, config->listen, false);
    return daemon->server != NULL;
}

/* Order: stop accepting and finish in-flight calls (the writer still runs for them, and every
 * stream ends), then drain the writer, stop the watch hub, and close the database (flushing
 * every memtable, so the next start replays no log). A storage failure found on the way exits
 * with status 3 instead, without touching RocksDB again. */
static void sd_stop(const sd_config_t *config, sd_daemon_t *daemon)
{
    /* a leader hands over first: while the servers drain, clients are sent to the new one */
    sd_replication_step_down(daemon->replication);
    sd_health_servers_set(NULL, NULL);
    sd_server_stop(daemon->admin_server, config->shutdown_grace_s * 1000);
    sd_server_stop(daemon->server, config->shutdown_grace_s * 1000);
    sd_metrics_detach(daemon->metrics); /* scrapes stop reading what is freed below */
    /* replication first: it applies entries into the writer and the hub until it stops */
    sd_replication_shutdown(daemon->replication);
    sd_writer_stop(daemon->writer);
    sd_watch_hub_free(daemon->hub);
    sd_replication_free(daemon->replication);
    /* a write may have failed while the last calls were finished: then fail-stop too */
    bool storage_failed = daemon->storage != NULL && sd_storage_failed(daemon->storage);
    if (storage_failed) {
        SD_LOG(LOG_ERROR, "storage_failed_at_shutdown",
               LF_STR("action", "no flush, no close; exiting to recover from the WAL"),
               LF_INT("exit_code", SD_EXIT_STORAGE_FAILED));
        _exit(SD_EXIT_STORAGE_FAILED);
    }
    if (sd_storage_close(daemon->storage) != SD_OK) {
        SD_LOG(LOG_ERROR, "storage_failed_at_shutdown",
               LF_STR("action", "the final flush failed; exiting to recover from the WAL"),
               LF_INT("exit_code", SD_EXIT_STORAGE_FAILED));
        _exit(SD_EXIT_STORAGE_FAILED);
    }
    sd_metrics_free(daemon->metrics);
    sd_checkpoints_free(daemon->checkpoints);
    sd_auth_free(daemon->auth);
    sd_tls_free(daemon->tls);
}

#define SD_FAILURE_WATCHDOG_S 15

/* The fail-stop exit joins threads and waits for calls to end; none of that may keep a failed
 * stockd alive (it was seen once not to exit): the process exits anyway. */
static void *sd_failure_watchdog(void *argument)
{
    const sd_config_t *config = argument;
    sleep((unsigned)(config->failure_exit_delay_s + SD_FAILURE_WATCHDOG_S));
    SD_LOG(LOG_ERROR, "shutdown_forced",
           LF_STR("reason", "the fail-stop exit did not finish in time"),
           LF_INT("exit_code", SD_EXIT_STORAGE_FAILED));
    _exit(SD_EXIT_STORAGE_FAILED);
}

/* Fail-stop: answer the calls in flight (writes: "not taking writes", or "outcome unknown" for
 * the failed batch), then exit without touching RocksDB again. After a failed write or WAL
 * sync its in-memory state cannot be trusted, so nothing is flushed or closed: the next start
 * recovers from what the WAL durably holds. */
_Noreturn static void sd_exit_after_storage_failure(const sd_config_t *config, sd_daemon_t *daemon)
{
    SD_LOG(LOG_ERROR, "shutdown_started", LF_STR("reason", "storage failed"),
           LF_INT("exit_code", SD_EXIT_STORAGE_FAILED),
           LF_INT("exit_delay_s", config->failure_exit_delay_s));
    /* whatever the steps below wait for, the process is gone a little after the delay */
    pthread_t watchdog;
    if (pthread_create(&watchdog, NULL, sd_failure_watchdog, (void *)config) == 0) {
        pthread_detach(watchdog);
    }
    /* a leader hands leadership over now, not after the delay (its Raft log is sound) */
    sd_replication_step_down(daemon->replication);
    /* Health answers NOT_SERVING meanwhile (Check, and Watch streams are told), so probes,
     * the gateway's /readyz and load balancers see the failure before the process is gone. */
    sd_health_servers_set(NULL, NULL); /* replication news would say SERVING: no more */
    sd_health_report_not_serving(daemon->server);
    if (daemon->admin_server != NULL) {
        sd_health_report_not_serving(daemon->admin_server);
    }
    sleep((unsigned)config->failure_exit_delay_s);
    /* every write was answered already: a short grace, so idle connections cannot hold the
     * exit (and the restart) back for the whole --shutdown-grace */
    sd_server_stop(daemon->admin_server, SD_FAILURE_STOP_GRACE_MS);
    sd_server_stop(daemon->server, SD_FAILURE_STOP_GRACE_MS);
    sd_metrics_detach(daemon->metrics);
    sd_replication_shutdown(daemon->replication);
    sd_writer_stop(daemon->writer);
    _exit(SD_EXIT_STORAGE_FAILED);
}

static const char *sd_signal_name(int signal_number)
{
    return signal_number == SIGTERM ? "SIGTERM" : signal_number == SIGINT ? "SIGINT" : "SIGUSR1";
}

static int sd_run(const sd_config_t *config, sigset_t *signals)
{
    sd_daemon_t daemon;
    memset(&daemon, 0, sizeof(daemon));
    for (size_t i = 0; i < sd_methods_count; i++) {
        sd_method_names[i] = sd_methods[i].name;
    }
    daemon.metrics = sd_metrics_new(sd_method_names, sd_methods_count);
    bool started = daemon.metrics != NULL && sd_start_security(config, &daemon) &&
                   sd_open_storage(config, &daemon) && sd_start_writer(config, &daemon) &&
                   sd_start_replication(config, &daemon) && sd_attach_metrics(config, &daemon) &&
                   sd_start_metrics(config, &daemon) && sd_start_server(config, &daemon);
    if (!started) {
        sd_stop(config, &daemon);
        return 1;
    }
    sd_health_servers_set(daemon.server, daemon.admin_server);
    sd_metrics_set_serving(daemon.metrics, true);
    int signal_number = 0;
    sigwait(signals, &signal_number);
    sd_metrics_set_serving(daemon.metrics, false);
    if (sd_writer_failed(daemon.writer) || signal_number == SD_SIGNAL_STORAGE_FAILED) {
        sd_exit_after_storage_failure(config, &daemon);
    }
    SD_LOG(LOG_INFO, "shutdown_started", LF_STR("signal", sd_signal_name(signal_number)));
    sd_stop(config, &daemon);
    SD_LOG(LOG_INFO, "shutdown_complete", LF_END);
    return 0;
}

int main(int argc, char **argv)
{
    sd_config_t config;
    memset(&config, 0, sizeof(config));
    cfg_parse_result_t parsed = cfg_parse(&sd_spec, &config, argc, argv, 1, NULL, stdout, stderr);
    if (parsed != CFG_PARSE_OK) {
        return parsed == CFG_PARSE_EXIT_SUCCESS ? 0 : 2;
    }
    log_level_t level = LOG_INFO;
    log_level_parse(config.log_level, &level);
    log_init("stockd", level);
    if (config.listen[0] == '\0' || config.data_dir[0] == '\0') {
        fprintf(stderr, "--listen and --data-dir must not be empty\n");
        return 2;
    }
    cfg_log_effective(&sd_spec, &config);
    sd_raise_open_files_limit();
    sigset_t signals;
    sd_main_thread = pthread_self();
    sd_block_signals(&signals);
    grpc_init();
    int exit_code = sd_run(&config, &signals);
    grpc_shutdown();
    return exit_code;
}
