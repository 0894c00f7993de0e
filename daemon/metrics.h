/* metrics.h — stockd's Prometheus metrics and the optional /metrics HTTP listener.
 *
 * Counters and histograms are fed as things happen (requests, commits, replays); gauges that
 * other modules already know (ledger seq, queue depth, watchers and their lag, RocksDB's own
 * figures, the process) are read from those modules when /metrics is scraped, once they are
 * attached. Names follow Prometheus conventions: base units (seconds, bytes), _total for
 * counters, and status labels carry sd_status_name names ("UNAVAILABLE"), never numbers. */
#ifndef STOCKD_METRICS_H
#define STOCKD_METRICS_H

#include <stdbool.h>
#include <stddef.h>

#include "status.h"

#define SD_METRICS_METHODS_MAX 24

typedef struct sd_metrics sd_metrics_t;
typedef struct sd_storage sd_storage_t;
typedef struct sd_writer sd_writer_t;
typedef struct sd_replication sd_replication_t;
typedef struct sd_watch_hub sd_watch_hub_t;

/* method_names: the RPC names used as the `method` label (kept by pointer, must outlive the
 * metrics). Returns NULL when out of memory. */
sd_metrics_t *sd_metrics_new(const char *const *method_names, size_t methods_count);
/* Stops the listener (if any) and frees the metrics; NULL is allowed. */
void sd_metrics_free(sd_metrics_t *metrics);

/* All observers accept metrics == NULL (metrics off, as in unit tests). */
void sd_metrics_count_request(sd_metrics_t *metrics, size_t method_index, sd_status_t status,
                              double latency_ms);
void sd_metrics_observe_commit(sd_metrics_t *metrics, size_t jobs_count, double commit_ms);
/* Counts write requests answered from their idempotency record (replayed = true). */
void sd_metrics_count_replays(sd_metrics_t *metrics, size_t replays_count);

/* What scrapes read from (kept by pointer; each must stay valid until sd_metrics_detach). */
typedef struct {
    sd_storage_t *storage;
    sd_writer_t *writer;
    sd_watch_hub_t *watch_hub;
    size_t queue_depth_max;        /* --queue-depth, shown next to the queue depth */
    sd_replication_t *replication; /* NULL: one node */
} sd_metrics_sources_t;

/* Makes scrapes show the sources' gauges. */
void sd_metrics_attach(sd_metrics_t *metrics, const sd_metrics_sources_t *sources);
/* Forgets the sources; returns once no scrape is reading them, so they may then be freed.
 * Scrapes go on answering without their gauges. */
void sd_metrics_detach(sd_metrics_t *metrics);
/* What GET /readyz answers: 200 while serving (set once every listener is up, cleared when
 * shutdown starts), 503 otherwise or once storage has failed. */
void sd_metrics_set_serving(sd_metrics_t *metrics, bool serving);

/* Renders the Prometheus text exposition into buffer; returns the bytes written. */
size_t sd_metrics_render(sd_metrics_t *metrics, char *buffer, size_t capacity);

/* Serves GET /metrics on host_port ("127.0.0.1:9090"; port 0 = any free port). The bound
 * port is stored in *port_out. Returns SD_UNAVAILABLE when it cannot listen. */
sd_status_t sd_metrics_listen(sd_metrics_t *metrics, const char *host_port, int *port_out);

#endif
