/* stockclient.h — libstockclient: a small, thread-safe C client for stockd over the gRPC C
 * core. One client holds one channel; any number of threads may call through it at once.
 * Every call takes a deadline and returns the gRPC status with its message and the decoded
 * google.rpc details (BadRequest, PreconditionFailure).
 *
 * Security (docs/api.md §6): a client may speak TLS (a CA bundle to verify stockd, and a
 * certificate + key of its own for mTLS) and may carry a bearer token, sent with every call as
 * `authorization: Bearer <token>` request metadata. The token is added to each call's initial
 * metadata by the library itself rather than through gRPC call credentials, because the gRPC
 * core refuses call credentials on a plaintext channel and stockd accepts tokens over plaintext
 * loopback. A write may also say whom it is made for (`stockd-on-behalf-of`, see
 * sc_call_options_t), which stockd records in the ledger.
 *
 * The caller must have called grpc_init() (and later grpc_shutdown()). */
#ifndef STOCKCLIENT_H
#define STOCKCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <grpc/grpc.h>

#include "google/rpc/error_details.pb-c.h"
#include "sd_limits.h"
#include "grpc/health/v1/health.pb-c.h"
#include "stockd/v1/inventory.pb-c.h"

typedef struct sc_client sc_client_t;

/* A generated request_id: "sc-" and 32 hex digits of randomness, with its NUL. */
#define SC_REQUEST_ID_GENERATED_BYTES 36
/* The longest request_id stockd accepts (docs/api.md §3), with its NUL. */
#define SC_REQUEST_ID_BYTES (SD_REQUEST_ID_BYTES_MAX + 1)

/* A client may be given several stockd replicas (docs/api.md 7): "A,B,C". */
#define SC_TARGETS_MAX 9
#define SC_TARGET_BYTES 256

/* The outcome of a call. code is a grpc_status_code (0 = OK). */
typedef struct {
    int code;
    char message[512];
    /* Replication: the leader's address a replica named (trailing metadata stockd-leader). */
    char leader[SC_TARGET_BYTES];
    /* Writes only: the request_id the call carried, generated when the request had none. When
     * the outcome is unknown (sc_outcome_unknown), re-sending the same request with this id is
     * safe: stockd applies it at most once. */
    char request_id[SC_REQUEST_ID_BYTES];
    Google__Rpc__BadRequest *bad_request;           /* owned; NULL when absent */
    Google__Rpc__PreconditionFailure *precondition; /* owned; NULL when absent */
} sc_status_t;

/* The longest bearer token, in bytes (stockd's limit too). */
#define SC_TOKEN_BYTES_MAX 4096
/* The largest PEM file (CA bundle, certificate, key) a client reads. */
#define SC_PEM_FILE_BYTES_MAX (1024 * 1024)
/* The largest token file; only its first line is the token, the rest is ignored. */
#define SC_TOKEN_FILE_BYTES_MAX (64 * 1024)
/* Room for any error text the library writes for a caller (sc_client_new_with and friends). */
#define SC_ERROR_BYTES 512
/* Request metadata the library adds to a call: authorization, stockd-on-behalf-of. */
#define SC_METADATA_MAX 2
_Static_assert(SC_TOKEN_BYTES_MAX < SC_TOKEN_FILE_BYTES_MAX, "a token file holds a token");

typedef struct {
    /* Open a connection of this client's own instead of sharing one with other clients of the
     * same target (GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL); load generators want this. */
    bool own_connection;
    /* PEM file paths; NULL or "" = not given. When tls_ca or tls_cert is given the channel
     * speaks TLS: stockd's certificate is verified against the certificates in tls_ca (the
     * gRPC default roots when only tls_cert is given), and tls_cert + tls_key (both or
     * neither) are presented as this client's certificate (mTLS). Each file is read once, at
     * most SC_PEM_FILE_BYTES_MAX bytes, and checked: the key must match the certificate. */
    const char *tls_ca;
    const char *tls_cert;
    const char *tls_key;
    /* Bearer token sent with every call; NULL or "" = none. 1..SC_TOKEN_BYTES_MAX printable
     * ASCII characters without spaces (sc_token_valid). The client keeps a copy. */
    const char *token;
    /* A token is sent only over TLS or to a loopback target: in plaintext over a network
     * anyone on the path could read it. This allows it anyway (--insecure). */
    bool allow_plaintext_token;
} sc_client_options_t;

