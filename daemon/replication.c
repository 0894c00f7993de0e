/* replication.c — see replication.h. */
#include "replication.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <raft.h>
#include <raft/uv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <uv.h>

#include "keys.h"
#include "log.h"
#include "replication_snapshot.h"
#include "util.h"

/* An entry: magic "SDR", format, the WriteBatch's length (u32) and the last ledger seq it
 * writes (u64, both big-endian), the WriteBatch, zeros up to a multiple of 8 bytes (the
 * library's log wants entry sizes 8-byte aligned). */
#define SD_ENTRY_MAGIC "SDR"
#define SD_ENTRY_FORMAT 1
#define SD_ENTRY_HEADER_BYTES 16
#define SD_STATUS_REFRESH_MS 20
#define SD_SNAPSHOT_RETRY_MS 10000
/* a prepared snapshot the library did not take within this long after it was ready is
 * dropped (sd_snapshot_prep_watch): it asks on every event, heartbeat ticks included */
#define SD_SNAPSHOT_UNCLAIMED_MS 2000
#define SD_CATCH_UP_ROUND_MS 30000
/* election timeouts without a known leader before pre-vote is set aside (sd_pre_vote_watch) */
#define SD_PRE_VOTE_GIVE_UP_ELECTIONS 5

typedef enum {
    SD_REQUEST_BARRIER,
    SD_REQUEST_APPLY,
    SD_REQUEST_TRANSFER,
    SD_REQUEST_MEMBER, /* a configuration change: member_change */
} sd_request_kind_t;

typedef struct {
    sd_request_kind_t kind;
    uint64_t term; /* apply: the term the batch was evaluated in; barrier: the term reached */
    struct raft_buffer buffer;
    struct raft_apply apply;
    struct raft_barrier barrier;
    struct raft_transfer transfer;
    struct raft_change change;
    sd_member_change_t member_change;
    uint64_t member_id;
    char member_address[SD_REPLICATION_ADDRESS_MAX];
    int raft_status; /* why the library refused, or 0 */
    sd_replication_outcome_t outcome;
    bool done;
    bool abandoned; /* the writer stopped waiting: whoever finishes it frees it */
    sd_replication_t *replication;
    void *next; /* the queue of requests handed to the loop */
} sd_request_t;

struct sd_replication {
    sd_replication_options_t options;
    sd_replication_peer_t peers[SD_REPLICATION_PEERS_MAX];
    char dir[PATH_MAX];
    char raft_listen[SD_REPLICATION_ADDRESS_MAX];
    uv_loop_t loop;
    uv_async_t wake; /* a request was queued, or stop */
    uv_timer_t refresh;
    struct raft_uv_transport transport;
    struct raft_io io;
    /* the transport's start and the library's receive callback, wrapped (sd_on_raft_message) */
    int (*io_start)(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick, raft_io_recv_cb recv);
    raft_io_recv_cb library_recv;
    struct raft_fsm fsm;
    struct raft raft;
    pthread_t thread;
    pthread_mutex_t mutex;
    pthread_cond_t changed;
    /* handed over, not yet started on the loop, oldest first: a barrier must follow every
     * append the writer asked for before it */
    sd_request_t *queued, *queued_tail;
    bool closing;    /* loop thread: raft_close was called */
    bool ready_told; /* loop thread: the readiness on_ready_changed last reported */
    bool stopping;
    sd_replication_status_t status; /* the snapshot other threads read */
    uint64_t applied_index;         /* the last entry stored (loop thread) */
    double snapshot_retry_ms;       /* loop thread: no snapshot before this (after a failed one) */
    sd_snapshot_prep_t *prep;       /* loop thread: a snapshot being prepared off the loop */
    double prep_started_ms, prep_ready_ms; /* when it started; when first seen ready (0: not) */
    bool failed;
    bool started; /* raft_start returned: the loop thread runs */
    /* read fences: readers take generation numbers; one barrier at a time covers every
     * generation requested before it started (under mutex, except the barrier itself) */
    uint64_t fence_requested, fence_done, fence_failed, fence_target;
    uint64_t fence_term, fence_done_term; /* the term the barrier started / last succeeded in */
    bool fence_in_flight;                 /* loop thread */
    struct raft_barrier fence_barrier;
    /* loop thread: the highest commit index a leader has told this replica of (AppendEntries,
     * or the last index of a snapshot it sent). The library's own commit index on a follower
     * moves only as far as the entries it holds, so it says nothing of how far behind it is. */
    uint64_t leader_commit_seen;
    double leaderless_since_ms; /* loop thread: since when no leader is known (0: one is) */
    bool pre_vote_off;          /* loop thread: see sd_pre_vote_watch */
    /* loop thread: the members whose vote answers arrived since then (reachable ones) */
    uint64_t answered_ids[SD_REPLICATION_PEERS_MAX];
    size_t answered_count;
    uint64_t snapshot_deferred_at; /* loop thread: last_applied when deferring began (0: not) */
    bool snapshot_defer_given_up;  /* loop thread: deferred too long; until the next snapshot */
    /* the ledger seq of the store this group was restored from (--restore-group; 0: none),
     * and (loop thread) whether the log still reaches back to entry 1: see sd_base_watch */
    uint64_t base_seq;
    bool base_in_log;
    struct raft_barrier base_barrier; /* loop thread: see sd_base_watch */
    bool base_barrier_in_flight;
    double base_barrier_ms;
    /* loop thread: see sd_lost_log_watch. The members that lost their log (0: a free slot), the
     * hand-over in flight and when the last one was tried; when each sender was last heard */
    raft_id lost_log_members[SD_REPLICATION_PEERS_MAX];
    struct raft_transfer lost_log_transfer;
    bool lost_log_transfer_in_flight;
    double lost_log_transfer_ms;
    raft_id heard_ids[SD_REPLICATION_PEERS_MAX];
    double heard_ms[SD_REPLICATION_PEERS_MAX];
};

/* the file in the Raft directory naming the member whose log it is */
#define SD_RAFT_NODE_ID_FILE "stockd-node-id"
/* at most one hand-over for a member that lost its log this often (sd_lost_log_watch): a
 * transfer that fails holds writes for an election timeout */
#define SD_LOST_LOG_TRANSFER_SPACING_MS 10000

/* ---- --peers ---- */

static bool sd_peer_parse(const char *entry, size_t length, sd_replication_peer_t *peer)
{
    char text[2 * SD_REPLICATION_ADDRESS_MAX + 32];
    if (length == 0 || length >= sizeof(text)) {
        return false;
    }
    memcpy(text, entry, length);
    text[length] = '\0';
    char *raft = strchr(text, '=');
    char *grpc = raft ? strchr(raft + 1, '=') : NULL;
    if (grpc == NULL || strchr(grpc + 1, '=') != NULL) {
        return false;
    }
    *raft++ = '\0';
    *grpc++ = '\0';
    char *end = NULL;
    errno = 0;
    unsigned long long id = strtoull(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || text[0] == '-' || id == 0 || id > UINT32_MAX ||
        strlen(raft) == 0 || strlen(grpc) == 0 || strlen(raft) >= SD_REPLICATION_ADDRESS_MAX ||
        strlen(grpc) >= SD_REPLICATION_ADDRESS_MAX || strchr(raft, ':') == NULL ||
        strchr(grpc, ':') == NULL) {
        return false;
    }
    peer->id = id;
    snprintf(peer->raft_address, sizeof(peer->raft_address), "%s", raft);
    snprintf(peer->grpc_address, sizeof(peer->grpc_address), "%s", grpc);
    return true;
}

bool sd_replication_parse_peers(const char *text, sd_replication_peer_t *peers, size_t *count_out,
                                char *error, size_t error_capacity)
{
    size_t count = 0;
    const char *entry = text;
    while (*entry != '\0') {
        size_t length = strcspn(entry, ",");
        if (count == SD_REPLICATION_PEERS_MAX) {
            snprintf(error, error_capacity, "--peers: more than %d members",
                     SD_REPLICATION_PEERS_MAX);
            return false;
        }
        if (!sd_peer_parse(entry, length, &peers[count])) {
            snprintf(error, error_capacity,
                     "--peers: entry %zu is not ID=RAFT_HOST:PORT=GRPC_HOST:PORT (ID 1..2^32-1)",
                     count + 1);
            return false;
        }
        for (size_t i = 0; i < count; i++) {
            if (peers[i].id == peers[count].id) {
                snprintf(error, error_capacity, "--peers: id %" PRIu64 " appears twice",
                         peers[i].id);
                return false;
            }
        }
        count++;
        entry += length;
        entry += *entry == ',' ? 1 : 0;
    }
    if (count == 0) {
        snprintf(error, error_capacity, "--peers: no members");
        return false;
    }
    *count_out = count;
    return true;
}

/* Loop thread: node_id's gRPC address into out ("" when unknown): the member directory (the
 * address recorded when it joined, the latest if recorded again), else --peers. Read each
 * time (a point read per joined member): nothing to go stale. */
static void sd_replication_grpc_of(sd_replication_t *replication, uint64_t node_id, char *out,
                                   size_t capacity)
{
    out[0] = '\0';
    if (node_id == 0) {
        return;
    }
    if (sd_storage_get_member(replication->options.storage, node_id, out, capacity) == SD_OK &&
        out[0] != '\0') {
        return;
    }
    out[0] = '\0'; /* a removed member's record is empty */
    for (size_t i = 0; i < replication->options.peers_count; i++) {
        if (replication->peers[i].id == node_id) {
            snprintf(out, capacity, "%s", replication->peers[i].grpc_address);
        }
    }
}

/* ---- the state machine (loop thread) ---- */

static void sd_replication_fail(sd_replication_t *replication, const char *why)
{
    if (replication->failed) {
        return;
    }
    replication->failed = true;
    SD_LOG(LOG_ERROR, "replication_apply_failed", LF_STR("error", why));
    if (replication->options.on_failed != NULL) {
        replication->options.on_failed(replication->options.on_failed_context);
    }
}

