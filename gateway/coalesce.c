/* coalesce.c — see coalesce.h. */
#include "coalesce.h"

#include <errno.h>
#include <grpc/status.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "sd_limits.h"
#include "util.h"

/* What a Batch may carry besides its writes' own bytes: the framing of each write and of its
 * on_behalf_of, well within this. */
#define GW_BATCH_BYTES_BUDGET (SD_BATCH_REQUEST_BYTES_MAX - 64 * 1024)
#define GW_WRITE_FRAMING_BYTES (16 + SD_ON_BEHALF_OF_BYTES_MAX)
/* After stockd answered a Batch UNIMPLEMENTED, how long calls go alone before Batch is tried
 * again (an upgrade of stockd usually completes within it). */
#define GW_BATCH_RETRY_MS 60000.0

typedef struct gw_pending {
    const ProtobufCMessage *request;
    const char *on_behalf_of;
    int64_t deadline_ms; /* monotonic */
    size_t lines, bytes;
    char *message_out;
    size_t message_capacity;
    int code;
    bool taken;   /* by a sender: its outcome will come */
    bool leading; /* its thread is sending (calls of others, maybe not its own) */
    bool done;
    pthread_cond_t wake; /* done, or: lead (a sender place is free and this call is first) */
    struct gw_pending *next;
} gw_pending_t;

struct gw_coalescer {
    gw_coalescer_options_t options;
    pthread_mutex_t mutex;
    pthread_cond_t arrivals; /* a call was queued or withdrawn (a waiting sender looks again) */
    gw_pending_t *head, *tail;
    size_t queued;
    size_t announced; /* calls being verified that said they will come */
    size_t in_flight; /* sender places taken */
    bool gathering;   /* a sender waits for announced calls: newcomers join it, not lead */
    _Atomic uint64_t batches, batch_calls, lone_calls;
    _Atomic double batch_unsupported_until_ms; /* monotonic; see gw_batch_unsupported */
};

gw_coalescer_t *gw_coalescer_new(const gw_coalescer_options_t *options)
{
    gw_coalescer_t *coalescer = calloc(1, sizeof(*coalescer));
    if (coalescer == NULL) {
        return NULL;
    }
    coalescer->options = *options;
    pthread_mutex_init(&coalescer->mutex, NULL);
    if (!util_cond_init_monotonic(&coalescer->arrivals)) {
        pthread_mutex_destroy(&coalescer->mutex);
        free(coalescer);
        return NULL;
    }
    return coalescer;
}

void gw_coalescer_free(gw_coalescer_t *coalescer)
{
    if (coalescer == NULL) {
        return;
    }
    pthread_cond_destroy(&coalescer->arrivals);
    pthread_mutex_destroy(&coalescer->mutex);
    free(coalescer);
}

void gw_coalescer_announce(gw_coalescer_t *coalescer)
{
    pthread_mutex_lock(&coalescer->mutex);
    coalescer->announced++;
    pthread_mutex_unlock(&coalescer->mutex);
}

void gw_coalescer_withdraw(gw_coalescer_t *coalescer)
{
    pthread_mutex_lock(&coalescer->mutex);
    coalescer->announced--;
    pthread_cond_broadcast(&coalescer->arrivals);
    pthread_mutex_unlock(&coalescer->mutex);
}

void gw_coalescer_withdraw_if(gw_coalescer_t *coalescer, bool announced)
{
    if (announced) {
        gw_coalescer_withdraw(coalescer);
    }
}

void gw_coalescer_stats(gw_coalescer_t *coalescer, gw_coalescer_stats_t *out)
{
    out->batches = atomic_load(&coalescer->batches);
    out->batch_calls = atomic_load(&coalescer->batch_calls);
    out->lone_calls = atomic_load(&coalescer->lone_calls);
}

static bool gw_is_decrement(const ProtobufCMessage *request)
{
    return request->descriptor == &stockd__v1__decrement_request__descriptor;
}

static size_t gw_request_lines(const ProtobufCMessage *request)
{
    return gw_is_decrement(request) ? ((const Stockd__V1__DecrementRequest *)request)->n_lines
                                    : ((const Stockd__V1__IncrementRequest *)request)->n_lines;
}

/* ---- with the lock held ---- */

/* A sender waits, at most wait_us, while calls are announced and the Batch is not full. */
static void gw_wait_for_announced(gw_coalescer_t *coalescer)
{
    if (coalescer->options.wait_us <= 0 || coalescer->announced == 0) {
        return;
    }
    struct timespec until = util_time_after_us(CLOCK_MONOTONIC, coalescer->options.wait_us);
    while (coalescer->announced > 0 && coalescer->queued < SD_BATCH_WRITES_MAX) {
        if (pthread_cond_timedwait(&coalescer->arrivals, &coalescer->mutex, &until) == ETIMEDOUT) {
            break;
        }
    }
}

