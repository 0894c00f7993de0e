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
#include "replication.h"
#include "storage.h"

typedef struct sd_write_job sd_write_job_t;

/* The answer of every request of a batch whose commit failed: the WAL may hold the batch
 * even though RocksDB reported an error, so nobody can say it was not applied. */
#define SD_OUTCOME_UNKNOWN_MESSAGE                                                                 \
    "outcome unknown: the storage commit failed and this write may or may not have been "          \
    "applied; stockd is restarting; retry with the same request_id (or check History)"
/* Replication (replication.h): the answers of writes sent to a replica that does not lead,
 * and of writes whose entry was appended when leadership changed. */
#define SD_NOT_LEADER_MESSAGE                                                                      \
    "this replica is not the leader; not applied (retry at the stockd-leader address)"
#define SD_REPLICATION_UNKNOWN_MESSAGE                                                             \
    "outcome unknown: leadership changed while this write was being replicated, and it may or "    \
    "may not have been applied; retry with the same request_id at the leader (or check History)"
#define SD_NOT_TAKING_WRITES_MESSAGE                                                               \
    "stockd is not taking writes (shutting down, or restarting after a storage failure); "         \
    "not applied"

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
    /* Called once on the writer thread when storage has failed (may be NULL): from then on
     * the writer takes no more writes, and the process should exit and recover on restart. */
    void (*on_storage_failed)(void *context);
    void *on_storage_failed_context;
    /* NULL: one node, commits go to storage. Otherwise each batch is one Raft entry, applied
     * by the replication thread, which reports it with sd_writer_on_applied. */
    sd_replication_t *replication;
} sd_writer_options_t;

typedef struct sd_writer sd_writer_t;

/* Starts the writer thread. The caller owns *writer_out (sd_writer_stop). */
sd_status_t sd_writer_start(const sd_writer_options_t *options, sd_writer_t **writer_out);

/* Queues a job. SD_OK: job->complete will be called exactly once. SD_RESOURCE_EXHAUSTED (queue
 * full) or SD_UNAVAILABLE (stopping, or storage failed): it will not be, and the job was not
 * applied.
 *
 * What a completed job's status says about its fate: SD_OK, the write is durable;
 * SD_UNAVAILABLE with SD_OUTCOME_UNKNOWN_MESSAGE, its batch's commit failed and it may or may
 * not be stored (retry with the same request_id); any other status, it was not applied. */
sd_status_t sd_writer_submit(sd_writer_t *writer, sd_write_job_t *job);

/* Queues count jobs together, in order: either all of them (SD_OK, each will complete) or
 * none (SD_RESOURCE_EXHAUSTED when they do not all fit the queue — also when count exceeds
 * its depth —, SD_UNAVAILABLE as for sd_writer_submit). A Batch call's writes go in this
 * way so that no other job lands between them and a full queue refuses them as one. */
sd_status_t sd_writer_submit_many(sd_writer_t *writer, sd_write_job_t *const *jobs, size_t count);

/* Stops accepting jobs, finishes every queued one, joins the thread and frees the writer. */
void sd_writer_stop(sd_writer_t *writer);

/* The last ledger seq that is durable. */
uint64_t sd_writer_committed_seq(const sd_writer_t *writer);
/* Replication: commits go through it from now on (before any job is submitted). */
void sd_writer_set_replication(sd_writer_t *writer, sd_replication_t *replication);
/* Replication: an entry was applied to storage (on the replication thread): moves the
 * committed seq and tells on_commit, as the writer does after its own commits. */
void sd_writer_on_applied(void *writer, uint64_t last_seq);
/* True once storage failed and the writer stopped taking writes. */
bool sd_writer_failed(sd_writer_t *writer);
/* Jobs currently queued. */
size_t sd_writer_queue_depth(sd_writer_t *writer);
/* The most jobs the queue holds (--queue-depth). */
size_t sd_writer_queue_capacity(const sd_writer_t *writer);

#endif
