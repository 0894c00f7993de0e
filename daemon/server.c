/* server.c — see server.h.
 *
 * Life of a call: a call object is posted to the server for one method
 * (grpc_server_request_registered_call). When its NEW event arrives, a fresh object is
 * posted in its place at once, and the handler runs. The reply is one batch (initial
 * metadata, message, status, close); when that batch completes the object is freed. Every
 * outstanding batch holds a reference, so a streaming call with two batches in flight is
 * freed only after both finish. */
#include "server.h"

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "sd_limits.h"
#include "storage.h"
#include "util.h"

#define SD_CALLS_POSTED_PER_METHOD 16
#define SD_POLLING_THREADS_MAX 16
#define SD_HEALTH_REQUEST_BYTES_MAX 1024
#define SD_CONNECTION_IDLE_MS (5 * 60 * 1000)
#define SD_HANDSHAKE_TIMEOUT_MS (10 * 1000)

typedef enum {
    SD_TAG_NEW_CALL,      /* a registered call arrived (or the post failed at shutdown) */
    SD_TAG_UNKNOWN_CALL,  /* a call for an unregistered method arrived */
    SD_TAG_BATCH_DONE,    /* a batch of ours finished: drop its reference */
    SD_TAG_STREAM_SENT,   /* a stream message went out (or failed) */
    SD_TAG_STREAM_CLOSED, /* a stream ended (client left, status sent, or cancelled) */
    SD_TAG_SHUTDOWN,      /* grpc_server_shutdown_and_notify finished */
} sd_tag_kind_t;

typedef struct {
    sd_tag_kind_t kind;
    void *owner;
} sd_tag_t;

/* A serialized HealthCheckResponse (a status enum): a few bytes. */
#define SD_HEALTH_MESSAGE_BYTES 16

typedef struct sd_server sd_server_t;
typedef struct sd_call sd_call_t;
static void sd_server_health_catch_up(sd_server_t *server, sd_call_t *call);

struct sd_call {
    sd_server_t *server;
    const sd_method_t *method; /* NULL for unknown methods */
    size_t method_index;
    sd_tag_t new_tag;
    sd_tag_t done_tag;
    sd_tag_t closed_tag;
    sd_tag_t sent_tag;
    _Atomic int refs;
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array request_metadata;
    grpc_call_details details; /* unknown methods only */
    grpc_byte_buffer *payload;
    grpc_byte_buffer *response;
    grpc_slice status_message;
    grpc_slice status_details;
    bool has_status_details;
    grpc_metadata trailing[2];
    char leader_hint[SD_REPLICATION_ADDRESS_MAX]; /* stockd-leader (replication) */
    int cancelled;
    double started_ms;
    char log_message[256]; /* the status message, truncated, for the log line */
    ProtobufCMessage *kept_message;
    ProtobufCAllocator allocator; /* counts the unpacked message's bytes into charged_bytes */
    size_t charged_bytes;         /* held against the server's request-byte budget */
    bool budget_exceeded;         /* the unpack stopped at the budget (or out of memory) */
    _Alignas(max_align_t) unsigned char slot[SD_CALL_SLOT_BYTES]; /* the handler's */
    void (*slot_release)(void *slot);
    const char *log_tenant_id; /* views for the log line (sd_call_set_log_context) */
    const char *log_request_id;
    bool watching; /* in the server's watch list */
    bool metadata_sent;
    grpc_byte_buffer *stream_message; /* the message in flight */
    _Atomic bool send_in_flight;      /* between sd_call_stream_send and its SENT event */
    /* Health/Watch: the last status message sent on this stream (under the server mutex) */
    uint8_t health_sent[SD_HEALTH_MESSAGE_BYTES];
    size_t health_sent_length;
    sd_stream_event_fn *on_stream_event;
    void *stream_context;
    sd_grant_t grant; /* who the caller is, while the call lives */
    /* a known identity without the method's role: refused once the request names its tenant
     * (sd_call_unpack), so the answer can name it too */
    bool role_denied;
    char on_behalf_of[SD_ON_BEHALF_OF_BYTES_MAX + 1];
};

struct sd_server {
    grpc_server *grpc;
    grpc_completion_queue *queue;
    void *registered[SD_METRICS_METHODS_MAX];
    sd_services_t services;
    pthread_t threads[SD_POLLING_THREADS_MAX];
    int threads_count;
    sd_tag_t shutdown_tag;
    pthread_mutex_t mutex;
    pthread_cond_t shutdown_done;
    bool shutdown_finished;
    _Atomic bool stopping;
    sd_server_options_t options;
    _Atomic size_t inflight_bytes;
    /* call objects not yet freed: a thread that answered a call (the writer) may still hold
     * one after gRPC's shutdown is complete, so the server is freed only once this is 0 */
    _Atomic size_t calls_alive;
    /* Starting an operation on a call queues its completion on `queue`, which gRPC aborts on
     * once the queue is shut down. A handler can still be answering then (its client went away,
     * so gRPC's shutdown did not wait for it): every start holds this for reading and checks
     * queue_closed, and the queue is shut down only after queue_closed is set under it. */
    pthread_rwlock_t queue_gate;
    bool queue_closed;
    sd_call_t **watches; /* every open stream, for shutdown: watches_max + health_watches_max */
    size_t watches_count;
    size_t open_streams[2]; /* [health]: open Inventory/Watch and Health/Watch streams */
    /* the last status broadcast to Health/Watch streams (under mutex; length 0 = none yet): a
     * stream that was busy sending gets it when its send completes */
    uint8_t health_latest[SD_HEALTH_MESSAGE_BYTES];
    size_t health_latest_length;
    grpc_resource_quota *quota;
};

/* ---- call objects ---- */