/* An entry this replica cannot apply stops it (fail-stop). The entry stays in the Raft log and
 * is applied from it on the next start, past the stored index. The library is told it was
 * applied: libraft 0.22.1's path for a failed apply frees memory twice (it aborted stockd in
 * the storage-fault test), and nothing this replica does before it exits depends on it —
 * writes, reads and barriers are refused once `failed` is set. */
static int sd_fsm_apply_failed(sd_replication_t *replication, const char *why)
{
    sd_replication_fail(replication, why);
    return 0;
}

static int sd_fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buffer, void **result)
{
    sd_replication_t *replication = fsm->data;
    *result = NULL;
    /* the library applies entry last_applied + 1 (and sets last_applied after this returns) */
    uint64_t index = raft_last_applied(&replication->raft) + 1;
    const uint8_t *bytes = buffer->base;
    if (replication->failed) {
        return 0; /* stopping: see sd_fsm_apply_failed */
    }
    if (buffer->len < SD_ENTRY_HEADER_BYTES || memcmp(bytes, SD_ENTRY_MAGIC, 3) != 0 ||
        bytes[3] != SD_ENTRY_FORMAT) {
        return sd_fsm_apply_failed(replication, "a log entry of an unknown format");
    }
    size_t length = sd_be32_get(bytes + 4);
    if (length > buffer->len - SD_ENTRY_HEADER_BYTES) {
        return sd_fsm_apply_failed(replication, "a log entry shorter than its length says");
    }
    if (index <= replication->applied_index) {
        return 0; /* stored before a restart: Raft replays its log past its snapshot */
    }
    uint64_t last_seq = sd_be64_get(bytes + 8);
    if (sd_storage_apply_replicated(replication->options.storage, bytes + SD_ENTRY_HEADER_BYTES,
                                    length, index, last_seq) != SD_OK) {
        return sd_fsm_apply_failed(replication, "storage refused a committed entry");
    }
    replication->applied_index = index;
    if (replication->prep != NULL) { /* written after the prepared snapshot's point in time */
        sd_snapshot_prep_add_delta(replication->prep, bytes + SD_ENTRY_HEADER_BYTES, length, index,
                                   last_seq);
    }
    if (replication->options.on_applied != NULL && last_seq != SD_REPLICATION_NO_LEDGER_SEQ) {
        replication->options.on_applied(replication->options.on_applied_context, last_seq);
    }
    return 0;
}

/* A follower applies entries before its own write of them completes (the library moves its
 * commit index on the AppendEntries that carries them). A snapshot over entries not yet on
 * disk, then a crash, leaves a snapshot newer than the last entry of the log, and libuv's
 * loader refuses that directory at the next start (RAFT_CORRUPT). Deferred until the log has
 * caught up (the library asks again after its next event) — for at most a snapshot threshold
 * of entries: on a replica whose disk always has a write in flight under sustained load the
 * log, held in memory, would otherwise grow without bound. (Found by the seeded simulation,
 * tests/sim: stockd_sim --snapshot-unpersisted.) */
static bool sd_snapshot_defer(sd_replication_t *replication)
{
    uint64_t applied = raft_last_applied(&replication->raft);
    if (replication->raft.last_stored >= applied) {
        replication->snapshot_deferred_at = 0;
        return false;
    }
    if (replication->snapshot_deferred_at == 0) {
        replication->snapshot_deferred_at = applied;
    }
    if (applied - replication->snapshot_deferred_at < replication->options.snapshot_threshold) {
        return true;
    }
    /* given up until a snapshot is handed over (sd_fsm_snapshot): preparing one takes several
     * asks, and counting afresh at each would defer the one that claims it (review finding) */
    if (!replication->snapshot_defer_given_up) {
        SD_LOG(LOG_WARN, "replication_snapshot_over_unpersisted", LF_UINT("applied", applied),
               LF_UINT("stored", replication->raft.last_stored),
               LF_UINT("deferred_since", replication->snapshot_deferred_at));
        replication->snapshot_defer_given_up = true;
    }
    return false;
}

/* Loop thread: lets go of the snapshot being prepared, if any (its thread stops at the next
 * record). */
static void sd_snapshot_prep_drop(sd_replication_t *replication)
{
    sd_snapshot_prep_abandon(replication->prep);
    replication->prep = NULL;
    replication->prep_ready_ms = 0;
}

/* The copy of the state, prepared off the loop (replication_snapshot.h): the first ask starts
 * it (RAFT_BUSY: the library asks again after its next event), the ask after it is ready
 * takes it. Copied on the loop as before only when no thread could be started. */
static sd_status_t sd_snapshot_obtain(sd_replication_t *replication, struct raft_buffer **buffers,
                                      unsigned *count, sd_snapshot_info_t *info, bool *busy_out)
{
    sd_storage_t *storage = replication->options.storage;
    *busy_out = false;
    if (replication->prep == NULL) {
        replication->prep_started_ms = util_monotonic_ms();
        replication->prep = sd_snapshot_prep_start(storage);
        if (replication->prep == NULL) {
            return sd_snapshot_take(storage, buffers, count, info);
        }
        *busy_out = true;
        return SD_OK;
    }
    if (!sd_snapshot_prep_ready(replication->prep)) {
        *busy_out = true;
        return SD_OK;
    }
    sd_status_t status = sd_snapshot_prep_finish(replication->prep, buffers, count, info);
    replication->prep = NULL;
    replication->prep_ready_ms = 0;
    return status;
}

/* Loop thread (refresh timer). A preparation the library no longer asks for — it asks on
 * every event while it wants a snapshot, and stops wanting one when its threshold moves
 * (sd_base_watch) — or one of a replica that failed would hold a copy of the state, a RocksDB
 * snapshot (old versions kept from compaction) and a copy of every entry applied: dropped. */
static void sd_snapshot_prep_watch(sd_replication_t *replication)
{
    sd_snapshot_prep_t *prep = replication->prep;
    if (prep == NULL) {
        return;
    }
    double now_ms = util_monotonic_ms();
    bool failed = replication->failed || sd_storage_failed(replication->options.storage);
    if (replication->prep_ready_ms == 0 && sd_snapshot_prep_ready(prep)) {
        replication->prep_ready_ms = now_ms;
    }
    if (!failed && (replication->prep_ready_ms == 0 ||
                    now_ms - replication->prep_ready_ms < SD_SNAPSHOT_UNCLAIMED_MS)) {
        return;
    }
    SD_LOG(LOG_INFO, "replication_snapshot_dropped_unclaimed",
           LF_UINT("entries_after", sd_snapshot_prep_delta_count(prep)),
           LF_STR("why", failed ? "replica failed" : "the library did not ask for it"));
    sd_snapshot_prep_drop(replication);
}

/* Raft replaces the applied part of its log with a copy of the state once it grew by
 * snapshot_threshold entries (replication_snapshot.h). Loop thread: the copy is of a point in
 * time between two applied entries, plus every entry applied after it, so it holds exactly
 * the entries applied so far. */
static int sd_fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *buffers[],
                           unsigned *buffers_count)
{
    sd_replication_t *replication = fsm->data;
    double started_ms = util_monotonic_ms();
    /* the library asks again after every event: a copy that failed is not retried at once */
    if (replication->failed || sd_storage_failed(replication->options.storage) ||
        started_ms < replication->snapshot_retry_ms) {
        return RAFT_IOERR;
    }
    if (sd_snapshot_defer(replication)) {
        return RAFT_BUSY;
    }
    sd_snapshot_info_t info = {0};
    bool busy = false;
    sd_status_t status = sd_snapshot_obtain(replication, buffers, buffers_count, &info, &busy);
    if (busy) {
        return RAFT_BUSY;
    }
    double took_ms = util_monotonic_ms() - started_ms;
    if (status != SD_OK) {
        replication->snapshot_retry_ms = util_monotonic_ms() + SD_SNAPSHOT_RETRY_MS;
        SD_LOG(LOG_WARN, "replication_snapshot_failed", LF_STR("status", sd_status_name(status)),
               LF_INT("retry_in_ms", SD_SNAPSHOT_RETRY_MS));
        return status == SD_RESOURCE_EXHAUSTED ? RAFT_NOMEM : RAFT_IOERR;
    }
    SD_LOG(LOG_INFO, "replication_snapshot_taken",
           LF_UINT("raft_index", raft_last_applied(&replication->raft)),
           LF_UINT("applied_index", info.applied_index), LF_UINT("records", info.records),
           LF_UINT("entries_after", info.deltas), LF_UINT("bytes", info.bytes),
           LF_DBL("loop_ms", took_ms),
           LF_DBL("ms", util_monotonic_ms() - replication->prep_started_ms));
    replication->snapshot_deferred_at = 0;
    replication->snapshot_defer_given_up = false;
    pthread_mutex_lock(&replication->mutex);
    replication->status.snapshots_taken++;
    replication->status.snapshot_index = raft_last_applied(&replication->raft);
    replication->status.snapshot_bytes = info.bytes;
    replication->status.snapshot_ms = took_ms;
    pthread_mutex_unlock(&replication->mutex);
    return 0;
}

/* A snapshot buffer the state machine is done with: once restore returns 0 it is its to free. */
static void sd_snapshot_buffer_release(struct raft_buffer *buffer)
{
    raft_free(buffer->base);
    buffer->base = NULL;
}

/* A snapshot from the leader (this replica was too far behind for its log), or at start the
 * last one this replica took. Runs on the loop thread, or on the starting thread. */