/* Creates a client for target ("127.0.0.1:50051"). options may be NULL. Returns NULL when the
 * options are unusable (a TLS file cannot be read or holds no usable PEM, tls_cert without
 * tls_key or the reverse, an invalid token) or when out of memory, with the reason in
 * error_out (error_capacity bytes, SC_ERROR_BYTES is enough; error_out may be NULL). The
 * reason names the file but never quotes a token or key. The connection is made lazily, so
 * an unreachable stockd or a failed TLS handshake shows up as UNAVAILABLE on the first call.
 * Release the client with sc_client_free. */
sc_client_t *sc_client_new_with(const char *target, const sc_client_options_t *options,
                                char *error_out, size_t error_capacity);
/* sc_client_new_with without the reason (NULL on any failure); kept for existing callers. */
sc_client_t *sc_client_new(const char *target, const sc_client_options_t *options);
void sc_client_free(sc_client_t *client);

/* True when token is a usable bearer token: 1..SC_TOKEN_BYTES_MAX bytes, each printable ASCII
 * other than space (0x21..0x7E), so it fits an HTTP/2 header value as one word. Otherwise
 * false with the reason (which position is bad, never the token itself) in error_out (may be
 * NULL). */
bool sc_token_valid(const char *token, char *error_out, size_t error_capacity);

/* Reads a token file (--token-file): the token is its first line without the line end (LF or
 * CRLF), so tokens need not appear on a command line. The file may be at most
 * SC_TOKEN_FILE_BYTES_MAX bytes; the token must pass sc_token_valid. Writes the token into
 * token_out (token_capacity >= SC_TOKEN_BYTES_MAX + 1) and returns true; otherwise false with
 * the reason, naming the file, in error_out. */
bool sc_token_read_file(const char *path, char *token_out, size_t token_capacity, char *error_out,
                        size_t error_capacity);

/* Where a client's token comes from: a --token value, or the first line of a --token-file
 * (sc_token_read_file, into buffer), never both. */
typedef enum {
    SC_TOKEN_SOURCE_OK,       /* *token_out is the token, or "" when neither was given */
    SC_TOKEN_SOURCE_BOTH,     /* both were given */
    SC_TOKEN_SOURCE_FILE_BAD, /* the file is unusable: the reason is in error_out */
} sc_token_source_t;
sc_token_source_t sc_token_resolve(const char *token, const char *token_file,
                                   char buffer[SC_TOKEN_BYTES_MAX + 1], const char **token_out,
                                   char *error_out, size_t error_capacity);

/* For callers that drive calls of their own on the client's channel (stockbench's
 * asynchronous engine): the channel, owned by the client, and the request metadata every call
 * must send (the authorization entry when the client has a token). Fills metadata_out and
 * returns how many entries it holds (0..SC_METADATA_MAX); the entries point into the client
 * and stay valid until sc_client_free. */
grpc_channel *sc_client_channel(sc_client_t *client);
/* Replication, for callers that make their own calls on sc_client_channel (stockbench): a call
 * on `channel` ended with code, details and trailing metadata; when a replica refused it
 * unapplied ("not the leader") or could not be reached, the client's later calls go to the
 * leader it named, else to the next replica, as the library's own calls do. True when it
 * moved. */
bool sc_client_follow(sc_client_t *client, grpc_channel *channel, int code, grpc_slice details,
                      const grpc_metadata_array *trailing);
size_t sc_client_metadata(const sc_client_t *client, grpc_metadata metadata_out[SC_METADATA_MAX]);

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