static sd_call_t *sd_call_new(sd_server_t *server, const sd_method_t *method, size_t index)
{
    sd_call_t *call = calloc(1, sizeof(*call));
    if (call == NULL) {
        return NULL;
    }
    atomic_fetch_add(&server->calls_alive, 1);
    call->server = server;
    call->method = method;
    call->method_index = index;
    call->new_tag = (sd_tag_t){method ? SD_TAG_NEW_CALL : SD_TAG_UNKNOWN_CALL, call};
    call->done_tag = (sd_tag_t){SD_TAG_BATCH_DONE, call};
    call->closed_tag = (sd_tag_t){SD_TAG_STREAM_CLOSED, call};
    call->sent_tag = (sd_tag_t){SD_TAG_STREAM_SENT, call};
    atomic_init(&call->refs, 1);
    grpc_metadata_array_init(&call->request_metadata);
    grpc_call_details_init(&call->details);
    call->status_message = grpc_empty_slice();
    call->status_details = grpc_empty_slice();
    return call;
}

/* Takes bytes from the request-byte budget for this call (given back when it is freed).
 * False, taking nothing, when they do not fit. */
static bool sd_call_charge(sd_call_t *call, size_t bytes)
{
    sd_server_t *server = call->server;
    size_t held = atomic_fetch_add(&server->inflight_bytes, bytes);
    if (held + bytes > server->options.inflight_bytes_max) {
        atomic_fetch_sub(&server->inflight_bytes, bytes);
        return false;
    }
    call->charged_bytes += bytes;
    return true;
}

bool sd_call_charge_bytes(sd_call_t *call, size_t bytes)
{
    return sd_call_charge(call, bytes);
}

/* protobuf-c's allocator for the call's request: every byte of the unpacked message counts
 * against the request-byte budget, and an allocation that would pass it fails, so the unpack
 * stops there. Unpacking can inflate a message ~50x (an 8 MB request of empty sub-messages
 * became 420 MB), so the budget must hold while unpacking, not only after. */
static void *sd_call_allocate(void *context, size_t size)
{
    sd_call_t *call = context;
    if (!call->method->health && !sd_call_charge(call, size)) { /* health: bounded at receipt */
        call->budget_exceeded = true;
        return NULL;
    }
    void *pointer = malloc(size);
    if (pointer == NULL) {
        call->budget_exceeded = true; /* out of memory: also "retry later", not a bad request */
    }
    return pointer;
}

static void sd_call_deallocate(void *context, void *pointer)
{
    (void)context;
    free(pointer); /* the bytes stay charged until the call is freed */
}

/* The PERMISSION_DENIED message: identity, method, tenant (may be NULL) and missing role. */
static void sd_call_denial_message(const sd_call_t *call, const char *tenant_id, char *message,
                                   size_t capacity)
{
    char tenant[96] = "", role[48] = "";
    if (tenant_id != NULL) {
        snprintf(tenant, sizeof(tenant), " for tenant \"%.64s\"", tenant_id);
    }
    if (call->role_denied) {
        snprintf(role, sizeof(role), ": it lacks the %s role", sd_role_name(call->method->role));
    }
    snprintf(message, capacity, "identity \"%s\" may not call %s%s%s", sd_grant_name(&call->grant),
             call->method->name, tenant, role);
}

/* Answers PERMISSION_DENIED unless the caller holds the method's role and may touch
 * tenant_id (NULL: the request names no tenant); the answer names identity, method and
 * tenant. */
static bool sd_call_authorize_tenant(sd_call_t *call, const char *tenant_id)
{
    if (tenant_id != NULL && call->log_tenant_id == NULL) {
        call->log_tenant_id = tenant_id; /* refusals are logged with the tenant too */
    }
    if (!call->role_denied &&
        (tenant_id == NULL || sd_grant_allows_tenant(&call->grant, tenant_id))) {
        return true;
    }
    char message[384];
    sd_call_denial_message(call, tenant_id, message, sizeof(message));
    sd_call_reply_status(call, SD_PERMISSION_DENIED, message);
    return false;
}

bool sd_call_allows_tenant(sd_call_t *call, const char *tenant_id, char *message, size_t capacity)
{
    SD_ASSERT(!call->role_denied); /* sd_call_unpack refused the call already */
    if (sd_grant_allows_tenant(&call->grant, tenant_id)) {
        return true;
    }
    sd_call_denial_message(call, tenant_id, message, capacity);
    return false;
}

/* The tenant_id a request names (every request that names a tenant names it so), or NULL. */
static const char *sd_message_tenant(const ProtobufCMessage *message)
{
    const ProtobufCFieldDescriptor *field =
        protobuf_c_message_descriptor_get_field_by_name(message->descriptor, "tenant_id");
    if (field == NULL) {
        return NULL;
    }
    SD_ASSERT(field->type == PROTOBUF_C_TYPE_STRING && field->label == PROTOBUF_C_LABEL_NONE);
    return *(char *const *)((const char *)message + field->offset);
}

ProtobufCMessage *sd_call_unpack(sd_call_t *call, const ProtobufCMessageDescriptor *descriptor,
                                 const uint8_t *bytes, size_t length, sd_status_t *status_out)
{
    call->allocator = (ProtobufCAllocator){sd_call_allocate, sd_call_deallocate, call};
    ProtobufCMessage *message =
        protobuf_c_message_unpack(descriptor, &call->allocator, length, bytes);
    if (message == NULL) {
        *status_out = call->budget_exceeded ? SD_RESOURCE_EXHAUSTED : SD_INVALID_ARGUMENT;
        return NULL;
    }
    call->kept_message = message;
    /* authorization here, where every handler gets its request: none can forget it */
    if (!sd_call_authorize_tenant(call, sd_message_tenant(message))) {
        *status_out = SD_PERMISSION_DENIED;
        return NULL;
    }
    *status_out = SD_OK;
    return message;
}

