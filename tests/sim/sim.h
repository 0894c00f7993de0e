/* sim.h — a seeded, deterministic simulation of a stockd Raft group (issue 13, item 7).
 *
 * What runs for real: the Raft library's core (cowsql/raft 0.22.1 built from Debian's source
 * package with its assertions on), driven through raft_step(), the I/O-free API. What the
 * simulation owns: time (one clock per node, each with its own offset and rate), the network
 * (latency, loss, reordering, partitions), the disks (a log, term/vote and a snapshot per node;
 * writes complete after a latency, a crash keeps only a random prefix of the writes in flight,
 * a failed sync crashes the node) and a model of stockd's replicated service on top: the
 * writer that evaluates a group-commit batch on the leader after a barrier of its term, turns
 * its effects into one log entry and answers only once it is applied (or "outcome unknown"),
 * refusals confirmed by the entry or by a read fence, linearizable reads behind a fence,
 * idempotent request ids, and a durable store that applies entries in log order with the index
 * stored alongside, restored from snapshots. Clients retry with the same request id, follow
 * leader hints and keep a history; sim_check.c judges it.
 *
 * Everything random comes from one seed: a failing seed reproduces exactly. */
#ifndef STOCKD_SIM_H
#define STOCKD_SIM_H

#include <raft.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SIM_MAX_NODES 5
#define SIM_SKUS 4
#define SIM_MAX_CLIENTS 8
#define SIM_MAX_LINES 3         /* SKUs one request touches */
#define SIM_MAX_BATCH 6         /* requests per log entry */
#define SIM_INITIAL_AVAILABLE 6 /* every SKU's level before the first entry */

/* Deliberate defects, to show the checks catch what they claim to (sim --break=NAME). */
typedef enum {
    SIM_BREAK_NONE,
    SIM_BREAK_BARRIER,    /* a new leader evaluates without applying its term's barrier */
    SIM_BREAK_FENCE,      /* refusals and reads answered without a read fence */
    SIM_BREAK_EARLY_ACK,  /* writes acknowledged when appended, before they commit */
    SIM_BREAK_IDEMPOTENCY /* request ids not looked up: a retried write applies twice */
} sim_break_t;

typedef struct {
    uint64_t seed;
    unsigned nodes;              /* 3 or 5 */
    unsigned clients;            /* closed-loop clients */
    unsigned fault_ms;           /* simulated time with faults, before healing */
    unsigned heal_ms;            /* fault-free time at the end, then the checks */
    sim_break_t breakage;        /* SIM_BREAK_NONE normally */
    bool trace;                  /* print every fault and client answer */
    bool reorder;                /* Raft messages on one link may overtake each other */
    bool pre_vote_always;        /* stockd's earlier pre-vote, never set aside (livelocks) */
    bool snapshot_unpersisted;   /* old stockd: snapshots over unpersisted entries */
    bool follower_snapshots_any; /* followers snapshot whatever their leader knows */
} sim_options_t;

/* ---- the store: what stockd keeps in RocksDB, reduced to what the checks need ---- */

typedef struct {
    int64_t available;
    uint64_t version;
} sim_level_t;

typedef struct {
    uint64_t seq, request;
    uint32_t sku;
    int32_t restricted; /* 1: a restricted decrement (may never take the level below 0) */
    int64_t delta, after;
} sim_line_t;

typedef struct {
    uint64_t request;
    uint64_t first_line; /* index into the ledger */
    uint32_t lines;
    uint32_t attempt; /* the client's attempt that wrote it (checks only: stockd has none) */
} sim_record_t;

typedef struct {
    uint64_t applied_index, last_seq;
    sim_level_t levels[SIM_SKUS];
    sim_line_t *ledger;
    size_t ledger_len, ledger_cap;
    sim_record_t *records;
    size_t records_len, records_cap;
    uint64_t ledger_hash; /* rolling hash of every line and record appended */
} sim_store_t;

void sim_store_init(sim_store_t *store);
void sim_store_free(sim_store_t *store);
void sim_store_copy(sim_store_t *dst, const sim_store_t *src);
uint64_t sim_store_hash(const sim_store_t *store);
const sim_record_t *sim_store_find(const sim_store_t *store, uint64_t request);
/* Serialized form (a snapshot's data), raft_malloc'ed. */
struct raft_buffer sim_store_encode(const sim_store_t *store);
bool sim_store_decode(const struct raft_buffer *buffer, sim_store_t *store);
/* One batch's effects, as the leader computed them: what a log entry carries. Replicas copy
 * them into their store; they never evaluate a request. */
typedef struct {
    uint32_t sku;
    uint32_t unused;
    int64_t available;
    uint64_t version;
} sim_put_t;

typedef struct {
    uint64_t request;
    uint32_t first_line; /* within the batch's lines */
    uint32_t lines;
    uint32_t attempt;
    uint32_t unused;
} sim_batch_record_t;

typedef struct {
    uint64_t last_seq;
    size_t puts_len, lines_len, records_len;
    sim_put_t puts[SIM_MAX_BATCH * SIM_MAX_LINES];
    sim_line_t lines[SIM_MAX_BATCH * SIM_MAX_LINES];
    sim_batch_record_t records[SIM_MAX_BATCH];
} sim_effects_t;

struct raft_buffer sim_effects_encode(const sim_effects_t *effects);
/* Applies one command entry's effects (false: a malformed entry). */
bool sim_store_apply(sim_store_t *store, const struct raft_buffer *data);

/* ---- requests and answers ---- */

typedef enum { SIM_OP_RESTRICTED, SIM_OP_DECREMENT, SIM_OP_INCREMENT, SIM_OP_READ } sim_op_kind_t;