/* Per-call options, for the *_with variants of the calls. Zero-initialise it
 * (sc_call_options_t options = {0}) so that fields added later keep their defaults. */
typedef struct {
    int64_t deadline_ms; /* how long the call may take, from now; must be > 0 */
    /* Whom the caller makes this call for, sent as `stockd-on-behalf-of` request metadata and
     * recorded by stockd in the ledger entries of a write (LedgerEntry.on_behalf_of), as
     * claimed: the caller's identity vouches for it. The gateway sends
     * "wix-instance:<instanceId>". NULL or "" = not sent; otherwise 1..SD_ON_BEHALF_OF_BYTES_MAX
     * bytes of printable ASCII (0x20..0x7E), else the call is not made and ends with
     * INVALID_ARGUMENT. The string only has to live until the call returns. */
    const char *on_behalf_of;
    /* Replication (a client given several replicas): after UNAVAILABLE or CANCELLED (a
     * stopping replica) — an unknown outcome
     * (the leader changed or went away mid-call), or no replica leading yet — send the same
     * request again, to the leader, with a growing pause, until the deadline. Only for
     * requests stockd applies at most once: writes whose request_id is set (the single-write
     * calls set one when it is missing; a Batch needs one in every write). */
    bool retry_unknown;
} sc_call_options_t;

/* sc_call_unary with per-call options (options must not be NULL). */
int sc_call_unary_with(sc_client_t *client, const char *method, const ProtobufCMessage *request,
                       const ProtobufCMessageDescriptor *response_descriptor,
                       ProtobufCMessage **response_out, const sc_call_options_t *options,
                       sc_status_t *status);

void sc_status_init(sc_status_t *status);
void sc_status_free(sc_status_t *status);
/* The gRPC status name of code: "OK", "INVALID_ARGUMENT", "UNAUTHENTICATED", ... (every
 * gRPC code, whether or not stockd's own status list has it); "UNRECOGNISED" for a number
 * that is no gRPC code. */
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
/* The three writes with per-call options (on_behalf_of); the plain forms above are these with
 * options {deadline_ms, NULL}. */
int sc_decrement_with(sc_client_t *client, const Stockd__V1__DecrementRequest *request,
                      Stockd__V1__DecrementResponse **response_out,
                      const sc_call_options_t *options, sc_status_t *status);
int sc_increment_with(sc_client_t *client, const Stockd__V1__IncrementRequest *request,
                      Stockd__V1__IncrementResponse **response_out,
                      const sc_call_options_t *options, sc_status_t *status);
int sc_set_stock_with(sc_client_t *client, const Stockd__V1__SetStockRequest *request,
                      Stockd__V1__SetStockResponse **response_out, const sc_call_options_t *options,
                      sc_status_t *status);
/* Batch: 1..SD_BATCH_WRITES_MAX writes in one call (README "Batch"), each applied or not as
 * if sent alone, in order, with its own result: sc_batch_result_code (a gRPC code, 0 = OK)
 * and, on OK, the response of its kind. Writes are sent as given — give each a request_id
 * (sc_request_id_generate) so that one whose outcome is unknown (sc_outcome_unknown of its
 * code, or of the whole call's) can be re-sent safely. On OK the response has one result per
 * write (anything else is reported as INTERNAL: outcome unknown). */
int sc_batch(sc_client_t *client, const Stockd__V1__BatchRequest *request,
             Stockd__V1__BatchResponse **response_out, int64_t deadline_ms, sc_status_t *status);
int sc_batch_with(sc_client_t *client, const Stockd__V1__BatchRequest *request,
                  Stockd__V1__BatchResponse **response_out, const sc_call_options_t *options,
                  sc_status_t *status);
/* A BatchResult's gRPC code (0 when its status is absent) and message ("" when none). */
int sc_batch_result_code(const Stockd__V1__BatchResult *result);
const char *sc_batch_result_message(const Stockd__V1__BatchResult *result);
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
