/* metrics.h — stockd's Prometheus metrics and the optional /metrics HTTP listener. */
#ifndef STOCKD_METRICS_H
#define STOCKD_METRICS_H

#include <stddef.h>

#include "status.h"

#define SD_METRICS_METHODS_MAX 16

typedef struct sd_metrics sd_metrics_t;

/* method_names: the RPC names used as the `method` label (kept by pointer, must outlive the
 * metrics). Returns NULL when out of memory. */
sd_metrics_t *sd_metrics_new(const char *const *method_names, size_t methods_count);
void sd_metrics_free(sd_metrics_t *metrics);

/* All observers accept metrics == NULL (metrics off, as in unit tests). */
void sd_metrics_count_request(sd_metrics_t *metrics, size_t method_index, sd_status_t status,
                              double latency_ms);
void sd_metrics_observe_commit(sd_metrics_t *metrics, size_t jobs_count, double commit_ms);
void sd_metrics_set_queue_depth(sd_metrics_t *metrics, size_t depth);

/* Renders the Prometheus text exposition into buffer; returns the bytes written. */
size_t sd_metrics_render(sd_metrics_t *metrics, char *buffer, size_t capacity);

/* Serves GET /metrics on host_port ("127.0.0.1:9090"; port 0 = any free port). The bound
 * port is stored in *port_out. Returns SD_UNAVAILABLE when it cannot listen. */
sd_status_t sd_metrics_listen(sd_metrics_t *metrics, const char *host_port, int *port_out);

#endif