static void sd_call_free(sd_call_t *call)
{
    if (call->kept_message != NULL) {
        protobuf_c_message_free_unpacked(call->kept_message, &call->allocator);
    }
    atomic_fetch_sub(&call->server->inflight_bytes, call->charged_bytes);
    if (call->slot_release != NULL) {
        call->slot_release(call->slot);
    }
    sd_grant_release(&call->grant); /* after the slot: a write job views the actor's name */
    grpc_metadata_array_destroy(&call->request_metadata);
    grpc_call_details_destroy(&call->details);
    if (call->payload != NULL) {
        grpc_byte_buffer_destroy(call->payload);
    }
    if (call->response != NULL) {
        grpc_byte_buffer_destroy(call->response);
    }
    if (call->stream_message != NULL) {
        grpc_byte_buffer_destroy(call->stream_message);
    }
    grpc_slice_unref(call->status_message);
    grpc_slice_unref(call->status_details);
    if (call->call != NULL) {
        grpc_call_unref(call->call);
    }
    sd_server_t *server = call->server;
    free(call);
    atomic_fetch_sub(&server->calls_alive, 1); /* last: sd_server_stop may free server now */
}

static void sd_call_unref(sd_call_t *call)
{
    if (atomic_fetch_sub(&call->refs, 1) == 1) {
        sd_call_free(call);
    }
}

/* Posts a call object waiting for the next call of method `index` (or unknown methods). */
static void sd_server_post(sd_server_t *server, const sd_method_t *method, size_t index)
{
    if (atomic_load(&server->stopping)) {
        return;
    }
    sd_call_t *call = sd_call_new(server, method, index);
    if (call == NULL) {
        SD_LOG(LOG_ERROR, "out_of_memory", LF_STR("where", "post call"));
        return;
    }
    grpc_call_error error;
    if (method != NULL) {
        error = grpc_server_request_registered_call(
            server->grpc, server->registered[index], &call->call, &call->deadline,
            &call->request_metadata, &call->payload, server->queue, server->queue, &call->new_tag);
    } else {
        error = grpc_server_request_call(server->grpc, &call->call, &call->details,
                                         &call->request_metadata, server->queue, server->queue,
                                         &call->new_tag);
    }
    if (error != GRPC_CALL_OK) {
        SD_LOG(LOG_ERROR, "grpc_request_call_failed", LF_INT("error", error));
        sd_call_free(call);
    }
}

/* ---- replies ---- */

/* Starts a batch of operations on the call unless the completion queue is closed (stopping:
 * the answer is dropped, and the client sees the call end without one). True if started. */
static bool sd_call_start_ops(sd_call_t *call, const grpc_op *ops, size_t ops_count, sd_tag_t *tag)
{
    sd_server_t *server = call->server;
    atomic_fetch_add(&call->refs, 1);
    pthread_rwlock_rdlock(&server->queue_gate);
    grpc_call_error error = server->queue_closed
                                ? GRPC_CALL_ERROR_COMPLETION_QUEUE_SHUTDOWN
                                : grpc_call_start_batch(call->call, ops, ops_count, tag, NULL);
    pthread_rwlock_unlock(&server->queue_gate);
    if (error != GRPC_CALL_OK) {
        sd_call_unref(call);
        return false;
    }
    return true;
}

static void sd_call_start(sd_call_t *call, const grpc_op *ops, size_t ops_count, sd_tag_t *tag)
{
    if (!sd_call_start_ops(call, ops, ops_count, tag) && !atomic_load(&call->server->stopping)) {
        SD_LOG(LOG_ERROR, "grpc_start_batch_failed", LF_STR("where", "answer"));
    }
}

/* Replication: on a replica that does not lead, the leader's gRPC address (docs/api.md 7),
 * so a client can go there; false on one node, on the leader, or with no leader known. */
static bool sd_call_leader_hint(sd_call_t *call)
{
    sd_replication_t *replication = call->server->services.replication;
    if (replication == NULL) {
        return false;
    }
    sd_replication_status_t status;
    sd_replication_status(replication, &status);
    if (status.leader || status.leader_grpc[0] == '\0') {
        return false;
    }
    snprintf(call->leader_hint, sizeof(call->leader_hint), "%s", status.leader_grpc);
    return true;
}

static void sd_call_finish(sd_call_t *call, sd_status_t status)
{
    double latency_ms = util_monotonic_ms() - call->started_ms;
    const char *name = call->method ? call->method->name : "unknown";
    sd_metrics_count_request(call->server->services.metrics, call->method_index, status,
                             latency_ms);
    /* writes carry the client's request_id and tenant, so a line can be matched to a call */
    const char *request_id = call->log_request_id ? call->log_request_id : "";
    const char *tenant = call->log_tenant_id ? call->log_tenant_id : "";
    const char *actor = sd_grant_name(&call->grant);
    if (status == SD_OK) {
        SD_LOG(LOG_DEBUG, "rpc", LF_STR("method", name), LF_STR("status", "OK"),
               LF_STR("tenant", tenant), LF_STR("request_id", request_id), LF_STR("actor", actor),
               LF_STR("on_behalf_of", call->on_behalf_of), LF_DBL("latency_ms", latency_ms));
    } else {
        SD_LOG(LOG_INFO, "rpc", LF_STR("method", name), LF_STR("status", sd_status_name(status)),
               LF_STR("tenant", tenant), LF_STR("request_id", request_id), LF_STR("actor", actor),
               LF_STR("on_behalf_of", call->on_behalf_of), LF_STR("message", call->log_message),
               LF_DBL("latency_ms", latency_ms));
    }
    grpc_op ops[4];
    size_t count = 0;
    memset(ops, 0, sizeof(ops));
    ops[count++].op = GRPC_OP_SEND_INITIAL_METADATA;
    if (call->response != NULL) {
        ops[count].op = GRPC_OP_SEND_MESSAGE;
        ops[count++].data.send_message.send_message = call->response;
    }
    ops[count].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[count].data.send_status_from_server.status = (grpc_status_code)sd_status_grpc_code(status);
    ops[count].data.send_status_from_server.status_details =
        GRPC_SLICE_IS_EMPTY(call->status_message) ? NULL : &call->status_message;
    size_t trailing = 0;
    if (call->has_status_details) {
        call->trailing[trailing].key = grpc_slice_from_static_string("grpc-status-details-bin");
        call->trailing[trailing++].value = call->status_details;
    }
    if (status == SD_UNAVAILABLE && sd_call_leader_hint(call)) {
        call->trailing[trailing].key = grpc_slice_from_static_string("stockd-leader");
        call->trailing[trailing++].value = grpc_slice_from_static_string(call->leader_hint);
    }
    ops[count].data.send_status_from_server.trailing_metadata_count = trailing;
    ops[count].data.send_status_from_server.trailing_metadata = trailing ? call->trailing : NULL;
    count++;
    ops[count].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[count++].data.recv_close_on_server.cancelled = &call->cancelled;
    sd_call_start(call, ops, count, &call->done_tag);
    sd_call_unref(call); /* the handler's reference */
}

