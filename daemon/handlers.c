/* handlers.c — the RPC handlers and the method table.
 *
 * Writes (Decrement, Increment, SetStock) are unpacked and validated on the polling thread,
 * then queued to the writer, which answers when the batch is durable. Reads go straight to
 * RocksDB and never wait for the writer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "checkpoints.h"
#include "handlers.h"
#include "grpc/health/v1/health.pb-c.h"
#include "log.h"
#include "queries.h"
#include "sd_limits.h"
#include "server.h"
#include "stockd/v1/admin.pb-c.h"
#include "stockd/v1/inventory.pb-c.h"
#include "storage.h"
#include "util.h"
#include "validate.h"
#include "watch.h"
#include "wire.h"
#include "writer.h"

static void sd_reply_validation(sd_call_t *call, sd_error_t *error)
{
    sd_call_reply_error(call, error);
    sd_error_free(error);
}

ProtobufCMessage *sd_unpack(sd_call_t *call, const ProtobufCMessageDescriptor *descriptor,
                            const uint8_t *bytes, size_t length)
{
    char field[160];
    if (!sd_wire_strings_clean(descriptor, bytes, length, field, sizeof(field))) {
        sd_error_t error;
        sd_error_init(&error);
        sd_error_add_field(&error, field, "contains a NUL byte");
        sd_reply_validation(call, &error);
        return NULL;
    }
    sd_status_t status = SD_OK;
    ProtobufCMessage *message = sd_call_unpack(call, descriptor, bytes, length, &status);
    if (message == NULL && status != SD_PERMISSION_DENIED) { /* refusals are answered */
        sd_call_reply_status(call, status,
                             status == SD_RESOURCE_EXHAUSTED
                                 ? SD_BUDGET_MESSAGE
                                 : "request is not a valid protobuf message");
    }
    return message;
}

/* ---- writes ---- */

static void sd_write_complete(sd_write_job_t *job)
{
    sd_call_t *call = job->context;
    if (job->result.error.status == SD_OK) {
        sd_call_reply_bytes(call, job->result.response, job->result.response_length);
    } else {
        sd_call_reply_error(call, &job->result.error);
    }
}

_Static_assert(sizeof(sd_write_job_t) <= SD_CALL_SLOT_BYTES, "a write job fits the call's slot");

/* The call's slot release: the result's buffers, once the reply has been sent. */
static void sd_write_job_release(void *slot)
{
    sd_write_job_t *job = slot;
    sd_write_result_free(&job->result);
}

static void sd_submit_write(sd_call_t *call, sd_write_job_t *job)
{
    job->complete = sd_write_complete;
    job->context = call;
    sd_status_t status = sd_writer_submit(sd_call_services(call)->writer, job);
    if (status != SD_OK) {
        sd_call_reply_status(call, status, sd_write_refusal_message(status));
    }
}

const char *sd_write_refusal_message(sd_status_t status)
{
    return status == SD_RESOURCE_EXHAUSTED ? "write queue is full; retry with backoff"
                                           : SD_NOT_TAKING_WRITES_MESSAGE;
}

/* How each write RPC turns its message into the writer's request. */
static sd_write_request_t sd_decrement_request(const ProtobufCMessage *message)
{
    const Stockd__V1__DecrementRequest *r = (const Stockd__V1__DecrementRequest *)message;
    return (sd_write_request_t){.kind = SD_WRITE_DECREMENT,
                                .tenant_id = r->tenant_id,
                                .lines_count = r->n_lines,
                                .lines = r->lines,
                                .restrict_inventory = r->restrict_inventory,
                                .order_id = r->order_id,
                                .reason = r->reason,
                                .reason_text = r->reason_text,
                                .request_id = r->request_id};
}

static sd_write_request_t sd_increment_request(const ProtobufCMessage *message)
{
    const Stockd__V1__IncrementRequest *r = (const Stockd__V1__IncrementRequest *)message;
    return (sd_write_request_t){.kind = SD_WRITE_INCREMENT,
                                .tenant_id = r->tenant_id,
                                .lines_count = r->n_lines,
                                .lines = r->lines,
                                .order_id = r->order_id,
                                .reason = r->reason,
                                .reason_text = r->reason_text,
                                .request_id = r->request_id};
}

