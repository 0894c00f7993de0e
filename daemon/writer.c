/* writer.c — see writer.h. */
#include "writer.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "log.h"
#include "metrics.h"
#include "util.h"

/* Seconds between retention passes while index keys of pruned entries remain. */
#define SD_INDEX_PRUNE_CATCH_UP_S 1.0
/* Replication: how long the writer waits for its entry to be applied before answering
 * "outcome unknown" (a leader cut off from the majority steps down well before). */
#define SD_REPLICATION_COMMIT_WAIT_MS 5000
/* Replication: how long a batch of refusals waits for the leader to confirm it leads. */
#define SD_REPLICATION_FENCE_WAIT_MS 2000

struct sd_writer {
    sd_writer_options_t options;
    pthread_t thread;
    pthread_mutex_t mutex;
    pthread_cond_t wakeup;
    sd_write_job_t **ring; /* queue_depth_max slots */
    size_t head, count;
    bool stopping;
    bool failed; /* storage failed: every job is refused from now on */
    sd_batch_t *batch;
    sd_write_job_t **taken; /* the jobs of the batch in progress */
    _Atomic uint64_t committed_seq;
    uint64_t lead_term;   /* replication: the term the batch state was loaded in (0 = reload) */
    double next_prune_ms; /* monotonic time of the next retention run */
};

sd_status_t sd_writer_submit_many(sd_writer_t *writer, sd_write_job_t *const *jobs, size_t count)
{
    sd_status_t status = SD_OK;
    pthread_mutex_lock(&writer->mutex);
    if (writer->stopping || writer->failed) {
        status = SD_UNAVAILABLE;
    } else if (count > writer->options.queue_depth_max - writer->count) {
        status = SD_RESOURCE_EXHAUSTED;
    } else {
        for (size_t i = 0; i < count; i++) {
            size_t tail = (writer->head + writer->count) % writer->options.queue_depth_max;
            writer->ring[tail] = jobs[i];
            writer->count++;
        }
        pthread_cond_signal(&writer->wakeup);
    }
    pthread_mutex_unlock(&writer->mutex);
    return status;
}

sd_status_t sd_writer_submit(sd_writer_t *writer, sd_write_job_t *job)
{
    return sd_writer_submit_many(writer, &job, 1);
}

static bool sd_writer_prune_due(const sd_writer_t *writer)
{
    return writer->options.ledger_retention_s > 0 && util_monotonic_ms() >= writer->next_prune_ms;
}

/* Waits until jobs are queued, stopping begins or retention is due. */
static void sd_writer_wait(sd_writer_t *writer)
{
    while (writer->count == 0 && !writer->stopping && !sd_writer_prune_due(writer)) {
        if (writer->options.ledger_retention_s <= 0) {
            pthread_cond_wait(&writer->wakeup, &writer->mutex);
            continue;
        }
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 1;
        pthread_cond_timedwait(&writer->wakeup, &writer->mutex, &until);
    }
}

/* Runs ledger retention on the writer thread, so it never races a commit. */
static void sd_writer_prune(sd_writer_t *writer)
{
    int64_t cutoff_us = util_now_us() - writer->options.ledger_retention_s * 1000000;
    if (sd_storage_prune_ledger(writer->options.storage, cutoff_us) != SD_OK) {
        SD_LOG(LOG_WARN, "ledger_prune_failed", LF_END);
    }
    /* A pass removes a bounded number of index keys (so the writer is held at most tens of
     * milliseconds); while keys of pruned entries are left, the next pass comes a second
     * later, not a whole interval: at one pass per interval the index outgrew retention
     * under ~30 orders/s (review finding). */
    double next_s = sd_storage_ledger_index_prune_pending(writer->options.storage)
                        ? SD_INDEX_PRUNE_CATCH_UP_S
                        : (double)writer->options.prune_interval_s;
    writer->next_prune_ms = util_monotonic_ms() + next_s * 1000;
}

/* Takes queued jobs for one batch (0 when none are queued). *stop_out is set when stopping
 * and the queue is empty. */
