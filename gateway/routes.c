/* routes.c — see routes.h. */
#include "routes.h"

#include "status.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "util.h"
#include "wix.h"

#define GW_READY_DEADLINE_MS 1000
/* stockd-on-behalf-of of a write made for a Wix site: this prefix + metadata.instanceId. */
#define GW_ON_BEHALF_OF_PREFIX "wix-instance:"
#define GW_ON_BEHALF_OF_BYTES (sizeof(GW_ON_BEHALF_OF_PREFIX) + SD_TENANT_BYTES_MAX)
_Static_assert(GW_ON_BEHALF_OF_BYTES - 1 <= SD_ON_BEHALF_OF_BYTES_MAX,
               "any instanceId fits stockd's on-behalf-of limit");

bool gw_slots_init(gw_slots_t *slots, unsigned int slots_max)
{
    slots->slots_max = 0;
    if (slots_max < 1 || slots_max > GW_VERIFICATIONS_MAX_LIMIT ||
        sem_init(&slots->free, 0, slots_max) != 0) {
        return false;
    }
    slots->slots_max = slots_max;
    return true;
}

void gw_slots_destroy(gw_slots_t *slots)
{
    if (slots->slots_max > 0) {
        sem_destroy(&slots->free);
        slots->slots_max = 0;
    }
}

bool gw_slots_acquire(gw_slots_t *slots, int64_t wait_ms)
{
    if (slots->slots_max == 0) {
        return true;
    }
    /* sem_timedwait takes a CLOCK_REALTIME time */
    struct timespec until = util_time_after_us(CLOCK_REALTIME, wait_ms * 1000);
    while (sem_timedwait(&slots->free, &until) != 0) {
        if (errno != EINTR) {
            return false; /* ETIMEDOUT: every slot stayed taken */
        }
    }
    return true;
}

void gw_slots_release(gw_slots_t *slots)
{
    if (slots->slots_max > 0) {
        sem_post(&slots->free);
    }
}

static void gw_respond(gw_response_t *response, const gw_answer_t *answer, gw_wix_method_t method,
                       const char *message, const char *reason)
{
    response->status = answer->http_status;
    response->content_type = "application/json";
    response->retry_after_s = answer->retry_after_s;
    response->body_length =
        gw_answer_body(answer, method, message, response->body, sizeof(response->body));
    gw_header_safe(reason, response->reason, sizeof(response->reason));
}

/* 503 + Retry-After: the gateway cannot take the call now (no verification slot, no memory);
 * nothing was applied, so Wix's retry is safe. */
static void gw_respond_busy(gw_response_t *response, gw_wix_method_t method, const char *reason)
{
    gw_answer_t answer = {503, GW_BODY_ERROR, "UNAVAILABLE", 1};
    gw_respond(response, &answer, method, reason, reason);
}

static void gw_refuse_token(gw_context_t *context, gw_jwt_status_t status, gw_response_t *response)
{
    gw_metrics_jwt_refused(context->metrics, status);
    if (status == GW_JWT_NO_MEMORY) {
        gw_respond_busy(response, GW_WIX_DECREMENT, gw_jwt_status_description(status));
        return;
    }
    gw_answer_t answer = {401, GW_BODY_ERROR, "UNAUTHENTICATED", 0};
    gw_respond(response, &answer, GW_WIX_DECREMENT, gw_jwt_status_description(status),
               gw_jwt_status_description(status));
}

/* Refuses a token that would stay usable too long, and logs its lifetime. */
static gw_jwt_status_t gw_check_lifetime(const gw_context_t *context, const json_t *claims)
{
    int64_t lifetime_max_s =
        context->jwt_lifetime_max_s > 0 ? context->jwt_lifetime_max_s : GW_JWT_LIFETIME_DEFAULT_S;
    gw_jwt_status_t status = gw_jwt_check_lifetime(claims, lifetime_max_s);
    if (status != GW_JWT_OK) {
        double lifetime_s = json_number_value(json_object_get(claims, "exp")) -
                            json_number_value(json_object_get(claims, "iat"));
        SD_LOG(LOG_WARN, "jwt_lifetime_refused", LF_DBL("lifetime_s", lifetime_s),
               LF_INT("lifetime_max_s", lifetime_max_s));
    }
    return status;
}

/* Verifies the token in a verification slot, then its lifetime. On true *payload_out holds the
 * claims (caller releases); on false the response is filled. */
