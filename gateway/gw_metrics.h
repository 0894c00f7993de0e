/* gw_metrics.h — the gateway's Prometheus metrics: requests by route and status, latency per
 * route, upstream (stockd) errors by gRPC code, JWT refusals by reason. */
#ifndef STOCKD_GW_METRICS_H
#define STOCKD_GW_METRICS_H

#include <stddef.h>

#include "jwt.h"

#define GW_METRICS_ROUTES_MAX 8

typedef struct gw_metrics gw_metrics_t;

/* route_names: labels (kept by pointer); an extra "unknown" route is added. */
gw_metrics_t *gw_metrics_new(const char *const *route_names, size_t routes_count);
void gw_metrics_free(gw_metrics_t *metrics);

void gw_metrics_observe(gw_metrics_t *metrics, const char *route, unsigned int status,
                        double latency_ms);
void gw_metrics_upstream_error(gw_metrics_t *metrics, int grpc_code);
void gw_metrics_jwt_refused(gw_metrics_t *metrics, gw_jwt_status_t reason);

/* Renders the exposition text into a malloc'd buffer; returns NULL when out of memory. */
char *gw_metrics_render(gw_metrics_t *metrics, size_t *length_out);

#endif