static sd_write_request_t sd_set_stock_request(const ProtobufCMessage *message)
{
    const Stockd__V1__SetStockRequest *r = (const Stockd__V1__SetStockRequest *)message;
    return (sd_write_request_t){.kind = SD_WRITE_SET,
                                .tenant_id = r->tenant_id,
                                .lines_count = r->n_lines,
                                .set_lines = r->lines,
                                .order_id = "",
                                .reason = r->reason,
                                .reason_text = r->reason_text,
                                .request_id = r->request_id};
}

static bool sd_validate_decrement_message(const ProtobufCMessage *message, sd_error_t *error)
{
    return sd_validate_decrement((const Stockd__V1__DecrementRequest *)message, error);
}

static bool sd_validate_increment_message(const ProtobufCMessage *message, sd_error_t *error)
{
    return sd_validate_increment((const Stockd__V1__IncrementRequest *)message, error);
}

static bool sd_validate_set_stock_message(const ProtobufCMessage *message, sd_error_t *error)
{
    return sd_validate_set_stock((const Stockd__V1__SetStockRequest *)message, error);
}

const sd_write_method_t sd_write_methods[SD_WRITE_KINDS] = {
    [SD_WRITE_DECREMENT] = {&stockd__v1__decrement_request__descriptor,
                            sd_validate_decrement_message, sd_decrement_request},
    [SD_WRITE_INCREMENT] = {&stockd__v1__increment_request__descriptor,
                            sd_validate_increment_message, sd_increment_request},
    [SD_WRITE_SET] = {&stockd__v1__set_stock_request__descriptor, sd_validate_set_stock_message,
                      sd_set_stock_request},
};

void sd_write_job_prepare(sd_call_t *call, const ProtobufCMessage *message, sd_write_kind_t kind,
                          sd_write_job_t *job)
{
    job->request = sd_write_methods[kind].to_request(message);
    job->request.actor = sd_call_actor(call);
    job->request.on_behalf_of = sd_call_on_behalf_of(call);
    job->deadline_us = sd_call_deadline_us(call);
    sd_write_result_init(&job->result);
}

/* Every write: unpack, validate on this thread, then queue for the writer. */
static void sd_handle_write(sd_call_t *call, const uint8_t *bytes, size_t length,
                            sd_write_kind_t kind)
{
    const sd_write_method_t *method = &sd_write_methods[kind];
    ProtobufCMessage *message = sd_unpack(call, method->descriptor, bytes, length);
    if (message == NULL) {
        return;
    }
    sd_error_t error;
    sd_error_init(&error);
    if (!method->validate(message, &error)) {
        sd_reply_validation(call, &error);
        return;
    }
    sd_write_job_t *job = sd_call_slot(call, sd_write_job_release);
    sd_write_job_prepare(call, message, kind, job);
    sd_call_set_log_context(call, job->request.tenant_id, job->request.request_id);
    sd_submit_write(call, job);
}

static void sd_handle_decrement(sd_call_t *call, const uint8_t *bytes, size_t length)
{
    sd_handle_write(call, bytes, length, SD_WRITE_DECREMENT);
}

static void sd_handle_increment(sd_call_t *call, const uint8_t *bytes, size_t length)
{
    sd_handle_write(call, bytes, length, SD_WRITE_INCREMENT);
}

static void sd_handle_set_stock(sd_call_t *call, const uint8_t *bytes, size_t length)
{
    sd_handle_write(call, bytes, length, SD_WRITE_SET);
}

/* ---- reads ---- */

static sd_status_t sd_read_levels(sd_storage_t *storage, const Stockd__V1__GetStockRequest *request,
                                  Stockd__V1__StockLevel *levels)
{
    uint8_t key[SD_ITEM_KEY_BYTES_MAX];
    for (size_t i = 0; i < request->n_items; i++) {
        sd_item_key_t parts = sd_item_key_of(request->tenant_id, request->items[i]);
        size_t key_length = sd_key_encode_item(&parts, key, sizeof(key));
        sd_level_t level;
        bool found = false;
        sd_status_t status = key_length == 0
                                 ? SD_INTERNAL
                                 : sd_storage_get_level(storage, key, key_length, &level, &found);
        if (status != SD_OK) {
            return status;
        }
        sd_stock_level_fill(&levels[i], request->items[i], &level);
    }
    return SD_OK;
}