/* Takes calls from the head of the queue, at least one, within the Batch limits. */
static size_t gw_take(gw_coalescer_t *coalescer, gw_pending_t **taken)
{
    size_t count = 0, lines = 0, bytes = 0;
    while (coalescer->head != NULL && count < SD_BATCH_WRITES_MAX) {
        gw_pending_t *pending = coalescer->head;
        if (count > 0 && (lines + pending->lines > SD_BATCH_LINES_MAX ||
                          bytes + pending->bytes > GW_BATCH_BYTES_BUDGET)) {
            break;
        }
        lines += pending->lines;
        bytes += pending->bytes;
        coalescer->head = pending->next;
        coalescer->queued--;
        pending->taken = true;
        taken[count++] = pending;
    }
    if (coalescer->head == NULL) {
        coalescer->tail = NULL;
    }
    return count;
}

static void gw_settle(gw_pending_t *pending, int code, const char *message)
{
    pending->code = code;
    snprintf(pending->message_out, pending->message_capacity, "%s", message);
    pending->done = true;
    pthread_cond_signal(&pending->wake);
}

/* ---- without the lock: the call to stockd ---- */

/* Milliseconds left of a call's own deadline (<= 0: passed). */
static int64_t gw_left_ms(const gw_pending_t *pending)
{
    return pending->deadline_ms - (int64_t)util_monotonic_ms();
}

/* The deadline of a Batch: the latest of its calls', so that none is cut short by another
 * call's (they differ only by the time each waited in the queue). */
static int64_t gw_batch_deadline_ms(gw_pending_t *const *taken, size_t count)
{
    int64_t latest = 1;
    for (size_t i = 0; i < count; i++) {
        int64_t left = gw_left_ms(taken[i]);
        latest = left > latest ? left : latest;
    }
    return latest;
}

static void gw_send_lone(gw_coalescer_t *coalescer, gw_pending_t *pending, int *code_out,
                         sc_status_t *status)
{
    ProtobufCMessage *reply = NULL;
    int64_t left = gw_left_ms(pending);
    /* a write of unknown outcome (a leader change) is sent again within its deadline: the
     * request_id (Wix's, or one libstockclient makes) keeps it to one application */
    sc_call_options_t options = {.deadline_ms = left > 0 ? left : 1,
                                 .on_behalf_of = pending->on_behalf_of,
                                 .retry_unknown = true};
    *code_out = gw_is_decrement(pending->request)
                    ? sc_decrement_with(coalescer->options.client,
                                        (const Stockd__V1__DecrementRequest *)pending->request,
                                        (Stockd__V1__DecrementResponse **)&reply, &options, status)
                    : sc_increment_with(coalescer->options.client,
                                        (const Stockd__V1__IncrementRequest *)pending->request,
                                        (Stockd__V1__IncrementResponse **)&reply, &options, status);
    if (reply != NULL) {
        protobuf_c_message_free_unpacked(reply, NULL);
    }
    atomic_fetch_add(&coalescer->lone_calls, 1);
}

/* Sends the taken calls as one Batch; *response_out is NULL when the call as a whole failed
 * (then status says why, for every call). */
static void gw_send_batch(gw_coalescer_t *coalescer, gw_pending_t *const *taken, size_t count,
                          Stockd__V1__BatchWrite *writes, Stockd__V1__BatchWrite **pointers,
                          Stockd__V1__BatchResponse **response_out, sc_status_t *status)
{
    for (size_t i = 0; i < count; i++) {
        stockd__v1__batch_write__init(&writes[i]);
        if (gw_is_decrement(taken[i]->request)) {
            writes[i].write_case = STOCKD__V1__BATCH_WRITE__WRITE_DECREMENT;
            writes[i].decrement = (Stockd__V1__DecrementRequest *)taken[i]->request;
        } else {
            writes[i].write_case = STOCKD__V1__BATCH_WRITE__WRITE_INCREMENT;
            writes[i].increment = (Stockd__V1__IncrementRequest *)taken[i]->request;
        }
        writes[i].on_behalf_of = (char *)taken[i]->on_behalf_of;
        pointers[i] = &writes[i];
    }
    Stockd__V1__BatchRequest request = STOCKD__V1__BATCH_REQUEST__INIT;
    request.n_writes = count;
    request.writes = pointers;
    /* sent again on an unknown outcome only when every write carries a request_id */
    bool every_write_has_an_id = true;
    for (size_t i = 0; i < count; i++) {
        const char *id = gw_is_decrement(taken[i]->request) ? writes[i].decrement->request_id
                                                            : writes[i].increment->request_id;
        every_write_has_an_id = every_write_has_an_id && id != NULL && id[0] != '\0';
    }
    sc_call_options_t options = {.deadline_ms = gw_batch_deadline_ms(taken, count),
                                 .retry_unknown = every_write_has_an_id};
    *response_out = NULL;
    sc_batch_with(coalescer->options.client, &request, response_out, &options, status);
    atomic_fetch_add(&coalescer->batches, 1);
    atomic_fetch_add(&coalescer->batch_calls, count);
}

