/* sim_service.c — stockd's replicated write and read path on one node, as daemon/writer.c and
 * daemon/replication.c run it, reduced to its decisions:
 *  - a new leader applies a barrier of its term before it evaluates anything (the state then
 *    holds every entry earlier leaders committed: sd_replication_lead);
 *  - the writer takes a group-commit batch, evaluates it in order against the store plus the
 *    batch's own effects (idempotent request ids, restricted decrements refused when short),
 *    appends the effects as one entry and answers when that entry is applied here in the same
 *    term; leadership lost in between: "outcome unknown"; not appended: "not the leader";
 *  - a batch that appends nothing confirms its refusals with a read fence (a barrier) in the
 *    same term; replays read from the store are facts either way (sd_writer_confirm_refusals);
 *  - reads wait for a fence started after they arrived, then read the store.
 * One batch at a time, like the writer thread. Everything here is lost on a crash. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

typedef struct {
    unsigned client;
    sim_request_t request;
    sim_answer_t answer;
} sim_job_t;

typedef enum {
    SIM_WRITER_IDLE,
    SIM_WRITER_LEADING,    /* waiting for the barrier of a new term */
    SIM_WRITER_COMMITTING, /* waiting for the batch's entry */
    SIM_WRITER_FENCING     /* waiting for the fence confirming a batch's refusals */
} sim_writer_state_t;

#define SIM_QUEUE_MAX 64

struct sim_service {
    sim_world_t *world;
    unsigned node;
    sim_job_t queue[SIM_QUEUE_MAX]; /* writes not taken yet */
    size_t queue_len;
    sim_job_t batch[SIM_MAX_BATCH]; /* the batch being committed */
    size_t batch_len;
    sim_writer_state_t state;
    raft_term lead_term; /* the term whose barrier this node applied (0: none) */
    raft_term wait_term;
    raft_index wait_index;
    bool wait_done, wait_lost;
    /* reads: waiting for a fence, and behind the fence in flight */
    sim_job_t reads[SIM_QUEUE_MAX], fenced[SIM_QUEUE_MAX];
    size_t reads_len, fenced_len;
    raft_term fence_term;
    raft_index fence_index;
    bool fence_done, fence_lost;
    bool pumping, pump_again;
};

sim_service_t *sim_service_new(sim_world_t *world, unsigned node)
{
    sim_service_t *service = calloc(1, sizeof *service);
    if (service == NULL) {
        abort();
    }
    service->world = world;
    service->node = node;
    return service;
}

void sim_service_free(sim_service_t *service)
{
    free(service);
}

void sim_service_crash(sim_service_t *service)
{
    sim_world_t *world = service->world;
    unsigned node = service->node;
    memset(service, 0, sizeof *service);
    service->world = world;
    service->node = node;
}

static void sim_answer_job(sim_service_t *service, sim_job_t *job)
{
    job->answer.attempt = job->request.attempt;
    sim_send_answer(service->world, job->client, job->request.request, &job->answer);
}

static void sim_refuse_job(sim_service_t *service, sim_job_t *job, struct raft *raft)
{
    raft_id leader = 0;
    const char *address = NULL;
    raft_leader(raft, &leader, &address);
    job->answer = (sim_answer_t){.kind = SIM_ANSWER_NOT_LEADER, .leader_hint = (unsigned)leader};
    sim_answer_job(service, job);
}

void sim_service_receive(sim_service_t *service, unsigned client, const sim_request_t *request)
{
    bool read = request->kind == SIM_OP_READ;
    sim_job_t *jobs = read ? service->reads : service->queue;
    size_t *len = read ? &service->reads_len : &service->queue_len;
    sim_job_t job = {.client = client, .request = *request};
    if (*len == SIM_QUEUE_MAX) {
        job.answer.kind = SIM_ANSWER_NOT_LEADER; /* a full queue: refused, not applied */
        sim_answer_job(service, &job);
        return;
    }
    jobs[(*len)++] = job;
}

