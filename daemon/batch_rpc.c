/* batch_rpc.c — Inventory/Batch: up to SD_BATCH_WRITES_MAX independent writes in one call.
 *
 * (Not to be confused with batch.c, the writer's group commit.) Each write is validated and
 * authorized on its own; the valid ones are queued to the writer together
 * (sd_writer_submit_many), so nothing lands between them and they are applied in the order
 * of the request, each exactly as a lone call would be: its own all-or-nothing, request_id,
 * status and details. The answer goes once the last of them completes: one BatchResult per
 * write, encoded here around the writer's packed responses, without unpacking them again.
 * What it saves over lone calls is per-call work (HTTP/2 stream, metadata, completion-queue
 * round trips) and, since the writes arrive together, commit batches fill up at once. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "handlers.h"
#include "log.h"
#include "sd_limits.h"
#include "util.h"

/* What a refused write's error holds besides its job, counted per write (a message, and
 * violations naming its fields). */
#define SD_BATCH_ERROR_BYTES_ESTIMATE 256

typedef struct {
    sd_call_t *call;
    size_t count;
    atomic_size_t pending; /* queued writes not yet completed */
    sd_write_job_t *jobs;  /* one per write; a refused write's job holds only its result */
} sd_batch_call_t;

_Static_assert(sizeof(sd_batch_call_t) <= SD_CALL_SLOT_BYTES, "a Batch fits the call's slot");

static void sd_batch_call_release(void *slot)
{
    sd_batch_call_t *batch = slot;
    for (size_t i = 0; batch->jobs != NULL && i < batch->count; i++) {
        sd_write_result_free(&batch->jobs[i].result);
    }
    free(batch->jobs);
}

/* ---- the answer: protobuf wire encoding of BatchResponse ---- */

enum { SD_WIRE_LEN = 2 };                                    /* length-delimited wire type */
enum { SD_RESULT_STATUS = 1, SD_RESULT_RESPONSE_FIRST = 2 }; /* BatchResult field numbers */
enum { SD_RESPONSE_RESULTS = 1 };                            /* BatchResponse.results */

static size_t sd_varint_length(uint64_t value)
{
    size_t length = 1;
    while (value >= 0x80) {
        value >>= 7;
        length++;
    }
    return length;
}

static uint8_t *sd_varint_put(uint8_t *out, uint64_t value)
{
    while (value >= 0x80) {
        *out++ = (uint8_t)(value | 0x80);
        value >>= 7;
    }
    *out++ = (uint8_t)value;
    return out;
}

/* Bytes of a length-delimited field of `length` bytes (field numbers < 16: a one-byte tag). */
static size_t sd_field_length(size_t length)
{
    return 1 + sd_varint_length(length) + length;
}

static uint8_t *sd_field_put_header(uint8_t *out, unsigned number, size_t length)
{
    *out++ = (uint8_t)(number << 3 | SD_WIRE_LEN);
    return sd_varint_put(out, length);
}

/* What one write's BatchResult carries: its packed response (OK) or its packed status. */
typedef struct {
    const uint8_t *bytes;
    size_t length;
    unsigned field;
    uint8_t *status; /* owned, when the result is an error */
} sd_result_part_t;

/* Packs each result's part; with_details false drops the google.rpc details of errors (kept
 * for when the whole answer would not fit a client's 4 MiB limit). Sets *total_out to the
 * answer's size. False when out of memory. */
static bool sd_batch_pack_parts(const sd_batch_call_t *batch, sd_result_part_t *parts,
                                bool with_details, size_t *total_out)
{
    size_t total = 0;
    for (size_t i = 0; i < batch->count; i++) {
        const sd_write_job_t *job = &batch->jobs[i];
        sd_result_part_t *part = &parts[i];
        free(part->status);
        *part = (sd_result_part_t){0};
        if (job->result.error.status == SD_OK) {
            part->bytes = job->result.response;
            part->length = job->result.response_length;
            part->field = SD_RESULT_RESPONSE_FIRST + (unsigned)job->request.kind;
        } else {
            sd_error_t bare = job->result.error; /* a shallow copy: read only */
            if (!with_details) {
                bare.field_violations_count = 0;
                bare.precondition_violations_count = 0;
            }
            if (!sd_error_pack_status(&bare, &part->status, &part->length)) {
                return false;
            }
            part->bytes = part->status;
            part->field = SD_RESULT_STATUS;
        }
        total += sd_field_length(sd_field_length(part->length));
    }
    *total_out = total;
    return true;
}

