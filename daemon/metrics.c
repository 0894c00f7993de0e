/* metrics.c — see metrics.h. Counters are atomics: observing never takes a lock. */
#include "metrics.h"

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net.h"
#include "prom.h"
#include "storage.h"
#include "watch.h"
#include "writer.h"

#define SD_METRICS_BODY_BYTES_MAX (256 * 1024)

/* Seconds (Prometheus base units); 50 ms and 20 ms are bounds because the alert examples in
 * deploy/README.md use them. */
static const double sd_latency_bounds_s[] = {0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                             0.05,    0.1,    0.25,  0.5,    1,     2.5,  5};
static const double sd_commit_bounds_s[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                            0.02,   0.05,    0.1,    0.25,  0.5,    1};
static const double sd_batch_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512};

#define SD_COUNT_OF(array) (sizeof(array) / sizeof((array)[0]))
_Static_assert(SD_COUNT_OF(sd_latency_bounds_s) <= PROM_BUCKETS_MAX, "too many buckets");
_Static_assert(SD_COUNT_OF(sd_commit_bounds_s) <= PROM_BUCKETS_MAX, "too many buckets");

struct sd_metrics {
    const char *const *method_names;
    size_t methods_count;
    _Atomic uint64_t requests[SD_METRICS_METHODS_MAX][SD_STATUS_COUNT];
    prom_histogram_t latency[SD_METRICS_METHODS_MAX];
    prom_histogram_t batch_jobs;
    prom_histogram_t commit_seconds;
    _Atomic uint64_t replays;
    _Atomic bool serving; /* between start-up and the start of shutdown */
    /* held by a scrape while it reads the sources, and by detach */
    pthread_mutex_t sources_mutex;
    bool attached;
    sd_metrics_sources_t sources;
    struct MHD_Daemon *http;
};

sd_metrics_t *sd_metrics_new(const char *const *method_names, size_t methods_count)
{
    sd_metrics_t *metrics = calloc(1, sizeof(*metrics));
    if (metrics == NULL || methods_count > SD_METRICS_METHODS_MAX) {
        free(metrics);
        return NULL;
    }
    metrics->method_names = method_names;
    metrics->methods_count = methods_count;
    for (size_t i = 0; i < methods_count; i++) {
        prom_histogram_init(&metrics->latency[i], sd_latency_bounds_s,
                            SD_COUNT_OF(sd_latency_bounds_s));
    }
    prom_histogram_init(&metrics->batch_jobs, sd_batch_bounds, SD_COUNT_OF(sd_batch_bounds));
    prom_histogram_init(&metrics->commit_seconds, sd_commit_bounds_s,
                        SD_COUNT_OF(sd_commit_bounds_s));
    atomic_init(&metrics->replays, 0);
    pthread_mutex_init(&metrics->sources_mutex, NULL);
    return metrics;
}

void sd_metrics_free(sd_metrics_t *metrics)
{
    if (metrics == NULL) {
        return;
    }
    if (metrics->http != NULL) {
        MHD_stop_daemon(metrics->http);
    }
    pthread_mutex_destroy(&metrics->sources_mutex);
    free(metrics);
}

void sd_metrics_count_request(sd_metrics_t *metrics, size_t method_index, sd_status_t status,
                              double latency_ms)
{
    if (metrics == NULL || method_index >= metrics->methods_count) {
        return;
    }
    atomic_fetch_add(&metrics->requests[method_index][status], 1);
    prom_histogram_observe(&metrics->latency[method_index], latency_ms / 1000.0);
}

void sd_metrics_observe_commit(sd_metrics_t *metrics, size_t jobs_count, double commit_ms)
{
    if (metrics == NULL) {
        return;
    }
    prom_histogram_observe(&metrics->batch_jobs, (double)jobs_count);
    prom_histogram_observe(&metrics->commit_seconds, commit_ms / 1000.0);
}

void sd_metrics_count_replays(sd_metrics_t *metrics, size_t replays_count)
{
    if (metrics != NULL && replays_count > 0) {
        atomic_fetch_add(&metrics->replays, replays_count);
    }
}

