/* gw_metrics.c — see gw_metrics.h. Atomic counters: observing never takes a lock. */
#include "gw_metrics.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prom.h"
#include "status.h"

#define GW_HTTP_STATUS_MAX 600
#define GW_METRICS_BYTES_MAX (256 * 1024)

/* Seconds (Prometheus base units); 0.2 is a bound because deploy/README.md alerts on it. */
static const double gw_latency_bounds_s[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                             0.1,    0.2,   0.5,    1,     2.5,  5};

struct gw_metrics {
    const char *route_names[GW_METRICS_ROUTES_MAX + 1];
    size_t routes_count;
    _Atomic uint64_t requests[GW_METRICS_ROUTES_MAX + 1][GW_HTTP_STATUS_MAX];
    prom_histogram_t latency[GW_METRICS_ROUTES_MAX + 1];
    _Atomic uint64_t upstream_errors[SD_STATUS_COUNT];
    _Atomic uint64_t jwt_refusals[GW_JWT_STATUS_COUNT];
    gw_coalescer_t *coalescer; /* NULL: calls are not coalesced */
};

void gw_metrics_attach_coalescer(gw_metrics_t *metrics, gw_coalescer_t *coalescer)
{
    if (metrics != NULL) {
        metrics->coalescer = coalescer;
    }
}

/* How calls went to stockd: Batch calls, the Wix calls in them, and Wix calls sent alone;
 * batch_calls / batches is the mean Batch size. */
static void gw_render_coalescing(prom_buffer_t *buffer, gw_metrics_t *metrics)
{
    gw_coalescer_stats_t stats = {0, 0, 0};
    if (metrics->coalescer != NULL) {
        gw_coalescer_stats(metrics->coalescer, &stats);
    }
    prom_family(buffer, "stockd_gateway_batches_total", "counter",
                "Batch calls sent to stockd (concurrent Wix calls sent together).");
    prom_sample(buffer, "stockd_gateway_batches_total", "", (double)stats.batches);
    prom_family(buffer, "stockd_gateway_stockd_calls_total", "counter",
                "Wix calls sent to stockd, by how: alone or in a Batch.");
    prom_sample(buffer, "stockd_gateway_stockd_calls_total", "how=\"alone\"",
                (double)stats.lone_calls);
    prom_sample(buffer, "stockd_gateway_stockd_calls_total", "how=\"batch\"",
                (double)stats.batch_calls);
}

gw_metrics_t *gw_metrics_new(const char *const *route_names, size_t routes_count)
{
    if (routes_count > GW_METRICS_ROUTES_MAX) {
        return NULL;
    }
    gw_metrics_t *metrics = calloc(1, sizeof(*metrics));
    if (metrics == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < routes_count; i++) {
        metrics->route_names[i] = route_names[i];
    }
    metrics->route_names[routes_count] = "unknown";
    metrics->routes_count = routes_count + 1;
    for (size_t i = 0; i < metrics->routes_count; i++) {
        prom_histogram_init(&metrics->latency[i], gw_latency_bounds_s,
                            sizeof(gw_latency_bounds_s) / sizeof(double));
    }
    return metrics;
}

void gw_metrics_free(gw_metrics_t *metrics)
{
    free(metrics);
}

static size_t gw_route_index(const gw_metrics_t *metrics, const char *route)
{
    for (size_t i = 0; i + 1 < metrics->routes_count; i++) {
        if (strcmp(metrics->route_names[i], route) == 0) {
            return i;
        }
    }
    return metrics->routes_count - 1;
}

void gw_metrics_observe(gw_metrics_t *metrics, const char *route, unsigned int status,
                        double latency_ms)
{
    size_t index = gw_route_index(metrics, route);
    if (status < GW_HTTP_STATUS_MAX) {
        atomic_fetch_add(&metrics->requests[index][status], 1);
    }
    prom_histogram_observe(&metrics->latency[index], latency_ms / 1000.0);
}