static int sd_fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buffer)
{
    sd_replication_t *replication = fsm->data;
    sd_snapshot_prep_drop(replication); /* it is of the state this one replaces */
    if (replication->failed) { /* stopping: nothing more is written (sd_fsm_apply_failed) */
        sd_snapshot_buffer_release(buffer);
        return 0;
    }
    char error[256];
    sd_snapshot_info_t info;
    bool restored = false;
    double started_ms = util_monotonic_ms();
    sd_status_t status = sd_snapshot_restore(replication->options.storage, buffer->base,
                                             buffer->len, &info, &restored, error, sizeof(error));
    if (status != SD_OK) {
        SD_LOG(LOG_ERROR, "replication_snapshot_restore_failed", LF_STR("error", error));
        sd_replication_fail(replication, "a snapshot could not be restored");
        if (!replication->started) { /* at start: raft_start fails with it */
            return status == SD_INVALID_ARGUMENT ? RAFT_MALFORMED : RAFT_IOERR;
        }
        /* a leader's snapshot: as a failed apply (sd_fsm_apply_failed), the replica stops
         * and the library is not taken down its error path */
        sd_snapshot_buffer_release(buffer);
        return 0;
    }
    sd_snapshot_buffer_release(buffer); /* restored */
    if (!restored) {
        return 0;
    }
    replication->applied_index = info.applied_index;
    uint64_t last_seq = sd_storage_read_last_seq(replication->options.storage);
    if (sd_storage_failed(replication->options.storage)) {
        sd_replication_fail(replication, "storage failed after restoring a snapshot");
        return replication->started ? 0 : RAFT_IOERR; /* as in sd_fsm_apply_failed */
    }
    SD_LOG(LOG_INFO, "replication_snapshot_restored", LF_UINT("applied_index", info.applied_index),
           LF_UINT("records", info.records), LF_UINT("bytes", info.bytes),
           LF_UINT("last_seq", last_seq), LF_DBL("ms", util_monotonic_ms() - started_ms));
    pthread_mutex_lock(&replication->mutex);
    replication->status.snapshots_restored++;
    pthread_mutex_unlock(&replication->mutex);
    if (replication->options.on_applied != NULL) {
        replication->options.on_applied(replication->options.on_applied_context, last_seq);
    }
    return 0;
}

/* ---- messages, before the library sees them (loop thread) ---- */

/* libraft 0.22.1 mishandles a snapshot (InstallSnapshot) that reaches a replica still
 * installing an earlier one: it drops the data without freeing it, and the leader sends the
 * snapshot again after every heartbeat rejected meanwhile, so a large state leaks many times
 * its size (fixed upstream after 0.22.1, cowsql/raft 2ee8f4d). One that arrives while the
 * replica writes a snapshot of its own is parked, and then dereferenced as NULL (legacy.c,
 * takeSnapshotCb). Such a message is freed and dropped here; the leader sends it again later. */
/* True when configuration counts node_id as a voter. */
static bool sd_configuration_has_voter(const struct raft_configuration *configuration,
                                       uint64_t node_id)
{
    for (unsigned i = 0; i < configuration->n; i++) {
        if (configuration->servers[i].id == node_id &&
            configuration->servers[i].role == RAFT_VOTER) {
            return true;
        }
    }
    return false;
}

static bool sd_entries_have_voter(const struct raft_append_entries *append, uint64_t node_id)
{
    bool voter = false;
    for (unsigned i = 0; i < append->n_entries && !voter; i++) {
        struct raft_configuration configuration;
        raft_configuration_init(&configuration);
        if (append->entries[i].type == RAFT_CHANGE &&
            raft_configuration_decode(&append->entries[i].buf, &configuration) == 0) {
            voter = sd_configuration_has_voter(&configuration, node_id);
        }
        raft_configuration_close(&configuration);
    }
    return voter;
}

/* Frees a received message the library will not see (as it does while closing). */
static void sd_raft_message_free(struct raft_message *message)
{
    if (message->type == RAFT_INSTALL_SNAPSHOT) {
        raft_configuration_close(&message->install_snapshot.conf);
        raft_free(message->install_snapshot.data.base);
    } else if (message->type == RAFT_APPEND_ENTRIES && message->append_entries.n_entries > 0) {
        void *batch = NULL; /* entries received together share batches */
        for (unsigned i = 0; i < message->append_entries.n_entries; i++) {
            if (message->append_entries.entries[i].batch != batch) {
                batch = message->append_entries.entries[i].batch;
                raft_free(batch);
            }
        }
        raft_free(message->append_entries.entries);
    }
}

/* --join on an empty log: this replica has never held the group's log, so it must not vote
 * (it cannot know whom it voted for under this id before), and a group that counts its id as
 * a voter already knew a replica of this id — one whose volume was lost. Ids are never reused
 * (Raft's safety rests on a voter's memory of its votes): stop, saying what to do. True when
 * the message was consumed. */
static bool sd_join_guard(sd_replication_t *replication, struct raft_message *message)
{
    uint64_t self = replication->options.node_id;
    bool reused = (message->type == RAFT_INSTALL_SNAPSHOT &&
                   sd_configuration_has_voter(&message->install_snapshot.conf, self)) ||
                  (message->type == RAFT_APPEND_ENTRIES &&
                   sd_entries_have_voter(&message->append_entries, self));
    if (!reused && message->type != RAFT_REQUEST_VOTE) {
        return false;
    }
    sd_raft_message_free(message);
    if (reused && !replication->failed) {
        SD_LOG(LOG_ERROR, "replication_id_reused", LF_UINT("node_id", self),
               LF_STR("error", "the group counts this id as a voter, but this replica's log is "
                               "empty: the id was used before (a lost volume?). Ids are never "
                               "reused: start it with a new --node-id and --join, add that id "
                               "(stockctl cluster add-member) and remove this one"));
        sd_replication_fail(replication, "this replica's id was used before");
    }
    return true;
}

/* ---- a member that lost its log (the leader, loop thread) ----
 * A voter that acknowledged entries and then lost its volume comes back with a shorter log.
 * The leader's progress for it still counts what it acknowledged: libraft ignores its
 * rejections of those entries as stale while it streams to that member (progress.c: rejected
 * <= match index), and when it probes instead it sets the member's next index below its match
 * index, after which it sends only empty heartbeats (replication.c: the entries in flight,
 * next - match - 1, wrap around). Either way this leader never sends it the log again: it stays
 * behind and not ready (with --join it never learns that its id was used before: sd_join_guard).
 * A new leader starts from fresh progress. So a member that answers with a last index below
 * what it acknowledged is a suspect, and the leader hands leadership to the most up-to-date
 * other voter, not a suspect, heard from lately (a dead one would hold writes for an election
 * timeout), again every SD_LOST_LOG_TRANSFER_SPACING_MS while it leads and a suspect is left. */

/* Which answers say "lost": a rejection whose last index is below the match index and not just
 * the one before the rejected index (a log that holds the index under another term, or
 * compacted past it, answers that), unless it is the bootstrap entry or nothing; a success
 * whose stored index is below the match index but not 0 (0: installing a snapshot, which sets
 * the stored index to 0 until it is written). */
static bool sd_answer_lost_log(const struct raft_append_entries_result *result, raft_index match)
{
    if (result->last_log_index >= match) {
        return false;
    }
    if (result->rejected > 0) {
        return result->last_log_index + 1 < result->rejected || result->last_log_index <= 1;
    }
    return result->last_log_index > 0;
}

static void sd_on_lost_log_transfer(struct raft_transfer *transfer)
{
    sd_replication_t *replication = transfer->data;
    replication->lost_log_transfer_in_flight = false;
}

/* Any message from a member: it is alive. A full table gives up its oldest entry. */
static void sd_heard_from(sd_replication_t *replication, raft_id id)
{
    size_t slot = 0;
    for (size_t i = 0; i < SD_REPLICATION_PEERS_MAX; i++) {
        if (replication->heard_ids[i] == id) {
            slot = i;
            break;
        }
        if (replication->heard_ms[i] < replication->heard_ms[slot]) {
            slot = i; /* never heard (0) or the oldest */
        }
    }
    replication->heard_ids[slot] = id;
    replication->heard_ms[slot] = util_monotonic_ms();
}

/* Heard from within half an election timeout (at least three heartbeats): a live follower
 * answers each of the leader's heartbeats. */
static bool sd_heard_lately(const sd_replication_t *replication, raft_id id, double now_ms)
{
    double window = replication->raft.election_timeout / 2.0;
    window = window > 3.0 * replication->raft.heartbeat_timeout
                 ? window
                 : 3.0 * replication->raft.heartbeat_timeout;
    for (size_t i = 0; i < SD_REPLICATION_PEERS_MAX; i++) {
        if (replication->heard_ids[i] == id) {
            return now_ms - replication->heard_ms[i] <= window;
        }
    }
    return false;
}

static int sd_lost_log_slot(const sd_replication_t *replication, raft_id id)
{
    for (int i = 0; i < SD_REPLICATION_PEERS_MAX; i++) {
        if (replication->lost_log_members[i] == id) {
            return i;
        }
    }
    return -1;
}

/* The voter other than this replica and the suspects, heard from lately, with the highest match
 * index (0: none). */
static raft_id sd_lost_log_heir(const sd_replication_t *replication, double now_ms)
{
    const struct raft *raft = &replication->raft;
    raft_id heir = 0;
    raft_index best = 0;
    for (unsigned i = 0; i < raft->configuration.n; i++) {
        const struct raft_server *server = &raft->configuration.servers[i];
        raft_index match = 0;
        if (server->role == RAFT_VOTER && server->id != raft->id &&
            sd_lost_log_slot(replication, server->id) < 0 &&
            sd_heard_lately(replication, server->id, now_ms) &&
            raft_match_index(raft, server->id, &match) == 0 && (heir == 0 || match > best)) {
            heir = server->id;
            best = match;
        }
    }
    return heir;
}

/* On an AppendEntries result: a member becomes a suspect, or stops being one once it answers
 * with all it acknowledged. */
static void sd_lost_log_note(sd_replication_t *replication, const struct raft_message *message)
{
    struct raft *raft = &replication->raft;
    const struct raft_append_entries_result *result = &message->append_entries_result;
    raft_index match = 0;
    if (message->type != RAFT_APPEND_ENTRIES_RESULT || raft_state(raft) != RAFT_LEADER ||
        result->term != raft_current_term(raft) ||
        raft_match_index(raft, message->server_id, &match) != 0) {
        return;
    }
    int slot = sd_lost_log_slot(replication, message->server_id);
    if (slot >= 0 && result->rejected == 0 && result->last_log_index >= match) {
        replication->lost_log_members[slot] = 0; /* it holds the log again */
        return;
    }
    int free_slot = sd_lost_log_slot(replication, 0);
    if (slot >= 0 || free_slot < 0 || !sd_answer_lost_log(result, match)) {
        return;
    }
    replication->lost_log_members[free_slot] = message->server_id;
    SD_LOG(LOG_WARN, "replication_member_lost_its_log", LF_UINT("node_id", message->server_id),
           LF_UINT("acknowledged_index", match), LF_UINT("holds_index", result->last_log_index));
}

