/* stockclient.c — see stockclient.h. Each call uses its own pluck completion queue, so calls
 * from different threads never wait on one another. */
#include "stockclient.h"

#include <sys/random.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "google/rpc/status.pb-c.h"
#include "status.h"
#include "util.h"

#define SC_MESSAGE_BYTES_MAX (16 * 1024 * 1024)

struct sc_client {
    grpc_channel *channel;
};

/* Each calling thread keeps one pluck completion queue for all its calls: creating and
 * destroying a queue per call costs more than the call itself on a fast path. */
static pthread_key_t sc_queue_key;
static pthread_once_t sc_queue_once = PTHREAD_ONCE_INIT;

static void sc_queue_destroy(void *queue)
{
    grpc_completion_queue_shutdown(queue);
    grpc_completion_queue_destroy(queue);
}

static void sc_queue_key_create(void)
{
    pthread_key_create(&sc_queue_key, sc_queue_destroy);
}

static grpc_completion_queue *sc_thread_queue(void)
{
    pthread_once(&sc_queue_once, sc_queue_key_create);
    grpc_completion_queue *queue = pthread_getspecific(sc_queue_key);
    if (queue == NULL) {
        queue = grpc_completion_queue_create_for_pluck(NULL);
        pthread_setspecific(sc_queue_key, queue);
    }
    return queue;
}

void sc_thread_release(void)
{
    pthread_once(&sc_queue_once, sc_queue_key_create);
    grpc_completion_queue *queue = pthread_getspecific(sc_queue_key);
    if (queue != NULL) {
        pthread_setspecific(sc_queue_key, NULL);
        sc_queue_destroy(queue);
    }
}

sc_client_t *sc_client_new(const char *target, const sc_client_options_t *options)
{
    sc_client_t *client = calloc(1, sizeof(*client));
    if (client == NULL) {
        return NULL;
    }
    grpc_arg args[2] = {
        {.type = GRPC_ARG_INTEGER,
         .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
         .value.integer = SC_MESSAGE_BYTES_MAX},
        {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, .value.integer = 1},
    };
    grpc_channel_args channel_args = {.num_args = options && options->own_connection ? 2 : 1,
                                      .args = args};
    grpc_channel_credentials *credentials = grpc_insecure_credentials_create();
    client->channel = grpc_channel_create(target, credentials, &channel_args);
    grpc_channel_credentials_release(credentials);
    return client;
}

void sc_client_free(sc_client_t *client)
{
    if (client == NULL) {
        return;
    }
    grpc_channel_destroy(client->channel);
    free(client);
}

void sc_status_init(sc_status_t *status)
{
    memset(status, 0, sizeof(*status));
}

void sc_status_free(sc_status_t *status)
{
    if (status->bad_request != NULL) {
        google__rpc__bad_request__free_unpacked(status->bad_request, NULL);
    }
    if (status->precondition != NULL) {
        google__rpc__precondition_failure__free_unpacked(status->precondition, NULL);
    }
    sc_status_init(status);
}

const char *sc_code_name(int code)
{
    sd_status_t status = sd_status_from_grpc_code(code);
    return status == SD_UNKNOWN && code != GRPC_STATUS_UNKNOWN ? "UNRECOGNISED"
                                                               : sd_status_name(status);
}

/* Decodes google.rpc.Status from the grpc-status-details-bin trailer, if present. */
static void sc_decode_details(const grpc_metadata_array *trailing, sc_status_t *status)
{
    for (size_t i = 0; i < trailing->count; i++) {
        const grpc_metadata *entry = &trailing->metadata[i];
        if (grpc_slice_str_cmp(entry->key, "grpc-status-details-bin") != 0) {
            continue;
        }
        Google__Rpc__Status *rich = google__rpc__status__unpack(
            NULL, GRPC_SLICE_LENGTH(entry->value), GRPC_SLICE_START_PTR(entry->value));
        for (size_t d = 0; rich != NULL && d < rich->n_details; d++) {
            const Google__Protobuf__Any *any = rich->details[d];
            if (strcmp(any->type_url, "type.googleapis.com/google.rpc.BadRequest") == 0 &&
                status->bad_request == NULL) {
                status->bad_request =
                    google__rpc__bad_request__unpack(NULL, any->value.len, any->value.data);
            } else if (strcmp(any->type_url,
                              "type.googleapis.com/google.rpc.PreconditionFailure") == 0 &&
                       status->precondition == NULL) {
                status->precondition = google__rpc__precondition_failure__unpack(
                    NULL, any->value.len, any->value.data);
            }
        }
        if (rich != NULL) {
            google__rpc__status__free_unpacked(rich, NULL);
        }
    }
}