/* Replies with message, or INVALID_ARGUMENT naming `field` when the answer would not fit a
 * default gRPC client's 4 MiB receive limit (the client could not read it). */
static void sd_reply_fitting(sd_call_t *call, const ProtobufCMessage *message, const char *field)
{
    size_t answer_bytes = protobuf_c_message_get_packed_size(message);
    if (answer_bytes <= SD_RESPONSE_BYTES_MAX) {
        sd_call_reply_message(call, message);
        return;
    }
    sd_error_t error;
    sd_error_init(&error);
    sd_error_add_field(&error, field,
                       "the answer would be %zu bytes, more than the %d a gRPC client accepts by "
                       "default; ask for fewer",
                       answer_bytes, SD_RESPONSE_BYTES_MAX);
    sd_reply_validation(call, &error);
}

/* How long a read waits for the leader to confirm it still leads. */
#define SD_READ_FENCE_WAIT_MS 2000

bool sd_refuse_off_leader(sd_call_t *call, const char *message)
{
    sd_replication_t *replication = sd_call_services(call)->replication;
    if (replication == NULL) {
        return false;
    }
    sd_replication_status_t status;
    sd_replication_status(replication, &status);
    if (status.leader) {
        return false;
    }
    sd_call_reply_status(call, SD_UNAVAILABLE, message);
    return true;
}

/* Replication: GetStock and ListStock answer from the leader only (a follower may not have
 * applied the latest writes); a follower refuses with the leader's address. True if refused. */
static bool sd_refuse_read_off_leader(sd_call_t *call)
{
    sd_replication_t *replication = sd_call_services(call)->replication;
    if (replication == NULL) {
        return false;
    }
    if (sd_refuse_off_leader(call, "this replica is not the leader; GetStock and ListStock are "
                                   "served by the leader (retry at the stockd-leader address)")) {
        return true;
    }
    /* a leader cut off from the majority may not know it was replaced: it answers only
     * after a barrier proved it still leads and applied everything committed before */
    if (sd_replication_read_fence(replication, SD_READ_FENCE_WAIT_MS, NULL) !=
        SD_REPLICATION_DONE) {
        sd_call_reply_status(call, SD_UNAVAILABLE,
                             "this replica could not confirm it leads (perhaps not the leader "
                             "any more); retry (at the stockd-leader address when given)");
        return true;
    }
    return false;
}

static void sd_handle_get_stock(sd_call_t *call, const uint8_t *bytes, size_t length)
{
    Stockd__V1__GetStockRequest *request = (Stockd__V1__GetStockRequest *)sd_unpack(
        call, &stockd__v1__get_stock_request__descriptor, bytes, length);
    sd_error_t error;
    sd_error_init(&error);
    if (request == NULL) {
        return;
    }
    if (!sd_validate_get_stock(request, &error)) {
        sd_reply_validation(call, &error);
        return;
    }
    if (sd_refuse_read_off_leader(call)) {
        return;
    }
    Stockd__V1__StockLevel *levels = calloc(request->n_items, sizeof(*levels));
    Stockd__V1__StockLevel **pointers = calloc(request->n_items, sizeof(*pointers));
    sd_status_t status = levels && pointers
                             ? sd_read_levels(sd_call_services(call)->storage, request, levels)
                             : SD_UNAVAILABLE;
    if (status == SD_OK) {
        for (size_t i = 0; i < request->n_items; i++) {
            pointers[i] = &levels[i];
        }
        Stockd__V1__GetStockResponse response = STOCKD__V1__GET_STOCK_RESPONSE__INIT;
        response.n_levels = request->n_items;
        response.levels = pointers;
        sd_reply_fitting(call, &response.base, "items");
    } else {
        sd_call_reply_status(call, status, "cannot read stock levels");
    }
    free(levels);
    free(pointers);
}

/* Runs a paged query and answers with its packed response or its error. */
static void sd_reply_query(sd_call_t *call, sd_status_t status, sd_error_t *error, uint8_t *packed,
                           size_t packed_length)
{
    if (status == SD_OK) {
        sd_call_reply_bytes(call, packed, packed_length);
    } else {
        sd_call_reply_error(call, error);
    }
    free(packed);
    sd_error_free(error);
}