static void gw_settle_locked(gw_coalescer_t *coalescer, gw_pending_t *pending, int code,
                             const char *message)
{
    pthread_mutex_lock(&coalescer->mutex);
    gw_settle(pending, code, message);
    pthread_mutex_unlock(&coalescer->mutex);
}

/* Calls whose own deadline passed while they waited are answered DEADLINE_EXCEEDED without
 * being sent (nothing of them was applied); returns how many of taken are left, compacted. */
static size_t gw_settle_expired(gw_coalescer_t *coalescer, gw_pending_t **taken, size_t count)
{
    size_t live = 0;
    for (size_t i = 0; i < count; i++) {
        if (gw_left_ms(taken[i]) > 0) {
            taken[live++] = taken[i];
        } else {
            gw_settle_locked(coalescer, taken[i], GRPC_STATUS_DEADLINE_EXCEEDED,
                             "deadline passed while waiting to be sent; not sent");
        }
    }
    return live;
}

/* A write of a Batch that came back UNAVAILABLE (the replica stopped leading while the Batch
 * was in flight) goes again alone, which follows the leader and sends an unknown outcome
 * again (retry_unknown) — when that is safe: it was not applied, or it carries a request_id
 * (stockd then applies it at most once) — and time is left. */
static bool gw_worth_sending_again(const gw_pending_t *pending, int code, const char *message)
{
    if (code != GRPC_STATUS_UNAVAILABLE || gw_left_ms(pending) <= 0) {
        return false;
    }
    const char *id = gw_is_decrement(pending->request)
                         ? ((const Stockd__V1__DecrementRequest *)pending->request)->request_id
                         : ((const Stockd__V1__IncrementRequest *)pending->request)->request_id;
    return strstr(message, "not applied") != NULL || (id != NULL && id[0] != '\0');
}

/* The Batch's answer of a write that is sent again. */
typedef struct {
    int code;
    char message[sizeof(((sc_status_t *)0)->message)]; /* as long as a call's message */
} gw_batch_answer_t;

/* Sends writes of a Batch again, alone, one after the other; one whose deadline passed
 * meanwhile is not sent (a 1 ms call would come back "deadline exceeded", outcome unknown,
 * though it was not even sent): it keeps the Batch's answer. */
static void gw_send_again(gw_coalescer_t *coalescer, gw_pending_t *const *taken,
                          const gw_batch_answer_t *answers, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        if (gw_left_ms(taken[i]) <= 0) {
            gw_settle_locked(coalescer, taken[i], answers[i].code, answers[i].message);
            continue;
        }
        sc_status_t status;
        int code = GRPC_STATUS_INTERNAL;
        gw_send_lone(coalescer, taken[i], &code, &status);
        gw_settle_locked(coalescer, taken[i], code, status.message);
        sc_status_free(&status);
    }
}

/* Each call alone, one after the other (a stockd without Batch, or a lone call). */
static void gw_send_each_alone(gw_coalescer_t *coalescer, gw_pending_t *const *taken, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        sc_status_t status;
        int code = GRPC_STATUS_INTERNAL;
        gw_send_lone(coalescer, taken[i], &code, &status);
        gw_settle_locked(coalescer, taken[i], code, status.message);
        sc_status_free(&status);
    }
}

/* True while stockd is known not to serve Batch (an older version, e.g. during a rolling
 * upgrade): calls then go alone, and Batch is tried again after GW_BATCH_RETRY_MS. */
static bool gw_batch_unsupported(gw_coalescer_t *coalescer)
{
    return util_monotonic_ms() < atomic_load(&coalescer->batch_unsupported_until_ms);
}