void sd_call_reply_bytes(sd_call_t *call, const uint8_t *bytes, size_t length)
{
    SD_ASSERT(!call->role_denied); /* a handler answered without sd_call_unpack's check */
    grpc_slice slice = grpc_slice_from_copied_buffer((const char *)bytes, length);
    call->response = grpc_raw_byte_buffer_create(&slice, 1);
    grpc_slice_unref(slice);
    sd_call_finish(call, SD_OK);
}

void sd_call_reply_message(sd_call_t *call, const ProtobufCMessage *message)
{
    SD_ASSERT(!call->role_denied);
    size_t length = protobuf_c_message_get_packed_size(message);
    grpc_slice slice = grpc_slice_malloc(length);
    protobuf_c_message_pack(message, GRPC_SLICE_START_PTR(slice));
    call->response = grpc_raw_byte_buffer_create(&slice, 1);
    grpc_slice_unref(slice);
    sd_call_finish(call, SD_OK);
}

void sd_call_reply_status(sd_call_t *call, sd_status_t status, const char *message)
{
    call->status_message = grpc_slice_from_copied_string(message);
    snprintf(call->log_message, sizeof(call->log_message), "%.255s", message);
    sd_call_finish(call, status);
}

void sd_call_reply_error(sd_call_t *call, const sd_error_t *error)
{
    uint8_t *details = NULL;
    size_t details_length = 0;
    if (sd_error_pack_status(error, &details, &details_length)) {
        call->status_details = grpc_slice_from_copied_buffer((const char *)details, details_length);
        call->has_status_details = true;
        free(details);
    }
    sd_call_reply_status(call, error->status,
                         error->message[0] ? error->message : sd_status_message(error->status));
}

/* ---- streams (health Watch) ---- */

static void sd_server_watch_remove(sd_server_t *server, sd_call_t *call)
{
    pthread_mutex_lock(&server->mutex);
    for (size_t i = 0; call->watching && i < server->watches_count; i++) {
        if (server->watches[i] == call) {
            server->watches[i] = server->watches[--server->watches_count];
            server->open_streams[call->method->health]--;
            break;
        }
    }
    call->watching = false;
    pthread_mutex_unlock(&server->mutex);
}

bool sd_call_stream_open(sd_call_t *call, sd_stream_event_fn *on_event, void *context)
{
    SD_ASSERT(!call->role_denied);
    sd_server_t *server = call->server;
    bool health = call->method->health;
    size_t limit = health ? server->options.health_watches_max : server->options.watches_max;
    pthread_mutex_lock(&server->mutex);
    bool stopping = atomic_load(&server->stopping);
    bool admitted = server->open_streams[health] < limit && !stopping;
    if (admitted) {
        server->watches[server->watches_count++] = call;
        server->open_streams[health]++;
        call->watching = true;
    }
    pthread_mutex_unlock(&server->mutex);
    if (!admitted) {
        sd_call_reply_status(call, stopping ? SD_UNAVAILABLE : SD_RESOURCE_EXHAUSTED,
                             stopping ? "server is shutting down" : "too many open streams");
        return false;
    }
    call->on_stream_event = on_event;
    call->stream_context = context;
    grpc_op close_op;
    memset(&close_op, 0, sizeof(close_op));
    close_op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    close_op.data.recv_close_on_server.cancelled = &call->cancelled;
    sd_call_start(call, &close_op, 1, &call->closed_tag);
    sd_metrics_count_request(server->services.metrics, call->method_index, SD_OK,
                             util_monotonic_ms() - call->started_ms);
    return true;
}

bool sd_call_stream_send(sd_call_t *call, const uint8_t *bytes, size_t length)
{
    grpc_op ops[2];
    size_t count = 0;
    memset(ops, 0, sizeof(ops));
    if (!call->metadata_sent) {
        ops[count++].op = GRPC_OP_SEND_INITIAL_METADATA;
        call->metadata_sent = true;
    }
    if (call->stream_message != NULL) {
        grpc_byte_buffer_destroy(call->stream_message);
    }
    if (call->method->health && length <= SD_HEALTH_MESSAGE_BYTES) {
        memcpy(call->health_sent, bytes, length); /* what sd_server_health_catch_up compares */
        call->health_sent_length = length;
    }
    grpc_slice slice = grpc_slice_from_copied_buffer((const char *)bytes, length);
    call->stream_message = grpc_raw_byte_buffer_create(&slice, 1);
    grpc_slice_unref(slice);
    ops[count].op = GRPC_OP_SEND_MESSAGE;
    ops[count++].data.send_message.send_message = call->stream_message;
    atomic_store(&call->send_in_flight, true);
    if (!sd_call_start_ops(call, ops, count, &call->sent_tag)) {
        atomic_store(&call->send_in_flight, false);
        return false;
    }
    return true;
}

