/* writer.h — the write pipeline: a bounded queue and one writer thread.
 *
 * RPC threads submit validated write jobs; the writer takes everything queued (up to a batch
 * limit), applies the jobs in arrival order with sd_batch (each checked against the batch's
 * earlier effects), commits the batch as one WriteBatch with one WAL sync, and only then
 * completes the jobs. Because a single thread applies every write, writes are linearizable
 * without locks held across I/O, and racing restricted decrements cannot oversell. */
#ifndef STOCKD_WRITER_H
#define STOCKD_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "batch.h"
#include "storage.h"

typedef struct sd_write_job sd_write_job_t;

/* Called on the writer thread once the job's outcome is final (committed or failed). The
 * job is owned by the submitter; the writer does not touch it after this call. */
typedef void sd_write_complete_fn(sd_write_job_t *job);

struct sd_write_job {
    sd_write_request_t request;
    int64_t deadline_us;      /* unix microseconds; INT64_MAX = none */
    sd_write_result_t result; /* filled by the writer */
    sd_write_complete_fn *complete;
    void *context; /* the submitter's */
};

typedef struct sd_metrics sd_metrics_t;

typedef struct {
    sd_storage_t *storage;
    bool sync;              /* fsync the WAL on every commit */
    size_t queue_depth_max; /* jobs waiting; beyond it submit says RESOURCE_EXHAUSTED */
    size_t batch_jobs_max;  /* jobs per commit */
    size_t batch_lines_max; /* lines per commit (a job is never split) */
    int64_t idempotency_ttl_s;
    size_t level_cache_entries; /* committed levels kept in memory */
    int64_t ledger_retention_s; /* 0 = keep the ledger forever */
    int64_t prune_interval_s;   /* how often retention runs (when enabled) */
    sd_metrics_t *metrics;      /* may be NULL */
    /* Called on the writer thread after each successful commit (may be NULL). */
    void (*on_commit)(void *context, uint64_t last_seq);
    void *on_commit_context;
} sd_writer_options_t;

typedef struct sd_writer sd_writer_t;

/* Starts the writer thread. The caller owns *writer_out (sd_writer_stop). */
sd_status_t sd_writer_start(const sd_writer_options_t *options, sd_writer_t **writer_out);

/* Queues a job. SD_OK: job->complete will be called exactly once. SD_RESOURCE_EXHAUSTED (queue
 * full) or SD_UNAVAILABLE (stopping): it will not be, and the job was not applied. */
sd_status_t sd_writer_submit(sd_writer_t *writer, sd_write_job_t *job);

/* Stops accepting jobs, finishes every queued one, joins the thread and frees the writer. */
void sd_writer_stop(sd_writer_t *writer);

/* The last ledger seq that is durable. */
uint64_t sd_writer_committed_seq(const sd_writer_t *writer);
/* Jobs currently queued. */
size_t sd_writer_queue_depth(sd_writer_t *writer);

#endif
