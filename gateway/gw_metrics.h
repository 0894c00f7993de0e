/* gw_metrics.h — the gateway's Prometheus metrics: requests by route and HTTP code, latency per
 * route (seconds), upstream (stockd) errors by status name, JWT refusals by reason, and the
 * process metrics. */
#ifndef STOCKD_GW_METRICS_H
#define STOCKD_GW_METRICS_H

#include <stddef.h>

#include "coalesce.h"
#include "jwt.h"

#define GW_METRICS_ROUTES_MAX 8

typedef struct gw_metrics gw_metrics_t;

/* route_names: labels (kept by pointer); an extra "unknown" route is added. Returns NULL when
 * out of memory or given too many routes. */
gw_metrics_t *gw_metrics_new(const char *const *route_names, size_t routes_count);
void gw_metrics_free(gw_metrics_t *metrics);

/* Counts an answered request under its route and HTTP code (the `code` label). */
void gw_metrics_observe(gw_metrics_t *metrics, const char *route, unsigned int status,
                        double latency_ms);
/* Counts a failed call to stockd by its gRPC code number, shown as the status name of
 * common/status.h (`status="UNAVAILABLE"`), as stockd's own metrics name it. */
void gw_metrics_upstream_error(gw_metrics_t *metrics, int grpc_code);
void gw_metrics_jwt_refused(gw_metrics_t *metrics, gw_jwt_status_t reason);
/* Shows how calls went to stockd (alone, or together in Batch calls); metrics may be NULL,
 * coalescer NULL when calls are not coalesced. The coalescer must outlive the metrics' use. */
void gw_metrics_attach_coalescer(gw_metrics_t *metrics, gw_coalescer_t *coalescer);

/* Renders the exposition text into a malloc'd buffer (the caller frees it); returns NULL when
 * out of memory. */
char *gw_metrics_render(gw_metrics_t *metrics, size_t *length_out);

#endif
