/* server.h — the gRPC C-core plumbing of stockd: completion queue, polling threads, the
 * call life cycle and replies. The RPC handlers (handlers.c) see only this interface. */
#ifndef STOCKD_SERVER_H
#define STOCKD_SERVER_H

#include <grpc/grpc_security.h>
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "metrics.h"
#include "replication.h"
#include "rpc_status.h"

/* The services handlers use, by name only: the plumbing never looks inside them. */
typedef struct sd_storage sd_storage_t;
typedef struct sd_writer sd_writer_t;
typedef struct sd_checkpoints sd_checkpoints_t;

typedef struct sd_call sd_call_t;
typedef struct sd_server sd_server_t;

typedef enum { SD_METHOD_UNARY, SD_METHOD_SERVER_STREAM } sd_method_kind_t;

/* Handles one call whose request message (bytes, owned by the call) has arrived. The handler
 * must eventually answer with exactly one sd_call_reply_* (unary) or sd_call_stream_* end. */
typedef void sd_handler_fn(sd_call_t *call, const uint8_t *request, size_t request_length);

typedef struct {
    const char *path; /* "/package.Service/Method" */
    const char *name; /* metrics/log label */
    sd_method_kind_t kind;
    sd_handler_fn *handler;
    /* grpc.health.v1: never refused for the request-byte budget (probes must answer under
     * load), and its Watch streams have a limit of their own. */
    bool health;
    /* The role a caller needs (SD_ROLE_NONE: no identity, for health). SD_ROLE_ADMIN methods
     * are served only on the admin listener. */
    sd_role_t role;
} sd_method_t;

/* The method table (handlers.c). */
extern const sd_method_t sd_methods[];
extern const size_t sd_methods_count;

typedef struct {
    const char *listen;        /* "127.0.0.1:50051"; port 0 = any free port */
    int polling_threads_count; /* threads draining the completion queue */
    size_t message_bytes_max;  /* largest request accepted */
    /* Bytes of requests held at once (received, and unpacked, until the reply); beyond it a
     * call is answered RESOURCE_EXHAUSTED before anything else is done for it. */
    size_t inflight_bytes_max;
    int streams_per_connection_max; /* HTTP/2 concurrent streams per connection */
    size_t grpc_memory_bytes_max;   /* the gRPC core's resource quota (transport buffers) */
    size_t watches_max;             /* open Inventory/Watch streams */
    size_t health_watches_max;      /* open Health/Watch streams */
    /* TLS credentials (taken over by the server), or NULL for plaintext. */
    grpc_server_credentials *credentials;
    /* Who may call (shared; must outlive the server). */
    sd_auth_t *auth;
    /* The admin listener serves stockd.v1.Admin (and health); the public one everything
     * else. */
    bool admin;
} sd_server_options_t;

/* Everything handlers may use. */
typedef struct sd_watch_hub sd_watch_hub_t;

typedef struct {
    sd_storage_t *storage;
    sd_writer_t *writer;
    sd_metrics_t *metrics;
    sd_watch_hub_t *watch_hub;
    sd_checkpoints_t *checkpoints; /* Admin: the backup directory */
    sd_replication_t *replication; /* NULL: one node */
} sd_services_t;

/* Creates and starts the server; the bound address is logged and stored in bound_out.
 * Returns NULL on failure (logged). */
sd_server_t *sd_server_start(const sd_server_options_t *options, const sd_services_t *services,
                             char *bound_out, size_t bound_capacity);
/* Stops accepting calls, ends health watches, waits up to grace_ms for in-flight calls (then
 * cancels them), joins the polling threads and frees the server. */
void sd_server_stop(sd_server_t *server, int64_t grace_ms);

/* ---- for handlers ---- */
const sd_services_t *sd_call_services(const sd_call_t *call);
/* The caller's deadline in unix microseconds (INT64_MAX when none). */
int64_t sd_call_deadline_us(const sd_call_t *call);
/* Per-call storage for the handler's own state (a write job): SD_CALL_SLOT_BYTES, aligned for
 * any type, zeroed when the call starts, valid until the call is freed. release (may be NULL)
 * is called with the slot when the call is freed, after the reply. */
#define SD_CALL_SLOT_BYTES 1024
void *sd_call_slot(sd_call_t *call, void (*release)(void *slot));
/* Names the tenant and request_id the call's log line carries (views that must live as long as
 * the call, e.g. into its kept request message). */
void sd_call_set_log_context(sd_call_t *call, const char *tenant_id, const char *request_id);
/* For long calls (Watch), before sending more: true when the caller is still allowed
 * tenant_id. After a policy reload the caller is identified again; a revoked identity, a lost
 * role or tenant gives false with the status (UNAUTHENTICATED, PERMISSION_DENIED) and message
 * to end the stream with. */