/* Whether any suspect is still a member (those that left are forgotten). */
static bool sd_lost_log_suspects(sd_replication_t *replication)
{
    bool any = false;
    for (size_t i = 0; i < SD_REPLICATION_PEERS_MAX; i++) {
        raft_id id = replication->lost_log_members[i];
        bool member = false;
        for (unsigned k = 0; id != 0 && k < replication->raft.configuration.n; k++) {
            member = member || replication->raft.configuration.servers[k].id == id;
        }
        replication->lost_log_members[i] = member ? id : 0;
        any = any || member;
    }
    return any;
}

/* Refresh timer: hands leadership over while a suspect is left, unless a configuration change
 * or a promotion is under way (a hand-over would fail it: add-member is how a lost member is
 * replaced). */
static void sd_lost_log_watch(sd_replication_t *replication)
{
    struct raft *raft = &replication->raft;
    if (raft_state(raft) != RAFT_LEADER) {
        memset(replication->lost_log_members, 0, sizeof(replication->lost_log_members));
        return; /* the next leader starts from fresh progress */
    }
    double now_ms = util_monotonic_ms();
    if (!sd_lost_log_suspects(replication) || replication->closing || replication->failed ||
        replication->lost_log_transfer_in_flight || raft_transferee(raft) != 0 ||
        raft->legacy.change != NULL || raft->leader_state.promotee_id != 0 ||
        now_ms - replication->lost_log_transfer_ms < SD_LOST_LOG_TRANSFER_SPACING_MS) {
        return;
    }
    replication->lost_log_transfer_ms = now_ms;
    raft_id heir = sd_lost_log_heir(replication, now_ms);
    replication->lost_log_transfer.data = replication;
    int rv = heir == 0 ? 0
                       : raft_transfer(raft, &replication->lost_log_transfer, heir,
                                       sd_on_lost_log_transfer);
    replication->lost_log_transfer_in_flight = heir != 0 && rv == 0;
    SD_LOG(LOG_WARN, "replication_lost_log_hand_over", LF_UINT("to", heir),
           LF_STR("outcome", heir == 0 ? "no other voter heard from lately: tried again later"
                             : rv == 0 ? "started"
                                       : raft_strerror(rv)));
}

static void sd_pre_vote_note_answer(sd_replication_t *replication, uint64_t node_id);

static void sd_on_raft_message(struct raft_io *io, struct raft_message *message)
{
    struct raft *raft = io->data;
    sd_replication_t *replication = raft->data;
    if (replication->options.join && raft_last_index(raft) == 0 &&
        sd_join_guard(replication, message)) {
        return;
    }
    if (message->type == RAFT_REQUEST_VOTE_RESULT) {
        sd_pre_vote_note_answer(replication, message->server_id);
    }
    sd_heard_from(replication, message->server_id);
    sd_lost_log_note(replication, message);
    uint64_t told = message->type == RAFT_APPEND_ENTRIES     ? message->append_entries.leader_commit
                    : message->type == RAFT_INSTALL_SNAPSHOT ? message->install_snapshot.last_index
                                                             : 0;
    replication->leader_commit_seen =
        told > replication->leader_commit_seen ? told : replication->leader_commit_seen;
    if (message->type == RAFT_INSTALL_SNAPSHOT &&
        (raft->snapshot.installing || raft->legacy.snapshot_install ||
         raft->legacy.snapshot_taking)) {
        sd_raft_message_free(message);
        pthread_mutex_lock(&replication->mutex);
        replication->status.snapshots_dropped++;
        pthread_mutex_unlock(&replication->mutex);
        return;
    }
    replication->library_recv(io, message);
}

static int sd_io_start(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick,
                       raft_io_recv_cb recv)
{
    struct raft *raft = io->data;
    sd_replication_t *replication = raft->data;
    replication->library_recv = recv;
    return replication->io_start(io, msecs, tick, sd_on_raft_message);
}

/* ---- status snapshot (loop thread writes, any thread reads) ---- */

static const char *sd_member_role_name(int role)
{
    return role == RAFT_VOTER ? "voter" : role == RAFT_STANDBY ? "standby" : "spare";
}

/* Loop thread: the members of the configuration in effect, with their gRPC addresses (read
 * before the status mutex is taken: storage reads must not hold up its readers). */
static void sd_replication_fill_members(sd_replication_t *replication,
                                        sd_replication_status_t *status)
{
    const struct raft_configuration *configuration = &replication->raft.configuration;
    status->members_count = 0;
    for (unsigned i = 0; i < configuration->n && i < SD_REPLICATION_PEERS_MAX; i++) {
        const struct raft_server *server = &configuration->servers[i];
        sd_replication_peer_t *member = &status->members[status->members_count];
        member->id = server->id;
        snprintf(member->raft_address, sizeof(member->raft_address), "%s", server->address);
        sd_replication_grpc_of(replication, server->id, member->grpc_address,
                               sizeof(member->grpc_address));
        status->member_roles[status->members_count] = sd_member_role_name(server->role);
        raft_index match = 0;
        status->match_index[status->members_count] =
            raft_match_index(&replication->raft, server->id, &match) == 0 ? match : 0;
        status->members_count++;
    }
}

int sd_replication_member_index(const sd_replication_status_t *status, uint64_t node_id)
{
    for (size_t i = 0; i < status->members_count; i++) {
        if (status->members[i].id == node_id) {
            return (int)i;
        }
    }
    return -1;
}

static void sd_replication_refresh_status(sd_replication_t *replication)
{
    struct raft *raft = &replication->raft;
    raft_id leader_id = 0;
    const char *leader_address = NULL;
    raft_leader(raft, &leader_id, &leader_address);
    static sd_replication_status_t fresh; /* loop thread only; too big for its stack frame */
    sd_replication_fill_members(replication, &fresh);
    sd_replication_grpc_of(replication, leader_id, fresh.leader_grpc, sizeof(fresh.leader_grpc));
    pthread_mutex_lock(&replication->mutex);
    if (replication->stopping) {
        pthread_mutex_unlock(&replication->mutex);
        return;
    }
    sd_replication_status_t *status = &replication->status;
    status->leader_id = leader_id;
    status->term = raft_current_term(raft);
    status->commit_index = raft_commit_index(raft);
    status->applied_index = raft_last_applied(raft);
    status->last_index = raft_last_index(raft);
    status->leader = raft_state(raft) == RAFT_LEADER;
    status->pre_vote = !replication->pre_vote_off;
    status->members_lost_log = 0;
    for (size_t i = 0; i < SD_REPLICATION_PEERS_MAX; i++) {
        status->members_lost_log += replication->lost_log_members[i] != 0;
    }
    status->role = raft_state_name(raft_state(raft));
    status->members_count = fresh.members_count;
    memcpy(status->members, fresh.members, sizeof(status->members));
    memcpy((void *)status->member_roles, fresh.member_roles, sizeof(status->member_roles));
    memcpy(status->match_index, fresh.match_index, sizeof(status->match_index));
    memcpy(status->leader_grpc, fresh.leader_grpc, sizeof(status->leader_grpc));
    /* A --join replica that holds no log yet has nothing to serve, whatever it knows; nor does
     * a replica outside the configuration it holds: one removed, or one that came up at an old
     * member's address under a new id and is sent the group's log meant for that member (its
     * acknowledgements count for nobody: the leader knows no member by its id). */
    bool member = sd_replication_member_index(status, replication->options.node_id) >= 0;
    bool ready = status->leader_id != 0 && status->applied_index >= status->commit_index &&
                 status->applied_index >= replication->leader_commit_seen &&
                 (!replication->options.join || status->last_index > 0) && member &&
                 !replication->failed;
    status->ready = ready;
    pthread_mutex_unlock(&replication->mutex);
    if (ready != replication->ready_told && replication->options.on_ready_changed != NULL) {
        replication->ready_told = ready; /* Health/Watch streams hear of the change */
        replication->options.on_ready_changed(replication->options.on_ready_changed_context, ready);
    }
}

/* A vote answer from a member while no leader is known: it is reachable (sd_pre_vote_watch). */
static void sd_pre_vote_note_answer(sd_replication_t *replication, uint64_t node_id)
{
    if (replication->leaderless_since_ms == 0) {
        return;
    }
    for (size_t i = 0; i < replication->answered_count; i++) {
        if (replication->answered_ids[i] == node_id) {
            return;
        }
    }
    if (replication->answered_count < SD_REPLICATION_PEERS_MAX) {
        replication->answered_ids[replication->answered_count++] = node_id;
    }
}

/* The voters of the configuration this replica holds. */
static unsigned sd_raft_voters(const struct raft *raft)
{
    unsigned voters = 0;
    for (unsigned i = 0; i < raft->configuration.n; i++) {
        voters += raft->configuration.servers[i].role == RAFT_VOTER;
    }
    return voters;
}

/* Sets pre-vote aside, also for a candidate in a pre-vote round: the library keeps a
 * candidate's mode from round to round, and the grants of that round were pre-votes, which
 * must not count as votes (they are cleared; the next round starts a real election with its
 * own vote). */
static void sd_pre_vote_set_aside(struct raft *raft)
{
    raft_set_pre_vote(raft, false);
    if (raft_state(raft) != RAFT_CANDIDATE || !raft->candidate_state.in_pre_vote) {
        return;
    }
    raft->candidate_state.in_pre_vote = false;
    unsigned voters = sd_raft_voters(raft);
    for (unsigned i = 0; i < voters; i++) { /* votes[] is indexed by voter */
        raft->candidate_state.votes[i].grant = false;
    }
}