void gw_metrics_upstream_error(gw_metrics_t *metrics, int grpc_code)
{
    sd_status_t status = sd_status_from_grpc_code(grpc_code);
    if (status != SD_OK) {
        atomic_fetch_add(&metrics->upstream_errors[status], 1);
    }
}

void gw_metrics_jwt_refused(gw_metrics_t *metrics, gw_jwt_status_t reason)
{
    if (reason < GW_JWT_STATUS_COUNT) {
        atomic_fetch_add(&metrics->jwt_refusals[reason], 1);
    }
}

static void gw_render_requests(prom_buffer_t *buffer, gw_metrics_t *metrics)
{
    prom_family(buffer, "stockd_gateway_requests_total", "counter",
                "HTTP requests by route and HTTP status code.");
    for (size_t r = 0; r < metrics->routes_count; r++) {
        for (unsigned s = 0; s < GW_HTTP_STATUS_MAX; s++) {
            uint64_t count = atomic_load(&metrics->requests[r][s]);
            if (count > 0) {
                char labels[96];
                snprintf(labels, sizeof(labels), "route=\"%s\",code=\"%u\"",
                         metrics->route_names[r], s);
                prom_sample(buffer, "stockd_gateway_requests_total", labels, (double)count);
            }
        }
    }
    prom_family(buffer, "stockd_gateway_request_duration_seconds", "histogram",
                "Gateway latency in seconds by route.");
    for (size_t r = 0; r < metrics->routes_count; r++) {
        char labels[64];
        snprintf(labels, sizeof(labels), "route=\"%s\"", metrics->route_names[r]);
        prom_render_histogram(buffer, "stockd_gateway_request_duration_seconds", labels,
                              &metrics->latency[r]);
    }
}

/* Every status and reason is written, zeros included, so that rate() sees each series from
 * the gateway's start. */
static void gw_render_errors(prom_buffer_t *buffer, gw_metrics_t *metrics)
{
    prom_family(buffer, "stockd_gateway_upstream_errors_total", "counter",
                "Failed calls to stockd by status (names as in stockd_requests_total).");
    for (int s = 0; s < SD_STATUS_COUNT; s++) {
        if (s != SD_OK) {
            char labels[64];
            snprintf(labels, sizeof(labels), "status=\"%s\"", sd_status_name((sd_status_t)s));
            prom_sample(buffer, "stockd_gateway_upstream_errors_total", labels,
                        (double)atomic_load(&metrics->upstream_errors[s]));
        }
    }
    prom_family(buffer, "stockd_gateway_jwt_refusals_total", "counter",
                "Refused Wix tokens by reason.");
    for (int reason = 1; reason < GW_JWT_STATUS_COUNT; reason++) {
        char labels[64];
        snprintf(labels, sizeof(labels), "reason=\"%s\"",
                 gw_jwt_status_name((gw_jwt_status_t)reason));
        prom_sample(buffer, "stockd_gateway_jwt_refusals_total", labels,
                    (double)atomic_load(&metrics->jwt_refusals[reason]));
    }
}

char *gw_metrics_render(gw_metrics_t *metrics, size_t *length_out)
{
    prom_buffer_t buffer = {malloc(GW_METRICS_BYTES_MAX), 0, GW_METRICS_BYTES_MAX};
    if (buffer.data == NULL) {
        return NULL;
    }
    gw_render_requests(&buffer, metrics);
    gw_render_errors(&buffer, metrics);
    gw_render_coalescing(&buffer, metrics);
    prom_family(&buffer, "stockd_gateway_build_info", "gauge",
                "stockd-gateway's version (always 1).");
    prom_sample(&buffer, "stockd_gateway_build_info", "version=\"" STOCKD_VERSION "\"", 1);
    prom_render_process(&buffer);
    *length_out = buffer.used;
    return buffer.data;
}