void sd_metrics_attach(sd_metrics_t *metrics, const sd_metrics_sources_t *sources)
{
    if (metrics == NULL) {
        return;
    }
    pthread_mutex_lock(&metrics->sources_mutex);
    metrics->sources = *sources;
    metrics->attached = true;
    pthread_mutex_unlock(&metrics->sources_mutex);
}

void sd_metrics_detach(sd_metrics_t *metrics)
{
    if (metrics == NULL) {
        return;
    }
    pthread_mutex_lock(&metrics->sources_mutex);
    metrics->attached = false;
    memset(&metrics->sources, 0, sizeof(metrics->sources));
    pthread_mutex_unlock(&metrics->sources_mutex);
}

/* ---- rendering ---- */

static void sd_render_requests(prom_buffer_t *buffer, sd_metrics_t *metrics)
{
    /* Every method and status is written, zeros included: a series that first appears at 1
     * would hide its first increase from increase() and rate(), and so the first INTERNAL. */
    prom_family(buffer, "stockd_requests_total", "counter",
                "RPCs answered, by method and status (status names as in common/status.h).");
    for (size_t m = 0; m < metrics->methods_count; m++) {
        for (int s = 0; s < SD_STATUS_COUNT; s++) {
            char labels[96];
            snprintf(labels, sizeof(labels), "method=\"%s\",status=\"%s\"",
                     metrics->method_names[m], sd_status_name((sd_status_t)s));
            prom_sample(buffer, "stockd_requests_total", labels,
                        (double)atomic_load(&metrics->requests[m][s]));
        }
    }
    prom_family(buffer, "stockd_request_duration_seconds", "histogram",
                "RPC latency in seconds, from the request's arrival to its answer.");
    for (size_t m = 0; m < metrics->methods_count; m++) {
        char labels[64];
        snprintf(labels, sizeof(labels), "method=\"%s\"", metrics->method_names[m]);
        prom_render_histogram(buffer, "stockd_request_duration_seconds", labels,
                              &metrics->latency[m]);
    }
}

static void sd_render_writes(prom_buffer_t *buffer, sd_metrics_t *metrics)
{
    prom_family(buffer, "stockd_batch_requests", "histogram",
                "Write requests applied per group commit.");
    prom_render_histogram(buffer, "stockd_batch_requests", "", &metrics->batch_jobs);
    prom_family(buffer, "stockd_commit_duration_seconds", "histogram",
                "Group commit latency in seconds: one RocksDB WriteBatch and its WAL fsync.");
    prom_render_histogram(buffer, "stockd_commit_duration_seconds", "", &metrics->commit_seconds);
    prom_single(buffer, "stockd_idempotency_replays_total", "counter",
                "Write requests answered from their idempotency record (replayed), not applied "
                "again.",
                (double)atomic_load(&metrics->replays));
}

static void sd_render_ledger_and_queue(prom_buffer_t *buffer, const sd_metrics_sources_t *sources)
{
    prom_single(buffer, "stockd_ledger_seq", "gauge", "The last durable (committed) ledger seq.",
                (double)sd_writer_committed_seq(sources->writer));
    prom_single(buffer, "stockd_ledger_pruned_seq", "gauge",
                "The highest ledger seq deleted by retention (0 = none).",
                (double)sd_storage_pruned_through(sources->storage));
    prom_single(buffer, "stockd_write_queue_depth", "gauge", "Write requests waiting.",
                (double)sd_writer_queue_depth(sources->writer));
    prom_single(buffer, "stockd_write_queue_capacity", "gauge",
                "Write requests that may wait (--queue-depth); beyond it RESOURCE_EXHAUSTED.",
                (double)sources->queue_depth_max);
    sd_watch_stats_t watch;
    sd_watch_hub_stats(sources->watch_hub, &watch);
    prom_single(buffer, "stockd_watchers", "gauge", "Open Inventory/Watch streams.",
                (double)watch.watchers_count);
    prom_single(buffer, "stockd_watch_lag_seqs", "gauge",
                "The largest lag of an open Watch, in ledger seqs from its oldest entry not yet "
                "sent to the newest commit (0 = none behind).",
                (double)watch.lag_max);
    prom_single(buffer, "stockd_watch_lag_limit_seqs", "gauge",
                "--watch-lag-max: a Watch further behind is ended with RESOURCE_EXHAUSTED.",
                (double)watch.lag_limit);
}