/* Pre-vote, with a way out of its livelock in raft 0.22.1: a pre-vote answer carries the
 * candidate's term, not the higher one it was refused for (recv_request_vote.c), so a
 * candidate never learns it, and once the highest term sits with a replica whose log is behind
 * no election can succeed, ever (found by the seeded simulation, tests/sim). Pre-vote stays on
 * — it keeps a follower that lost the leader from splitting the vote with one that has not
 * noticed yet (a failover took 1.7-2.0 s with it, 2.3-3.2 s without), and a replica cut off
 * from the others from raising the term and unseating the leader when it is back — but a
 * replica that has known no leader for SD_PRE_VOTE_GIVE_UP_ELECTIONS election timeouts while a
 * majority answered its vote requests (it is not cut off: it cannot win) runs plain elections,
 * which carry the highest term to everyone, until it knows a leader again. */
static void sd_pre_vote_watch(sd_replication_t *replication)
{
    struct raft *raft = &replication->raft;
    raft_id leader_id = 0;
    const char *leader_address = NULL;
    raft_leader(raft, &leader_id, &leader_address);
    double now_ms = util_monotonic_ms();
    if (leader_id != 0) {
        replication->leaderless_since_ms = 0;
        replication->answered_count = 0;
        if (replication->pre_vote_off) {
            raft_set_pre_vote(raft, true);
            replication->pre_vote_off = false;
            SD_LOG(LOG_INFO, "replication_pre_vote_on", LF_UINT("leader", leader_id));
        }
        return;
    }
    if (replication->leaderless_since_ms == 0) {
        replication->leaderless_since_ms = now_ms;
    }
    bool answered_by_majority = replication->answered_count + 1 > sd_raft_voters(raft) / 2;
    double give_up_ms = SD_PRE_VOTE_GIVE_UP_ELECTIONS * (double)raft->election_timeout;
    if (!replication->pre_vote_off && answered_by_majority &&
        now_ms - replication->leaderless_since_ms > give_up_ms) {
        sd_pre_vote_set_aside(raft);
        replication->pre_vote_off = true;
        SD_LOG(LOG_WARN, "replication_pre_vote_off",
               LF_DBL("leaderless_ms", now_ms - replication->leaderless_since_ms),
               LF_UINT("term", raft_current_term(raft)));
    }
}

/* ---- a group restored from a store (--restore-group) ----
 * Its first replica's store held data before the group's first entry, data no entry carries:
 * a member sent the log from entry 1 would apply the group's entries without it. The library
 * sends a snapshot instead only once it knows no term for entry 1 (replication.c in libraft:
 * entry 1 neither in the log nor the last of the snapshot). So while this replica's log still
 * reaches entry 1, new members are refused and a snapshot is taken every 2 applied entries
 * (not at entry 1 alone: a copy of the whole store each), keeping one entry behind it: the
 * first at index 2 or later drops entry 1 from memory and deletes the closed segment holding
 * it (libuv deletes closed segments behind the trailing entries before the library drops them
 * from memory), so it does not come back at the next start either. (Trailing 0 would not do:
 * to libuv's snapshot_put it means "installing", which drops every entry.) From then on a new
 * member starts from a snapshot, which holds the store. Reads the public raft->trail of
 * libraft 0.22; an upgrade must check it still means this. */
#define SD_BASE_SNAPSHOT_THRESHOLD 2
#define SD_BASE_BARRIER_SPACING_MS 1000

static bool sd_log_reaches_first_entry(const struct raft *raft)
{
    return raft->trail.offset == 0 || raft->trail.snapshot.index <= 1;
}

static void sd_on_base_barrier(struct raft_barrier *barrier, int status)
{
    (void)status; /* sd_base_watch asks again if the snapshot still has not come */
    sd_replication_t *replication = barrier->data;
    replication->base_barrier_in_flight = false;
}

/* A group of one commits its bootstrap entry on electing itself without appending an entry
 * (libraft convert.c), and an idle group writes none: with nothing applied past entry 1 there
 * would be no snapshot, and add-member would be refused for ever. So while the log reaches
 * entry 1, its leader appends barriers (one at a time, at most one a second). */
static void sd_base_push(sd_replication_t *replication)
{
    struct raft *raft = &replication->raft;
    double now_ms = util_monotonic_ms();
    if (!replication->started || replication->closing || replication->failed ||
        replication->base_barrier_in_flight || raft_state(raft) != RAFT_LEADER ||
        now_ms - replication->base_barrier_ms < SD_BASE_BARRIER_SPACING_MS) {
        return;
    }
    replication->base_barrier_ms = now_ms;
    replication->base_barrier.data = replication;
    replication->base_barrier_in_flight =
        raft_barrier(raft, &replication->base_barrier, sd_on_base_barrier) == 0;
}

/* Loop thread (and the starting thread before the loop runs). */
static void sd_base_watch(sd_replication_t *replication)
{
    if (replication->base_seq == 0) {
        return;
    }
    bool in_log = sd_log_reaches_first_entry(&replication->raft);
    if (in_log != replication->base_in_log) {
        replication->base_in_log = in_log;
        const sd_replication_options_t *options = &replication->options;
        raft_set_snapshot_threshold(&replication->raft, in_log ? SD_BASE_SNAPSHOT_THRESHOLD
                                                               : options->snapshot_threshold);
        raft_set_snapshot_trailing(&replication->raft, in_log ? 1 : options->snapshot_trailing);
        SD_LOG(LOG_INFO,
               in_log ? "replication_group_base_in_log" : "replication_group_base_snapshotted",
               LF_UINT("base_ledger_seq", replication->base_seq),
               LF_UINT("snapshot_index", replication->raft.trail.snapshot.index));
    }
    if (in_log) {
        sd_base_push(replication);
    }
}

static bool sd_base_refuses_member(sd_replication_t *replication, const sd_request_t *request)
{
    sd_base_watch(replication);
    return replication->base_in_log && request->member_change != SD_MEMBER_REMOVE;
}

static void sd_on_refresh(uv_timer_t *timer)
{
    sd_pre_vote_watch(timer->data);
    sd_base_watch(timer->data);
    sd_snapshot_prep_watch(timer->data);
    sd_lost_log_watch(timer->data);
    sd_replication_refresh_status(timer->data);
}

void sd_replication_status(sd_replication_t *replication, sd_replication_status_t *status_out)
{
    pthread_mutex_lock(&replication->mutex);
    *status_out = replication->status;
    pthread_mutex_unlock(&replication->mutex);
}

bool sd_replication_ready(sd_replication_t *replication)
{
    sd_replication_status_t status;
    sd_replication_status(replication, &status);
    return status.ready;
}

/* ---- requests from the writer ---- */

static void sd_request_finish(sd_request_t *request, sd_replication_outcome_t outcome)
{
    sd_replication_t *replication = request->replication;
    pthread_mutex_lock(&replication->mutex);
    request->outcome = outcome;
    request->done = true;
    bool abandoned = request->abandoned;
    pthread_cond_broadcast(&replication->changed);
    pthread_mutex_unlock(&replication->mutex);
    if (abandoned) {
        free(request);
    }
}

static void sd_on_barrier(struct raft_barrier *barrier, int status)
{
    sd_request_t *request = barrier->data;
    /* reached, but an entry before it may have failed to apply here (sd_fsm_apply_failed) */
    bool done = status == 0 && !request->replication->failed;
    sd_request_finish(request, done ? SD_REPLICATION_DONE : SD_REPLICATION_NOT_LEADER);
}

static void sd_on_apply(struct raft_apply *apply, int status, void *result)
{
    (void)result;
    sd_request_t *request = apply->data;
    /* anything but success after the append: the entry may still be committed by the next
     * leader (a write whose callback reports lost leadership often was) */
    sd_request_finish(request, status == 0 ? SD_REPLICATION_DONE : SD_REPLICATION_UNKNOWN);
}

static void sd_on_transfer(struct raft_transfer *transfer)
{
    sd_request_finish(transfer->data, SD_REPLICATION_DONE);
}

static void sd_replication_refresh_status(sd_replication_t *replication);

static void sd_on_change(struct raft_change *change, int status)
{
    sd_request_t *request = change->data;
    request->raft_status = status;
    /* the caller reads the members from the status next: bring it up to date first */
    sd_replication_refresh_status(request->replication);
    /* failed after it started (leadership lost, the member did not catch up): the new
     * configuration may or may not be committed */
    sd_request_finish(request, status == 0 ? SD_REPLICATION_DONE : SD_REPLICATION_UNKNOWN);
}

/* Loop thread: starts a configuration change (0), or returns why the library refused it. */
static int sd_member_change_start(sd_replication_t *replication, sd_request_t *request)
{
    struct raft *raft = &replication->raft;
    request->change.data = request;
    switch (request->member_change) {
    case SD_MEMBER_ADD:
        return raft_add(raft, &request->change, request->member_id, request->member_address,
                        sd_on_change);
    case SD_MEMBER_PROMOTE: {
        int rv = raft_assign(raft, &request->change, request->member_id, RAFT_VOTER, sd_on_change);
        if (rv != 0 && raft->legacy.change == &request->change) {
            /* libraft 0.22.1 keeps the request as its pending change when submitting it fails
             * (legacy.c raft_assign); left there, it would be called back after it is freed */
            raft->legacy.change = NULL;
        }
        return rv;
    }
    case SD_MEMBER_REMOVE:
        return raft_remove(raft, &request->change, request->member_id, sd_on_change);
    }
    return RAFT_INVALID;
}

