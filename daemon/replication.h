/* replication.h — stockd as one replica of a Raft group (docs/api.md 7), on cowsql/raft.
 *
 * The leader's writer evaluates a group-commit batch exactly as a single node does, against
 * state that holds every committed entry, and hands the batch's effects (the RocksDB
 * WriteBatch it computed: levels, ledger entries, index keys, idempotency records, the seq
 * and the leader's time) to Raft as one log entry. Every replica applies committed entries to
 * its RocksDB in log order, storing the entry's index in the same WriteBatch, so an entry is
 * applied once even when Raft replays its log at start. Business logic runs on the leader only:
 * replicas cannot diverge through clocks, versions or caches.
 *
 * Every snapshot_threshold entries the state is copied into a Raft snapshot and the log before
 * it dropped (replication_snapshot.h); a replica behind the leader's log restores the leader's.
 *
 * The library is not thread-safe: every raft call runs on this module's libuv loop thread.
 * The writer hands work over with uv_async_send and waits; other threads read a status snapshot
 * the loop thread refreshes (role, term, leader, indexes). */
#ifndef STOCKD_REPLICATION_H
#define STOCKD_REPLICATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "storage.h"

#define SD_REPLICATION_PEERS_MAX 9
#define SD_REPLICATION_ADDRESS_MAX 256

typedef struct {
    uint64_t id;
    char raft_address[SD_REPLICATION_ADDRESS_MAX];
    char grpc_address[SD_REPLICATION_ADDRESS_MAX];
} sd_replication_peer_t;

/* Parses --peers, "ID=RAFT_HOST:PORT=GRPC_HOST:PORT,…". False with a message naming the
 * entry on a malformed list, a duplicate id, or more than SD_REPLICATION_PEERS_MAX members. */
bool sd_replication_parse_peers(const char *text, sd_replication_peer_t *peers, size_t *count_out,
                                char *error, size_t error_capacity);

typedef struct {
    uint64_t node_id;
    const char *raft_listen; /* bind address of the replication transport */
    const sd_replication_peer_t *peers;
    size_t peers_count;
    const char *dir; /* the Raft log and metadata */
    sd_storage_t *storage;
    /* Called on the loop thread after each applied entry with the entry's last ledger seq. */
    void (*on_applied)(void *context, uint64_t last_seq);
    void *on_applied_context;
    /* Called on the loop thread when sd_replication_ready changes (may be NULL). */
    void (*on_ready_changed)(void *context, bool ready);
    void *on_ready_changed_context;
    /* Called once on the loop thread when an entry could not be applied to storage. */
    void (*on_failed)(void *context);
    void *on_failed_context;
    unsigned election_timeout_ms; /* 0 = the library's default */
    /* A snapshot replaces the log every snapshot_threshold applied entries, keeping the last
     * snapshot_trailing of them (followers a little behind catch up from the log); 0 = the
     * defaults below. */
    unsigned snapshot_threshold, snapshot_trailing;
    /* --join: on an empty log, wait to be added by the leader (sd_replication_change_member)
     * instead of starting a group of the --peers members. */
    bool join;
    /* --restore-group: on an empty log, make the store in the data directory (a one-node data
     * directory or a backup checkpoint, with its ledger and idempotency records) the base of
     * a new group of this replica alone; the others join it (--join) and start from its
     * snapshot. Ignored once the log exists. */
    bool restore_group;
} sd_replication_options_t;

/* The last_seq of an entry that writes no ledger entry (a member record). */
#define SD_REPLICATION_NO_LEDGER_SEQ UINT64_MAX

#define SD_REPLICATION_SNAPSHOT_THRESHOLD 8192
#define SD_REPLICATION_SNAPSHOT_TRAILING 2048

typedef struct sd_replication sd_replication_t;

sd_status_t sd_replication_start(const sd_replication_options_t *options,
                                 sd_replication_t **replication_out, char *error,
                                 size_t error_capacity);
/* Closes Raft (pending writes end as "outcome unknown") and joins the loop thread; from then
 * on nothing is applied, and requests are answered NOT_LEADER. */
void sd_replication_shutdown(sd_replication_t *replication);
/* A leader about to stop hands leadership to the most up-to-date follower (a no-op on a
 * follower); sd_replication_shutdown does it too. */
void sd_replication_step_down(sd_replication_t *replication);
/* Frees it (after sd_replication_shutdown, once nobody calls it any more). */
void sd_replication_free(sd_replication_t *replication);

typedef enum {
    SD_REPLICATION_DONE,       /* applied here (commit) / leader and caught up (lead) */
    SD_REPLICATION_NOT_LEADER, /* nothing was appended: not applied */
    SD_REPLICATION_UNKNOWN,    /* appended, then leadership or the process went: may commit */
} sd_replication_outcome_t;

/* Writer thread. DONE when this replica leads and has applied every entry committed before
 * its term (a barrier); *term_io is then the term, and when it changed the caller must reload
 * whatever it caches of the state. */
sd_replication_outcome_t sd_replication_lead(sd_replication_t *replication, uint64_t *term_io);
/* Writer thread. Appends one entry (data: a WriteBatch's contents, last_seq its last ledger
 * seq) if this replica still leads in `term`, and waits until it is applied here or its fate
 * is out of this replica's hands (at most timeout_ms). */
