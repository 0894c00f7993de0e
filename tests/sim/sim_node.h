/* sim_node.h — one simulated stockd replica: its Raft instance (driven by raft_step), its
 * disk, its durable store and its service (sim_node.c), inside the world (sim_world.c). */
#ifndef STOCKD_SIM_NODE_H
#define STOCKD_SIM_NODE_H

#include "sim.h"
#include "sim_log.h"

/* A disk write in flight: entries from `first`, or a snapshot being installed. */
typedef struct {
    bool snapshot;
    raft_index first;
    struct raft_entry *entries; /* raft_malloc'ed batch (sim_entries_release) */
    unsigned n;
    struct raft_snapshot_metadata metadata; /* snapshot: its configuration is owned here */
    size_t offset;
    bool last;
    struct raft_buffer chunk;
    int64_t done_ms;
} sim_disk_op_t;

typedef struct {
    unsigned id;
    bool running;
    uint64_t incarnation; /* events of an earlier life are ignored */
    char address[16];
    struct raft raft;
    struct raft_tracer tracer; /* --trace: the library's own diagnostics, per node */
    sim_world_t *world;
    /* clock: local = offset + global * rate / 1000 */
    int64_t clock_offset;
    unsigned clock_rate;
    int64_t timeout_ms; /* global time of the next RAFT_TIMEOUT */
    /* disk: survives a crash */
    raft_term term;
    raft_id vote;
    bool has_snapshot;
    struct raft_snapshot_metadata snapshot;
    struct raft_buffer snapshot_data;
    sim_log_t disk;
    /* writes in flight, completed in order */
    sim_disk_op_t *ops;
    size_t ops_len, ops_cap;
    int64_t disk_free_ms;
    /* memory: lost on a crash */
    sim_log_t cache;
    bool installing;
    raft_index configuration_seen; /* committed RAFT_CHANGE entries handed back up to here */
    raft_index submitted_index;    /* set by a RAFT_SUBMIT step */
    int64_t leaderless_since_ms;   /* -1: a leader is known (sim_node_pre_vote_watch) */
    bool pre_vote_off;
    unsigned answered;               /* bit per member whose vote answer came while leaderless */
    raft_index snapshot_deferred_at; /* sim_node_defer_snapshot */
    raft_index stored;               /* the last index reported persisted (still in the log) */
    /* the store (RocksDB: durable at every apply) and the service */
    sim_store_t store;
    sim_store_t store_synced; /* what a crash keeps: replicated applies are not synced */
    sim_service_t *service;
} sim_node_t;

typedef struct {
    unsigned election_ms, heartbeat_ms;
    unsigned snapshot_threshold, snapshot_trailing;
    unsigned disk_latency_ms;
    unsigned sync_failure_per_mille; /* of completed writes: the node crashes instead */
    bool snapshot_unpersisted;       /* sim_node_maybe_snapshot */
} sim_node_config_t;

void sim_node_init(sim_node_t *node, unsigned id, unsigned nodes, sim_world_t *world);
void sim_node_free(sim_node_t *node);
void sim_node_start(sim_world_t *world, sim_node_t *node, const sim_node_config_t *config);
void sim_node_crash(sim_world_t *world, sim_node_t *node);
raft_time sim_node_local_time(const sim_node_t *node, int64_t global_ms);
/* Steps the node's Raft with event (its time is filled in) and carries out the update. */
int sim_node_step(sim_world_t *world, sim_node_t *node, struct raft_event *event);
void sim_node_disk_done(sim_world_t *world, sim_node_t *node);
void sim_node_receive(sim_world_t *world, sim_node_t *node, struct raft_message *message);
void sim_message_release(struct raft_message *message);

/* World services the node uses (sim_world.c). */
const sim_node_config_t *sim_world_config(const sim_world_t *world);
void sim_world_send_raft(sim_world_t *world, unsigned from, struct raft_message *message);
void sim_world_count_install(sim_world_t *world);
bool sim_world_pre_vote_always(const sim_world_t *world);
void sim_world_count_snapshot_ahead(sim_world_t *world, unsigned node, raft_index snapshot,
                                    raft_index last);
bool sim_world_follower_may_snapshot(sim_world_t *world, const sim_node_t *node, raft_index index,
                                     unsigned trailing);
void sim_world_schedule_disk(sim_world_t *world, sim_node_t *node, int64_t at_ms);
void sim_world_check_applied(sim_world_t *world, unsigned node, raft_index index, uint64_t hash);
void sim_world_violation(sim_world_t *world, const char *format, ...)
    __attribute__((format(printf, 2, 3)));
sim_node_t *sim_world_node(sim_world_t *world, unsigned id);

#endif