static void sd_request_start(sd_replication_t *replication, sd_request_t *request)
{
    struct raft *raft = &replication->raft;
    bool leads = raft_state(raft) == RAFT_LEADER && !replication->failed;
    if (request->kind == SD_REQUEST_MEMBER) {
        int rv = !leads ? RAFT_NOTLEADER
                 : sd_base_refuses_member(replication, request)
                     ? SD_MEMBER_REFUSED_BASE_IN_LOG
                     : sd_member_change_start(replication, request);
        if (rv != 0) {
            request->raft_status = rv == RAFT_NOTLEADER ? 0 : rv;
            sd_request_finish(request, SD_REPLICATION_NOT_LEADER);
        }
        return;
    }
    if (request->kind == SD_REQUEST_TRANSFER) {
        /* a failed leader may still hand leadership over: its log is sound */
        request->transfer.data = request;
        raft_id target = request->term;
        if (target == 0 && sd_lost_log_suspects(replication)) {
            /* the library's own choice may be a suspect: its match index is stale */
            target = sd_lost_log_heir(replication, util_monotonic_ms());
        }
        if (raft_state(raft) != RAFT_LEADER ||
            raft_transfer(raft, &request->transfer, target, sd_on_transfer) != 0) {
            sd_request_finish(request, SD_REPLICATION_NOT_LEADER);
        }
        return;
    }
    if (request->kind == SD_REQUEST_BARRIER && leads) {
        request->term = raft_current_term(raft);
        request->barrier.data = request;
        if (raft_barrier(raft, &request->barrier, sd_on_barrier) == 0) {
            return;
        }
    } else if (request->kind == SD_REQUEST_APPLY && leads && raft_transferee(raft) == 0 &&
               raft_current_term(raft) == request->term) {
        request->apply.data = request;
        int rv = raft_apply(raft, &request->apply, &request->buffer, 1, sd_on_apply);
        if (rv == 0) {
            return; /* the buffer is the library's now */
        }
        if (rv != RAFT_NOTLEADER && rv != RAFT_NOSPACE) {
            /* refused after the library took the entry in (it freed the buffer, and may keep
             * the entry): the fate is unknown, and this replica's log cannot be trusted */
            SD_LOG(LOG_ERROR, "replication_append_failed", LF_STR("error", raft_strerror(rv)));
            sd_replication_fail(replication, "the Raft log refused an append");
            sd_request_finish(request, SD_REPLICATION_UNKNOWN);
            return;
        }
        raft_free(request->buffer.base); /* refused before it was taken in: still ours */
    } else if (request->kind == SD_REQUEST_APPLY) {
        raft_free(request->buffer.base);
    }
    sd_request_finish(request, SD_REPLICATION_NOT_LEADER);
}

/* ---- read fences (loop thread) ---- */

static void sd_fence_pump(sd_replication_t *replication);

static void sd_fence_settle(sd_replication_t *replication, bool done)
{
    pthread_mutex_lock(&replication->mutex);
    if (done) {
        replication->fence_done = replication->fence_target;
        replication->fence_done_term = replication->fence_term;
    } else {
        replication->fence_failed = replication->fence_target;
    }
    pthread_cond_broadcast(&replication->changed);
    pthread_mutex_unlock(&replication->mutex);
}

static void sd_on_fence(struct raft_barrier *barrier, int status)
{
    sd_replication_t *replication = barrier->data;
    replication->fence_in_flight = false;
    /* a failed apply before the barrier leaves this store without an entry it covers */
    sd_fence_settle(replication, status == 0 && !replication->failed);
    sd_fence_pump(replication);
}

/* Starts a barrier for every read waiting, unless one is on its way (those who came after it
 * started wait for the next one). */
static void sd_fence_pump(sd_replication_t *replication)
{
    if (replication->fence_in_flight) {
        return;
    }
    pthread_mutex_lock(&replication->mutex);
    bool wanted = replication->fence_requested > replication->fence_done &&
                  replication->fence_requested > replication->fence_failed &&
                  !replication->stopping;
    replication->fence_target = replication->fence_requested;
    pthread_mutex_unlock(&replication->mutex);
    if (!wanted) {
        return;
    }
    replication->fence_barrier.data = replication;
    pthread_mutex_lock(&replication->mutex);
    replication->fence_term = raft_current_term(&replication->raft);
    pthread_mutex_unlock(&replication->mutex);
    if (raft_state(&replication->raft) == RAFT_LEADER && !replication->failed &&
        raft_barrier(&replication->raft, &replication->fence_barrier, sd_on_fence) == 0) {
        replication->fence_in_flight = true;
        return;
    }
    sd_fence_settle(replication, false);
}

sd_replication_outcome_t sd_replication_read_fence(sd_replication_t *replication,
                                                   int64_t timeout_ms, uint64_t *term_out)
{
    struct timespec until = util_time_after_us(CLOCK_MONOTONIC, timeout_ms * 1000);
    pthread_mutex_lock(&replication->mutex);
    if (replication->stopping) {
        pthread_mutex_unlock(&replication->mutex);
        return SD_REPLICATION_NOT_LEADER;
    }
    uint64_t generation = ++replication->fence_requested;
    uv_async_send(&replication->wake);
    while (replication->fence_done < generation && replication->fence_failed < generation) {
        if (pthread_cond_timedwait(&replication->changed, &replication->mutex, &until) != 0) {
            break;
        }
    }
    bool done = replication->fence_done >= generation;
    if (term_out != NULL) {
        *term_out = replication->fence_done_term;
    }
    pthread_mutex_unlock(&replication->mutex);
    return done ? SD_REPLICATION_DONE : SD_REPLICATION_NOT_LEADER;
}

static void sd_on_raft_closed(struct raft *raft)
{
    sd_replication_t *replication = raft->data;
    raft_uv_close(&replication->io);
    raft_uv_tcp_close(&replication->transport);
    uv_close((uv_handle_t *)&replication->refresh, NULL);
    uv_close((uv_handle_t *)&replication->wake, NULL);
}

static void sd_on_wake(uv_async_t *async)
{
    sd_replication_t *replication = async->data;
    pthread_mutex_lock(&replication->mutex);
    sd_request_t *request = replication->queued;
    replication->queued = replication->queued_tail = NULL;
    bool stopping = replication->stopping;
    pthread_mutex_unlock(&replication->mutex);
    while (request != NULL) {
        sd_request_t *next = request->next;
        pthread_mutex_lock(&replication->mutex);
        bool abandoned = request->abandoned; /* the writer answered "outcome unknown" */
        pthread_mutex_unlock(&replication->mutex);
        if (stopping || abandoned) {
            if (request->kind == SD_REQUEST_APPLY) {
                raft_free(request->buffer.base);
            }
            sd_request_finish(request, SD_REPLICATION_NOT_LEADER);
        } else {
            sd_request_start(replication, request);
        }
        request = next;
    }
    sd_fence_pump(replication);
    if (stopping) {
        if (!replication->closing) {
            replication->closing = true;
            uv_timer_stop(&replication->refresh);
            raft_close(&replication->raft, sd_on_raft_closed);
        }
        return;
    }
    sd_replication_refresh_status(replication);
}

/* Hands a request to the loop and waits for its outcome (at most timeout_ms; then it is
 * abandoned to the loop, which frees it, and its outcome is unknown). *term_out: the term a
 * barrier was reached in; *raft_status_out (may be NULL): why the library refused. */
static sd_replication_outcome_t sd_request_run(sd_replication_t *replication, sd_request_t *request,
                                               int64_t timeout_ms, uint64_t *term_out,
                                               int *raft_status_out)
{
    struct timespec until = util_time_after_us(CLOCK_MONOTONIC, timeout_ms * 1000);
    pthread_mutex_lock(&replication->mutex);
    bool queued = !replication->stopping;
    if (queued) {
        request->next = NULL;
        if (replication->queued_tail != NULL) {
            replication->queued_tail->next = request;
        } else {
            replication->queued = request;
        }
        replication->queued_tail = request;
        uv_async_send(&replication->wake);
    }
    while (queued && !request->done) {
        if (pthread_cond_timedwait(&replication->changed, &replication->mutex, &until) != 0) {
            break;
        }
    }
    bool done = request->done;
    sd_replication_outcome_t outcome = request->outcome;
    /* read while the mutex is held: once abandoned, the loop frees it as soon as it ends */
    sd_request_kind_t kind = request->kind;
    *term_out = request->term;
    if (raft_status_out != NULL) {
        *raft_status_out = done ? request->raft_status : 0;
    }
    request->abandoned = queued && !done;
    pthread_mutex_unlock(&replication->mutex);
    if (!queued) {
        if (request->kind == SD_REQUEST_APPLY) {
            raft_free(request->buffer.base);
        }
        free(request);
        return SD_REPLICATION_NOT_LEADER;
    }
    if (done) {
        free(request);
        return outcome;
    }
    return kind == SD_REQUEST_APPLY || kind == SD_REQUEST_MEMBER ? SD_REPLICATION_UNKNOWN
                                                                 : SD_REPLICATION_NOT_LEADER;
}

sd_replication_outcome_t sd_replication_lead(sd_replication_t *replication, uint64_t *term_io)
{
    sd_replication_status_t status;
    sd_replication_status(replication, &status);
    if (!status.leader) {
        return SD_REPLICATION_NOT_LEADER;
    }
    if (*term_io != 0 && status.term == *term_io) {
        return SD_REPLICATION_DONE; /* the append checks the term again, on the loop */
    }
    sd_request_t *request = calloc(1, sizeof(*request));
    if (request == NULL) {
        return SD_REPLICATION_NOT_LEADER;
    }
    request->kind = SD_REQUEST_BARRIER;
    request->replication = replication;
    uint64_t reached = 0;
    sd_replication_outcome_t outcome = sd_request_run(replication, request, 10000, &reached, NULL);
    if (outcome == SD_REPLICATION_DONE) {
        *term_io = reached;
    }
    return outcome;
}

sd_replication_outcome_t sd_replication_commit(sd_replication_t *replication, uint64_t term,
                                               const void *data, size_t length, uint64_t last_seq,
                                               int64_t timeout_ms)
{
    size_t size = (SD_ENTRY_HEADER_BYTES + length + 7) & ~(size_t)7;
    sd_request_t *request = calloc(1, sizeof(*request));
    void *base = length <= UINT32_MAX ? raft_calloc(1, size) : NULL;
    if (request == NULL || base == NULL) {
        free(request);
        raft_free(base);
        return SD_REPLICATION_NOT_LEADER;
    }
    uint8_t *bytes = base;
    memcpy(bytes, SD_ENTRY_MAGIC, 3);
    bytes[3] = SD_ENTRY_FORMAT;
    sd_be32_put(bytes + 4, (uint32_t)length);
    sd_be64_put(bytes + 8, last_seq);
    memcpy(bytes + SD_ENTRY_HEADER_BYTES, data, length);
    request->kind = SD_REQUEST_APPLY;
    request->term = term;
    request->buffer = (struct raft_buffer){base, size};
    request->replication = replication;
    uint64_t unused = 0;
    return sd_request_run(replication, request, timeout_ms, &unused, NULL);
}