bool sd_call_still_authorized(sd_call_t *call, const char *tenant_id, sd_status_t *status_out,
                              char *message, size_t capacity);
/* For a call carrying requests of several tenants (Batch), per request: true when the caller
 * may touch tenant_id; otherwise false with the PERMISSION_DENIED message (the caller logs,
 * once per call: a Batch of 1024 refused writes must not write 1024 lines). */
bool sd_call_allows_tenant(sd_call_t *call, const char *tenant_id, char *message, size_t capacity);
/* The caller's identity (the policy's name; "" without a policy) and what it said it acted
 * for (the stockd-on-behalf-of metadata; "" when absent). Valid until the call is freed. */
const char *sd_call_actor(const sd_call_t *call);
const char *sd_call_on_behalf_of(const sd_call_t *call);
/* Takes bytes the handler holds for the call (a Batch's jobs) from the request-byte budget,
 * given back when the call is freed; false, taking nothing, when they do not fit. */
bool sd_call_charge_bytes(sd_call_t *call, size_t bytes);
/* The answer (RESOURCE_EXHAUSTED) to a call refused for the request-byte budget. */
#define SD_BUDGET_MESSAGE "stockd holds too many request bytes right now; retry with backoff"

/* Unpacks the request into a message that lives until the call ends. Its memory counts
 * against the server's request-byte budget: NULL with *status_out SD_RESOURCE_EXHAUSTED when
 * the budget is spent, SD_INVALID_ARGUMENT when the bytes are not a valid message. It also
 * authorizes the call: NULL with SD_PERMISSION_DENIED (the call already answered) when the
 * caller lacks the method's role or the request's tenant_id. */
ProtobufCMessage *sd_call_unpack(sd_call_t *call, const ProtobufCMessageDescriptor *descriptor,
                                 const uint8_t *bytes, size_t length, sd_status_t *status_out);
/* Replies OK with a serialized response (copied). */
void sd_call_reply_bytes(sd_call_t *call, const uint8_t *bytes, size_t length);
/* Replies OK with a message (serialized here). */
void sd_call_reply_message(sd_call_t *call, const ProtobufCMessage *message);
/* Replies with error->status, its message and its google.rpc details. */
void sd_call_reply_error(sd_call_t *call, const sd_error_t *error);
/* Replies with a status and a plain message (no details). */
void sd_call_reply_status(sd_call_t *call, sd_status_t status, const char *message);

/* ---- server streaming ----
 * A stream is opened once, then messages are sent one at a time (the next only after the
 * SENT event of the previous), and it is ended with a status (or released after CLOSED).
 * Events arrive on a polling thread: SENT when a send finished (ok tells whether it went
 * out), CLOSED exactly once when the call is over (client gone, status sent, or cancelled at
 * shutdown). The call stays valid until the CLOSED event has been delivered. */
typedef enum { SD_STREAM_SENT, SD_STREAM_CLOSED } sd_stream_event_t;
typedef void sd_stream_event_fn(void *context, sd_stream_event_t event, bool ok);

/* Opens the stream; false (and the call answered) when too many streams are open or the
 * server is stopping. The handler's reference passes to the stream owner, who gives it
 * back with sd_call_stream_end or sd_call_stream_release. */
bool sd_call_stream_open(sd_call_t *call, sd_stream_event_fn *on_event, void *context);
/* Sends one message (serialized bytes, copied). False when it could not be started. */
bool sd_call_stream_send(sd_call_t *call, const uint8_t *bytes, size_t length);
/* Ends the stream with a status and gives back the owner's reference. */
void sd_call_stream_end(sd_call_t *call, sd_status_t status, const char *message);
/* Gives back the owner's reference without a status (after CLOSED). */
void sd_call_stream_release(sd_call_t *call);

/* Sends one message and keeps the call open until the client goes away or the server
 * stops (the health Watch, whose status never changes while serving). */
void sd_call_stream_hold(sd_call_t *call, const ProtobufCMessage *first_message);

/* Sends message (serialized) on every open Health/Watch stream: a change of the serving status
 * (NOT_SERVING after a storage failure), as the health protocol streams it. */
void sd_server_broadcast_health(sd_server_t *server, const uint8_t *message, size_t length);

/* Health/Watch streams learn that stockd stopped serving (handlers.c: the message is the
 * health protocol's). */
void sd_health_report_not_serving(sd_server_t *server);
/* Either status (replication: a replica that lost its leader, or caught up again). */
void sd_health_report(sd_server_t *server, bool serving);

/* True once shutdown has begun (health reports NOT_SERVING). */
bool sd_server_is_stopping(const sd_call_t *call);

#endif