void sim_service_applied(sim_service_t *service, raft_index index, raft_term term)
{
    if (service->state != SIM_WRITER_IDLE && index == service->wait_index) {
        service->wait_done = term == service->wait_term;
        service->wait_lost = !service->wait_done;
    }
    if (service->fenced_len > 0 && index == service->fence_index) {
        service->fence_done = term == service->fence_term;
        service->fence_lost = !service->fence_done;
    }
}

/* ---- evaluation: one batch against the store and the batch's own effects ---- */

typedef struct {
    sim_level_t levels[SIM_SKUS];
    uint64_t seq;
    sim_effects_t effects;
} sim_overlay_t;

/* A request id already recorded, in the store or earlier in this batch: its first answer. */
static bool sim_find_replay(const sim_store_t *store, const sim_overlay_t *overlay,
                            uint64_t request, sim_answer_t *answer)
{
    const sim_line_t *lines = NULL;
    unsigned count = 0;
    const sim_record_t *record = sim_store_find(store, request);
    if (record != NULL) {
        lines = &store->ledger[record->first_line];
        count = record->lines;
    }
    for (size_t i = 0; record == NULL && i < overlay->effects.records_len; i++) {
        if (overlay->effects.records[i].request == request) {
            lines = &overlay->effects.lines[overlay->effects.records[i].first_line];
            count = overlay->effects.records[i].lines;
            break;
        }
    }
    if (lines == NULL) {
        return false;
    }
    *answer = (sim_answer_t){.kind = SIM_ANSWER_OK, .replayed = true, .seq = lines[0].seq};
    for (unsigned i = 0; i < count && i < SIM_MAX_LINES; i++) {
        answer->afters[i] = lines[i].after;
    }
    return true;
}

static void sim_evaluate(sim_service_t *service, const sim_store_t *store, sim_overlay_t *overlay,
                         sim_job_t *job)
{
    const sim_request_t *request = &job->request;
    if (sim_breakage(service->world) != SIM_BREAK_IDEMPOTENCY &&
        sim_find_replay(store, overlay, request->request, &job->answer)) {
        return;
    }
    for (unsigned i = 0; request->kind == SIM_OP_RESTRICTED && i < request->lines; i++) {
        if (overlay->levels[request->skus[i]].available < request->quantities[i]) {
            job->answer = (sim_answer_t){.kind = SIM_ANSWER_SHORT};
            return;
        }
    }
    sim_effects_t *effects = &overlay->effects;
    effects->records[effects->records_len++] = (sim_batch_record_t){
        request->request, (uint32_t)effects->lines_len, request->lines, request->attempt, 0};
    job->answer = (sim_answer_t){.kind = SIM_ANSWER_OK, .seq = overlay->seq + 1};
    for (unsigned i = 0; i < request->lines; i++) {
        uint32_t sku = request->skus[i];
        int64_t delta =
            request->kind == SIM_OP_INCREMENT ? request->quantities[i] : -request->quantities[i];
        sim_level_t *level = &overlay->levels[sku];
        level->available += delta;
        level->version++;
        effects->lines[effects->lines_len++] =
            (sim_line_t){++overlay->seq, request->request, sku, request->kind == SIM_OP_RESTRICTED,
                         delta,          level->available};
        effects->puts[effects->puts_len++] = (sim_put_t){sku, 0, level->available, level->version};
        job->answer.afters[i] = level->available;
    }
    effects->last_seq = overlay->seq;
}

/* ---- the writer and the reads ---- */

static bool sim_leads_in(struct raft *raft, raft_term term)
{
    return raft_state(raft) == RAFT_LEADER && raft_current_term(raft) == term;
}

static bool sim_submit_barrier(sim_service_t *service, raft_index *index, raft_term *term)
{
    struct raft_buffer data = {raft_malloc(8), 8};
    if (data.base == NULL) {
        abort();
    }
    memset(data.base, 0, 8);
    return sim_world_submit(service->world, service->node, RAFT_BARRIER, data, index, term);
}