static void sd_batch_encode(const sd_result_part_t *parts, size_t count, uint8_t *out)
{
    for (size_t i = 0; i < count; i++) {
        out = sd_field_put_header(out, SD_RESPONSE_RESULTS, sd_field_length(parts[i].length));
        out = sd_field_put_header(out, parts[i].field, parts[i].length);
        if (parts[i].length > 0) {
            memcpy(out, parts[i].bytes, parts[i].length);
        }
        out += parts[i].length;
    }
}

/* Answers the call with every write's result (on the writer thread once the last queued
 * write completes, or on the handler's thread when none was queued). */
static void sd_batch_reply(sd_batch_call_t *batch)
{
    /* once answered, the call and its slot (batch) may be freed by another thread at once */
    size_t count = batch->count;
    sd_result_part_t *parts = calloc(count, sizeof(*parts));
    size_t total = 0;
    bool ok = parts != NULL && sd_batch_pack_parts(batch, parts, true, &total);
    if (ok && total > SD_RESPONSE_BYTES_MAX) {
        ok = sd_batch_pack_parts(batch, parts, false, &total);
    }
    uint8_t *answer = ok ? malloc(total > 0 ? total : 1) : NULL;
    if (answer != NULL) {
        sd_batch_encode(parts, count, answer);
        sd_call_reply_bytes(batch->call, answer, total);
    } else {
        /* the writes are decided (some may be applied) but cannot be told: say so */
        sd_call_reply_status(batch->call, SD_INTERNAL,
                             "out of memory building the Batch answer: the outcome of each write "
                             "is unknown; retry each with its request_id");
    }
    free(answer);
    for (size_t i = 0; parts != NULL && i < count; i++) {
        free(parts[i].status);
    }
    free(parts);
}

static void sd_batch_write_complete(sd_write_job_t *job)
{
    sd_batch_call_t *batch = job->context;
    if (atomic_fetch_sub(&batch->pending, 1) == 1) {
        sd_batch_reply(batch);
    }
}

/* ---- the request ---- */

/* The Batch-wide limits; on failure `error` names the field. */
static bool sd_batch_request_valid(const Stockd__V1__BatchRequest *request, sd_error_t *error)
{
    if (request->n_writes == 0 || request->n_writes > SD_BATCH_WRITES_MAX) {
        sd_error_add_field(error, "writes", "must hold 1..%d writes (got %zu)", SD_BATCH_WRITES_MAX,
                           request->n_writes);
        return false;
    }
    size_t lines = 0;
    for (size_t i = 0; i < request->n_writes; i++) {
        const Stockd__V1__BatchWrite *write = request->writes[i];
        switch (write->write_case) {
        case STOCKD__V1__BATCH_WRITE__WRITE_DECREMENT:
            lines += write->decrement->n_lines;
            break;
        case STOCKD__V1__BATCH_WRITE__WRITE_INCREMENT:
            lines += write->increment->n_lines;
            break;
        case STOCKD__V1__BATCH_WRITE__WRITE_SET_STOCK:
            lines += write->set_stock->n_lines;
            break;
        default:
            break;
        }
    }
    if (lines > SD_BATCH_LINES_MAX) {
        sd_error_add_field(error, "writes", "a Batch carries at most %d lines in all (got %zu)",
                           SD_BATCH_LINES_MAX, lines);
        return false;
    }
    return true;
}