static void sd_handle_list_stock(sd_call_t *call, const uint8_t *bytes, size_t length)
{
    Stockd__V1__ListStockRequest *request = (Stockd__V1__ListStockRequest *)sd_unpack(
        call, &stockd__v1__list_stock_request__descriptor, bytes, length);
    if (request == NULL || sd_refuse_read_off_leader(call)) {
        return;
    }
    sd_error_t error;
    sd_error_init(&error);
    uint8_t *packed = NULL;
    size_t packed_length = 0;
    sd_status_t status = sd_query_list_stock(sd_call_services(call)->storage, request, &error,
                                             &packed, &packed_length);
    sd_reply_query(call, status, &error, packed, packed_length);
}

static void sd_handle_history(sd_call_t *call, const uint8_t *bytes, size_t length)
{
    Stockd__V1__HistoryRequest *request = (Stockd__V1__HistoryRequest *)sd_unpack(
        call, &stockd__v1__history_request__descriptor, bytes, length);
    if (request == NULL) {
        return;
    }
    sd_error_t error;
    sd_error_init(&error);
    uint8_t *packed = NULL;
    size_t packed_length = 0;
    const sd_services_t *services = sd_call_services(call);
    sd_status_t status =
        sd_query_history(services->storage, sd_storage_pruned_through(services->storage), request,
                         &error, &packed, &packed_length);
    sd_reply_query(call, status, &error, packed, packed_length);
}

static void sd_handle_watch(sd_call_t *call, const uint8_t *bytes, size_t length)
{
    Stockd__V1__WatchRequest *request = (Stockd__V1__WatchRequest *)sd_unpack(
        call, &stockd__v1__watch_request__descriptor, bytes, length);
    if (request == NULL) {
        return;
    }
    const sd_services_t *services = sd_call_services(call);
    sd_error_t error;
    sd_error_init(&error);
    if (!sd_validate_tenant(request->tenant_id, "tenant_id", &error) ||
        !sd_validate_after_seq(request->after_seq, sd_storage_pruned_through(services->storage),
                               &error)) {
        sd_reply_validation(call, &error);
        return;
    }
    sd_call_set_log_context(call, request->tenant_id, "");
    sd_watch_hub_add(services->watch_hub, call, request->tenant_id, request->after_seq);
}

/* ---- grpc.health.v1.Health ---- */

/* "" (the whole server) and the Inventory service are known; anything else is NOT_FOUND. */
static bool sd_health_known(const char *service)
{
    return service[0] == '\0' || strcmp(service, "stockd.v1.Inventory") == 0;
}

/* NOT_SERVING while shutting down and once storage has failed (the process is about to exit
 * and restart), so probes and load balancers stop sending work. */
static Grpc__Health__V1__HealthCheckResponse__ServingStatus sd_health_status(sd_call_t *call)
{
    const sd_services_t *services = sd_call_services(call);
    bool replica_behind =
        services->replication != NULL && !sd_replication_ready(services->replication);
    return sd_server_is_stopping(call) || sd_writer_failed(services->writer) || replica_behind
               ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING
               : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
}

static void sd_handle_health_check(sd_call_t *call, const uint8_t *bytes, size_t length)
{
    Grpc__Health__V1__HealthCheckRequest *request =
        (Grpc__Health__V1__HealthCheckRequest *)sd_unpack(
            call, &grpc__health__v1__health_check_request__descriptor, bytes, length);
    if (request == NULL) {
        return;
    }
    if (!sd_health_known(request->service)) {
        sd_call_reply_status(call, SD_NOT_FOUND, "unknown service");
        return;
    }
    Grpc__Health__V1__HealthCheckResponse response = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    response.status = sd_health_status(call);
    sd_call_reply_message(call, &response.base);
}

static void sd_handle_health_watch(sd_call_t *call, const uint8_t *bytes, size_t length)
{
    Grpc__Health__V1__HealthCheckRequest *request =
        (Grpc__Health__V1__HealthCheckRequest *)sd_unpack(
            call, &grpc__health__v1__health_check_request__descriptor, bytes, length);
    if (request == NULL) {
        return;
    }
    Grpc__Health__V1__HealthCheckResponse response = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    /* Per the health protocol, Watch on an unknown service streams SERVICE_UNKNOWN. A health
     * watch reports the status at its start; it is ended (UNAVAILABLE) when stockd stops. */
    response.status =
        sd_health_known(request->service)
            ? sd_health_status(call)
            : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN;
    sd_call_stream_hold(call, &response.base);
}