/* ---- start and stop ---- */

static void *sd_replication_main(void *argument)
{
    sd_replication_t *replication = argument;
    sd_storage_thread_init(); /* entries are applied here */
    uv_run(&replication->loop, UV_RUN_DEFAULT);
    sd_snapshot_prep_drop(replication); /* the library is closed: nobody asks for it */
    return NULL;
}

/* A fresh replica (empty log) starts the group with every --peers member as a voter, or
 * (--restore-group) with itself alone; one with a log ignores this (RAFT_CANTBOOTSTRAP). */
static int sd_replication_bootstrap(sd_replication_t *replication)
{
    struct raft_configuration configuration;
    raft_configuration_init(&configuration);
    int rv = 0;
    for (size_t i = 0; i < replication->options.peers_count && rv == 0; i++) {
        if (replication->options.restore_group &&
            replication->peers[i].id != replication->options.node_id) {
            continue;
        }
        rv = raft_configuration_add(&configuration, replication->peers[i].id,
                                    replication->peers[i].raft_address, RAFT_VOTER);
    }
    if (rv == 0) {
        rv = raft_bootstrap(&replication->raft, &configuration);
        rv = rv == RAFT_CANTBOOTSTRAP ? 0 : rv;
    }
    raft_configuration_close(&configuration);
    return rv;
}

/* Everything up to raft_start, on the calling thread (the loop does not run yet). */
static bool sd_replication_init(sd_replication_t *replication, const sd_replication_peer_t *self,
                                char *error, size_t error_capacity)
{
    const char *step = "uv_loop_init";
    int rv = uv_loop_init(&replication->loop);
    if (rv == 0) {
        step = "raft_uv_tcp_init";
        replication->transport.version = 1; /* the struct layout this build knows */
        rv = raft_uv_tcp_init(&replication->transport, &replication->loop);
    }
    if (rv == 0) {
        step = "--raft-listen";
        rv = raft_uv_tcp_set_bind_address(&replication->transport, replication->raft_listen);
    }
    if (rv == 0) {
        step = "raft_uv_init";
        rv = raft_uv_init(&replication->io, &replication->loop, replication->dir,
                          &replication->transport);
    }
    if (rv == 0) {
        step = "raft_init";
        rv = raft_init(&replication->raft, &replication->io, &replication->fsm, self->id,
                       self->raft_address);
    }
    if (rv == 0) {
        replication->raft.data = replication;
        replication->io_start = replication->io.start;
        replication->io.start = sd_io_start;
        raft_set_snapshot_threshold(&replication->raft, replication->options.snapshot_threshold);
        raft_set_snapshot_trailing(&replication->raft, replication->options.snapshot_trailing);
        if (replication->options.election_timeout_ms > 0) {
            /* the library asserts heartbeat < election: a tenth, as its defaults (100/1000) */
            unsigned election = replication->options.election_timeout_ms;
            raft_set_election_timeout(&replication->raft, election);
            raft_set_heartbeat_timeout(&replication->raft, election / 10 > 0 ? election / 10 : 1);
        }
        raft_set_pre_vote(&replication->raft, true); /* see sd_pre_vote_watch */
        /* a catch-up round may have to send and install a whole snapshot (the library's 5 s
         * would give up on large states, and the new member would stay a spare) */
        raft_set_max_catch_up_round_duration(&replication->raft, SD_CATCH_UP_ROUND_MS);
        step = "bootstrap";
        rv = replication->options.join ? 0 : sd_replication_bootstrap(replication);
    }
    if (rv == 0) {
        step = "raft_start";
        rv = raft_start(&replication->raft);
    }
    if (rv == 0) {
        sd_base_watch(replication); /* the log is loaded: does it reach entry 1? */
    }
    if (rv != 0) {
        snprintf(error, error_capacity, "replication: %s failed: %s (%s)", step, raft_strerror(rv),
                 raft_errmsg(&replication->raft));
        return false;
    }
    return true;
}

/* Whether DIR holds a Raft log: the library writes its metadata (term and vote) when it
 * bootstraps and before it takes a term, so before any entry or snapshot, and never removes
 * it. */
static bool sd_raft_dir_has_log(const char *dir)
{
    for (int version = 1; version <= 2; version++) {
        char path[PATH_MAX];
        struct stat info;
        snprintf(path, sizeof(path), "%s/metadata%d", dir, version);
        if (stat(path, &info) == 0) {
            return true;
        }
    }
    return false;
}

/* A Raft log holds one member's terms and votes: started under another id, that member
 * would answer for votes it never cast (two replicas swapped volumes, a data directory copied
 * to another member). So DIR names the id it belongs to (DIR/stockd-node-id, written synced at
 * its first start; deploy/k8s/base/stockd-replica.sh writes the same file) and any other id
 * is refused. Creates DIR when it does not exist. */
static sd_status_t sd_raft_dir_claim(const char *dir, uint64_t node_id, char *error,
                                     size_t error_capacity)
{
    if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
        snprintf(error, error_capacity, "replication: cannot create %s", dir);
        return SD_UNAVAILABLE;
    }
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/" SD_RAFT_NODE_ID_FILE, dir);
    struct stat info;
    if (stat(path, &info) != 0 && errno == ENOENT) {
        char line[32];
        int n = snprintf(line, sizeof(line), "%" PRIu64 "\n", node_id);
        if (!util_write_file_synced(path, line, (size_t)n)) {
            snprintf(error, error_capacity, "replication: cannot write %s: %s", path,
                     strerror(errno));
            return SD_UNAVAILABLE;
        }
        return SD_OK;
    }
    char reason[256];
    size_t length = 0;
    char *text = util_read_file(path, 64, &length, reason, sizeof(reason));
    if (text == NULL) {
        snprintf(error, error_capacity, "replication: cannot read %s: %s", path, reason);
        return SD_UNAVAILABLE;
    }
    text[strcspn(text, "\n")] = '\0';
    int64_t owner = 0;
    bool parsed = util_parse_int64(text, &owner) && owner > 0;
    free(text);
    if (!parsed) {
        snprintf(error, error_capacity, "replication: %s is damaged: it must hold a node id", path);
        return SD_FAILED_PRECONDITION;
    }
    if ((uint64_t)owner != node_id) {
        snprintf(error, error_capacity,
                 "replication: %s holds the Raft log of node %" PRId64 ", not of --node-id %" PRIu64
                 ": a log answers for one member's votes",
                 dir, owner, node_id);
        return SD_FAILED_PRECONDITION;
    }
    return SD_OK;
}

/* A replica's store must be what its Raft log applied, from the group's first entry. A store
 * with data but no log beside it (the log deleted, a one-node data directory, a restored
 * backup) would have the group's entries applied on top of what it holds already: starting
 * a group with it leaves the other replicas without that data, and joining one applies the
 * entries after its applied index — or from the first, everything twice. Refused. */
static bool sd_store_matches_log(const sd_replication_options_t *options, uint64_t applied_index,
                                 uint64_t base_seq, char *error, size_t error_capacity)
{
    uint64_t last_seq = sd_storage_last_seq(options->storage);
    bool has_log = sd_raft_dir_has_log(options->dir);
    if (applied_index == 0 && last_seq > 0 &&
        !(base_seq > 0 && (has_log || options->restore_group))) {
        /* a replica's every write comes with an applied index: ledger entries without one are
         * a one-node store's, whatever log lies beside them — or the base of a group restored
         * from it (--restore-group), with that group's log or about to start it */
        snprintf(error, error_capacity,
                 "replication: the store holds data written outside any Raft group (ledger seq "
                 "%" PRIu64 ", no applied Raft index)%s: a replica starts a group, or joins one, "
                 "on an empty data directory, or restores one from it with --restore-group "
                 "(README \"Replication\")%s",
                 last_seq, has_log ? " beside a Raft log" : " and holds no Raft log",
                 base_seq > 0 ? "; it is a restored group's store: if this is the replica that "
                                "was restoring the group and its log was never started, start it "
                                "with --restore-group again; a replica that joined the group and "
                                "lost its log is replaced under a new id with --join"
                              : "");
        return false;
    }
    if (applied_index > 0 && !has_log) {
        snprintf(error, error_capacity,
                 "replication: the store holds data (ledger seq %" PRIu64
                 ", applied Raft index %" PRIu64
                 ") but %s holds no Raft log: a replica starts a group, or joins one, on an "
                 "empty data directory (README \"Replication\")",
                 last_seq, applied_index, options->dir);
        return false;
    }
    return true;
}

/* --restore-group on an empty log: the store in the data directory becomes the base of a new
 * group (sd_storage_adopt_as_group_base: the index and members of whatever group wrote it are
 * dropped, so the new group's entries apply from its first; done again after a crash before
 * the log was started). With a log, the group was restored already: the flag is ignored. */
static bool sd_store_adopt(const sd_replication_options_t *options, uint64_t *applied_index_io,
                           uint64_t *base_seq_io, char *error, size_t error_capacity)
{
    if (options->join) {
        snprintf(error, error_capacity,
                 "--restore-group and --join exclude each other: one "
                 "replica restores the group, the others join it");
        return false;
    }
    if (sd_raft_dir_has_log(options->dir)) {
        if (*base_seq_io == 0) {
            snprintf(error, error_capacity,
                     "--restore-group: %s holds the Raft log of a group that was not restored "
                     "from a store; start this replica without --restore-group",
                     options->dir);
            return false;
        }
        SD_LOG(LOG_INFO, "replication_restore_group_done_already",
               LF_UINT("base_ledger_seq", *base_seq_io));
        return true;
    }
    uint64_t old_index = *applied_index_io;
    sd_status_t status = sd_storage_adopt_as_group_base(options->storage);
    if (status != SD_OK) {
        snprintf(error, error_capacity,
                 status == SD_FAILED_PRECONDITION
                     ? "--restore-group: the data directory holds nothing to restore (ledger seq "
                       "0): copy the backup checkpoint into --data-dir first"
                     : "--restore-group: the store could not be adopted (%s)",
                 sd_status_name(status));
        return false;
    }
    *applied_index_io = 0;
    *base_seq_io = sd_storage_last_seq(options->storage);
    SD_LOG(LOG_INFO, "replication_group_base_adopted", LF_UINT("base_ledger_seq", *base_seq_io),
           LF_UINT("previous_applied_index", old_index));
    return true;
}