static grpc_byte_buffer *sc_pack(const ProtobufCMessage *request)
{
    size_t length = protobuf_c_message_get_packed_size(request);
    grpc_slice slice = grpc_slice_malloc(length);
    protobuf_c_message_pack(request, GRPC_SLICE_START_PTR(slice));
    grpc_byte_buffer *buffer = grpc_raw_byte_buffer_create(&slice, 1);
    grpc_slice_unref(slice);
    return buffer;
}

static ProtobufCMessage *sc_unpack(grpc_byte_buffer *buffer,
                                   const ProtobufCMessageDescriptor *descriptor)
{
    grpc_byte_buffer_reader reader;
    if (buffer == NULL || !grpc_byte_buffer_reader_init(&reader, buffer)) {
        return NULL;
    }
    grpc_slice slice = grpc_byte_buffer_reader_readall(&reader);
    grpc_byte_buffer_reader_destroy(&reader);
    ProtobufCMessage *message = protobuf_c_message_unpack(
        descriptor, NULL, GRPC_SLICE_LENGTH(slice), GRPC_SLICE_START_PTR(slice));
    grpc_slice_unref(slice);
    return message;
}

/* Runs the one batch of a unary call and waits for it. */
static void sc_run_batch(grpc_call *call, grpc_completion_queue *queue, grpc_byte_buffer *send,
                         grpc_byte_buffer **receive, grpc_metadata_array *initial,
                         grpc_metadata_array *trailing, grpc_status_code *code, grpc_slice *details)
{
    grpc_op ops[6];
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = initial;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = receive;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = trailing;
    ops[5].data.recv_status_on_client.status = code;
    ops[5].data.recv_status_on_client.status_details = details;
    if (grpc_call_start_batch(call, ops, 6, call, NULL) != GRPC_CALL_OK) {
        *code = GRPC_STATUS_INTERNAL;
        return;
    }
    grpc_completion_queue_pluck(queue, call, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
}

int sc_call_unary(sc_client_t *client, const char *method, const ProtobufCMessage *request,
                  const ProtobufCMessageDescriptor *response_descriptor,
                  ProtobufCMessage **response_out, int64_t deadline_ms, sc_status_t *status)
{
    sc_status_init(status);
    *response_out = NULL;
    grpc_completion_queue *queue = sc_thread_queue();
    gpr_timespec deadline =
        gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_millis(deadline_ms, GPR_TIMESPAN));
    grpc_slice method_slice = grpc_slice_from_static_string(method);
    grpc_call *call = grpc_channel_create_call(client->channel, NULL, GRPC_PROPAGATE_DEFAULTS,
                                               queue, method_slice, NULL, deadline, NULL);
    grpc_byte_buffer *send = sc_pack(request);
    grpc_byte_buffer *receive = NULL;
    grpc_metadata_array initial, trailing;
    grpc_metadata_array_init(&initial);
    grpc_metadata_array_init(&trailing);
    grpc_status_code code = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();
    sc_run_batch(call, queue, send, &receive, &initial, &trailing, &code, &details);
    status->code = (int)code;
    snprintf(status->message, sizeof(status->message), "%.*s", (int)GRPC_SLICE_LENGTH(details),
             (const char *)GRPC_SLICE_START_PTR(details));
    if (code == GRPC_STATUS_OK) {
        *response_out = sc_unpack(receive, response_descriptor);
        if (*response_out == NULL) {
            status->code = GRPC_STATUS_INTERNAL;
            snprintf(status->message, sizeof(status->message), "unparsable response");
        }
    } else {
        sc_decode_details(&trailing, status);
    }
    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&initial);
    grpc_metadata_array_destroy(&trailing);
    grpc_byte_buffer_destroy(send);
    if (receive != NULL) {
        grpc_byte_buffer_destroy(receive);
    }
    grpc_call_unref(call);
    return status->code;
}