void sd_health_report_not_serving(sd_server_t *server)
{
    sd_health_report(server, false);
}

void sd_health_report(sd_server_t *server, bool serving)
{
    Grpc__Health__V1__HealthCheckResponse response = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    response.status = serving
                          ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
                          : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
    uint8_t bytes[16];
    size_t length = grpc__health__v1__health_check_response__pack(&response, bytes);
    sd_server_broadcast_health(server, bytes, length);
}

/* ---- stockd.v1.Admin ---- */

/* False (and the call answered INVALID_ARGUMENT naming `name`) for an invalid checkpoint
 * name: it becomes a directory name under the backup directory. */
static bool sd_checkpoint_name_checked(sd_call_t *call, const char *name)
{
    if (sd_checkpoint_name_valid(name)) {
        return true;
    }
    sd_error_t error;
    sd_error_init(&error);
    sd_error_add_field(&error, "name",
                       "must be 1..64 bytes of [A-Za-z0-9._-], not starting with '.'");
    sd_reply_validation(call, &error);
    return false;
}

static void sd_handle_checkpoint(sd_call_t *call, const uint8_t *bytes, size_t length)
{
    Stockd__V1__CheckpointRequest *request = (Stockd__V1__CheckpointRequest *)sd_unpack(
        call, &stockd__v1__checkpoint_request__descriptor, bytes, length);
    if (request == NULL) {
        return;
    }
    if (!sd_checkpoint_name_checked(call, request->name)) {
        return;
    }
    const sd_services_t *services = sd_call_services(call);
    char path[1024], message[512];
    uint64_t seq = sd_writer_committed_seq(services->writer); /* read first: all <= it are in */
    sd_status_t status =
        sd_checkpoints_take(services->checkpoints, services->storage, request->name, path,
                            sizeof(path), message, sizeof(message));
    if (status != SD_OK) {
        sd_call_reply_status(call, status, message);
        return;
    }
    Stockd__V1__CheckpointResponse response = STOCKD__V1__CHECKPOINT_RESPONSE__INIT;
    response.path = path;
    response.ledger_seq = seq;
    sd_call_reply_message(call, &response.base);
}

static void sd_handle_list_checkpoints(sd_call_t *call, const uint8_t *bytes, size_t length)
{
    if (sd_unpack(call, &stockd__v1__list_checkpoints_request__descriptor, bytes, length) == NULL) {
        return;
    }
    const sd_services_t *services = sd_call_services(call);
    sd_checkpoint_info_t *list = NULL;
    size_t count = 0;
    if (sd_checkpoints_list(services->checkpoints, &list, &count) != SD_OK) {
        sd_call_reply_status(call, SD_UNAVAILABLE, "cannot read the backup directory");
        return;
    }
    Stockd__V1__CheckpointInfo *infos = calloc(count + 1, sizeof(*infos));
    Stockd__V1__CheckpointInfo **pointers = calloc(count + 1, sizeof(*pointers));
    char(*paths)[1024] = calloc(count + 1, sizeof(*paths));
    if (infos == NULL || pointers == NULL || paths == NULL) {
        sd_call_reply_status(call, SD_RESOURCE_EXHAUSTED, "out of memory");
    } else {
        for (size_t i = 0; i < count; i++) {
            stockd__v1__checkpoint_info__init(&infos[i]);
            sd_checkpoints_path(services->checkpoints, list[i].name, paths[i], sizeof(paths[i]));
            infos[i].name = list[i].name;
            infos[i].path = paths[i];
            infos[i].created_unix_seconds = list[i].created_unix_seconds;
            pointers[i] = &infos[i];
        }
        Stockd__V1__ListCheckpointsResponse response = STOCKD__V1__LIST_CHECKPOINTS_RESPONSE__INIT;
        response.n_checkpoints = count;
        response.checkpoints = pointers;
        response.checkpoints_max = (int32_t)sd_checkpoints_max(services->checkpoints);
        sd_reply_fitting(call, &response.base, "checkpoints");
    }
    free(infos);
    free(pointers);
    free(paths);
    free(list);
}