static size_t sd_writer_take(sd_writer_t *writer, bool *stop_out)
{
    size_t taken = 0, lines = 0;
    pthread_mutex_lock(&writer->mutex);
    sd_writer_wait(writer);
    *stop_out = writer->stopping && writer->count == 0;
    while (writer->count > 0 && taken < writer->options.batch_jobs_max) {
        sd_write_job_t *job = writer->ring[writer->head];
        if (taken > 0 && lines + job->request.lines_count > writer->options.batch_lines_max) {
            break;
        }
        lines += job->request.lines_count;
        writer->taken[taken++] = job;
        writer->head = (writer->head + 1) % writer->options.queue_depth_max;
        writer->count--;
    }
    pthread_mutex_unlock(&writer->mutex);
    return taken;
}

/* A failed commit: every request of the batch gets "outcome unknown", whatever the batch
 * told it before. Refusals and ALREADY_EXISTS were judged against earlier requests of the
 * batch, and replays may come from records of the batch, none of which is known to be stored.
 * Only requests whose deadline had passed were never evaluated: they keep their answer. */
static void sd_writer_fail_batch(sd_writer_t *writer, size_t taken, const char *message)
{
    for (size_t i = 0; i < taken; i++) {
        sd_write_result_t *result = &writer->taken[i]->result;
        if (result->error.status == SD_DEADLINE_EXCEEDED) {
            continue;
        }
        sd_write_result_free(result);
        sd_write_result_init(result);
        sd_error_set(&result->error, SD_UNAVAILABLE, "%s", message);
    }
}

/* Storage failed: stop taking writes (submit refuses, queued jobs are refused by the writer
 * loop) and tell the process, once. */
static void sd_writer_enter_failed(sd_writer_t *writer)
{
    pthread_mutex_lock(&writer->mutex);
    bool first = !writer->failed;
    writer->failed = true;
    pthread_mutex_unlock(&writer->mutex);
    if (!first) {
        return;
    }
    SD_LOG(LOG_ERROR, "storage_failed",
           LF_STR("action", "no more writes; NOT_SERVING; exiting to recover from the WAL"));
    if (writer->options.on_storage_failed != NULL) {
        writer->options.on_storage_failed(writer->options.on_storage_failed_context);
    }
}

/* Answers jobs that were queued when storage failed: they were never evaluated. */

/* Replication: the evaluated jobs of a batch whose entry was not appended (or whose refusals
 * could not be confirmed) are answered "not the leader; not applied". A replay stays a fact
 * when it was read from storage (keep_replays: no request of the batch was applied); one in a
 * batch that appended writes may have come from a record of the batch itself, so its fate is
 * unknown. Requests whose deadline passed were never evaluated and keep their answer. */
static void sd_writer_refuse_evaluated(sd_writer_t *writer, size_t taken, bool keep_replays)
{
    for (size_t i = 0; i < taken; i++) {
        sd_write_result_t *result = &writer->taken[i]->result;
        if (result->error.status == SD_DEADLINE_EXCEEDED || (keep_replays && result->replayed)) {
            continue;
        }
        bool replayed = result->replayed;
        sd_write_result_free(result);
        sd_write_result_init(result);
        sd_error_set(&result->error, SD_UNAVAILABLE, "%s",
                     replayed ? SD_REPLICATION_UNKNOWN_MESSAGE : SD_NOT_LEADER_MESSAGE);
    }
}

/* Answers taken jobs (never evaluated) with status and message, and completes them. */
static void sd_writer_refuse_with(sd_writer_t *writer, size_t taken, sd_status_t status,
                                  const char *message)
{
    for (size_t i = 0; i < taken; i++) {
        sd_write_job_t *job = writer->taken[i];
        sd_write_result_init(&job->result);
        sd_error_set(&job->result.error, status, "%s", message);
        job->complete(job);
    }
}

/* Replication: true when this replica leads and the batch state reflects every committed
 * entry. In a new term (or after an entry of unknown fate) the state is loaded again, after a
 * barrier has applied everything earlier leaders committed. */
static bool sd_writer_lead(sd_writer_t *writer)
{
    uint64_t term = writer->lead_term;
    if (sd_replication_lead(writer->options.replication, &term) != SD_REPLICATION_DONE) {
        writer->lead_term = 0;
        return false;
    }
    if (term != writer->lead_term) {
        sd_batch_set_cache_entries(writer->batch, writer->options.level_cache_entries);
        atomic_store(&writer->committed_seq, sd_storage_read_last_seq(writer->options.storage));
        writer->lead_term = term;
        SD_LOG(LOG_INFO, "replication_leading", LF_INT("term", (int64_t)term),
               LF_INT("last_seq", (int64_t)atomic_load(&writer->committed_seq)));
    }
    return true;
}