void sd_call_stream_end(sd_call_t *call, sd_status_t status, const char *message)
{
    grpc_op ops[2];
    size_t count = 0;
    memset(ops, 0, sizeof(ops));
    if (!call->metadata_sent) {
        ops[count++].op = GRPC_OP_SEND_INITIAL_METADATA;
        call->metadata_sent = true;
    }
    call->status_message = grpc_slice_from_copied_string(message);
    ops[count].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[count].data.send_status_from_server.status = (grpc_status_code)sd_status_grpc_code(status);
    ops[count++].data.send_status_from_server.status_details = &call->status_message;
    sd_call_start(call, ops, count, &call->done_tag);
    sd_call_unref(call);
}

void sd_call_stream_release(sd_call_t *call)
{
    sd_call_unref(call);
}

void sd_call_stream_hold(sd_call_t *call, const ProtobufCMessage *first_message)
{
    if (!sd_call_stream_open(call, NULL, NULL)) {
        return;
    }
    size_t length = protobuf_c_message_get_packed_size(first_message);
    uint8_t *bytes = malloc(length ? length : 1);
    if (bytes != NULL) {
        protobuf_c_message_pack(first_message, bytes);
        /* under the server mutex: a health broadcast must not send on this stream meanwhile */
        pthread_mutex_lock(&call->server->mutex);
        sd_call_stream_send(call, bytes, length);
        pthread_mutex_unlock(&call->server->mutex);
        free(bytes);
    }
    sd_call_unref(call); /* nothing more to send: the close batch keeps the call alive */
}

/* ---- handler accessors ---- */

const sd_services_t *sd_call_services(const sd_call_t *call)
{
    return &call->server->services;
}

int64_t sd_call_deadline_us(const sd_call_t *call)
{
    if (gpr_time_cmp(call->deadline, gpr_inf_future(call->deadline.clock_type)) == 0) {
        return INT64_MAX;
    }
    gpr_timespec realtime = gpr_convert_clock_type(call->deadline, GPR_CLOCK_REALTIME);
    return (int64_t)realtime.tv_sec * 1000000 + realtime.tv_nsec / 1000;
}

void *sd_call_slot(sd_call_t *call, void (*release)(void *slot))
{
    call->slot_release = release;
    return call->slot;
}

void sd_call_set_log_context(sd_call_t *call, const char *tenant_id, const char *request_id)
{
    call->log_tenant_id = tenant_id;
    call->log_request_id = request_id;
}

const char *sd_call_actor(const sd_call_t *call)
{
    return sd_grant_name(&call->grant);
}

const char *sd_call_on_behalf_of(const sd_call_t *call)
{
    return call->on_behalf_of;
}

/* ---- who is calling ---- */

static bool sd_slice_is(grpc_slice slice, const char *text)
{
    size_t length = strlen(text);
    return GRPC_SLICE_LENGTH(slice) == length &&
           memcmp(GRPC_SLICE_START_PTR(slice), text, length) == 0;
}

static bool sd_slice_has_prefix(grpc_slice slice, const char *prefix)
{
    size_t length = strlen(prefix);
    return GRPC_SLICE_LENGTH(slice) >= length &&
           memcmp(GRPC_SLICE_START_PTR(slice), prefix, length) == 0;
}

/* The bearer token from `authorization: Bearer <token>` (views into the metadata). More than
 * one authorization entry, or another scheme, leaves token NULL: refused, never guessed. */
static void sd_call_bearer(const sd_call_t *call, sd_credentials_t *credentials)
{
    static const char scheme[] = "bearer ";
    size_t found = 0;
    for (size_t i = 0; i < call->request_metadata.count; i++) {
        const grpc_metadata *entry = &call->request_metadata.metadata[i];
        if (!sd_slice_is(entry->key, "authorization")) {
            continue;
        }
        credentials->has_authorization = true;
        credentials->several_authorizations = ++found > 1;
        const char *value = (const char *)GRPC_SLICE_START_PTR(entry->value);
        size_t length = GRPC_SLICE_LENGTH(entry->value);
        if (found == 1 && length > sizeof(scheme) - 1 &&
            strncasecmp(value, scheme, sizeof(scheme) - 1) == 0) {
            credentials->token = value + sizeof(scheme) - 1;
            credentials->token_length = length - (sizeof(scheme) - 1);
        }
    }
}

/* The names of a verified client certificate: its DNS SANs, or its CN when it has none. */
static void sd_call_tls_names(grpc_auth_context *context, sd_credentials_t *credentials)
{
    if (context == NULL || !grpc_auth_context_peer_is_authenticated(context)) {
        return;
    }
    static const char *const names[] = {GRPC_PEER_DNS_PROPERTY_NAME, GRPC_X509_CN_PROPERTY_NAME};
    for (size_t n = 0; n < 2 && credentials->tls_names_count == 0; n++) {
        grpc_auth_property_iterator it =
            grpc_auth_context_find_properties_by_name(context, names[n]);
        const grpc_auth_property *property;
        while ((property = grpc_auth_property_iterator_next(&it)) != NULL &&
               credentials->tls_names_count < SD_TLS_NAMES_MAX) {
            credentials->tls_names[credentials->tls_names_count] = property->value;
            credentials->tls_names_lengths[credentials->tls_names_count++] = property->value_length;
        }
    }
}

/* Reads the stockd-on-behalf-of metadata into the call; false (and the call answered) when it
 * is too long or not printable. */
static bool sd_call_read_on_behalf_of(sd_call_t *call)
{
    for (size_t i = 0; i < call->request_metadata.count; i++) {
        const grpc_metadata *entry = &call->request_metadata.metadata[i];
        if (!sd_slice_is(entry->key, SD_ON_BEHALF_OF_METADATA)) {
            continue;
        }
        size_t length = GRPC_SLICE_LENGTH(entry->value);
        const unsigned char *value = GRPC_SLICE_START_PTR(entry->value);
        if (!sd_on_behalf_of_valid(value, length)) {
            sd_call_reply_status(call, SD_INVALID_ARGUMENT,
                                 "metadata " SD_ON_BEHALF_OF_METADATA
                                 ": must be at most 128 printable ASCII characters");
            return false;
        }
        memcpy(call->on_behalf_of, value, length);
        call->on_behalf_of[length] = '\0';
    }
    return true;
}