/* What the store holds, against the Raft log beside it (and --restore-group's adoption). */
static bool sd_store_check(const sd_replication_options_t *options, sd_replication_t *replication,
                           char *error, size_t error_capacity)
{
    if (sd_storage_load_applied_index(options->storage, &replication->applied_index) != SD_OK ||
        sd_storage_load_group_base(options->storage, &replication->base_seq) != SD_OK) {
        snprintf(error, error_capacity, "replication: cannot read the store's Raft metadata");
        return false;
    }
    if (options->restore_group && !sd_store_adopt(options, &replication->applied_index,
                                                  &replication->base_seq, error, error_capacity)) {
        return false;
    }
    return sd_store_matches_log(options, replication->applied_index, replication->base_seq, error,
                                error_capacity);
}

/* The replica's own copy of its options (the caller's strings and peers need not outlive the
 * call), with the snapshot defaults filled in. */
static void sd_replication_keep_options(sd_replication_t *replication,
                                        const sd_replication_options_t *options)
{
    replication->options = *options;
    if (replication->options.snapshot_threshold == 0) {
        replication->options.snapshot_threshold = SD_REPLICATION_SNAPSHOT_THRESHOLD;
    }
    if (replication->options.snapshot_trailing == 0) {
        replication->options.snapshot_trailing = SD_REPLICATION_SNAPSHOT_TRAILING;
    }
    memcpy(replication->peers, options->peers, options->peers_count * sizeof(*options->peers));
    replication->options.peers = replication->peers;
    snprintf(replication->dir, sizeof(replication->dir), "%s", options->dir);
    snprintf(replication->raft_listen, sizeof(replication->raft_listen), "%s",
             options->raft_listen);
}

sd_status_t sd_replication_start(const sd_replication_options_t *options,
                                 sd_replication_t **replication_out, char *error,
                                 size_t error_capacity)
{
    const sd_replication_peer_t *self = NULL;
    for (size_t i = 0; i < options->peers_count; i++) {
        self = options->peers[i].id == options->node_id ? &options->peers[i] : self;
    }
    if (self == NULL || options->peers_count > SD_REPLICATION_PEERS_MAX) {
        snprintf(error, error_capacity, "--node-id %" PRIu64 " is not one of --peers",
                 options->node_id);
        return SD_INVALID_ARGUMENT;
    }
    sd_status_t claimed = sd_raft_dir_claim(options->dir, options->node_id, error, error_capacity);
    if (claimed != SD_OK) {
        return claimed;
    }
    sd_replication_t *replication = calloc(1, sizeof(*replication));
    if (replication == NULL) {
        snprintf(error, error_capacity, "replication: out of memory");
        return SD_UNAVAILABLE;
    }
    sd_replication_keep_options(replication, options);
    replication->fsm = (struct raft_fsm){.version = 1,
                                         .data = replication,
                                         .apply = sd_fsm_apply,
                                         .snapshot = sd_fsm_snapshot,
                                         .restore = sd_fsm_restore};
    if (!sd_store_check(options, replication, error, error_capacity)) {
        free(replication);
        return SD_FAILED_PRECONDITION;
    }
    replication->status.node_id = options->node_id;
    pthread_mutex_init(&replication->mutex, NULL);
    if (!util_cond_init_monotonic(&replication->changed)) {
        snprintf(error, error_capacity, "replication: cannot make a condition variable");
        pthread_mutex_destroy(&replication->mutex);
        free(replication);
        return SD_UNAVAILABLE;
    }
    if (!sd_replication_init(replication, self, error, error_capacity)) {
        /* the library's handles may be half open: the process exits on this error */
        return SD_UNAVAILABLE;
    }
    replication->started = true;
    replication->wake.data = replication;
    replication->refresh.data = replication;
    uv_async_init(&replication->loop, &replication->wake, sd_on_wake);
    uv_timer_init(&replication->loop, &replication->refresh);
    uv_timer_start(&replication->refresh, sd_on_refresh, SD_STATUS_REFRESH_MS,
                   SD_STATUS_REFRESH_MS);
    if (pthread_create(&replication->thread, NULL, sd_replication_main, replication) != 0) {
        snprintf(error, error_capacity, "replication: cannot start its thread");
        return SD_UNAVAILABLE;
    }
    SD_LOG(LOG_INFO, "replication_started", LF_INT("node_id", (int64_t)options->node_id),
           LF_STR("raft_address", self->raft_address), LF_STR("raft_listen", options->raft_listen),
           LF_INT("members", (int64_t)options->peers_count),
           LF_INT("applied_index", (int64_t)replication->applied_index));
    *replication_out = replication;
    return SD_OK;
}

sd_replication_outcome_t sd_replication_change_member(sd_replication_t *replication,
                                                      sd_member_change_t change, uint64_t node_id,
                                                      const char *raft_address, int64_t timeout_ms,
                                                      int *raft_status_out)
{
    if (raft_status_out != NULL) {
        *raft_status_out = 0;
    }
    sd_request_t *request = calloc(1, sizeof(*request));
    if (request == NULL) {
        return SD_REPLICATION_NOT_LEADER;
    }
    request->kind = SD_REQUEST_MEMBER;
    request->member_change = change;
    request->member_id = node_id;
    snprintf(request->member_address, sizeof(request->member_address), "%s",
             raft_address != NULL ? raft_address : "");
    request->replication = replication;
    uint64_t unused = 0;
    sd_replication_outcome_t outcome =
        sd_request_run(replication, request, timeout_ms, &unused, raft_status_out);
    SD_LOG(LOG_INFO, "replication_member_change",
           LF_STR("change", change == SD_MEMBER_ADD       ? "add"
                            : change == SD_MEMBER_PROMOTE ? "promote"
                                                          : "remove"),
           LF_UINT("node_id", node_id),
           LF_STR("outcome", outcome == SD_REPLICATION_DONE         ? "done"
                             : outcome == SD_REPLICATION_NOT_LEADER ? "not_applied"
                                                                    : "unknown"));
    return outcome;
}

sd_replication_outcome_t sd_replication_record_member(sd_replication_t *replication,
                                                      uint64_t node_id, const char *grpc_address)
{
    sd_replication_status_t status;
    sd_replication_status(replication, &status);
    sd_write_batch_t *batch = status.leader ? sd_write_batch_new() : NULL;
    if (batch == NULL) {
        return SD_REPLICATION_NOT_LEADER;
    }
    sd_storage_batch_put_member(replication->options.storage, batch, node_id, grpc_address);
    size_t length = 0;
    const void *data = sd_write_batch_data(batch, &length);
    sd_replication_outcome_t outcome = sd_replication_commit(replication, status.term, data, length,
                                                             SD_REPLICATION_NO_LEDGER_SEQ, 10000);
    sd_write_batch_free(batch);
    return outcome;
}

sd_status_t sd_replication_member_record(sd_replication_t *replication, uint64_t node_id,
                                         char *grpc_address_out, size_t capacity)
{
    return sd_storage_get_member(replication->options.storage, node_id, grpc_address_out, capacity);
}

sd_replication_outcome_t sd_replication_transfer(sd_replication_t *replication, uint64_t node_id)
{
    sd_replication_status_t status;
    sd_replication_status(replication, &status);
    sd_request_t *request = status.leader ? calloc(1, sizeof(*request)) : NULL;
    if (request == NULL) {
        return SD_REPLICATION_NOT_LEADER;
    }
    request->kind = SD_REQUEST_TRANSFER;
    request->term = node_id; /* the target, for the loop */
    request->replication = replication;
    uint64_t unused = 0;
    /* the library gives a transfer one election timeout */
    int64_t wait_ms = 2 * (int64_t)replication->options.election_timeout_ms;
    sd_replication_outcome_t outcome =
        sd_request_run(replication, request, wait_ms > 3000 ? wait_ms : 3000, &unused, NULL);
    if (outcome == SD_REPLICATION_NOT_LEADER) {
        return outcome;
    }
    /* the callback comes when the target leads or the attempt timed out: the status snapshot
     * tells which, once it caught up */
    struct timespec refresh = {0, 2 * SD_STATUS_REFRESH_MS * 1000000};
    nanosleep(&refresh, NULL);
    sd_replication_status(replication, &status);
    bool moved = outcome == SD_REPLICATION_DONE && !status.leader && status.leader_id != 0 &&
                 status.leader_id != status.node_id;
    SD_LOG(LOG_INFO, "replication_leadership_transferred", LF_BOOL("done", moved),
           LF_INT("leader_id", (int64_t)status.leader_id));
    return moved ? SD_REPLICATION_DONE : SD_REPLICATION_UNKNOWN;
}

/* A leader that stops hands leadership to the most up-to-date follower first, so writes
 * resume within a round trip instead of an election timeout (rolling restarts, preStop). */
void sd_replication_step_down(sd_replication_t *replication)
{
    if (replication != NULL) {
        sd_replication_transfer(replication, 0);
    }
}

void sd_replication_shutdown(sd_replication_t *replication)
{
    if (replication == NULL) {
        return;
    }
    sd_replication_step_down(replication);
    pthread_mutex_lock(&replication->mutex);
    bool first = !replication->stopping;
    replication->stopping = true;
    replication->status.leader = false;
    replication->status.leader_grpc[0] = '\0';
    pthread_mutex_unlock(&replication->mutex);
    if (first) {
        uv_async_send(&replication->wake);
        pthread_join(replication->thread, NULL);
        uv_loop_close(&replication->loop);
    }
}

void sd_replication_free(sd_replication_t *replication)
{
    if (replication == NULL) {
        return;
    }
    sd_replication_shutdown(replication);
    pthread_mutex_destroy(&replication->mutex);
    pthread_cond_destroy(&replication->changed);
    free(replication);
}
