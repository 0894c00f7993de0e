/* metrics.c — see metrics.h. Counters are atomics: observing never takes a lock. */
#include "metrics.h"

#include <microhttpd.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "net.h"
#include "prom.h"

#define SD_METRICS_BODY_BYTES_MAX (256 * 1024)

static const double sd_latency_bounds_ms[] = {0.25, 0.5, 1, 2, 5, 10, 25, 50, 100, 250, 1000};
static const double sd_batch_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512};

struct sd_metrics {
    const char *const *method_names;
    size_t methods_count;
    _Atomic uint64_t requests[SD_METRICS_METHODS_MAX][SD_STATUS_COUNT];
    prom_histogram_t latency[SD_METRICS_METHODS_MAX];
    prom_histogram_t batch_jobs;
    prom_histogram_t commit_ms;
    _Atomic uint64_t queue_depth;
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
        prom_histogram_init(&metrics->latency[i], sd_latency_bounds_ms,
                            sizeof(sd_latency_bounds_ms) / sizeof(double));
    }
    prom_histogram_init(&metrics->batch_jobs, sd_batch_bounds,
                        sizeof(sd_batch_bounds) / sizeof(double));
    prom_histogram_init(&metrics->commit_ms, sd_latency_bounds_ms,
                        sizeof(sd_latency_bounds_ms) / sizeof(double));
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
    free(metrics);
}

void sd_metrics_count_request(sd_metrics_t *metrics, size_t method_index, sd_status_t status,
                              double latency_ms)
{
    if (metrics == NULL || method_index >= metrics->methods_count) {
        return;
    }
    atomic_fetch_add(&metrics->requests[method_index][status], 1);
    prom_histogram_observe(&metrics->latency[method_index], latency_ms);
}

void sd_metrics_observe_commit(sd_metrics_t *metrics, size_t jobs_count, double commit_ms)
{
    if (metrics == NULL) {
        return;
    }
    prom_histogram_observe(&metrics->batch_jobs, (double)jobs_count);
    prom_histogram_observe(&metrics->commit_ms, commit_ms);
}

void sd_metrics_set_queue_depth(sd_metrics_t *metrics, size_t depth)
{
    if (metrics != NULL) {
        atomic_store(&metrics->queue_depth, depth);
    }
}

size_t sd_metrics_render(sd_metrics_t *metrics, char *data, size_t capacity)
{
    prom_buffer_t buffer = {data, 0, capacity};
    prom_printf(&buffer, "# HELP stockd_requests_total RPCs answered, by method and status.\n"
                         "# TYPE stockd_requests_total counter\n");
    for (size_t m = 0; m < metrics->methods_count; m++) {
        for (int s = 0; s < SD_STATUS_COUNT; s++) {
            uint64_t count = atomic_load(&metrics->requests[m][s]);
            if (count > 0) {
                prom_printf(&buffer, "stockd_requests_total{method=\"%s\",status=\"%s\"} %llu\n",
                            metrics->method_names[m], sd_status_name((sd_status_t)s),
                            (unsigned long long)count);
            }
        }
    }
    prom_printf(&buffer, "# HELP stockd_request_duration_ms RPC latency in milliseconds.\n"
                         "# TYPE stockd_request_duration_ms histogram\n");
    for (size_t m = 0; m < metrics->methods_count; m++) {
        char labels[64];
        snprintf(labels, sizeof(labels), "method=\"%s\"", metrics->method_names[m]);
        prom_render_histogram(&buffer, "stockd_request_duration_ms", labels, &metrics->latency[m]);
    }
    prom_printf(&buffer, "# HELP stockd_batch_requests Write requests per group commit.\n"
                         "# TYPE stockd_batch_requests histogram\n");
    prom_render_histogram(&buffer, "stockd_batch_requests", "", &metrics->batch_jobs);
    prom_printf(&buffer, "# HELP stockd_commit_duration_ms WriteBatch + WAL sync latency.\n"
                         "# TYPE stockd_commit_duration_ms histogram\n");
    prom_render_histogram(&buffer, "stockd_commit_duration_ms", "", &metrics->commit_ms);
    prom_printf(&buffer,
                "# HELP stockd_write_queue_depth Write requests waiting.\n"
                "# TYPE stockd_write_queue_depth gauge\nstockd_write_queue_depth %llu\n",
                (unsigned long long)atomic_load(&metrics->queue_depth));
    return buffer.used;
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
    if (strcmp(url, "/metrics") != 0) {
        code = MHD_HTTP_NOT_FOUND;
        length = (size_t)snprintf(body, SD_METRICS_BODY_BYTES_MAX, "not found\n");
    } else if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        code = MHD_HTTP_METHOD_NOT_ALLOWED;
        length = (size_t)snprintf(body, SD_METRICS_BODY_BYTES_MAX, "method not allowed\n");
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