static bool gw_verify_token(gw_context_t *context, const char *body, size_t body_length,
                            json_t **payload_out, gw_response_t *response)
{
    *payload_out = NULL;
    if (body_length > GW_TOKEN_BYTES_MAX) { /* refused before it may take a slot */
        gw_refuse_token(context, GW_JWT_TOO_LARGE, response);
        return false;
    }
    if (!gw_slots_acquire(&context->verify_slots, GW_VERIFY_SLOT_WAIT_MS)) {
        gw_respond_busy(response, GW_WIX_DECREMENT, "too many calls being verified");
        return false;
    }
    gw_jwt_status_t status =
        gw_jwt_verify(&context->verifier, body, body_length, util_now_s(), payload_out);
    gw_slots_release(&context->verify_slots);
    if (status == GW_JWT_OK) {
        status = gw_check_lifetime(context, *payload_out);
    }
    if (status != GW_JWT_OK) {
        json_decref(*payload_out);
        *payload_out = NULL;
        gw_refuse_token(context, status, response);
        return false;
    }
    return true;
}

/* Whom a mapped call is made for: "wix-instance:<instanceId>" when the call names its site
 * (metadata.instanceId, which the mapping checked and made the tenant), "" when the tenant is
 * the default one. stockd records it in the ledger beside the gateway's own identity. */
static void gw_on_behalf_of(const gw_wix_call_t *call, char out[GW_ON_BEHALF_OF_BYTES])
{
    const json_t *metadata = json_object_get(json_object_get(call->payload, "data"), "metadata");
    const json_t *instance = json_object_get(metadata, "instanceId");
    out[0] = '\0';
    if (json_is_string(instance)) {
        snprintf(out, GW_ON_BEHALF_OF_BYTES, "%s%s", GW_ON_BEHALF_OF_PREFIX, call->tenant_id);
    }
}

/* One call to stockd: through the coalescer when there is one (the call's announcement is
 * consumed), else alone. Returns the gRPC code; message_out holds stockd's message. */
static int gw_send(gw_context_t *context, gw_wix_call_t *call, const char *on_behalf_of,
                   bool *announced, char *message_out, size_t message_capacity)
{
    const ProtobufCMessage *request =
        call->method == GW_WIX_DECREMENT ? &call->decrement.base : &call->increment.base;
    if (context->coalescer != NULL) {
        *announced = false;
        return gw_coalescer_call(context->coalescer, request, on_behalf_of, context->deadline_ms,
                                 message_out, message_capacity);
    }
    sc_status_t status;
    ProtobufCMessage *reply = NULL;
    sc_call_options_t options = {
        .deadline_ms = context->deadline_ms, .on_behalf_of = on_behalf_of, .retry_unknown = true};
    int code = call->method == GW_WIX_DECREMENT
                   ? sc_decrement_with(context->client, &call->decrement,
                                       (Stockd__V1__DecrementResponse **)&reply, &options, &status)
                   : sc_increment_with(context->client, &call->increment,
                                       (Stockd__V1__IncrementResponse **)&reply, &options, &status);
    if (reply != NULL) {
        protobuf_c_message_free_unpacked(reply, NULL);
    }
    snprintf(message_out, message_capacity, "%s", status.message);
    sc_status_free(&status);
    return code;
}

/* Calls stockd and answers by the one gRPC → HTTP table. */
static void gw_call_stockd(gw_context_t *context, gw_wix_call_t *call, bool *announced,
                           gw_response_t *response)
{
    char on_behalf_of[GW_ON_BEHALF_OF_BYTES];
    gw_on_behalf_of(call, on_behalf_of);
    char message[512];
    int code = gw_send(context, call, on_behalf_of, announced, message, sizeof(message));
    gw_answer_t answer = gw_answer_for_grpc(code);
    const char *reason = message;
    if (answer.http_status >= 500) {
        /* never pass upstream text (addresses, internals) to the caller: log it instead */
        gw_metrics_upstream_error(context->metrics, code);
        SD_LOG(LOG_WARN, "upstream_failed", LF_STR("code", sc_code_name(code)),
               LF_STR("detail", message), LF_STR("tenant", call->tenant_id));
        reason = answer.http_status == 504   ? "stockd did not answer in time"
                 : answer.http_status == 503 ? "stockd is unavailable"
                                             : "internal error";
    }
    gw_respond(response, &answer, call->method, reason, code == 0 ? "" : reason);
}