typedef enum {
    SIM_ANSWER_NONE,
    SIM_ANSWER_OK,         /* applied (or replayed: applied earlier) */
    SIM_ANSWER_SHORT,      /* restricted decrement refused: not applied */
    SIM_ANSWER_NOT_LEADER, /* not applied (by this attempt) */
    SIM_ANSWER_UNKNOWN,    /* appended, fate unknown */
    SIM_ANSWER_EXPIRED     /* its deadline passed before it was evaluated: not applied */
} sim_answer_kind_t;

typedef struct {
    uint64_t request;    /* the request id (reads: an id too, never recorded) */
    uint32_t attempt;    /* echoed in the answer: the client ignores stale "not applied" ones */
    int64_t deadline_ms; /* the attempt's deadline (gRPC's): not evaluated after it */
    sim_op_kind_t kind;
    unsigned lines;
    uint32_t skus[SIM_MAX_LINES];
    int64_t quantities[SIM_MAX_LINES];
} sim_request_t;

typedef struct {
    sim_answer_kind_t kind;
    bool replayed;
    int64_t afters[SIM_MAX_LINES]; /* OK writes: each line's level after; reads: the level */
    uint64_t seq;                  /* OK writes: the first line's ledger seq */
    unsigned leader_hint;          /* NOT_LEADER: the node believed to lead, 0 = none */
    uint32_t attempt;
} sim_answer_t;

/* ---- the world ---- */

typedef struct sim_world sim_world_t;

/* Runs one seed; returns the number of violations found (0 = the seed passed) and prints
 * each one with the seed. */
unsigned sim_run(const sim_options_t *options, char *summary, size_t summary_capacity);
/* Set by --expect-violations: a failed assertion in the library ends the run as a finding,
 * with this exit status. */
extern bool sim_assertion_is_a_finding;
extern int sim_assertion_exit_status;

/* The first violation of the current seed (its message), for --expect. */
#define SIM_VIOLATION_MAX 240
extern char sim_first_violation[SIM_VIOLATION_MAX];
void sim_note_violation(const char *message);

/* Random numbers: xoshiro-style, one stream per world. */
uint64_t sim_random(sim_world_t *world);
unsigned sim_random_below(sim_world_t *world, unsigned bound);
bool sim_chance(sim_world_t *world, unsigned per_mille);

/* The world's clock (global simulated ms), and a stamp that orders everything that happens
 * (events run in time order; ties in the order they were scheduled). */
int64_t sim_now(const sim_world_t *world);
int64_t sim_stamp(sim_world_t *world);
bool sim_tracing(const sim_world_t *world);
sim_break_t sim_breakage(const sim_world_t *world);

/* Network between clients and nodes (client ids start at 1): delivered after a latency,
 * unless lost or the node is down. */
void sim_send_request(sim_world_t *world, unsigned client, unsigned node,
                      const sim_request_t *request);
void sim_send_answer(sim_world_t *world, unsigned client, uint64_t request,
                     const sim_answer_t *answer);

/* ---- stockd's service on one node (sim_service.c) ---- */

typedef struct sim_service sim_service_t;

sim_service_t *sim_service_new(sim_world_t *world, unsigned node);
void sim_service_free(sim_service_t *service);
/* A crash: every queued or in-flight request is forgotten (its client times out). */
void sim_service_crash(sim_service_t *service);
void sim_service_receive(sim_service_t *service, unsigned client, const sim_request_t *request);
/* After every raft_step() of the node: answers what can be answered, starts what can start. */
void sim_service_pump(sim_service_t *service, struct raft *raft, sim_store_t *store);
/* The node applied `index` (of `term`) to its store. */
void sim_service_applied(sim_service_t *service, raft_index index, raft_term term);
/* Submits one entry to the node's Raft (the world steps it); false when refused. */
bool sim_world_submit(sim_world_t *world, unsigned node, enum raft_entry_type type,
                      struct raft_buffer data, raft_index *index_out, raft_term *term_out);

/* ---- clients and their history (sim_clients.c) ---- */

typedef struct {
    sim_request_t request;
    /* when it was first sent and when a definite answer came, as sim_stamp() values (real-time
     * order, also within one millisecond); completed < 0: never answered for certain */
    int64_t invoked, completed;
    sim_answer_t answer; /* the final answer (OK or SHORT), if any */
    unsigned attempts;
} sim_op_t;

typedef struct sim_clients sim_clients_t;

sim_clients_t *sim_clients_new(sim_world_t *world, unsigned clients, unsigned nodes);
void sim_clients_free(sim_clients_t *clients);
void sim_clients_start(sim_clients_t *clients);
/* From now on clients finish (retry) what they started and start nothing new. */
void sim_clients_wind_down(sim_clients_t *clients);
bool sim_clients_idle(const sim_clients_t *clients);
void sim_clients_answer(sim_clients_t *clients, unsigned client, uint64_t request,
                        const sim_answer_t *answer);
void sim_clients_timer(sim_clients_t *clients, unsigned client, uint64_t token);
const sim_op_t *sim_clients_history(const sim_clients_t *clients, size_t *count_out);

/* Every "not the leader; not applied" answer an attempt got. */
typedef struct {
    uint64_t request;
    uint32_t attempt;
} sim_denial_t;

const sim_denial_t *sim_clients_denials(const sim_clients_t *clients, size_t *count_out);

/* Client timers go through the world's event queue. */
void sim_schedule_client_timer(sim_world_t *world, unsigned client, int64_t at_ms, uint64_t token);

/* ---- the checks (sim_check.c) ---- */

/* Checks the history against the final store every replica agreed on; prints violations
 * (prefixed with the seed) and returns their number. */
unsigned sim_check_history(uint64_t seed, const sim_op_t *ops, size_t count,
                           const sim_denial_t *denials, size_t denials_count,
                           const sim_store_t *store);

#endif
