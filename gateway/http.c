/* http.c — see http.h. */
#include "http.h"

#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "net.h"
#include "util.h"

struct gw_http {
    gw_http_options_t options;
    struct MHD_Daemon *daemon;
};

/* Per-request state while the body arrives. */
typedef struct {
    char *body;
    size_t length;
    size_t capacity;
    bool too_large;
    double started_ms;
} gw_upload_t;

void gw_response_error(gw_response_t *response, unsigned int status, const char *code,
                       const char *message)
{
    gw_answer_t answer = {status, GW_BODY_ERROR, code, 0};
    response->status = status;
    response->content_type = "application/json";
    response->body_length =
        gw_answer_body(&answer, GW_WIX_DECREMENT, message, response->body, sizeof(response->body));
}

/* Finds the route for path and method. *path_known tells whether any route has the path. */
static const gw_route_t *gw_route_find(const gw_http_options_t *options, const char *path,
                                       const char *method, const gw_route_t **path_match)
{
    size_t path_length = strlen(path);
    *path_match = NULL;
    for (size_t i = 0; i < options->routes_count; i++) {
        const gw_route_t *route = &options->routes[i];
        size_t route_length = strlen(route->path);
        bool matches = route->suffix
                           ? path_length >= route_length &&
                                 strcmp(path + path_length - route_length, route->path) == 0
                           : strcmp(path, route->path) == 0;
        if (!matches) {
            continue;
        }
        *path_match = route;
        if (strcmp(method, route->method) == 0 ||
            (strcmp(method, "HEAD") == 0 && strcmp(route->method, "GET") == 0)) {
            return route;
        }
    }
    return NULL;
}

static enum MHD_Result gw_send(struct MHD_Connection *connection, gw_response_t *response,
                               const char *allow)
{
    const char *body = response->dynamic_body ? response->dynamic_body : response->body;
    size_t length = response->dynamic_body ? response->dynamic_length : response->body_length;
    struct MHD_Response *reply =
        MHD_create_response_from_buffer(length, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (reply == NULL) {
        return MHD_NO;
    }
    MHD_add_response_header(reply, "Content-Type", response->content_type);
    if (response->reason[0] != '\0') {
        MHD_add_response_header(reply, "X-Stockd-Reason", response->reason);
    }
    if (response->retry_after_s > 0) {
        char seconds[16];
        snprintf(seconds, sizeof(seconds), "%d", response->retry_after_s);
        MHD_add_response_header(reply, "Retry-After", seconds);
    }
    if (allow != NULL) {
        MHD_add_response_header(reply, "Allow", allow);
    }
    enum MHD_Result result = MHD_queue_response(connection, response->status, reply);
    MHD_destroy_response(reply);
    return result;
}

static void gw_log_answer(const char *route, const char *method, const char *path,
                          const gw_response_t *response, double latency_ms)
{
    log_level_t level = response->status >= 500 ? LOG_WARN : LOG_INFO;
    SD_LOG(level, "http", LF_STR("route", route), LF_STR("method", method), LF_STR("path", path),
           LF_INT("status", response->status), LF_STR("reason", response->reason),
           LF_DBL("latency_ms", latency_ms));
}

static enum MHD_Result gw_answer_request(gw_http_t *http, struct MHD_Connection *connection,
                                         const char *url, const char *method, gw_upload_t *upload)
{
    gw_response_t response;
    memset(&response, 0, sizeof(response));
    const gw_route_t *path_match = NULL;
    const gw_route_t *route = gw_route_find(&http->options, url, method, &path_match);
    const char *allow = NULL;
    const char *name = route ? route->name : path_match ? path_match->name : "unknown";
    if (upload->too_large) {
        gw_response_error(&response, 413, "PAYLOAD_TOO_LARGE", "request body is too large");
    } else if (route == NULL && path_match != NULL) {
        gw_response_error(&response, 405, "METHOD_NOT_ALLOWED", "method not allowed");
        allow = path_match->method;
    } else if (route == NULL) {
        gw_response_error(&response, 404, "NOT_FOUND", "no such route");
    } else {
        gw_request_t request = {method, url, upload->body ? upload->body : "", upload->length};
        route->handler(http->options.context, &request, &response);
    }
    double latency_ms = util_monotonic_ms() - upload->started_ms;
    if (http->options.observe != NULL) {
        http->options.observe(http->options.context, name, response.status, latency_ms);
    }
    if (route == NULL || route->suffix || response.status >= 400) {
        gw_log_answer(name, method, url, &response, latency_ms);
    }
    enum MHD_Result result = gw_send(connection, &response, allow);
    free(response.dynamic_body);
    return result;
}

/* Appends body bytes, up to the limit; past it the rest is read and dropped. */
static void gw_upload_append(gw_upload_t *upload, const char *data, size_t size, size_t max)
{
    if (upload->too_large || size > max - upload->length) {
        upload->too_large = true;
        return;
    }
    if (upload->length + size + 1 > upload->capacity) {
        size_t capacity = upload->capacity ? upload->capacity : 4096;
        while (capacity < upload->length + size + 1) {
            capacity *= 2;
        }
        char *bigger = realloc(upload->body, capacity);
        if (bigger == NULL) {
            upload->too_large = true;
            return;
        }
        upload->body = bigger;
        upload->capacity = capacity;
    }
    memcpy(upload->body + upload->length, data, size);
    upload->length += size;
    upload->body[upload->length] = '\0';
}

static bool gw_declared_too_large(struct MHD_Connection *connection, size_t max)
{
    const char *declared =
        MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    int64_t length = 0;
    return declared != NULL && util_parse_int64(declared, &length) && length > (int64_t)max;
}

static enum MHD_Result gw_on_request(void *context, struct MHD_Connection *connection,
                                     const char *url, const char *method, const char *version,
                                     const char *upload_data, size_t *upload_data_size,
                                     void **request_state)
{
    (void)version;
    gw_http_t *http = context;
    gw_upload_t *upload = *request_state;
    if (upload == NULL) {
        upload = calloc(1, sizeof(*upload));
        if (upload == NULL) {
            return MHD_NO;
        }
        upload->started_ms = util_monotonic_ms();
        *request_state = upload;
        if (gw_declared_too_large(connection, http->options.body_bytes_max)) {
            upload->too_large = true;
            /* A client waiting for "100 Continue" gets the 413 before sending the body; any
             * other client is answered after its body was read (and dropped), so it is not
             * cut off mid-send and sees the answer. */
            const char *expect =
                MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_EXPECT);
            if (expect != NULL && strcasecmp(expect, "100-continue") == 0) {
                return gw_answer_request(http, connection, url, method, upload);
            }
        }
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        gw_upload_append(upload, upload_data, *upload_data_size, http->options.body_bytes_max);
        *upload_data_size = 0;
        return MHD_YES;
    }
    return gw_answer_request(http, connection, url, method, upload);
}