/* Replication (only with --node-id): where this replica stands in its Raft group. */
static void sd_render_replication(prom_buffer_t *buffer, sd_replication_t *replication)
{
    sd_replication_status_t status;
    sd_replication_status(replication, &status);
    prom_single(buffer, "stockd_raft_term", "gauge", "The replica's current Raft term.",
                (double)status.term);
    prom_single(buffer, "stockd_raft_leader", "gauge", "1 while this replica is the leader.",
                status.leader ? 1.0 : 0.0);
    prom_single(buffer, "stockd_raft_leader_known", "gauge",
                "1 while this replica knows a leader (0: an election is going on, or it is cut "
                "off).",
                status.leader_id != 0 ? 1.0 : 0.0);
    prom_single(buffer, "stockd_raft_ready", "gauge",
                "1 while this replica serves (/readyz 200): it knows a leader, is a member, and "
                "has applied what it was told is committed.",
                status.ready ? 1.0 : 0.0);
    prom_single(buffer, "stockd_raft_pre_vote", "gauge",
                "1 while Raft's pre-vote is on; 0 after this replica knew no leader for 5 "
                "election timeouts with a majority answering (a way out of a pre-vote "
                "livelock; back to 1 once it knows a leader).",
                status.pre_vote ? 1.0 : 0.0);
    prom_single(buffer, "stockd_raft_commit_index", "gauge",
                "The last Raft log index this replica knows to be committed.",
                (double)status.commit_index);
    prom_single(buffer, "stockd_raft_applied_index", "gauge",
                "The last Raft log index applied to this replica's storage.",
                (double)status.applied_index);
    prom_single(buffer, "stockd_raft_last_index", "gauge",
                "The last index of this replica's Raft log.", (double)status.last_index);
    uint64_t lag = 0; /* known on the leader: how far the slowest follower's log is behind */
    for (size_t i = 0; status.leader && i < status.members_count; i++) {
        uint64_t behind = status.last_index > status.match_index[i]
                              ? status.last_index - status.match_index[i]
                              : 0;
        bool voter = strcmp(status.member_roles[i], "voter") == 0; /* a spare gets no log */
        lag = status.members[i].id != status.node_id && voter && behind > lag ? behind : lag;
    }
    prom_single(buffer, "stockd_raft_replication_lag_entries", "gauge",
                "On the leader: entries the slowest follower's log is behind (0 elsewhere).",
                (double)lag);
    prom_single(buffer, "stockd_raft_snapshots_taken_total", "counter",
                "Snapshots this process took (each lets Raft drop the log before it).",
                (double)status.snapshots_taken);
    prom_single(buffer, "stockd_raft_snapshots_restored_total", "counter",
                "Snapshots this process restored (sent by a leader to a replica too far "
                "behind for its log).",
                (double)status.snapshots_restored);
    prom_single(buffer, "stockd_raft_members_lost_log", "gauge",
                "On the leader: members that answered with less than they had acknowledged (a "
                "lost volume); leadership is handed over so that they are sent the log.",
                (double)status.members_lost_log);
    prom_single(buffer, "stockd_raft_snapshots_dropped_total", "counter",
                "Snapshots from a leader dropped because one was being installed or taken here "
                "(the leader sends them again).",
                (double)status.snapshots_dropped);
    prom_single(buffer, "stockd_raft_snapshot_index", "gauge",
                "The Raft index of the last snapshot this process took (0: none yet).",
                (double)status.snapshot_index);
    prom_single(buffer, "stockd_raft_snapshot_bytes", "gauge",
                "The size of the last snapshot this process took.", (double)status.snapshot_bytes);
    prom_single(buffer, "stockd_raft_snapshot_seconds", "gauge",
                "How long taking the last snapshot held the replication loop (its thread copies "
                "the records; the loop appends the entries applied meanwhile).",
                status.snapshot_ms / 1000.0);
}