/* Identifies the caller into call->grant (also on SD_AUTH_DENIED: who was refused). */
static sd_auth_result_t sd_call_identify(sd_call_t *call, char *message, size_t capacity)
{
    sd_credentials_t credentials;
    memset(&credentials, 0, sizeof(credentials));
    sd_call_bearer(call, &credentials);
    grpc_auth_context *context = grpc_call_auth_context(call->call);
    sd_call_tls_names(context, &credentials);
    sd_auth_result_t result =
        sd_auth_check(call->server->options.auth, &credentials, call->method->role,
                      call->method->name, &call->grant, message, capacity);
    grpc_auth_context_release(context);
    return result;
}

/* Identifies the caller; false (and the call answered UNAUTHENTICATED) when it cannot be.
 * A known identity without the role is refused in sd_call_unpack, naming the tenant. */
static bool sd_call_authenticate(sd_call_t *call)
{
    if (call->method->role == SD_ROLE_NONE) {
        return true;
    }
    char message[320];
    sd_auth_result_t result = sd_call_identify(call, message, sizeof(message));
    if (result == SD_AUTH_UNAUTHENTICATED) {
        sd_call_reply_status(call, SD_UNAUTHENTICATED, message);
        return false;
    }
    call->role_denied = result == SD_AUTH_DENIED;
    return sd_call_read_on_behalf_of(call);
}

bool sd_call_still_authorized(sd_call_t *call, const char *tenant_id, sd_status_t *status_out,
                              char *message, size_t capacity)
{
    sd_auth_t *auth = call->server->options.auth;
    if (call->method->role == SD_ROLE_NONE || !sd_auth_changed_since(auth, &call->grant)) {
        return true;
    }
    sd_grant_release(&call->grant);
    sd_auth_result_t result = sd_call_identify(call, message, capacity);
    if (result == SD_AUTH_OK && sd_grant_allows_tenant(&call->grant, tenant_id)) {
        return true;
    }
    if (result == SD_AUTH_OK) {
        snprintf(message, capacity, "identity \"%s\" may no longer call %s for tenant \"%.64s\"",
                 sd_grant_name(&call->grant), call->method->name, tenant_id);
    }
    *status_out = result == SD_AUTH_UNAUTHENTICATED ? SD_UNAUTHENTICATED : SD_PERMISSION_DENIED;
    return false;
}

bool sd_server_is_stopping(const sd_call_t *call)
{
    return atomic_load(&call->server->stopping);
}

/* ---- the event loop ---- */

static void sd_server_dispatch(sd_call_t *call)
{
    sd_server_t *server = call->server;
    call->started_ms = util_monotonic_ms();
    sd_server_post(server, call->method, call->method_index);
    if (call->method == NULL) {
        bool admin = sd_slice_has_prefix(call->details.method, "/stockd.v1.Admin/");
        sd_call_reply_status(call, SD_UNIMPLEMENTED,
                             admin && !server->options.admin
                                 ? "stockd.v1.Admin is served only on stockd's --admin-listen "
                                   "address"
                                 : "unknown method");
        return;
    }
    if (!sd_call_authenticate(call)) {
        return;
    }
    if (call->payload == NULL) {
        /* also what gRPC hands over when the client went away before its message arrived */
        sd_call_reply_status(call, SD_INVALID_ARGUMENT, "missing request message");
        return;
    }
    /* the received buffer and the flat copy handlers read from */
    size_t received = grpc_byte_buffer_length(call->payload);
    if (call->method->health && received > SD_HEALTH_REQUEST_BYTES_MAX) {
        /* health checks are exempt from the budget (probes answer under load), so their
         * requests are bounded instead: a HealthCheckRequest is one service name */
        sd_call_reply_status(call, SD_INVALID_ARGUMENT, "health check request too large");
        return;
    }
    if (!call->method->health && !sd_call_charge(call, 2 * received)) {
        sd_call_reply_status(call, SD_RESOURCE_EXHAUSTED, SD_BUDGET_MESSAGE);
        return;
    }
    grpc_byte_buffer_reader reader;
    if (!grpc_byte_buffer_reader_init(&reader, call->payload)) {
        sd_call_reply_status(call, SD_INVALID_ARGUMENT, "unreadable request message");
        return;
    }
    grpc_slice request = grpc_byte_buffer_reader_readall(&reader);
    grpc_byte_buffer_reader_destroy(&reader);
    call->method->handler(call, GRPC_SLICE_START_PTR(request), GRPC_SLICE_LENGTH(request));
    grpc_slice_unref(request);
}

static void sd_server_on_event(sd_server_t *server, grpc_event event)
{
    sd_tag_t *tag = event.tag;
    sd_call_t *call = tag->owner;
    switch (tag->kind) {
    case SD_TAG_NEW_CALL:
    case SD_TAG_UNKNOWN_CALL:
        if (!event.success) { /* the server is shutting down */
            sd_call_free(call);
            return;
        }
        sd_server_dispatch(call);
        return;
    case SD_TAG_BATCH_DONE:
        sd_call_unref(call);
        return;
    case SD_TAG_STREAM_SENT:
        atomic_store(&call->send_in_flight, false);
        if (call->method->health && event.success) {
            pthread_mutex_lock(&server->mutex);
            sd_server_health_catch_up(server, call); /* a change came while it was busy */
            pthread_mutex_unlock(&server->mutex);
        }
        if (call->on_stream_event != NULL) {
            call->on_stream_event(call->stream_context, SD_STREAM_SENT, event.success);
        }
        sd_call_unref(call);
        return;
    case SD_TAG_STREAM_CLOSED:
        sd_server_watch_remove(server, call);
        if (call->on_stream_event != NULL) {
            call->on_stream_event(call->stream_context, SD_STREAM_CLOSED, true);
        }
        sd_call_unref(call);
        return;
    case SD_TAG_SHUTDOWN:
        pthread_mutex_lock(&server->mutex);
        server->shutdown_finished = true;
        pthread_cond_broadcast(&server->shutdown_done);
        pthread_mutex_unlock(&server->mutex);
        return;
    }
}