/* The message and kind of one write; false when none of the oneof is set. */
static bool sd_batch_write_of(const Stockd__V1__BatchWrite *write, const ProtobufCMessage **out,
                              sd_write_kind_t *kind_out)
{
    switch (write->write_case) {
    case STOCKD__V1__BATCH_WRITE__WRITE_DECREMENT:
        *out = &write->decrement->base;
        *kind_out = SD_WRITE_DECREMENT;
        return true;
    case STOCKD__V1__BATCH_WRITE__WRITE_INCREMENT:
        *out = &write->increment->base;
        *kind_out = SD_WRITE_INCREMENT;
        return true;
    case STOCKD__V1__BATCH_WRITE__WRITE_SET_STOCK:
        *out = &write->set_stock->base;
        *kind_out = SD_WRITE_SET;
        return true;
    default:
        return false;
    }
}

/* Authorizes and validates one write, in the order its lone call would be; true when it is
 * to be queued (job prepared), false with the job's result holding the refusal. *denied_out
 * is set when the refusal is PERMISSION_DENIED. */
static bool sd_batch_write_accept(sd_call_t *call, const Stockd__V1__BatchWrite *write,
                                  sd_write_job_t *job, bool *denied_out)
{
    const ProtobufCMessage *message = NULL;
    sd_write_kind_t kind = SD_WRITE_DECREMENT;
    *denied_out = false;
    if (!sd_batch_write_of(write, &message, &kind)) {
        sd_error_add_field(&job->result.error, "write",
                           "one of decrement, increment, set_stock is required");
        return false;
    }
    job->request.kind = kind; /* for the refusal's BatchResult */
    char message_text[384];
    const char *tenant_id = sd_write_methods[kind].to_request(message).tenant_id;
    if (!sd_call_allows_tenant(call, tenant_id, message_text, sizeof(message_text))) {
        sd_error_set(&job->result.error, SD_PERMISSION_DENIED, "%s", message_text);
        *denied_out = true;
        return false;
    }
    if (!sd_write_methods[kind].validate(message, &job->result.error)) {
        return false;
    }
    size_t on_behalf_of_length = strlen(write->on_behalf_of);
    if (!sd_on_behalf_of_valid((const unsigned char *)write->on_behalf_of, on_behalf_of_length)) {
        sd_error_add_field(&job->result.error, "on_behalf_of",
                           "must be at most %d printable ASCII characters",
                           SD_ON_BEHALF_OF_BYTES_MAX);
        return false;
    }
    sd_write_job_prepare(call, message, kind, job);
    if (on_behalf_of_length > 0) {
        job->request.on_behalf_of = write->on_behalf_of;
    }
    return true;
}

/* One log line for the writes of a Batch refused for their tenant (the first one named). */
static void sd_batch_log_denied(sd_call_t *call, const Stockd__V1__BatchRequest *request,
                                size_t denied, size_t first_denied)
{
    if (denied == 0) {
        return;
    }
    const ProtobufCMessage *message = NULL;
    sd_write_kind_t kind = SD_WRITE_DECREMENT;
    sd_batch_write_of(request->writes[first_denied], &message, &kind);
    SD_LOG(LOG_INFO, "batch_writes_denied", LF_INT("writes", (int64_t)denied),
           LF_INT("first_write", (int64_t)first_denied),
           LF_STR("tenant", sd_write_methods[kind].to_request(message).tenant_id),
           LF_STR("actor", sd_call_actor(call)));
}

/* Accepts or refuses each write (refusals logged once); the accepted ones are put in queued.
 * Returns how many were. */
static size_t sd_batch_accept_all(sd_call_t *call, const Stockd__V1__BatchRequest *request,
                                  sd_batch_call_t *batch, sd_write_job_t **queued)
{
    size_t queued_count = 0, denied = 0, first_denied = 0;
    for (size_t i = 0; i < batch->count; i++) {
        sd_write_job_t *job = &batch->jobs[i];
        sd_write_result_init(&job->result);
        bool was_denied = false;
        if (sd_batch_write_accept(call, request->writes[i], job, &was_denied)) {
            job->complete = sd_batch_write_complete;
            job->context = batch;
            queued[queued_count++] = job;
        }
        first_denied = was_denied && denied == 0 ? i : first_denied;
        denied += was_denied;
    }
    sd_batch_log_denied(call, request, denied, first_denied);
    return queued_count;
}