void gw_handle_wix(gw_context_t *context, gw_wix_method_t method, const char *body,
                   size_t body_length, gw_response_t *response)
{
    json_t *payload = NULL;
    if (!gw_verify_token(context, body, body_length, &payload, response)) {
        return;
    }
    /* from here until it is sent (microseconds of mapping) the verified call is announced: a
     * sender may wait for it. Not before verification: bad tokens must not make lone calls
     * wait. */
    bool announced = context->coalescer != NULL;
    if (announced) {
        gw_coalescer_announce(context->coalescer);
    }
    gw_wix_call_t call;
    gw_wix_result_t mapped = gw_wix_map(method, payload, context->default_tenant, &call);
    json_decref(payload);
    /* Without metadata.requestId, a replayed token would apply its change again. The request_id
     * derived from the token's signature makes stockd's idempotency record apply it once and
     * answer a replay as the original was answered. That record is kept for --idempotency-ttl
     * (days), longer than any token is accepted (--jwt-lifetime-max + skew), so it cannot be
     * forgotten while the token is live — unlike a set in gateway memory, which would be lost
     * on restart, not shared between replicas, and have to refuse calls (or forget live tokens)
     * when full. */
    char digest[65];
    if (mapped == GW_WIX_OK && gw_jwt_signature_sha256_hex(body, body_length, digest)) {
        gw_wix_use_token_request_id(&call, digest);
    }
    snprintf(response->tenant, sizeof(response->tenant), "%s", call.tenant_id);
    snprintf(response->request_id, sizeof(response->request_id), "%s", call.request_id);
    const char *order =
        method == GW_WIX_DECREMENT ? call.decrement.order_id : call.increment.order_id;
    snprintf(response->order_id, sizeof(response->order_id), "%s", order ? order : "");
    gw_answer_t answer;
    switch (mapped) {
    case GW_WIX_OK:
        gw_call_stockd(context, &call, &announced, response);
        break;
    case GW_WIX_BAD_ENVELOPE:
        answer = (gw_answer_t){400, GW_BODY_ERROR, "BAD_REQUEST", 0};
        gw_respond(response, &answer, method, call.reason, call.reason);
        break;
    case GW_WIX_BAD_EXTENSION:
        gw_refuse_token(context, GW_JWT_EXTENSION_TYPE, response);
        break;
    case GW_WIX_BAD_REQUEST:
        answer = gw_answer_for_grpc(sd_status_grpc_code(
            SD_INVALID_ARGUMENT)); /* invalid argument: 428 with the method's code */
        gw_respond(response, &answer, method, call.reason, call.reason);
        break;
    case GW_WIX_NO_MEMORY: /* not the call's fault: 428 would tell Wix the order is invalid */
        gw_respond_busy(response, method, call.reason);
        break;
    }
    gw_coalescer_withdraw_if(context->coalescer, announced);
    gw_wix_call_free(&call);
}

/* A body longer than the route keeps (GW_TOKEN_BYTES_MAX) was read and dropped: too large a
 * token, refused without looking at it. */
static void gw_route_wix(gw_context_t *context, gw_wix_method_t method, const gw_request_t *request,
                         gw_response_t *response)
{
    if (request->body_truncated) {
        gw_refuse_token(context, GW_JWT_TOO_LARGE, response);
        return;
    }
    gw_handle_wix(context, method, request->body, request->body_length, response);
}

static void gw_route_decrement(void *context, const gw_request_t *request, gw_response_t *response)
{
    gw_route_wix(context, GW_WIX_DECREMENT, request, response);
}

static void gw_route_increment(void *context, const gw_request_t *request, gw_response_t *response)
{
    gw_route_wix(context, GW_WIX_INCREMENT, request, response);
}

static void gw_route_healthz(void *context, const gw_request_t *request, gw_response_t *response)
{
    (void)context, (void)request;
    response->status = 200;
    response->content_type = "application/json";
    response->body_length =
        (size_t)snprintf(response->body, sizeof(response->body), "{\"status\":\"ok\"}");
}

static void gw_route_readyz(void *context, const gw_request_t *request, gw_response_t *response)
{
    (void)request;
    gw_context_t *gateway = context;
    sc_status_t status;
    bool serving = false;
    sc_health_check(gateway->client, "", &serving, GW_READY_DEADLINE_MS, &status);
    sc_status_free(&status);
    if (!serving) {
        gw_response_error(response, 503, "UNAVAILABLE", "stockd is not serving");
        response->retry_after_s = 1;
        return;
    }
    response->status = 200;
    response->content_type = "application/json";
    response->body_length =
        (size_t)snprintf(response->body, sizeof(response->body), "{\"status\":\"ready\"}");
}

static void gw_route_metrics(void *context, const gw_request_t *request, gw_response_t *response)
{
    (void)request;
    gw_context_t *gateway = context;
    response->dynamic_body = gw_metrics_render(gateway->metrics, &response->dynamic_length);
    if (response->dynamic_body == NULL) {
        gw_response_error(response, 500, "INTERNAL", "out of memory");
        return;
    }
    response->status = 200;
    response->content_type = "text/plain; version=0.0.4";
}

/* The Wix routes keep a body up to the token cap; the others need none. */
const gw_route_t gw_routes[] = {
    {"/v1/decrement", true, "POST", "decrement", gw_route_decrement, GW_TOKEN_BYTES_MAX},
    {"/v1/increment", true, "POST", "increment", gw_route_increment, GW_TOKEN_BYTES_MAX},
    {"/healthz", false, "GET", "healthz", gw_route_healthz, 0},
    {"/readyz", false, "GET", "readyz", gw_route_readyz, 0},
    {"/metrics", false, "GET", "metrics", gw_route_metrics, 0},
};
const size_t gw_routes_count = sizeof(gw_routes) / sizeof(gw_routes[0]);