/* How a batch is answered (daemon/writer.c): as evaluated; all "outcome unknown"
 * (sd_writer_fail_batch); not appended — replays may have come from the batch's own records,
 * so they are unknown, the rest "not the leader" (sd_writer_refuse_evaluated, keep_replays
 * false); refusals unconfirmed — replays read from stored records stand, the rest "not the
 * leader" (keep_replays true). */
typedef enum {
    SIM_BATCH_STANDS,
    SIM_BATCH_UNKNOWN,
    SIM_BATCH_NOT_APPENDED,
    SIM_BATCH_UNCONFIRMED
} sim_batch_fate_t;

static void sim_answer_batch(sim_service_t *service, struct raft *raft, sim_batch_fate_t fate)
{
    for (size_t i = 0; i < service->batch_len; i++) {
        sim_job_t *job = &service->batch[i];
        bool replayed = job->answer.replayed;
        if (job->answer.kind == SIM_ANSWER_EXPIRED) {
            sim_answer_job(service, job); /* keeps its answer whatever the batch's fate */
            continue;
        }
        if (fate == SIM_BATCH_UNKNOWN || (fate == SIM_BATCH_NOT_APPENDED && replayed)) {
            job->answer = (sim_answer_t){.kind = SIM_ANSWER_UNKNOWN};
        } else if (fate != SIM_BATCH_STANDS && !replayed) {
            sim_refuse_job(service, job, raft);
            continue;
        }
        sim_answer_job(service, job);
    }
    service->batch_len = 0;
}

/* The writer's wait ended (applied in its term) or can no longer end well. */
static bool sim_writer_settle(sim_service_t *service, struct raft *raft)
{
    if (!service->wait_done && !service->wait_lost && sim_leads_in(raft, service->wait_term)) {
        return false;
    }
    bool done = service->wait_done;
    if (service->state == SIM_WRITER_LEADING && done) {
        service->lead_term = service->wait_term;
    } else if (service->state == SIM_WRITER_COMMITTING) {
        sim_answer_batch(service, raft, done ? SIM_BATCH_STANDS : SIM_BATCH_UNKNOWN);
    } else if (service->state == SIM_WRITER_FENCING) {
        sim_answer_batch(service, raft, done ? SIM_BATCH_STANDS : SIM_BATCH_UNCONFIRMED);
    }
    if (!done) {
        service->lead_term = 0; /* the next batch starts from a barrier again */
    }
    service->state = SIM_WRITER_IDLE;
    service->wait_done = service->wait_lost = false;
    return true;
}

static void sim_writer_wait(sim_service_t *service, sim_writer_state_t state, raft_index index,
                            raft_term term)
{
    service->state = state;
    service->wait_index = index;
    service->wait_term = term;
    service->wait_done = service->wait_lost = false;
}

/* Takes, evaluates and commits one batch (the leader's writer, once its term's barrier
 * applied). */
static void sim_writer_run_batch(sim_service_t *service, struct raft *raft, sim_store_t *store)
{
    sim_overlay_t overlay;
    memset(&overlay, 0, sizeof overlay);
    memcpy(overlay.levels, store->levels, sizeof overlay.levels);
    overlay.seq = store->last_seq;
    service->batch_len = service->queue_len < SIM_MAX_BATCH ? service->queue_len : SIM_MAX_BATCH;
    memcpy(service->batch, service->queue, service->batch_len * sizeof *service->batch);
    memmove(service->queue, service->queue + service->batch_len,
            (service->queue_len - service->batch_len) * sizeof *service->queue);
    service->queue_len -= service->batch_len;
    for (size_t i = 0; i < service->batch_len; i++) {
        sim_job_t *job = &service->batch[i];
        if (job->request.deadline_ms < sim_now(service->world)) {
            job->answer = (sim_answer_t){.kind = SIM_ANSWER_EXPIRED}; /* never evaluated */
            continue;
        }
        sim_evaluate(service, store, &overlay, job);
    }
    bool writes = overlay.effects.records_len > 0;
    if (!writes && sim_breakage(service->world) == SIM_BREAK_FENCE) {
        sim_answer_batch(service, raft, SIM_BATCH_STANDS);
        return;
    }
    raft_index index = 0;
    raft_term term = 0;
    bool appended = writes ? sim_world_submit(service->world, service->node, RAFT_COMMAND,
                                              sim_effects_encode(&overlay.effects), &index, &term)
                           : sim_submit_barrier(service, &index, &term);
    if (!appended) {
        service->lead_term = 0;
        sim_answer_batch(service, raft, writes ? SIM_BATCH_NOT_APPENDED : SIM_BATCH_UNCONFIRMED);
    } else if (writes && sim_breakage(service->world) == SIM_BREAK_EARLY_ACK) {
        sim_answer_batch(service, raft, SIM_BATCH_STANDS);
    } else {
        sim_writer_wait(service, writes ? SIM_WRITER_COMMITTING : SIM_WRITER_FENCING, index, term);
    }
}