#define SC_TYPED(fn, path, req_type, resp_type, resp_descriptor)                                   \
    int fn(sc_client_t *client, const req_type *request, resp_type **response_out,                 \
           int64_t deadline_ms, sc_status_t *status)                                               \
    {                                                                                              \
        return sc_call_unary(client, path, &request->base, &resp_descriptor,                       \
                             (ProtobufCMessage **)response_out, deadline_ms, status);              \
    }

void sc_request_id_generate(char out[SC_REQUEST_ID_GENERATED_BYTES])
{
    unsigned char random[16];
    size_t filled = 0;
    while (filled < sizeof(random)) {
        ssize_t got = getrandom(random + filled, sizeof(random) - filled, 0);
        if (got > 0) {
            filled += (size_t)got;
        }
    }
    memcpy(out, "sc-", 3);
    util_hex(random, sizeof(random), out + 3);
}

bool sc_outcome_unknown(int code)
{
    return code == GRPC_STATUS_UNAVAILABLE || code == GRPC_STATUS_DEADLINE_EXCEEDED ||
           code == GRPC_STATUS_CANCELLED || code == GRPC_STATUS_UNKNOWN ||
           code == GRPC_STATUS_RESOURCE_EXHAUSTED || code == GRPC_STATUS_INTERNAL;
}

/* The three writes: same request_id field, same call. A request without a request_id is sent
 * as a shallow copy carrying a generated one, reported in status->request_id. */
#define SC_WRITE(fn, path, req_type, resp_type, resp_descriptor)                                   \
    int fn(sc_client_t *client, const req_type *request, resp_type **response_out,                 \
           int64_t deadline_ms, sc_status_t *status)                                               \
    {                                                                                              \
        req_type copy = *request;                                                                  \
        char generated[SC_REQUEST_ID_GENERATED_BYTES];                                             \
        if (copy.request_id == NULL || copy.request_id[0] == '\0') {                               \
            sc_request_id_generate(generated);                                                     \
            copy.request_id = generated;                                                           \
        }                                                                                          \
        int code = sc_call_unary(client, path, &copy.base, &resp_descriptor,                       \
                                 (ProtobufCMessage **)response_out, deadline_ms, status);          \
        snprintf(status->request_id, sizeof(status->request_id), "%s", copy.request_id);           \
        return code;                                                                               \
    }

SC_WRITE(sc_decrement, "/stockd.v1.Inventory/Decrement", Stockd__V1__DecrementRequest,
         Stockd__V1__DecrementResponse, stockd__v1__decrement_response__descriptor)
SC_WRITE(sc_increment, "/stockd.v1.Inventory/Increment", Stockd__V1__IncrementRequest,
         Stockd__V1__IncrementResponse, stockd__v1__increment_response__descriptor)
SC_WRITE(sc_set_stock, "/stockd.v1.Inventory/SetStock", Stockd__V1__SetStockRequest,
         Stockd__V1__SetStockResponse, stockd__v1__set_stock_response__descriptor)
SC_TYPED(sc_get_stock, "/stockd.v1.Inventory/GetStock", Stockd__V1__GetStockRequest,
         Stockd__V1__GetStockResponse, stockd__v1__get_stock_response__descriptor)

SC_TYPED(sc_list_stock, "/stockd.v1.Inventory/ListStock", Stockd__V1__ListStockRequest,
         Stockd__V1__ListStockResponse, stockd__v1__list_stock_response__descriptor)
SC_TYPED(sc_history, "/stockd.v1.Inventory/History", Stockd__V1__HistoryRequest,
         Stockd__V1__HistoryResponse, stockd__v1__history_response__descriptor)

/* Starts one batch on a streaming call and waits for it. */
static bool sc_stream_step(grpc_call *call, grpc_completion_queue *queue, const grpc_op *ops,
                           size_t count)
{
    if (grpc_call_start_batch(call, ops, count, call, NULL) != GRPC_CALL_OK) {
        return false;
    }
    return grpc_completion_queue_pluck(queue, call, gpr_inf_future(GPR_CLOCK_REALTIME), NULL)
        .success;
}

