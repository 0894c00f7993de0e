/* http.h — the HTTP glue of stockd-gateway on libmicrohttpd: one thread per connection (a
 * slow client or a slow upstream call holds only its own thread), a connection limit in all and
 * per client address, an idle timeout, an absolute deadline for receiving each request (a
 * client trickling bytes never goes idle), a body limit, a per-route cap on the body bytes kept
 * in memory, and dispatch through one route table. */
#ifndef STOCKD_GW_HTTP_H
#define STOCKD_GW_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "answer.h"

typedef struct {
    const char *method;
    const char *path; /* without the query string */
    const char *body; /* NUL-terminated copy of the request body (what the route keeps) */
    size_t body_length;
    bool body_truncated; /* the body was longer than the route keeps: `body` is empty */
} gw_request_t;

typedef struct {
    unsigned int status;
    const char *content_type;
    char body[1024];
    size_t body_length;
    char *dynamic_body; /* when set (malloc'd), sent instead of body and freed */
    size_t dynamic_length;
    int retry_after_s;                       /* > 0: Retry-After header */
    char reason[GW_REASON_HEADER_BYTES_MAX]; /* non-empty: X-Stockd-Reason header + log */
    /* for the log line of a Wix call (never sent) */
    char tenant[65];
    char request_id[129];
    char order_id[129];
} gw_response_t;

typedef void gw_route_handler_fn(void *context, const gw_request_t *request,
                                 gw_response_t *response);

typedef struct {
    const char *path;
    bool suffix; /* match the end of the path (Wix appends to any base URI) */
    const char *method;
    const char *name; /* route label for metrics and logs */
    gw_route_handler_fn *handler;
    /* body bytes kept for the handler (at most the server's body limit); a longer body is read,
     * counted against the body limit and dropped, and the handler sees body_truncated */
    size_t body_kept_bytes_max;
} gw_route_t;

typedef struct {
    const char *listen; /* HOST:PORT, port 0 = any free port */
    size_t body_bytes_max;
    unsigned int connections_max;
    unsigned int connections_per_ip_max; /* 0 = no per-address limit */
    unsigned int connection_timeout_s;   /* idle */
    /* from a connection's start, or the end of its previous request, until its next request
     * (headers and body) has fully arrived; the connection is closed when it passes */
    unsigned int receive_deadline_s;
    const gw_route_t *routes;
    size_t routes_count;
    void *context; /* passed to every handler */
    /* called after each answer, for metrics (may be NULL) */
    void (*observe)(void *context, const char *route, unsigned int status, double latency_ms);
} gw_http_options_t;

typedef struct gw_http gw_http_t;

/* Starts serving; the bound port goes to *port_out. NULL on failure (reason logged). */
gw_http_t *gw_http_start(const gw_http_options_t *options, int *port_out);
/* Stops accepting, lets in-flight requests finish, frees everything. */
void gw_http_stop(gw_http_t *http);

/* Fills a JSON error response: {"error":{"code":…,"message":…}}. */
void gw_response_error(gw_response_t *response, unsigned int status, const char *code,
                       const char *message);

#endif