static void *sd_server_poll(void *argument)
{
    sd_server_t *server = argument;
    sd_storage_thread_init(); /* reads (GetStock, ListStock, History) run here */
    for (;;) {
        grpc_event event =
            grpc_completion_queue_next(server->queue, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (event.type == GRPC_QUEUE_SHUTDOWN) {
            return NULL;
        }
        if (event.type == GRPC_OP_COMPLETE) {
            sd_server_on_event(server, event);
        }
    }
}

/* ---- start and stop ---- */

static bool sd_server_bind(sd_server_t *server, const char *listen, char *bound_out,
                           size_t bound_capacity)
{
    grpc_server_credentials *credentials = server->options.credentials;
    server->options.credentials = NULL; /* taken over: released here, once */
    if (credentials == NULL) {
        credentials = grpc_insecure_server_credentials_create();
    }
    int port = grpc_server_add_http2_port(server->grpc, listen, credentials);
    grpc_server_credentials_release(credentials);
    if (port == 0) {
        SD_LOG(LOG_ERROR, "listen_failed", LF_STR("address", listen));
        return false;
    }
    const char *colon = strrchr(listen, ':');
    int host_length = colon ? (int)(colon - listen) : (int)strlen(listen);
    snprintf(bound_out, bound_capacity, "%.*s:%d", host_length, listen, port);
    return true;
}

/* The gRPC server with every limit passed explicitly: SO_REUSEPORT off (a second daemon on the
 * same port must fail, not steal connections), the largest request, HTTP/2 streams per
 * connection, and a memory quota for the transport's buffers. */
static grpc_server *sd_server_create_grpc(const sd_server_options_t *options,
                                          grpc_resource_quota *quota)
{
    grpc_arg args[] = {
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_ALLOW_REUSEPORT, .value.integer = 0},
        {.type = GRPC_ARG_INTEGER,
         .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
         .value.integer = (int)options->message_bytes_max},
        {.type = GRPC_ARG_INTEGER,
         .key = GRPC_ARG_MAX_CONCURRENT_STREAMS,
         .value.integer = options->streams_per_connection_max},
        {.type = GRPC_ARG_POINTER,
         .key = GRPC_ARG_RESOURCE_QUOTA,
         .value.pointer = {quota, grpc_resource_quota_arg_vtable()}},
        /* the C core has no cap on connections: idle ones are closed, so they cannot pile up
         * and take the descriptors RocksDB needs for its files */
        {.type = GRPC_ARG_INTEGER,
         .key = GRPC_ARG_MAX_CONNECTION_IDLE_MS,
         .value.integer = SD_CONNECTION_IDLE_MS},
        /* a connection that has not finished its (TLS) handshake by then is closed: the core
         * default, 120 s, lets silent unauthenticated connections pile up */
        {.type = GRPC_ARG_INTEGER,
         .key = GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS,
         .value.integer = SD_HANDSHAKE_TIMEOUT_MS},
    };
    grpc_channel_args channel_args = {.num_args = sizeof(args) / sizeof(args[0]), .args = args};
    return grpc_server_create(&channel_args, NULL);
}

/* Admin methods only on the admin listener, everything else only on the public one; health
 * on both (probes and load balancers may look at either). */
static bool sd_server_serves(const sd_server_t *server, const sd_method_t *method)
{
    return method->health || (method->role == SD_ROLE_ADMIN) == server->options.admin;
}