/* Replication: the batch as one Raft entry; SD_OK once applied here. Not appended: every
 * evaluated job is answered "not the leader"; appended with an unknown fate: "outcome
 * unknown". Either way the next batch reloads the state. */
static sd_status_t sd_writer_commit_replicated(sd_writer_t *writer, size_t taken)
{
    size_t length = 0;
    const void *data = sd_write_batch_data(sd_batch_seal(writer->batch), &length);
    sd_replication_outcome_t outcome =
        sd_replication_commit(writer->options.replication, writer->lead_term, data, length,
                              sd_batch_last_seq(writer->batch), SD_REPLICATION_COMMIT_WAIT_MS);
    if (outcome == SD_REPLICATION_DONE) {
        sd_batch_committed(writer->batch);
        return SD_OK;
    }
    writer->lead_term = 0;
    if (outcome == SD_REPLICATION_NOT_LEADER) {
        sd_writer_refuse_evaluated(writer, taken, false);
    } else {
        sd_writer_fail_batch(writer, taken, SD_REPLICATION_UNKNOWN_MESSAGE);
    }
    return SD_UNAVAILABLE;
}

/* Replication, a batch that appends nothing (every request refused or replayed): its refusals
 * were judged against this replica's state, which only counts while it still leads, so they
 * go out only after a read fence; without one they become "not the leader; not applied".
 * Replays were read from stored (committed) records: facts either way. */
static void sd_writer_confirm_refusals(sd_writer_t *writer, size_t taken)
{
    /* and still in the term the batch was judged in (not deposed and elected again since) */
    uint64_t term = 0;
    if (sd_replication_read_fence(writer->options.replication, SD_REPLICATION_FENCE_WAIT_MS,
                                  &term) != SD_REPLICATION_DONE ||
        term != writer->lead_term) {
        writer->lead_term = 0;
        sd_writer_refuse_evaluated(writer, taken, true);
    }
}

/* One node: the batch as one RocksDB write. A failure is a storage failure (fail-stop). */
static sd_status_t sd_writer_commit_local(sd_writer_t *writer, size_t taken)
{
    sd_status_t status = sd_batch_commit(writer->batch, writer->options.sync);
    if (status != SD_OK) {
        sd_writer_fail_batch(writer, taken, SD_OUTCOME_UNKNOWN_MESSAGE);
        sd_writer_enter_failed(writer);
        return status;
    }
    uint64_t last_seq = sd_batch_last_seq(writer->batch);
    atomic_store(&writer->committed_seq, last_seq);
    if (writer->options.on_commit != NULL) {
        writer->options.on_commit(writer->options.on_commit_context, last_seq);
    }
    return SD_OK;
}

void sd_writer_set_replication(sd_writer_t *writer, sd_replication_t *replication)
{
    pthread_mutex_lock(&writer->mutex); /* the writer reads it after taking jobs, locked */
    writer->options.replication = replication;
    pthread_mutex_unlock(&writer->mutex);
}

void sd_writer_on_applied(void *context, uint64_t last_seq)
{
    sd_writer_t *writer = context;
    atomic_store(&writer->committed_seq, last_seq);
    if (writer->options.on_commit != NULL) {
        writer->options.on_commit(writer->options.on_commit_context, last_seq);
    }
}

static void sd_writer_run_batch(sd_writer_t *writer, size_t taken)
{
    if (writer->options.replication != NULL && !sd_writer_lead(writer)) {
        sd_writer_refuse_with(writer, taken, SD_UNAVAILABLE, SD_NOT_LEADER_MESSAGE);
        return;
    }
    int64_t now_us = util_now_us();
    uint64_t committed = atomic_load(&writer->committed_seq);
    sd_batch_reset(writer->batch, committed);
    for (size_t i = 0; i < taken; i++) {
        sd_write_job_t *job = writer->taken[i];
        sd_write_result_init(&job->result);
        if (job->deadline_us < now_us) {
            sd_error_set(&job->result.error, SD_DEADLINE_EXCEEDED,
                         "deadline passed before the write was applied; not applied");
            continue;
        }
        sd_batch_apply(writer->batch, &job->request, now_us, &job->result);
    }
    size_t applied = sd_batch_applied_count(writer->batch);
    if (applied > 0) {
        SD_ASSERT(sd_batch_last_seq(writer->batch) > committed); /* each appends entries */
        double started_ms = util_monotonic_ms();
        if (writer->options.replication != NULL) {
            sd_writer_commit_replicated(writer, taken);
        } else {
            sd_writer_commit_local(writer, taken);
        }
        sd_metrics_observe_commit(writer->options.metrics, applied,
                                  util_monotonic_ms() - started_ms);
    } else if (writer->options.replication != NULL) {
        sd_writer_confirm_refusals(writer, taken);
    }
    size_t replays = 0;
    for (size_t i = 0; i < taken; i++) {
        replays += writer->taken[i]->result.replayed ? 1 : 0; /* read before complete frees it */
        writer->taken[i]->complete(writer->taken[i]);
    }
    sd_metrics_count_replays(writer->options.metrics, replays);
}

