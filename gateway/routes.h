/* routes.h — the gateway's route table and handlers: the two Wix plugin calls, /healthz,
 * /readyz and /metrics. */
#ifndef STOCKD_GW_ROUTES_H
#define STOCKD_GW_ROUTES_H

#include <stdint.h>

#include "gw_metrics.h"
#include "http.h"
#include "jwt.h"
#include "stockclient.h"

typedef struct {
    gw_jwt_verifier_t verifier;
    sc_client_t *client; /* one channel shared by every handler thread */
    const char *default_tenant;
    int64_t deadline_ms; /* per call to stockd */
    gw_metrics_t *metrics;
} gw_context_t;

extern const gw_route_t gw_routes[];
extern const size_t gw_routes_count;

/* Handles one verified-or-not Wix call body (exposed for tests and the fuzzer): verifies,
 * validates, maps, calls stockd (when client is not NULL) and fills the response. */
void gw_handle_wix(gw_context_t *context, gw_wix_method_t method, const char *body,
                   size_t body_length, gw_response_t *response);

#endif