/* Sends the taken calls and settles each (takes the lock to settle). */
static void gw_send_and_settle(gw_coalescer_t *coalescer, gw_pending_t **taken, size_t count)
{
    count = gw_settle_expired(coalescer, taken, count);
    if (count <= 1 || gw_batch_unsupported(coalescer)) {
        gw_send_each_alone(coalescer, taken, count);
        return;
    }
    sc_status_t status;
    Stockd__V1__BatchResponse *response = NULL;
    Stockd__V1__BatchWrite *writes = malloc(count * sizeof(*writes));
    Stockd__V1__BatchWrite **pointers = malloc(count * sizeof(*pointers));
    if (writes != NULL && pointers != NULL) {
        gw_send_batch(coalescer, taken, count, writes, pointers, &response, &status);
    } else {
        sc_status_init(&status); /* nothing was sent: retry later */
        status.code = GRPC_STATUS_RESOURCE_EXHAUSTED;
        snprintf(status.message, sizeof(status.message), "gateway out of memory");
    }
    free(writes);
    free(pointers);
    if (status.code == GRPC_STATUS_UNIMPLEMENTED) { /* nothing applied: each goes alone */
        atomic_store(&coalescer->batch_unsupported_until_ms,
                     util_monotonic_ms() + GW_BATCH_RETRY_MS);
        SD_LOG(LOG_WARN, "batch_not_served",
               LF_STR("effect", "calls go to stockd one by one; Batch is tried again later"));
        sc_status_free(&status);
        gw_send_each_alone(coalescer, taken, count);
        return;
    }
    size_t again = 0;
    gw_batch_answer_t *answers = malloc(count * sizeof(*answers)); /* of the writes sent again */
    pthread_mutex_lock(&coalescer->mutex);
    for (size_t i = 0; i < count; i++) {
        int code = response ? sc_batch_result_code(response->results[i]) : status.code;
        const char *message =
            response ? sc_batch_result_message(response->results[i]) : status.message;
        if (response != NULL && answers != NULL &&
            gw_worth_sending_again(taken[i], code, message)) {
            answers[again].code = code;
            snprintf(answers[again].message, sizeof(answers[again].message), "%s", message);
            taken[again++] = taken[i];
        } else {
            gw_settle(taken[i], code, message);
        }
    }
    pthread_mutex_unlock(&coalescer->mutex);
    if (response != NULL) {
        stockd__v1__batch_response__free_unpacked(response, NULL);
    }
    sc_status_free(&status);
    gw_send_again(coalescer, taken, answers, again); /* they follow the leader and retry */
    free(answers);
}

/* Wakes the first queued call whose thread is not itself sending, to take a free sender
 * place (a thread that is sending will look at the queue again when it is done). */
static void gw_wake_next(gw_coalescer_t *coalescer)
{
    for (gw_pending_t *pending = coalescer->head; pending != NULL; pending = pending->next) {
        if (!pending->leading) {
            pthread_cond_signal(&pending->wake);
            return;
        }
    }
}

/* Holding a sender place: waits for announced calls, takes, sends, settles; then gives the
 * place to the first queued call, if any. Called and returns with the lock held. */
static void gw_lead(gw_coalescer_t *coalescer, gw_pending_t *own, gw_pending_t **taken)
{
    coalescer->in_flight++;
    own->leading = true;
    coalescer->gathering = true;
    gw_wait_for_announced(coalescer);
    coalescer->gathering = false;
    size_t count = gw_take(coalescer, taken);
    if (coalescer->head != NULL && coalescer->in_flight < coalescer->options.senders) {
        gw_wake_next(coalescer); /* what did not fit goes out beside it */
    }
    pthread_mutex_unlock(&coalescer->mutex);
    gw_send_and_settle(coalescer, taken, count);
    pthread_mutex_lock(&coalescer->mutex);
    own->leading = false;
    coalescer->in_flight--;
    gw_wake_next(coalescer);
}

int gw_coalescer_call(gw_coalescer_t *coalescer, const ProtobufCMessage *request,
                      const char *on_behalf_of, int64_t deadline_ms, char *message_out,
                      size_t message_capacity)
{
    gw_pending_t pending = {
        .request = request,
        .on_behalf_of = on_behalf_of,
        .deadline_ms = (int64_t)util_monotonic_ms() + deadline_ms,
        .lines = gw_request_lines(request),
        .bytes = protobuf_c_message_get_packed_size(request) + GW_WRITE_FRAMING_BYTES,
        .message_out = message_out,
        .message_capacity = message_capacity,
    };
    pthread_cond_init(&pending.wake, NULL);
    gw_pending_t *taken[SD_BATCH_WRITES_MAX]; /* 8 KiB: the handler threads' stacks are MiBs */
    pthread_mutex_lock(&coalescer->mutex);
    coalescer->announced--;
    if (coalescer->tail != NULL) {
        coalescer->tail->next = &pending;
    } else {
        coalescer->head = &pending;
    }
    coalescer->tail = &pending;
    coalescer->queued++;
    pthread_cond_broadcast(&coalescer->arrivals);
    while (!pending.done) {
        if (!pending.taken && !coalescer->gathering &&
            coalescer->in_flight < coalescer->options.senders) {
            gw_lead(coalescer, &pending, taken);
        } else {
            pthread_cond_wait(&pending.wake, &coalescer->mutex);
        }
    }
    pthread_mutex_unlock(&coalescer->mutex);
    pthread_cond_destroy(&pending.wake);
    return pending.code;
}