sd_replication_outcome_t sd_replication_commit(sd_replication_t *replication, uint64_t term,
                                               const void *data, size_t length, uint64_t last_seq,
                                               int64_t timeout_ms);

/* Any thread (GetStock, ListStock): DONE once this replica has proved it still leads, after the
 * call, and has applied everything committed before (a Raft barrier, shared by every read
 * waiting for one): a read after it is linearizable. NOT_LEADER otherwise, or after
 * timeout_ms. *term_out (may be NULL): the term that barrier committed in. */
sd_replication_outcome_t sd_replication_read_fence(sd_replication_t *replication,
                                                   int64_t timeout_ms, uint64_t *term_out);

typedef struct {
    uint64_t node_id, leader_id, term, commit_index, applied_index, last_index;
    bool leader;                                  /* this replica */
    bool ready;                                   /* see sd_replication_ready */
    char leader_grpc[SD_REPLICATION_ADDRESS_MAX]; /* "" when no leader is known */
    const char *role;                             /* "leader", "follower", "candidate", … */
    /* the members of the Raft configuration, with their gRPC addresses where known (--peers,
     * or recorded when they joined); roles "voter", "standby", "spare"; match indexes are
     * known on the leader only (else 0) */
    size_t members_count;
    sd_replication_peer_t members[SD_REPLICATION_PEERS_MAX];
    const char *member_roles[SD_REPLICATION_PEERS_MAX];
    uint64_t match_index[SD_REPLICATION_PEERS_MAX];
    /* snapshots this process took and restored; the last one taken: its Raft index, size and
     * how long the copy held the loop */
    uint64_t snapshots_taken, snapshots_restored, snapshot_index, snapshot_bytes;
    uint64_t snapshots_dropped; /* received while installing or taking one: sent again later */
    uint64_t members_lost_log;  /* on the leader: members that answered below what they
                                 * acknowledged (lost their log; replication.c) */
    bool pre_vote;              /* Raft's pre-vote is on (set aside after a long leaderless time) */
    double snapshot_ms;
} sd_replication_status_t;

/* Any thread: the last snapshot of the replica's state (refreshed every few milliseconds). */
void sd_replication_status(sd_replication_t *replication, sd_replication_status_t *status_out);
/* Any thread: asks the leader (this replica) to hand leadership to node_id (0 = the most
 * up-to-date follower) and waits until that is done or an election timeout passed. DONE when
 * another replica leads afterwards; NOT_LEADER when this replica did not lead. */
sd_replication_outcome_t sd_replication_transfer(sd_replication_t *replication, uint64_t node_id);

typedef enum {
    SD_MEMBER_ADD,     /* into the configuration, as a spare */
    SD_MEMBER_PROMOTE, /* to voter, once its log has caught up (the library runs the rounds) */
    SD_MEMBER_REMOVE,
} sd_member_change_t;

/* *raft_status_out of a change refused because the group was restored from a store and its
 * log still begins with its first entry: a new member would get the log without the store
 * (sd_base_watch in replication.c); asking again a moment later succeeds. */
#define SD_MEMBER_REFUSED_BASE_IN_LOG (-1)

/* Any thread, sent to the leader: changes the Raft configuration and waits at most timeout_ms.
 * DONE once the new configuration is committed; NOT_LEADER when nothing changed: this replica
 * does not lead, or the library refused (*raft_status_out, may be NULL: RAFT_CANTCHANGE while
 * another change is under way, RAFT_DUPLICATEID, RAFT_DUPLICATEADDRESS, RAFT_NOTFOUND,
 * RAFT_BADROLE, ...; 0 otherwise); UNKNOWN when it started and leadership or time ran out. */
sd_replication_outcome_t sd_replication_change_member(sd_replication_t *replication,
                                                      sd_member_change_t change, uint64_t node_id,
                                                      const char *raft_address, int64_t timeout_ms,
                                                      int *raft_status_out);
/* Any thread, sent to the leader: commits node_id's gRPC address to the member directory
 * (replicated state: every replica can then name that member as the leader). */
sd_replication_outcome_t sd_replication_record_member(sd_replication_t *replication,
                                                      uint64_t node_id, const char *grpc_address);

/* Any thread: what the member directory holds for node_id: SD_OK with its gRPC address (""
 * for an id RemoveMember retired), SD_NOT_FOUND for an id no AddMember or RemoveMember named. */
sd_status_t sd_replication_member_record(sd_replication_t *replication, uint64_t node_id,
                                         char *grpc_address_out, size_t capacity);

/* Any thread: a leader is known, this replica is a member of the configuration it holds,
 * it has applied every entry it knows to be committed and every one a leader told it is
 * (its catch-up is over), and (--join) holds a log at all (what Health and /readyz report as
 * serving, docs/api.md 7). */
bool sd_replication_ready(sd_replication_t *replication);

/* The position of member node_id in status->members, -1 when it is none of them. */
int sd_replication_member_index(const sd_replication_status_t *status, uint64_t node_id);

#endif