sd_server_t *sd_server_start(const sd_server_options_t *options, const sd_services_t *services,
                             char *bound_out, size_t bound_capacity)
{
    sd_server_t *server = calloc(1, sizeof(*server));
    if (server == NULL || sd_methods_count > SD_METRICS_METHODS_MAX) {
        if (options->credentials != NULL) {
            grpc_server_credentials_release(options->credentials);
        }
        free(server);
        return NULL;
    }
    server->services = *services;
    server->options = *options;
    server->shutdown_tag = (sd_tag_t){SD_TAG_SHUTDOWN, NULL};
    server->watches =
        calloc(options->watches_max + options->health_watches_max + 1, sizeof(*server->watches));
    if (server->watches == NULL) {
        if (options->credentials != NULL) {
            grpc_server_credentials_release(options->credentials);
        }
        free(server);
        return NULL;
    }
    pthread_mutex_init(&server->mutex, NULL);
    pthread_rwlock_init(&server->queue_gate, NULL);
    pthread_cond_init(&server->shutdown_done, NULL);
    server->quota = grpc_resource_quota_create("stockd");
    grpc_resource_quota_resize(server->quota, options->grpc_memory_bytes_max);
    server->grpc = sd_server_create_grpc(options, server->quota);
    server->queue = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(server->grpc, server->queue, NULL);
    for (size_t i = 0; i < sd_methods_count; i++) {
        if (sd_server_serves(server, &sd_methods[i])) {
            server->registered[i] =
                grpc_server_register_method(server->grpc, sd_methods[i].path, NULL,
                                            GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
        }
    }
    server->shutdown_finished = true; /* nothing to wait for if we fail before start */
    if (!sd_server_bind(server, options->listen, bound_out, bound_capacity)) {
        sd_server_stop(server, 0);
        return NULL;
    }
    grpc_server_start(server->grpc);
    server->shutdown_finished = false;
    for (size_t i = 0; i < sd_methods_count; i++) {
        for (int posted = 0; server->registered[i] && posted < SD_CALLS_POSTED_PER_METHOD;
             posted++) {
            sd_server_post(server, &sd_methods[i], i);
        }
    }
    sd_server_post(server, NULL, SIZE_MAX);
    int threads = options->polling_threads_count;
    threads = threads < 1 ? 1 : threads > SD_POLLING_THREADS_MAX ? SD_POLLING_THREADS_MAX : threads;
    for (int i = 0; i < threads; i++) {
        if (pthread_create(&server->threads[server->threads_count], NULL, sd_server_poll, server) !=
            0) {
            SD_LOG(LOG_ERROR, "thread_start_failed", LF_STR("thread", "grpc polling"));
            continue;
        }
        server->threads_count++;
    }
    if (server->threads_count == 0) { /* nobody would ever answer a call */
        sd_server_stop(server, 0);
        return NULL;
    }
    return server;
}

/* Sends the latest broadcast status on a health stream that has not seen it (server mutex
 * held; one message in flight per stream: a busy one is caught up when its send completes). */
static void sd_server_health_catch_up(sd_server_t *server, sd_call_t *call)
{
    if (!call->method->health || !call->watching || server->health_latest_length == 0 ||
        atomic_load(&call->send_in_flight) ||
        (call->health_sent_length == server->health_latest_length &&
         memcmp(call->health_sent, server->health_latest, call->health_sent_length) == 0)) {
        return;
    }
    sd_call_stream_send(call, server->health_latest, server->health_latest_length);
}

void sd_server_broadcast_health(sd_server_t *server, const uint8_t *message, size_t length)
{
    if (length > SD_HEALTH_MESSAGE_BYTES) {
        return; /* a status message is a few bytes */
    }
    pthread_mutex_lock(&server->mutex);
    memcpy(server->health_latest, message, length);
    server->health_latest_length = length;
    for (size_t i = 0; i < server->watches_count; i++) {
        sd_server_health_catch_up(server, server->watches[i]);
    }
    pthread_mutex_unlock(&server->mutex);
}

static void sd_server_end_watches(sd_server_t *server)
{
    pthread_mutex_lock(&server->mutex);
    for (size_t i = 0; i < server->watches_count; i++) {
        grpc_call_cancel_with_status(server->watches[i]->call, GRPC_STATUS_UNAVAILABLE,
                                     "server is shutting down", NULL);
    }
    pthread_mutex_unlock(&server->mutex);
}

static void sd_server_wait_shutdown(sd_server_t *server, int64_t grace_ms)
{
    gpr_timespec until =
        gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_millis(grace_ms, GPR_TIMESPAN));
    struct timespec deadline = {.tv_sec = until.tv_sec, .tv_nsec = until.tv_nsec};
    pthread_mutex_lock(&server->mutex);
    while (!server->shutdown_finished) {
        if (pthread_cond_timedwait(&server->shutdown_done, &server->mutex, &deadline) != 0) {
            break;
        }
    }
    bool finished = server->shutdown_finished;
    pthread_mutex_unlock(&server->mutex);
    if (!finished) {
        SD_LOG(LOG_WARN, "shutdown_grace_expired", LF_INT("grace_ms", grace_ms));
        grpc_server_cancel_all_calls(server->grpc);
        pthread_mutex_lock(&server->mutex);
        while (!server->shutdown_finished) {
            pthread_cond_wait(&server->shutdown_done, &server->mutex);
        }
        pthread_mutex_unlock(&server->mutex);
    }
}

/* Waits (at most grace_ms) until every call object of the server is freed: after the polling
 * threads end, only a thread in the middle of answering (the writer) can still hold one, for
 * microseconds. */
static bool sd_server_wait_calls_freed(sd_server_t *server, int64_t grace_ms)
{
    double deadline = util_monotonic_ms() + (double)(grace_ms > 1000 ? grace_ms : 1000);
    while (atomic_load(&server->calls_alive) > 0) {
        if (util_monotonic_ms() > deadline) {
            return false;
        }
        usleep(1000);
    }
    return true;
}

void sd_server_stop(sd_server_t *server, int64_t grace_ms)
{
    if (server == NULL) {
        return;
    }
    atomic_store(&server->stopping, true);
    if (!server->shutdown_finished) {
        grpc_server_shutdown_and_notify(server->grpc, server->queue, &server->shutdown_tag);
        sd_server_end_watches(server);
        sd_server_wait_shutdown(server, grace_ms);
    }
    pthread_rwlock_wrlock(&server->queue_gate);
    server->queue_closed = true; /* no operation starts after this */
    pthread_rwlock_unlock(&server->queue_gate);
    grpc_completion_queue_shutdown(server->queue);
    if (server->threads_count == 0) {
        /* never started polling: drain here so the queue can be destroyed */
        while (grpc_completion_queue_next(server->queue, gpr_inf_future(GPR_CLOCK_REALTIME), NULL)
                   .type != GRPC_QUEUE_SHUTDOWN) {
        }
    }
    for (int i = 0; i < server->threads_count; i++) {
        pthread_join(server->threads[i], NULL);
    }
    if (!sd_server_wait_calls_freed(server, grace_ms)) {
        /* a thread still holds a call of this server: freeing it would pull the memory from
         * under that thread. The process is stopping: leave it (logged), never a crash. */
        SD_LOG(LOG_WARN, "server_not_freed",
               LF_INT("calls_alive", (int64_t)atomic_load(&server->calls_alive)));
        return;
    }
    grpc_server_destroy(server->grpc);
    grpc_completion_queue_destroy(server->queue);
    grpc_resource_quota_unref(server->quota);
    free(server->watches);
    pthread_mutex_destroy(&server->mutex);
    pthread_rwlock_destroy(&server->queue_gate);
    pthread_cond_destroy(&server->shutdown_done);
    free(server);
}
