/* routes.h — the gateway's route table and handlers: the two Wix plugin calls, /healthz,
 * /readyz and /metrics. */
#ifndef STOCKD_GW_ROUTES_H
#define STOCKD_GW_ROUTES_H

#include <semaphore.h>
#include <stdbool.h>
#include <stdint.h>

#include "gw_metrics.h"
#include "http.h"
#include "coalesce.h"
#include "jwt.h"
#include "stockclient.h"

#define GW_VERIFICATIONS_MAX_LIMIT 1024 /* largest --max-verifications */

/* A counting semaphore that bounds concurrent token verifications — the decoding and RSA work
 * any unauthenticated caller can ask for. Zero-initialised (slots_max 0) it bounds nothing. */
typedef struct {
    sem_t free;
    unsigned int slots_max;
} gw_slots_t;

/* Makes slots_max slots (1..GW_VERIFICATIONS_MAX_LIMIT); false when the semaphore cannot be
 * made. Release with gw_slots_destroy. */
bool gw_slots_init(gw_slots_t *slots, unsigned int slots_max);
void gw_slots_destroy(gw_slots_t *slots);
/* Takes a slot, waiting at most wait_ms for one; false when none freed up in time. */
bool gw_slots_acquire(gw_slots_t *slots, int64_t wait_ms);
void gw_slots_release(gw_slots_t *slots);

typedef struct {
    gw_jwt_verifier_t verifier;
    sc_client_t *client; /* one channel shared by every handler thread */
    const char *default_tenant;
    int64_t deadline_ms; /* per call to stockd */
    gw_metrics_t *metrics;
    gw_slots_t verify_slots;    /* when all are taken, a call is answered 503 */
    int64_t jwt_lifetime_max_s; /* longest exp − iat; 0 = GW_JWT_LIFETIME_DEFAULT_S */
    /* Concurrent calls go to stockd together (coalesce.h); NULL = each call alone. */
    gw_coalescer_t *coalescer;
} gw_context_t;

#define GW_VERIFY_SLOT_WAIT_MS 100 /* a burst waits this long for a verification slot */

extern const gw_route_t gw_routes[];
extern const size_t gw_routes_count;

/* Handles one verified-or-not Wix call body (exposed for tests and the fuzzer): verifies (in a
 * verification slot; 503 + Retry-After when none frees up within GW_VERIFY_SLOT_WAIT_MS),
 * checks the token's lifetime, validates, maps, gives a call without metadata.requestId the
 * token-derived request_id, calls stockd (when client is not NULL) and fills the response. */
void gw_handle_wix(gw_context_t *context, gw_wix_method_t method, const char *body,
                   size_t body_length, gw_response_t *response);

#endif
