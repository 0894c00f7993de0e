/* routes.c — see routes.h. */
#include "routes.h"

#include <stdio.h>
#include <string.h>

#include "log.h"
#include "util.h"
#include "wix.h"

#define GW_READY_DEADLINE_MS 1000

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

static void gw_refuse_token(gw_context_t *context, gw_jwt_status_t status, gw_response_t *response)
{
    gw_metrics_jwt_refused(context->metrics, status);
    gw_answer_t answer = {401, GW_BODY_ERROR, "UNAUTHENTICATED", 0};
    gw_respond(response, &answer, GW_WIX_DECREMENT, gw_jwt_status_description(status),
               gw_jwt_status_description(status));
}

/* Calls stockd and answers by the one gRPC → HTTP table. */
static void gw_call_stockd(gw_context_t *context, gw_wix_call_t *call, gw_response_t *response)
{
    sc_status_t status;
    ProtobufCMessage *reply = NULL;
    int code =
        call->method == GW_WIX_DECREMENT
            ? sc_decrement(context->client, &call->decrement,
                           (Stockd__V1__DecrementResponse **)&reply, context->deadline_ms, &status)
            : sc_increment(context->client, &call->increment,
                           (Stockd__V1__IncrementResponse **)&reply, context->deadline_ms, &status);
    if (reply != NULL) {
        protobuf_c_message_free_unpacked(reply, NULL);
    }
    gw_answer_t answer = gw_answer_for_grpc(code);
    const char *reason = status.message;
    if (answer.http_status >= 500) {
        /* never pass upstream text (addresses, internals) to the caller: log it instead */
        gw_metrics_upstream_error(context->metrics, code);
        SD_LOG(LOG_WARN, "upstream_failed", LF_STR("code", sc_code_name(code)),
               LF_STR("detail", status.message), LF_STR("tenant", call->tenant_id));
        reason = answer.http_status == 504   ? "stockd did not answer in time"
                 : answer.http_status == 503 ? "stockd is unavailable"
                                             : "internal error";
    }
    gw_respond(response, &answer, call->method, reason, code == 0 ? "" : reason);
    sc_status_free(&status);
}

void gw_handle_wix(gw_context_t *context, gw_wix_method_t method, const char *body,
                   size_t body_length, gw_response_t *response)
{
    json_t *payload = NULL;
    gw_jwt_status_t token =
        gw_jwt_verify(&context->verifier, body, body_length, util_now_s(), &payload);
    if (token != GW_JWT_OK) {
        gw_refuse_token(context, token, response);
        return;
    }
    gw_wix_call_t call;
    gw_wix_result_t mapped = gw_wix_map(method, payload, context->default_tenant, &call);
    json_decref(payload);
    snprintf(response->tenant, sizeof(response->tenant), "%s", call.tenant_id);
    snprintf(response->request_id, sizeof(response->request_id), "%s", call.request_id);
    const char *order =
        method == GW_WIX_DECREMENT ? call.decrement.order_id : call.increment.order_id;
    snprintf(response->order_id, sizeof(response->order_id), "%s", order ? order : "");
    gw_answer_t answer;
    switch (mapped) {
    case GW_WIX_OK:
        if (context->client != NULL) {
            gw_call_stockd(context, &call, response);
        } else {
            answer = gw_answer_for_grpc(0);
            gw_respond(response, &answer, method, "", "");
        }
        break;
    case GW_WIX_BAD_ENVELOPE:
        answer = (gw_answer_t){400, GW_BODY_ERROR, "BAD_REQUEST", 0};
        gw_respond(response, &answer, method, call.reason, call.reason);
        break;
    case GW_WIX_BAD_EXTENSION:
        gw_refuse_token(context, GW_JWT_EXTENSION_TYPE, response);
        break;
    case GW_WIX_BAD_REQUEST:
        answer = gw_answer_for_grpc(3); /* invalid argument: 428 with the method's code */
        gw_respond(response, &answer, method, call.reason, call.reason);
        break;
    }
    gw_wix_call_free(&call);
}

static void gw_route_decrement(void *context, const gw_request_t *request, gw_response_t *response)
{
    gw_handle_wix(context, GW_WIX_DECREMENT, request->body, request->body_length, response);
}

static void gw_route_increment(void *context, const gw_request_t *request, gw_response_t *response)
{
    gw_handle_wix(context, GW_WIX_INCREMENT, request->body, request->body_length, response);
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

const gw_route_t gw_routes[] = {
    {"/v1/decrement", true, "POST", "decrement", gw_route_decrement},
    {"/v1/increment", true, "POST", "increment", gw_route_increment},
    {"/healthz", false, "GET", "healthz", gw_route_healthz},
    {"/readyz", false, "GET", "readyz", gw_route_readyz},
    {"/metrics", false, "GET", "metrics", gw_route_metrics},
};
const size_t gw_routes_count = sizeof(gw_routes) / sizeof(gw_routes[0]);