static void sd_handle_delete_checkpoint(sd_call_t *call, const uint8_t *bytes, size_t length)
{
    Stockd__V1__DeleteCheckpointRequest *request = (Stockd__V1__DeleteCheckpointRequest *)sd_unpack(
        call, &stockd__v1__delete_checkpoint_request__descriptor, bytes, length);
    if (request == NULL) {
        return;
    }
    if (!sd_checkpoint_name_checked(call, request->name)) {
        return;
    }
    char message[512];
    sd_status_t status = sd_checkpoints_remove(sd_call_services(call)->checkpoints, request->name,
                                               message, sizeof(message));
    if (status != SD_OK) {
        sd_call_reply_status(call, status, message);
        return;
    }
    Stockd__V1__DeleteCheckpointResponse response = STOCKD__V1__DELETE_CHECKPOINT_RESPONSE__INIT;
    sd_call_reply_message(call, &response.base);
}

const sd_method_t sd_methods[] = {
    {"/stockd.v1.Inventory/Decrement", "Decrement", SD_METHOD_UNARY, sd_handle_decrement, false,
     SD_ROLE_WRITE},
    {"/stockd.v1.Inventory/Increment", "Increment", SD_METHOD_UNARY, sd_handle_increment, false,
     SD_ROLE_WRITE},
    {"/stockd.v1.Inventory/SetStock", "SetStock", SD_METHOD_UNARY, sd_handle_set_stock, false,
     SD_ROLE_WRITE},
    {"/stockd.v1.Inventory/GetStock", "GetStock", SD_METHOD_UNARY, sd_handle_get_stock, false,
     SD_ROLE_READ},
    {"/stockd.v1.Inventory/ListStock", "ListStock", SD_METHOD_UNARY, sd_handle_list_stock, false,
     SD_ROLE_READ},
    {"/stockd.v1.Inventory/History", "History", SD_METHOD_UNARY, sd_handle_history, false,
     SD_ROLE_READ},
    {"/stockd.v1.Inventory/Watch", "Watch", SD_METHOD_SERVER_STREAM, sd_handle_watch, false,
     SD_ROLE_READ},
    {"/stockd.v1.Inventory/Batch", "Batch", SD_METHOD_UNARY, sd_handle_batch, false, SD_ROLE_WRITE},
    {"/stockd.v1.Admin/Checkpoint", "Admin.Checkpoint", SD_METHOD_UNARY, sd_handle_checkpoint,
     false, SD_ROLE_ADMIN},
    {"/stockd.v1.Admin/ListCheckpoints", "Admin.ListCheckpoints", SD_METHOD_UNARY,
     sd_handle_list_checkpoints, false, SD_ROLE_ADMIN},
    {"/stockd.v1.Admin/DeleteCheckpoint", "Admin.DeleteCheckpoint", SD_METHOD_UNARY,
     sd_handle_delete_checkpoint, false, SD_ROLE_ADMIN},
    {"/stockd.v1.Admin/ClusterStatus", "Admin.ClusterStatus", SD_METHOD_UNARY,
     sd_handle_cluster_status, false, SD_ROLE_ADMIN},
    {"/stockd.v1.Admin/TransferLeadership", "Admin.TransferLeadership", SD_METHOD_UNARY,
     sd_handle_transfer_leadership, false, SD_ROLE_ADMIN},
    {"/stockd.v1.Admin/AddMember", "Admin.AddMember", SD_METHOD_UNARY, sd_handle_add_member, false,
     SD_ROLE_ADMIN},
    {"/stockd.v1.Admin/RemoveMember", "Admin.RemoveMember", SD_METHOD_UNARY,
     sd_handle_remove_member, false, SD_ROLE_ADMIN},
    {"/grpc.health.v1.Health/Check", "Health.Check", SD_METHOD_UNARY, sd_handle_health_check, true,
     SD_ROLE_NONE},
    {"/grpc.health.v1.Health/Watch", "Health.Watch", SD_METHOD_SERVER_STREAM,
     sd_handle_health_watch, true, SD_ROLE_NONE},
};
const size_t sd_methods_count = sizeof(sd_methods) / sizeof(sd_methods[0]);