/* The answer of every accepted write when the queue refused them together (none applied). */
static void sd_batch_refuse_queued(sd_call_t *call, sd_write_job_t **queued, size_t count,
                                   sd_status_t status)
{
    size_t capacity = sd_writer_queue_capacity(sd_call_services(call)->writer);
    for (size_t i = 0; i < count; i++) {
        if (status == SD_RESOURCE_EXHAUSTED && count > capacity) {
            sd_error_set(&queued[i]->result.error, status,
                         "the Batch holds %zu writes, more than stockd's write queue ever holds "
                         "(--queue-depth %zu); not applied: split it",
                         count, capacity);
        } else {
            sd_error_set(&queued[i]->result.error, status, "%s", sd_write_refusal_message(status));
        }
    }
}

/* The request's limits and the budget for its jobs; false when the call was answered. */
static bool sd_batch_admit(sd_call_t *call, const Stockd__V1__BatchRequest *request)
{
    sd_error_t error;
    sd_error_init(&error);
    if (!sd_batch_request_valid(request, &error)) {
        sd_call_reply_error(call, &error);
        sd_error_free(&error);
        return false;
    }
    /* the jobs live until the last write completes: they count against the request-byte
     * budget like the request itself (1024 writes hold ~1 MiB) */
    size_t held_bytes = request->n_writes * (sizeof(sd_write_job_t) + sizeof(sd_write_job_t *) +
                                             SD_BATCH_ERROR_BYTES_ESTIMATE);
    if (!sd_call_charge_bytes(call, held_bytes)) {
        sd_call_reply_status(call, SD_RESOURCE_EXHAUSTED, SD_BUDGET_MESSAGE);
        return false;
    }
    return true;
}

void sd_handle_batch(sd_call_t *call, const uint8_t *bytes, size_t length)
{
    if (length > SD_BATCH_REQUEST_BYTES_MAX) { /* before unpacking it */
        sd_error_t error;
        sd_error_init(&error);
        sd_error_add_field(&error, "writes", "a Batch carries at most %d bytes (got %zu); split it",
                           SD_BATCH_REQUEST_BYTES_MAX, length);
        sd_call_reply_error(call, &error);
        sd_error_free(&error);
        return;
    }
    Stockd__V1__BatchRequest *request = (Stockd__V1__BatchRequest *)sd_unpack(
        call, &stockd__v1__batch_request__descriptor, bytes, length);
    /* a replica that does not lead refuses the whole call (with the stockd-leader hint), so
     * clients move to the leader as for any other write, instead of each write coming back
     * refused inside an OK answer */
    if (request == NULL || !sd_batch_admit(call, request) ||
        sd_refuse_off_leader(call, SD_NOT_LEADER_MESSAGE)) {
        return;
    }
    sd_batch_call_t *batch = sd_call_slot(call, sd_batch_call_release);
    batch->call = call;
    batch->count = request->n_writes;
    batch->jobs = calloc(batch->count, sizeof(*batch->jobs));
    sd_write_job_t **queued = malloc(batch->count * sizeof(*queued));
    if (batch->jobs == NULL || queued == NULL) {
        free(queued);
        sd_call_reply_status(call, SD_RESOURCE_EXHAUSTED, "out of memory; not applied");
        return;
    }
    size_t queued_count = sd_batch_accept_all(call, request, batch, queued);
    atomic_store(&batch->pending, queued_count);
    sd_status_t status = queued_count == 0 ? SD_OK
                                           : sd_writer_submit_many(sd_call_services(call)->writer,
                                                                   queued, queued_count);
    if (queued_count > 0 && status == SD_OK) {
        free(queued); /* the last completion answers; the call may be gone already */
        return;
    }
    sd_batch_refuse_queued(call, queued, queued_count, status);
    free(queued);
    sd_batch_reply(batch);
}
