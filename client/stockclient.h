/* stockclient.h — libstockclient: a small, thread-safe C client for stockd over the gRPC C
 * core. One client holds one channel; any number of threads may call through it at once.
 * Every call takes a deadline and returns the gRPC status with its message and the decoded
 * google.rpc details (BadRequest, PreconditionFailure).
 *
 * The caller must have called grpc_init() (and later grpc_shutdown()). */
#ifndef STOCKCLIENT_H
#define STOCKCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "google/rpc/error_details.pb-c.h"
#include "sd_limits.h"
#include "grpc/health/v1/health.pb-c.h"
#include "stockd/v1/inventory.pb-c.h"

typedef struct sc_client sc_client_t;

/* A generated request_id: "sc-" and 32 hex digits of randomness, with its NUL. */
#define SC_REQUEST_ID_GENERATED_BYTES 36
/* The longest request_id stockd accepts (docs/api.md §3), with its NUL. */
#define SC_REQUEST_ID_BYTES (SD_REQUEST_ID_BYTES_MAX + 1)

/* The outcome of a call. code is a grpc_status_code (0 = OK). */
typedef struct {
    int code;
    char message[512];
    /* Writes only: the request_id the call carried, generated when the request had none. When
     * the outcome is unknown (sc_outcome_unknown), re-sending the same request with this id is
     * safe: stockd applies it at most once. */
    char request_id[SC_REQUEST_ID_BYTES];
    Google__Rpc__BadRequest *bad_request;           /* owned; NULL when absent */
    Google__Rpc__PreconditionFailure *precondition; /* owned; NULL when absent */
} sc_status_t;

typedef struct {
    /* Open a connection of this client's own instead of sharing one with other clients of the
     * same target (GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL); load generators want this. */
    bool own_connection;
} sc_client_options_t;

/* Creates a client for target ("127.0.0.1:50051"). options may be NULL. Returns NULL when out
 * of memory. The connection is made lazily. */
sc_client_t *sc_client_new(const char *target, const sc_client_options_t *options);
void sc_client_free(sc_client_t *client);

/* Frees the calling thread's completion queue now (it is freed at thread exit anyway); call
 * it on the main thread before grpc_shutdown() to leave nothing behind. */
void sc_thread_release(void);

/* Calls `method` ("/stockd.v1.Inventory/Decrement") with request; on OK unpacks the reply
 * with response_descriptor into *response_out (caller frees it with
 * protobuf_c_message_free_unpacked). Returns status->code. status must be released with
 * sc_status_free. */
int sc_call_unary(sc_client_t *client, const char *method, const ProtobufCMessage *request,
                  const ProtobufCMessageDescriptor *response_descriptor,
                  ProtobufCMessage **response_out, int64_t deadline_ms, sc_status_t *status);

void sc_status_init(sc_status_t *status);
void sc_status_free(sc_status_t *status);
/* "OK", "INVALID_ARGUMENT", ... */
const char *sc_code_name(int code);

/* Writes a fresh random request_id ("sc-" + 32 hex digits) into out. */
void sc_request_id_generate(char out[SC_REQUEST_ID_GENERATED_BYTES]);

/* True when a write that ended with this code may or may not have been applied: the
 * connection broke, the deadline passed (the write may still complete), stockd answered
 * "outcome unknown" after a storage failure, or the answer could not be received. Retry such
 * a write with the same request_id. */
bool sc_outcome_unknown(int code);

/* Typed wrappers. The three writes give the request a generated request_id when it has none
 * (status->request_id tells which), so that every write can be retried safely. */
int sc_decrement(sc_client_t *client, const Stockd__V1__DecrementRequest *request,
                 Stockd__V1__DecrementResponse **response_out, int64_t deadline_ms,
                 sc_status_t *status);
int sc_increment(sc_client_t *client, const Stockd__V1__IncrementRequest *request,
                 Stockd__V1__IncrementResponse **response_out, int64_t deadline_ms,
                 sc_status_t *status);
int sc_set_stock(sc_client_t *client, const Stockd__V1__SetStockRequest *request,
                 Stockd__V1__SetStockResponse **response_out, int64_t deadline_ms,
                 sc_status_t *status);
int sc_get_stock(sc_client_t *client, const Stockd__V1__GetStockRequest *request,
                 Stockd__V1__GetStockResponse **response_out, int64_t deadline_ms,
                 sc_status_t *status);
/* Server streaming: sends request to `method` and calls on_message for every message
 * (unpacked with descriptor; the callback owns it and frees it with
 * protobuf_c_message_free_unpacked). Returning false from the callback ends the stream (the
 * call is cancelled and the status is CANCELLED). deadline_ms <= 0 means no deadline. */
typedef bool sc_stream_fn(void *context, ProtobufCMessage *message);
int sc_call_stream(sc_client_t *client, const char *method, const ProtobufCMessage *request,
                   const ProtobufCMessageDescriptor *descriptor, sc_stream_fn *on_message,
                   void *context, int64_t deadline_ms, sc_status_t *status);

int sc_list_stock(sc_client_t *client, const Stockd__V1__ListStockRequest *request,
                  Stockd__V1__ListStockResponse **response_out, int64_t deadline_ms,
                  sc_status_t *status);
int sc_history(sc_client_t *client, const Stockd__V1__HistoryRequest *request,
               Stockd__V1__HistoryResponse **response_out, int64_t deadline_ms,
               sc_status_t *status);

/* Pages through ListStock with `request`'s filters (its page_token is where to start), calling
 * on_page with each page's levels (valid only during the call); on_page returning false stops
 * early. Returns 0, or the gRPC code of the call that failed (details in status, which the
 * caller releases with sc_status_free). */
typedef bool sc_levels_fn(void *context, Stockd__V1__StockLevel *const *levels, size_t count);
int sc_list_all(sc_client_t *client, const Stockd__V1__ListStockRequest *request,
                sc_levels_fn *on_page, void *context, int64_t deadline_ms, sc_status_t *status);

/* Health/Check for service ("" = the server); *serving_out = true when SERVING. */
int sc_health_check(sc_client_t *client, const char *service, bool *serving_out,
                    int64_t deadline_ms, sc_status_t *status);

#endif
