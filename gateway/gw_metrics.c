/* gw_metrics.c — see gw_metrics.h. Atomic counters: observing never takes a lock. */
#include "gw_metrics.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prom.h"

#define GW_HTTP_STATUS_MAX 600
#define GW_GRPC_CODES 17
#define GW_METRICS_BYTES_MAX (256 * 1024)

static const double gw_latency_bounds_ms[] = {0.5, 1, 2, 5, 10, 25, 50, 100, 250, 1000, 5000};

struct gw_metrics {
    const char *route_names[GW_METRICS_ROUTES_MAX + 1];
    size_t routes_count;
    _Atomic uint64_t requests[GW_METRICS_ROUTES_MAX + 1][GW_HTTP_STATUS_MAX];
    prom_histogram_t latency[GW_METRICS_ROUTES_MAX + 1];
    _Atomic uint64_t upstream_errors[GW_GRPC_CODES];
    _Atomic uint64_t jwt_refusals[GW_JWT_STATUS_COUNT];
};

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
        prom_histogram_init(&metrics->latency[i], gw_latency_bounds_ms,
                            sizeof(gw_latency_bounds_ms) / sizeof(double));
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
    prom_histogram_observe(&metrics->latency[index], latency_ms);
}

void gw_metrics_upstream_error(gw_metrics_t *metrics, int grpc_code)
{
    if (grpc_code > 0 && grpc_code < GW_GRPC_CODES) {
        atomic_fetch_add(&metrics->upstream_errors[grpc_code], 1);
    }
}

void gw_metrics_jwt_refused(gw_metrics_t *metrics, gw_jwt_status_t reason)
{
    if (reason < GW_JWT_STATUS_COUNT) {
        atomic_fetch_add(&metrics->jwt_refusals[reason], 1);
    }
}

char *gw_metrics_render(gw_metrics_t *metrics, size_t *length_out)
{
    prom_buffer_t buffer = {malloc(GW_METRICS_BYTES_MAX), 0, GW_METRICS_BYTES_MAX};
    if (buffer.data == NULL) {
        return NULL;
    }
    prom_printf(&buffer, "# HELP stockd_gateway_requests_total HTTP requests by route and "
                         "status.\n# TYPE stockd_gateway_requests_total counter\n");
    for (size_t r = 0; r < metrics->routes_count; r++) {
        for (unsigned s = 0; s < GW_HTTP_STATUS_MAX; s++) {
            uint64_t count = atomic_load(&metrics->requests[r][s]);
            if (count > 0) {
                prom_printf(&buffer,
                            "stockd_gateway_requests_total{route=\"%s\",status=\"%u\"} %llu\n",
                            metrics->route_names[r], s, (unsigned long long)count);
            }
        }
    }
    prom_printf(&buffer, "# HELP stockd_gateway_request_duration_ms Latency by route.\n"
                         "# TYPE stockd_gateway_request_duration_ms histogram\n");
    for (size_t r = 0; r < metrics->routes_count; r++) {
        char labels[64];
        snprintf(labels, sizeof(labels), "route=\"%s\"", metrics->route_names[r]);
        prom_render_histogram(&buffer, "stockd_gateway_request_duration_ms", labels,
                              &metrics->latency[r]);
    }
    prom_printf(&buffer, "# HELP stockd_gateway_upstream_errors_total Failed calls to stockd "
                         "by gRPC code.\n# TYPE stockd_gateway_upstream_errors_total counter\n");
    for (int code = 1; code < GW_GRPC_CODES; code++) {
        prom_printf(&buffer, "stockd_gateway_upstream_errors_total{code=\"%d\"} %llu\n", code,
                    (unsigned long long)atomic_load(&metrics->upstream_errors[code]));
    }
    prom_printf(&buffer, "# HELP stockd_gateway_jwt_refusals_total Refused Wix tokens by "
                         "reason.\n# TYPE stockd_gateway_jwt_refusals_total counter\n");
    for (int reason = 1; reason < GW_JWT_STATUS_COUNT; reason++) {
        prom_printf(&buffer, "stockd_gateway_jwt_refusals_total{reason=\"%s\"} %llu\n",
                    gw_jwt_status_name((gw_jwt_status_t)reason),
                    (unsigned long long)atomic_load(&metrics->jwt_refusals[reason]));
    }
    *length_out = buffer.used;
    return buffer.data;
}