static void gw_on_completed(void *context, struct MHD_Connection *connection, void **request_state,
                            enum MHD_RequestTerminationCode code)
{
    (void)context, (void)connection, (void)code;
    gw_upload_t *upload = *request_state;
    if (upload != NULL) {
        free(upload->body);
        free(upload);
        *request_state = NULL;
    }
}

gw_http_t *gw_http_start(const gw_http_options_t *options, int *port_out)
{
    struct sockaddr_in address;
    if (!net_parse_ipv4_host_port(options->listen, &address)) {
        SD_LOG(LOG_ERROR, "listen_invalid", LF_STR("address", options->listen));
        return NULL;
    }
    gw_http_t *http = calloc(1, sizeof(*http));
    if (http == NULL) {
        return NULL;
    }
    http->options = *options;
    http->daemon = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
            MHD_USE_ERROR_LOG,
        0, NULL, NULL, gw_on_request, http, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&address,
        MHD_OPTION_CONNECTION_LIMIT, options->connections_max, MHD_OPTION_CONNECTION_TIMEOUT,
        options->connection_timeout_s, MHD_OPTION_NOTIFY_COMPLETED, gw_on_completed, http,
        MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned int)0, MHD_OPTION_END);
    if (http->daemon == NULL) {
        SD_LOG(LOG_ERROR, "listen_failed", LF_STR("address", options->listen));
        free(http);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(http->daemon, MHD_DAEMON_INFO_BIND_PORT);
    *port_out = info ? (int)info->port : 0;
    return http;
}

void gw_http_stop(gw_http_t *http)
{
    if (http == NULL) {
        return;
    }
    /* MHD_stop_daemon closes the listener and joins every connection thread, so requests in
     * flight finish their upstream call and answer before it returns. */
    MHD_stop_daemon(http->daemon);
    free(http);
}