/* One gauge family with a sample per column family; unknown figures are left out. */
static void sd_render_per_cf(prom_buffer_t *buffer, const char *name, const char *help,
                             const uint64_t *values)
{
    prom_family(buffer, name, "gauge", help);
    for (int cf = 0; cf < SD_CF_COUNT; cf++) {
        if (values[cf] != SD_STORAGE_STAT_UNKNOWN) {
            char labels[64];
            snprintf(labels, sizeof(labels), "cf=\"%s\"", sd_storage_cf_name((sd_cf_t)cf));
            prom_sample(buffer, name, labels, (double)values[cf]);
        }
    }
}

/* One unlabelled family, unless RocksDB did not give the figure. */
static void sd_render_known(prom_buffer_t *buffer, const char *name, const char *type,
                            const char *help, uint64_t value)
{
    if (value != SD_STORAGE_STAT_UNKNOWN) {
        prom_single(buffer, name, type, help, (double)value);
    }
}

static void sd_render_rocksdb(prom_buffer_t *buffer, sd_storage_t *storage)
{
    sd_storage_stats_t stats;
    sd_storage_stats(storage, &stats);
    sd_render_per_cf(buffer, "stockd_rocksdb_memtable_bytes",
                     "RocksDB memtables (active and immutable) in bytes, by column family.",
                     stats.memtable_bytes);
    sd_render_per_cf(buffer, "stockd_rocksdb_pending_compaction_bytes",
                     "Bytes RocksDB estimates compaction must rewrite, by column family.",
                     stats.pending_compaction_bytes);
    sd_render_per_cf(buffer, "stockd_rocksdb_live_sst_bytes",
                     "Bytes of live SST files, by column family.", stats.live_sst_bytes);
    sd_render_per_cf(buffer, "stockd_rocksdb_estimated_keys",
                     "Keys RocksDB estimates, by column family.", stats.estimated_keys);
    sd_render_known(buffer, "stockd_rocksdb_block_cache_usage_bytes", "gauge",
                    "Bytes in RocksDB's block cache.", stats.block_cache_bytes);
    sd_render_known(buffer, "stockd_rocksdb_block_cache_pinned_bytes", "gauge",
                    "Bytes of the block cache pinned by readers.", stats.block_cache_pinned_bytes);
    sd_render_known(buffer, "stockd_rocksdb_block_cache_capacity_bytes", "gauge",
                    "The block cache's capacity (--block-cache-mb) in bytes.",
                    stats.block_cache_capacity_bytes);
    sd_render_known(buffer, "stockd_rocksdb_delayed_write_rate_bytes_per_second", "gauge",
                    "Write rate RocksDB holds writes to while it slows them down (a write stall); "
                    "0 when writes are not delayed.",
                    stats.delayed_write_rate_bytes);
    sd_render_known(buffer, "stockd_rocksdb_write_stopped", "gauge",
                    "1 while RocksDB stops writes (a write stall), else 0.", stats.write_stopped);
    sd_render_known(buffer, "stockd_rocksdb_background_errors_total", "counter",
                    "RocksDB flush and compaction errors since stockd started.",
                    stats.background_errors);
}

/* The gauges read from the attached modules, while they cannot go away. */
static void sd_render_sources(prom_buffer_t *buffer, sd_metrics_t *metrics)
{
    pthread_mutex_lock(&metrics->sources_mutex);
    if (metrics->attached) {
        sd_render_ledger_and_queue(buffer, &metrics->sources);
        sd_render_rocksdb(buffer, metrics->sources.storage);
        if (metrics->sources.replication != NULL) {
            sd_render_replication(buffer, metrics->sources.replication);
        }
    }
    pthread_mutex_unlock(&metrics->sources_mutex);
}