static void *sd_writer_main(void *argument)
{
    sd_writer_t *writer = argument;
    sd_storage_thread_init();
    for (;;) {
        bool stop = false;
        size_t taken = sd_writer_take(writer, &stop);
        if (stop) {
            break;
        }
        if (taken > 0 && sd_writer_failed(writer)) {
            sd_writer_refuse_with(writer, taken, SD_UNAVAILABLE, SD_NOT_TAKING_WRITES_MESSAGE);
        } else if (taken > 0) {
            sd_writer_run_batch(writer, taken);
        }
        if (sd_writer_prune_due(writer) && !sd_writer_failed(writer)) {
            sd_writer_prune(writer);
            if (sd_storage_failed(writer->options.storage)) {
                sd_writer_enter_failed(writer);
            }
        }
    }
    return NULL;
}

sd_status_t sd_writer_start(const sd_writer_options_t *options, sd_writer_t **writer_out)
{
    sd_writer_t *writer = calloc(1, sizeof(*writer));
    if (writer == NULL) {
        return SD_UNAVAILABLE;
    }
    writer->options = *options;
    writer->ring = calloc(options->queue_depth_max, sizeof(*writer->ring));
    writer->taken = calloc(options->batch_jobs_max, sizeof(*writer->taken));
    uint64_t last_seq = sd_storage_last_seq(options->storage);
    atomic_store(&writer->committed_seq, last_seq);
    writer->batch = sd_batch_new(options->storage, last_seq, options->idempotency_ttl_s * 1000000);
    if (writer->batch != NULL) {
        sd_batch_set_cache_entries(writer->batch, options->level_cache_entries);
    }
    if (writer->ring == NULL || writer->taken == NULL || writer->batch == NULL) {
        sd_batch_free(writer->batch);
        free(writer->ring);
        free(writer->taken);
        free(writer);
        return SD_UNAVAILABLE;
    }
    pthread_mutex_init(&writer->mutex, NULL);
    pthread_cond_init(&writer->wakeup, NULL);
    if (pthread_create(&writer->thread, NULL, sd_writer_main, writer) != 0) {
        pthread_mutex_destroy(&writer->mutex);
        pthread_cond_destroy(&writer->wakeup);
        sd_batch_free(writer->batch);
        free(writer->ring);
        free(writer->taken);
        free(writer);
        return SD_UNAVAILABLE;
    }
    *writer_out = writer;
    return SD_OK;
}

void sd_writer_stop(sd_writer_t *writer)
{
    if (writer == NULL) {
        return;
    }
    pthread_mutex_lock(&writer->mutex);
    writer->stopping = true;
    pthread_cond_signal(&writer->wakeup);
    pthread_mutex_unlock(&writer->mutex);
    pthread_join(writer->thread, NULL);
    pthread_mutex_destroy(&writer->mutex);
    pthread_cond_destroy(&writer->wakeup);
    sd_batch_free(writer->batch);
    free(writer->ring);
    free(writer->taken);
    free(writer);
}

uint64_t sd_writer_committed_seq(const sd_writer_t *writer)
{
    return atomic_load(&writer->committed_seq);
}

bool sd_writer_failed(sd_writer_t *writer)
{
    pthread_mutex_lock(&writer->mutex);
    bool failed = writer->failed;
    pthread_mutex_unlock(&writer->mutex);
    return failed;
}

size_t sd_writer_queue_capacity(const sd_writer_t *writer)
{
    return writer->options.queue_depth_max;
}

size_t sd_writer_queue_depth(sd_writer_t *writer)
{
    pthread_mutex_lock(&writer->mutex);
    size_t count = writer->count;
    pthread_mutex_unlock(&writer->mutex);
    return count;
}
