/* http.c — see http.h. */
#include "http.h"

#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include "log.h"
#include "net.h"
#include "util.h"

#define GW_WATCHDOG_INTERVAL_MS 100 /* how late past its deadline a connection may be cut */
#define GW_UPLOAD_CAPACITY_MIN 4096

/* A connection the receive watchdog follows, from MHD's STARTED to its CLOSED notification. MHD
 * closes the socket only after CLOSED returns, and CLOSED takes the lock, so the watchdog never
 * shuts down a descriptor that was closed and reused. */
typedef struct {
    struct MHD_Connection *connection; /* NULL: the slot is free */
    int fd;
    double receiving_since_ms; /* < 0: its request has arrived and is being answered */
    bool cut;                  /* shut down by the watchdog (logged once) */
} gw_tracked_t;

struct gw_http {
    gw_http_options_t options;
    struct MHD_Daemon *daemon;
    pthread_mutex_t lock;  /* guards tracked[] and stopping */
    pthread_cond_t wake;   /* on a CLOCK_MONOTONIC condattr */
    gw_tracked_t *tracked; /* connections_max slots, allocated at start */
    bool stopping;
    pthread_t watchdog;
};

/* Per-request state while the body arrives. */
typedef struct {
    char *body;
    size_t length;
    size_t capacity;
    size_t received; /* body bytes so far, kept or not */
    size_t kept_max; /* what the route keeps */
    bool too_large;  /* over the body limit: 413 */
    bool truncated;  /* over kept_max: read and dropped */
    bool no_memory;  /* the kept copy could not grow: 503 */
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
    } else if (upload->no_memory) {
        gw_response_error(&response, 503, "UNAVAILABLE", "out of memory");
        response.retry_after_s = 1;
    } else if (route == NULL && path_match != NULL) {
        gw_response_error(&response, 405, "METHOD_NOT_ALLOWED", "method not allowed");
        allow = path_match->method;
    } else if (route == NULL) {
        gw_response_error(&response, 404, "NOT_FOUND", "no such route");
    } else {
        gw_request_t request = {method, url, upload->body ? upload->body : "", upload->length,
                                upload->truncated};
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

/* Grows the kept copy to hold `needed` bytes, doubling but never past kept_max + 1 (a NUL). */
static bool gw_upload_reserve(gw_upload_t *upload, size_t needed)
{
    if (needed <= upload->capacity) {
        return true;
    }
    size_t capacity = upload->capacity ? upload->capacity : GW_UPLOAD_CAPACITY_MIN;
    while (capacity < needed) {
        capacity *= 2;
    }
    if (capacity > upload->kept_max + 1) {
        capacity = upload->kept_max + 1;
    }
    char *bigger = realloc(upload->body, capacity);
    if (bigger == NULL) {
        return false;
    }
    upload->body = bigger;
    upload->capacity = capacity;
    return true;
}

/* Counts body bytes against the body limit and keeps the first kept_max of them for the
 * handler; past kept_max the copy is freed and the rest read and dropped, so an unauthenticated
 * body never holds more than kept_max bytes of memory. */
static void gw_upload_append(gw_upload_t *upload, const char *data, size_t size, size_t max)
{
    if (upload->too_large || size > max - upload->received) {
        upload->too_large = true;
        return;
    }
    upload->received += size;
    if (upload->truncated || upload->no_memory) {
        return;
    }
    if (size > upload->kept_max - upload->length) {
        upload->truncated = true;
        free(upload->body);
        upload->body = NULL;
        upload->length = upload->capacity = 0;
        return;
    }
    if (!gw_upload_reserve(upload, upload->length + size + 1)) {
        upload->no_memory = true;
        return;
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

/* The watchdog's slot of a connection (NULL when it is not followed). */
static gw_tracked_t *gw_tracked_of(struct MHD_Connection *connection)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return info ? info->socket_context : NULL;
}

/* Starts (since_ms ≥ 0) or stops (since_ms < 0) the receive clock of a connection. */
static void gw_receive_clock(gw_http_t *http, struct MHD_Connection *connection, double since_ms)
{
    gw_tracked_t *tracked = gw_tracked_of(connection);
    if (tracked != NULL) {
        pthread_mutex_lock(&http->lock);
        tracked->receiving_since_ms = since_ms;
        pthread_mutex_unlock(&http->lock);
    }
}

/* First call of a request: its state, and the body bytes its route keeps. */
static gw_upload_t *gw_upload_new(const gw_http_options_t *options, const char *url,
                                  const char *method)
{
    gw_upload_t *upload = calloc(1, sizeof(*upload));
    if (upload == NULL) {
        return NULL;
    }
    upload->started_ms = util_monotonic_ms();
    const gw_route_t *path_match = NULL;
    const gw_route_t *route = gw_route_find(options, url, method, &path_match);
    upload->kept_max = route ? route->body_kept_bytes_max : 0; /* 404/405 need no body */
    if (upload->kept_max > options->body_bytes_max) {
        upload->kept_max = options->body_bytes_max;
    }
    return upload;
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
        upload = gw_upload_new(&http->options, url, method);
        if (upload == NULL) {
            return MHD_NO;
        }
        *request_state = upload;
        if (gw_declared_too_large(connection, http->options.body_bytes_max)) {
            upload->too_large = true;
            /* A client waiting for "100 Continue" gets the 413 before sending the body; any
             * other client is answered after its body was read (and dropped), so it is not
             * cut off mid-send and sees the answer. */
            const char *expect =
                MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_EXPECT);
            if (expect != NULL && strcasecmp(expect, "100-continue") == 0) {
                gw_receive_clock(http, connection, -1);
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
    gw_receive_clock(http, connection, -1); /* all arrived: answering may take its time */
    return gw_answer_request(http, connection, url, method, upload);
}

static void gw_on_completed(void *context, struct MHD_Connection *connection, void **request_state,
                            enum MHD_RequestTerminationCode code)
{
    (void)code;
    gw_http_t *http = context;
    gw_upload_t *upload = *request_state;
    if (upload != NULL) {
        free(upload->body);
        free(upload);
        *request_state = NULL;
    }
    /* a kept-alive connection has the same time again for its next request */
    gw_receive_clock(http, connection, util_monotonic_ms());
}

/* Follows a new connection (STARTED) until MHD forgets it (CLOSED). */
static void gw_on_connection(void *context, struct MHD_Connection *connection,
                             void **socket_context, enum MHD_ConnectionNotificationCode code)
{
    gw_http_t *http = context;
    pthread_mutex_lock(&http->lock);
    if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        gw_tracked_t *tracked = *socket_context;
        if (tracked != NULL) {
            tracked->connection = NULL;
        }
        *socket_context = NULL;
        pthread_mutex_unlock(&http->lock);
        return;
    }
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
    gw_tracked_t *slot = NULL;
    for (size_t i = 0; info != NULL && i < http->options.connections_max && slot == NULL; i++) {
        slot = http->tracked[i].connection == NULL ? &http->tracked[i] : NULL;
    }
    if (slot != NULL) {
        *slot = (gw_tracked_t){connection, info->connect_fd, util_monotonic_ms(), false};
    } else if (info != NULL) {
        /* cannot happen (MHD admits at most connections_max); refuse rather than not follow */
        shutdown(info->connect_fd, SHUT_RDWR);
    }
    *socket_context = slot;
    pthread_mutex_unlock(&http->lock);
}

/* Shuts down every connection whose request has not fully arrived within the receive deadline;
 * its thread then sees end of stream and MHD closes it. Called with the lock held. */
static void gw_cut_late_connections(gw_http_t *http, double now_ms)
{
    double deadline_ms = (double)http->options.receive_deadline_s * 1000.0;
    for (size_t i = 0; i < http->options.connections_max; i++) {
        gw_tracked_t *tracked = &http->tracked[i];
        if (tracked->connection == NULL || tracked->cut || tracked->receiving_since_ms < 0 ||
            now_ms - tracked->receiving_since_ms <= deadline_ms) {
            continue;
        }
        tracked->cut = true;
        if (shutdown(tracked->fd, SHUT_RDWR) != 0) {
            continue; /* already shut down by its peer or by MHD: closing anyway */
        }
        SD_LOG(LOG_WARN, "receive_deadline_exceeded",
               LF_DBL("receiving_ms", now_ms - tracked->receiving_since_ms),
               LF_UINT("deadline_s", http->options.receive_deadline_s));
    }
}

static void *gw_watchdog_main(void *argument)
{
    gw_http_t *http = argument;
    pthread_mutex_lock(&http->lock);
    while (!http->stopping) {
        gw_cut_late_connections(http, util_monotonic_ms());
        struct timespec until =
            util_time_after_us(CLOCK_MONOTONIC, (int64_t)GW_WATCHDOG_INTERVAL_MS * 1000);
        pthread_cond_timedwait(&http->wake, &http->lock, &until);
    }
    pthread_mutex_unlock(&http->lock);
    return NULL;
}

/* The watchdog's lock, wake-up, table and thread; false (nothing left to free) on failure. */
static bool gw_watchdog_start(gw_http_t *http)
{
    if (!util_cond_init_monotonic(&http->wake)) {
        return false;
    }
    http->tracked = calloc(http->options.connections_max, sizeof(*http->tracked));
    if (http->tracked == NULL || pthread_mutex_init(&http->lock, NULL) != 0) {
        free(http->tracked);
        pthread_cond_destroy(&http->wake);
        return false;
    }
    if (pthread_create(&http->watchdog, NULL, gw_watchdog_main, http) != 0) {
        pthread_mutex_destroy(&http->lock);
        free(http->tracked);
        pthread_cond_destroy(&http->wake);
        return false;
    }
    return true;
}

static void gw_watchdog_stop(gw_http_t *http)
{
    pthread_mutex_lock(&http->lock);
    http->stopping = true;
    pthread_cond_signal(&http->wake);
    pthread_mutex_unlock(&http->lock);
    pthread_join(http->watchdog, NULL);
    pthread_mutex_destroy(&http->lock);
    pthread_cond_destroy(&http->wake);
    free(http->tracked);
}

static struct MHD_Daemon *gw_daemon_start(gw_http_t *http, struct sockaddr_in *address)
{
    const gw_http_options_t *options = &http->options;
    return MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
            MHD_USE_ERROR_LOG,
        0, NULL, NULL, gw_on_request, http, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)address,
        MHD_OPTION_CONNECTION_LIMIT, options->connections_max, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        options->connections_per_ip_max, MHD_OPTION_CONNECTION_TIMEOUT,
        options->connection_timeout_s, MHD_OPTION_NOTIFY_COMPLETED, gw_on_completed, http,
        MHD_OPTION_NOTIFY_CONNECTION, gw_on_connection, http, MHD_OPTION_LISTENING_ADDRESS_REUSE,
        (unsigned int)0, MHD_OPTION_END);
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
    if (!gw_watchdog_start(http)) {
        SD_LOG(LOG_ERROR, "watchdog_start_failed", LF_END);
        free(http);
        return NULL;
    }
    http->daemon = gw_daemon_start(http, &address);
    if (http->daemon == NULL) {
        SD_LOG(LOG_ERROR, "listen_failed", LF_STR("address", options->listen));
        gw_watchdog_stop(http);
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
     * flight finish their upstream call and answer before it returns; every connection has
     * been notified CLOSED by then, so the watchdog can go. */
    MHD_stop_daemon(http->daemon);
    gw_watchdog_stop(http);
    free(http);
}