size_t sd_metrics_render(sd_metrics_t *metrics, char *data, size_t capacity)
{
    prom_buffer_t buffer = {data, 0, capacity};
    sd_render_requests(&buffer, metrics);
    sd_render_writes(&buffer, metrics);
    sd_render_sources(&buffer, metrics);
    prom_family(&buffer, "stockd_build_info", "gauge", "stockd's version (always 1).");
    prom_sample(&buffer, "stockd_build_info", "version=\"" STOCKD_VERSION "\"", 1);
    prom_render_process(&buffer);
    return buffer.used;
}

/* The probes behind /healthz (live: storage has not failed) and /readyz (also serving: started
 * and not shutting down). They answer over plain HTTP, which the kubelet can always speak,
 * whereas its gRPC probes cannot speak TLS. */
static bool sd_metrics_probe(sd_metrics_t *metrics, bool readiness)
{
    pthread_mutex_lock(&metrics->sources_mutex);
    bool failed = metrics->attached && sd_writer_failed(metrics->sources.writer);
    /* a replica without a leader, behind what it knows is committed, or not (yet) a member of
     * the group is not ready */
    bool behind = metrics->attached && metrics->sources.replication != NULL &&
                  !sd_replication_ready(metrics->sources.replication);
    pthread_mutex_unlock(&metrics->sources_mutex);
    if (!readiness) {
        return !failed;
    }
    return !failed && !behind && atomic_load(&metrics->serving);
}

void sd_metrics_set_serving(sd_metrics_t *metrics, bool serving)
{
    atomic_store(&metrics->serving, serving);
}

static enum MHD_Result sd_metrics_answer(void *context, struct MHD_Connection *connection,
                                         const char *url, const char *method, const char *version,
                                         const char *upload_data, size_t *upload_data_size,
                                         void **request_state)
{
    (void)version, (void)upload_data, (void)upload_data_size, (void)request_state;
    sd_metrics_t *metrics = context;
    unsigned int code = MHD_HTTP_OK;
    char *body = malloc(SD_METRICS_BODY_BYTES_MAX);
    size_t length = 0;
    if (body == NULL) {
        return MHD_NO;
    }
    bool probe = strcmp(url, "/healthz") == 0 || strcmp(url, "/readyz") == 0;
    if (strcmp(url, "/metrics") != 0 && !probe) {
        code = MHD_HTTP_NOT_FOUND;
        length = (size_t)snprintf(body, SD_METRICS_BODY_BYTES_MAX, "not found\n");
    } else if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        code = MHD_HTTP_METHOD_NOT_ALLOWED;
        length = (size_t)snprintf(body, SD_METRICS_BODY_BYTES_MAX, "method not allowed\n");
    } else if (probe) {
        bool ok = sd_metrics_probe(metrics, strcmp(url, "/readyz") == 0);
        code = ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE;
        length = (size_t)snprintf(body, SD_METRICS_BODY_BYTES_MAX, ok ? "ok\n" : "not serving\n");
    } else {
        length = sd_metrics_render(metrics, body, SD_METRICS_BODY_BYTES_MAX);
    }
    struct MHD_Response *response =
        MHD_create_response_from_buffer(length, body, MHD_RESPMEM_MUST_FREE);
    if (response == NULL) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(response, "Content-Type", "text/plain; version=0.0.4");
    enum MHD_Result result = MHD_queue_response(connection, code, response);
    MHD_destroy_response(response);
    return result;
}

sd_status_t sd_metrics_listen(sd_metrics_t *metrics, const char *host_port, int *port_out)
{
    struct sockaddr_in address;
    if (!net_parse_ipv4_host_port(host_port, &address)) {
        return SD_INVALID_ARGUMENT;
    }
    metrics->http = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL, sd_metrics_answer,
        metrics, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&address, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned int)64, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)10, MHD_OPTION_END);
    if (metrics->http == NULL) {
        return SD_UNAVAILABLE;
    }
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info(metrics->http, MHD_DAEMON_INFO_BIND_PORT);
    *port_out = info ? (int)info->port : 0;
    return SD_OK;
}