static void sim_writer_pump(sim_service_t *service, struct raft *raft, sim_store_t *store)
{
    if (service->state != SIM_WRITER_IDLE && !sim_writer_settle(service, raft)) {
        return;
    }
    if (raft_state(raft) != RAFT_LEADER) {
        service->lead_term = 0;
        for (size_t i = 0; i < service->queue_len; i++) {
            sim_refuse_job(service, &service->queue[i], raft);
        }
        service->queue_len = 0;
        return;
    }
    raft_term term = raft_current_term(raft);
    if (service->lead_term != term && sim_breakage(service->world) == SIM_BREAK_BARRIER) {
        service->lead_term = term;
    }
    if (service->lead_term != term) {
        raft_index index = 0;
        if (sim_submit_barrier(service, &index, &term)) {
            sim_writer_wait(service, SIM_WRITER_LEADING, index, term);
        }
        return;
    }
    if (service->queue_len > 0) {
        sim_writer_run_batch(service, raft, store);
    }
}

static void sim_reads_answer(sim_service_t *service, struct raft *raft, const sim_store_t *store,
                             sim_job_t *jobs, size_t *len, bool done)
{
    for (size_t i = 0; i < *len; i++) {
        if (!done) {
            sim_refuse_job(service, &jobs[i], raft);
            continue;
        }
        jobs[i].answer = (sim_answer_t){.kind = SIM_ANSWER_OK};
        jobs[i].answer.afters[0] = store->levels[jobs[i].request.skus[0]].available;
        sim_answer_job(service, &jobs[i]);
    }
    *len = 0;
}

static void sim_reads_pump(sim_service_t *service, struct raft *raft, const sim_store_t *store)
{
    if (service->fenced_len > 0) {
        bool over =
            service->fence_done || service->fence_lost || !sim_leads_in(raft, service->fence_term);
        if (!over) {
            return;
        }
        sim_reads_answer(service, raft, store, service->fenced, &service->fenced_len,
                         service->fence_done);
        service->fence_done = service->fence_lost = false;
    }
    if (service->reads_len == 0) {
        return;
    }
    bool leads = raft_state(raft) == RAFT_LEADER;
    if (!leads || sim_breakage(service->world) == SIM_BREAK_FENCE) {
        sim_reads_answer(service, raft, store, service->reads, &service->reads_len, leads);
        return;
    }
    memcpy(service->fenced, service->reads, service->reads_len * sizeof *service->reads);
    service->fenced_len = service->reads_len;
    service->reads_len = 0;
    if (!sim_submit_barrier(service, &service->fence_index, &service->fence_term)) {
        sim_reads_answer(service, raft, store, service->fenced, &service->fenced_len, false);
    }
}

void sim_service_pump(sim_service_t *service, struct raft *raft, sim_store_t *store)
{
    if (service->pumping) {
        service->pump_again = true;
        return;
    }
    service->pumping = true;
    do {
        service->pump_again = false;
        sim_writer_pump(service, raft, store);
        sim_reads_pump(service, raft, store);
    } while (service->pump_again);
    service->pumping = false;
}