int sc_call_stream(sc_client_t *client, const char *method, const ProtobufCMessage *request,
                   const ProtobufCMessageDescriptor *descriptor, sc_stream_fn *on_message,
                   void *context, int64_t deadline_ms, sc_status_t *status)
{
    sc_status_init(status);
    grpc_completion_queue *queue = sc_thread_queue();
    gpr_timespec deadline = deadline_ms > 0
                                ? gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
                                               gpr_time_from_millis(deadline_ms, GPR_TIMESPAN))
                                : gpr_inf_future(GPR_CLOCK_REALTIME);
    grpc_call *call =
        grpc_channel_create_call(client->channel, NULL, GRPC_PROPAGATE_DEFAULTS, queue,
                                 grpc_slice_from_static_string(method), NULL, deadline, NULL);
    grpc_byte_buffer *send = sc_pack(request);
    grpc_metadata_array initial, trailing;
    grpc_metadata_array_init(&initial);
    grpc_metadata_array_init(&trailing);
    grpc_op ops[4];
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial;
    bool going = sc_stream_step(call, queue, ops, 4);
    while (going) {
        grpc_byte_buffer *receive = NULL;
        grpc_op receive_op;
        memset(&receive_op, 0, sizeof(receive_op));
        receive_op.op = GRPC_OP_RECV_MESSAGE;
        receive_op.data.recv_message.recv_message = &receive;
        if (!sc_stream_step(call, queue, &receive_op, 1) || receive == NULL) {
            break; /* the stream ended: the status tells why */
        }
        ProtobufCMessage *message = sc_unpack(receive, descriptor);
        grpc_byte_buffer_destroy(receive);
        if (message == NULL || !on_message(context, message)) {
            grpc_call_cancel(call, NULL);
            going = false;
        }
    }
    grpc_status_code code = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();
    grpc_op status_op;
    memset(&status_op, 0, sizeof(status_op));
    status_op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    status_op.data.recv_status_on_client.trailing_metadata = &trailing;
    status_op.data.recv_status_on_client.status = &code;
    status_op.data.recv_status_on_client.status_details = &details;
    sc_stream_step(call, queue, &status_op, 1);
    status->code = (int)code;
    snprintf(status->message, sizeof(status->message), "%.*s", (int)GRPC_SLICE_LENGTH(details),
             (const char *)GRPC_SLICE_START_PTR(details));
    sc_decode_details(&trailing, status);
    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&initial);
    grpc_metadata_array_destroy(&trailing);
    grpc_byte_buffer_destroy(send);
    grpc_call_unref(call);
    return status->code;
}

int sc_list_all(sc_client_t *client, const Stockd__V1__ListStockRequest *request,
                sc_levels_fn *on_page, void *context, int64_t deadline_ms, sc_status_t *status)
{
    Stockd__V1__ListStockRequest page = *request;
    char *token = strdup(request->page_token);
    sc_status_init(status);
    for (;;) {
        if (token == NULL) { /* out of memory: a listing cut short must not look complete */
            status->code = GRPC_STATUS_RESOURCE_EXHAUSTED;
            snprintf(status->message, sizeof(status->message), "out of memory in the client");
            return status->code;
        }
        page.page_token = token;
        Stockd__V1__ListStockResponse *response = NULL;
        sc_status_free(status);
        int code = sc_list_stock(client, &page, &response, deadline_ms, status);
        free(token);
        if (code != 0) {
            return code;
        }
        bool next = on_page(context, response->levels, response->n_levels) &&
                    response->next_page_token[0] != '\0';
        token = next ? strdup(response->next_page_token) : NULL;
        stockd__v1__list_stock_response__free_unpacked(response, NULL);
        if (!next) {
            return 0;
        }
    }
}

int sc_health_check(sc_client_t *client, const char *service, bool *serving_out,
                    int64_t deadline_ms, sc_status_t *status)
{
    Grpc__Health__V1__HealthCheckRequest request = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    request.service = (char *)service;
    Grpc__Health__V1__HealthCheckResponse *response = NULL;
    *serving_out = false;
    int code = sc_call_unary(client, "/grpc.health.v1.Health/Check", &request.base,
                             &grpc__health__v1__health_check_response__descriptor,
                             (ProtobufCMessage **)&response, deadline_ms, status);
    if (response != NULL) {
        *serving_out =
            response->status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
        grpc__health__v1__health_check_response__free_unpacked(response, NULL);
    }
    return code;
}
