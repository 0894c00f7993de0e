/* sim_world.c — the simulated world: one global clock, an event queue (messages, disk writes,
 * client traffic and timers, faults), the network with its faults, the fault schedule, and
 * sim_run(): one seed from start to the checks. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sim_node.h"

typedef enum {
    SIM_EVENT_RAFT,    /* a Raft message arrives */
    SIM_EVENT_DISK,    /* a node's head disk write completes */
    SIM_EVENT_REQUEST, /* a client request arrives at a node */
    SIM_EVENT_ANSWER,  /* a node's answer arrives at a client */
    SIM_EVENT_TIMER,   /* a client timer */
    SIM_EVENT_FAULT    /* the fault schedule acts */
} sim_event_kind_t;

typedef struct {
    int64_t at_ms;
    uint64_t order; /* ties break in the order events were scheduled */
    sim_event_kind_t kind;
    unsigned node, client, from;
    uint64_t incarnation, token;
    struct raft_message *message;
    sim_request_t request;
    sim_answer_t answer;
} sim_event_t;

struct sim_world {
    sim_options_t options;
    sim_node_config_t config;
    uint64_t random_state[4];
    int64_t now_ms, stamps;
    uint64_t next_order;
    sim_event_t *heap;
    size_t heap_len, heap_cap;
    sim_node_t nodes[SIM_MAX_NODES];
    bool cut[SIM_MAX_NODES + 1][SIM_MAX_NODES + 1]; /* cut[a][b]: a's messages to b are lost */
    unsigned loss_per_mille, latency_ms;
    int64_t link_free_ms[SIM_MAX_NODES + 1][SIM_MAX_NODES + 1]; /* last delivery per link */
    bool healed;
    sim_clients_t *clients;
    /* the store's hash after each index, as the first replica to apply it saw it */
    uint64_t *index_hash;
    size_t index_hash_cap;
    unsigned violations;
    uint64_t crashes, restarts, partitions, messages_lost, installs, snapshots_ahead,
        library_defects;
};

/* ---- the library's assertions (scripts/raft-source.sh routes them here) ---- */

static sim_world_t *sim_running_world;
bool sim_assertion_is_a_finding;
int sim_assertion_exit_status;

/* A failed assertion in the library aborts the run (the seed is printed by sim_main.c), except
 * a known raft 0.22.1 defect, counted and passed over as Debian's NDEBUG build does: a
 * follower whose snapshot (taken, or installed from a leader that then sent a newer one)
 * dropped the entry after the one its leader last heard it match rejects the leader's probe,
 * and progressMaybeDecrement asserts; release builds walk back one entry per round trip until
 * the leader sends a snapshot. What breaks is the leader's progress invariant
 * match_index < next_index, asserted in several places (progress.c:331/373, replication.c:59);
 * those are let pass, any other assertion aborts. */
void raft_assert_failed(const char *expression, const char *file, int line);
void raft_assert_failed(const char *expression, const char *file, int line)
{
    const char *name = strrchr(file, '/') != NULL ? strrchr(file, '/') + 1 : file;
    bool known = strcmp(expression, "p->match_index < p->next_index") == 0 ||
                 strcmp(expression, "match_index < next_index") == 0;
    if (known && sim_running_world != NULL) {
        sim_running_world->library_defects++;
        return;
    }
    fprintf(stderr, "sim: raft assertion failed: %s:%d: %s\n", name, line, expression);
    if (sim_assertion_is_a_finding) {
        /* --expect-violations: the library refusing the state the defect made is a finding */
        printf("sim: VIOLATION: the library's assertion failed (%s:%d)\n", name, line);
        fflush(stdout);
        _exit(sim_assertion_exit_status);
    }
    abort();
}

/* ---- random numbers (xoshiro256**, seeded through splitmix64) ---- */

static uint64_t sim_rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static void sim_random_seed(sim_world_t *world, uint64_t seed)
{
    for (int i = 0; i < 4; i++) {
        seed += 0x9e3779b97f4a7c15ull;
        uint64_t z = seed;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        world->random_state[i] = z ^ (z >> 31);
    }
}

uint64_t sim_random(sim_world_t *world)
{
    uint64_t *s = world->random_state;
    uint64_t result = sim_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = sim_rotl(s[3], 45);
    return result;
}

unsigned sim_random_below(sim_world_t *world, unsigned bound)
{
    return bound == 0 ? 0 : (unsigned)(sim_random(world) % bound);
}

bool sim_chance(sim_world_t *world, unsigned per_mille)
{
    return sim_random_below(world, 1000) < per_mille;
}

int64_t sim_now(const sim_world_t *world)
{
    return world->now_ms;
}

int64_t sim_stamp(sim_world_t *world)
{
    return ++world->stamps;
}

bool sim_tracing(const sim_world_t *world)
{
    return world->options.trace;
}

sim_break_t sim_breakage(const sim_world_t *world)
{
    return world->options.breakage;
}

const sim_node_config_t *sim_world_config(const sim_world_t *world)
{
    return &world->config;
}

sim_node_t *sim_world_node(sim_world_t *world, unsigned id)
{
    return &world->nodes[id - 1];
}

void sim_world_violation(sim_world_t *world, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    char message[SIM_VIOLATION_MAX];
    vsnprintf(message, sizeof message, format, args);
    va_end(args);
    printf("sim: seed %llu: VIOLATION at %lld ms: %s\n", (unsigned long long)world->options.seed,
           (long long)world->now_ms, message);
    sim_note_violation(message);
    world->violations++;
}

char sim_first_violation[SIM_VIOLATION_MAX];

void sim_note_violation(const char *message)
{
    if (sim_first_violation[0] == '\0') {
        snprintf(sim_first_violation, sizeof sim_first_violation, "%s", message);
    }
}

/* Every replica's store must be the same after the same index (entries carry effects, so
 * replicas cannot diverge unless something applies twice, skips or reorders). */
void sim_world_check_applied(sim_world_t *world, unsigned node, raft_index index, uint64_t hash)
{
    if (index >= world->index_hash_cap) {
        size_t cap = world->index_hash_cap == 0 ? 1024 : world->index_hash_cap;
        while (cap <= index) {
            cap *= 2;
        }
        world->index_hash = realloc(world->index_hash, cap * sizeof *world->index_hash);
        if (world->index_hash == NULL) {
            abort();
        }
        memset(world->index_hash + world->index_hash_cap, 0,
               (cap - world->index_hash_cap) * sizeof *world->index_hash);
        world->index_hash_cap = cap;
    }
    hash |= 1; /* 0 means "nobody applied it yet" */
    if (world->index_hash[index] == 0) {
        world->index_hash[index] = hash;
    } else if (world->index_hash[index] != hash) {
        sim_world_violation(world, "node %u's store after index %llu differs from another's", node,
                            (unsigned long long)index);
    }
}

/* ---- the event queue (a binary heap on time, then order) ---- */

static bool sim_event_before(const sim_event_t *a, const sim_event_t *b)
{
    return a->at_ms < b->at_ms || (a->at_ms == b->at_ms && a->order < b->order);
}

static void sim_schedule(sim_world_t *world, sim_event_t *event)
{
    if (world->heap_len == world->heap_cap) {
        world->heap_cap = world->heap_cap == 0 ? 256 : world->heap_cap * 2;
        world->heap = realloc(world->heap, world->heap_cap * sizeof *world->heap);
        if (world->heap == NULL) {
            abort();
        }
    }
    event->order = world->next_order++;
    size_t i = world->heap_len++;
    while (i > 0 && sim_event_before(event, &world->heap[(i - 1) / 2])) {
        world->heap[i] = world->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    world->heap[i] = *event;
}

static sim_event_t sim_pop(sim_world_t *world)
{
    sim_event_t top = world->heap[0];
    sim_event_t last = world->heap[--world->heap_len];
    size_t i = 0;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= world->heap_len) {
            break;
        }
        if (child + 1 < world->heap_len &&
            sim_event_before(&world->heap[child + 1], &world->heap[child])) {
            child++;
        }
        if (!sim_event_before(&world->heap[child], &last)) {
            break;
        }
        world->heap[i] = world->heap[child];
        i = child;
    }
    if (world->heap_len > 0) {
        world->heap[i] = last;
    }
    return top;
}

/* ---- the network ---- */

static int64_t sim_latency(sim_world_t *world)
{
    return world->now_ms + 1 + sim_random_below(world, world->latency_ms);
}

void sim_world_send_raft(sim_world_t *world, unsigned from, struct raft_message *message)
{
    unsigned to = (unsigned)message->server_id;
    sim_node_t *sender = sim_world_node(world, from);
    message->server_id = from; /* the receiver sees who sent it */
    message->server_address = sender->address;
    if (to == 0 || to > world->options.nodes || sim_chance(world, world->loss_per_mille)) {
        world->messages_lost++;
        sim_message_release(message);
        return;
    }
    /* Raft traffic between two replicas rides one TCP connection: in order, unless
     * --reorder (the library then trips progress.c:373 on a stale rejection). */
    int64_t at = sim_latency(world);
    if (!world->options.reorder && at < world->link_free_ms[from][to]) {
        at = world->link_free_ms[from][to];
    }
    world->link_free_ms[from][to] = at;
    sim_event_t event = {
        .at_ms = at, .kind = SIM_EVENT_RAFT, .node = to, .from = from, .message = message};
    sim_schedule(world, &event);
}

/* True unless a leader of the follower's term last heard it match before the entries its
 * snapshot at index would drop (see sim_node_maybe_snapshot). */
bool sim_world_follower_may_snapshot(sim_world_t *world, const sim_node_t *node, raft_index index,
                                     unsigned trailing)
{
    struct raft *raft = (struct raft *)&node->raft;
    if (world->options.follower_snapshots_any || raft_state(raft) == RAFT_LEADER) {
        return true;
    }
    /* the first entry the follower keeps: its log may start later (after an earlier snapshot,
     * whose own index is then forgotten too) */
    raft_index keep = index > trailing ? index - trailing + 1 : 1;
    if (keep < node->cache.start) {
        keep = node->cache.start;
    }
    for (unsigned i = 0; i < world->options.nodes; i++) {
        struct raft *other = &world->nodes[i].raft;
        raft_index match = 0;
        if (world->nodes[i].running && raft_state(other) == RAFT_LEADER &&
            raft_current_term(other) == raft_current_term(raft) &&
            raft_match_index(other, node->id, &match) == 0 && match < keep) {
            return false;
        }
    }
    return true;
}

void sim_world_count_snapshot_ahead(sim_world_t *world, unsigned node, raft_index snapshot,
                                    raft_index last)
{
    world->snapshots_ahead++;
    sim_world_violation(world,
                        "node %u restarts with a snapshot at %llu ahead of its last entry %llu "
                        "(libuv's loader: RAFT_CORRUPT)",
                        node, (unsigned long long)snapshot, (unsigned long long)last);
}

bool sim_world_pre_vote_always(const sim_world_t *world)
{
    return world->options.pre_vote_always;
}

void sim_world_count_install(sim_world_t *world)
{
    world->installs++;
}

void sim_world_schedule_disk(sim_world_t *world, sim_node_t *node, int64_t at_ms)
{
    sim_event_t event = {
        .at_ms = at_ms, .kind = SIM_EVENT_DISK, .node = node->id, .incarnation = node->incarnation};
    sim_schedule(world, &event);
}

void sim_send_request(sim_world_t *world, unsigned client, unsigned node,
                      const sim_request_t *request)
{
    if (sim_chance(world, world->loss_per_mille)) {
        return;
    }
    sim_event_t event = {.at_ms = sim_latency(world),
                         .kind = SIM_EVENT_REQUEST,
                         .node = node,
                         .client = client,
                         .request = *request,
                         .incarnation = sim_world_node(world, node)->incarnation};
    sim_schedule(world, &event);
}

void sim_send_answer(sim_world_t *world, unsigned client, uint64_t request,
                     const sim_answer_t *answer)
{
    if (sim_chance(world, world->loss_per_mille)) {
        return;
    }
    sim_event_t event = {
        .at_ms = sim_latency(world), .kind = SIM_EVENT_ANSWER, .client = client, .answer = *answer};
    event.request.request = request;
    sim_schedule(world, &event);
}

void sim_schedule_client_timer(sim_world_t *world, unsigned client, int64_t at_ms, uint64_t token)
{
    sim_event_t event = {.at_ms = at_ms, .kind = SIM_EVENT_TIMER, .client = client, .token = token};
    sim_schedule(world, &event);
}

bool sim_world_submit(sim_world_t *world, unsigned id, enum raft_entry_type type,
                      struct raft_buffer data, raft_index *index_out, raft_term *term_out)
{
    sim_node_t *node = sim_world_node(world, id);
    struct raft_entry entry = {
        .term = raft_current_term(&node->raft), .type = type, .buf = data, .batch = data.base};
    struct raft_event event = {0};
    event.type = RAFT_SUBMIT;
    event.submit.entries = &entry;
    event.submit.n = 1;
    node->submitted_index = 0;
    raft_term term = entry.term;
    int rv = sim_node_step(world, node, &event);
    if (rv != 0) {
        raft_free(data.base);
        return false;
    }
    *index_out = node->submitted_index;
    *term_out = term;
    return true;
}

/* ---- faults ---- */

static unsigned sim_running_count(const sim_world_t *world)
{
    unsigned running = 0;
    for (unsigned i = 0; i < world->options.nodes; i++) {
        running += world->nodes[i].running;
    }
    return running;
}

static void sim_fault_partition(sim_world_t *world)
{
    unsigned n = world->options.nodes;
    memset(world->cut, 0, sizeof world->cut);
    unsigned side[SIM_MAX_NODES + 1];
    for (unsigned i = 1; i <= n; i++) {
        side[i] = sim_random_below(world, 2);
    }
    bool one_way = sim_chance(world, 300);
    for (unsigned a = 1; a <= n; a++) {
        for (unsigned b = 1; b <= n; b++) {
            if (side[a] != side[b] && (!one_way || side[a] == 0)) {
                world->cut[a][b] = true;
            }
        }
    }
    world->partitions++;
    if (world->options.trace) {
        printf("[%lld] partition%s:", (long long)world->now_ms, one_way ? " (one way)" : "");
        for (unsigned i = 1; i <= n; i++) {
            printf(" %u:%u", i, side[i]);
        }
        printf("\n");
    }
}

static void sim_fault_restart(sim_world_t *world, sim_node_t *node)
{
    sim_node_start(world, node, &world->config);
    world->restarts++;
}

/* The leader hands leadership over (stockd does on SIGTERM and in the preStop hook). */
static void sim_fault_transfer(sim_world_t *world)
{
    for (unsigned i = 0; i < world->options.nodes; i++) {
        sim_node_t *node = &world->nodes[i];
        if (node->running && raft_state(&node->raft) == RAFT_LEADER) {
            struct raft_event event = {0};
            event.type = RAFT_TRANSFER;
            event.transfer.server_id = 0; /* the most up-to-date follower */
            int rv = sim_node_step(world, node, &event);
            if (world->options.trace) {
                printf("[%lld] node %u: leadership transfer: %s\n", (long long)world->now_ms,
                       node->id, rv == 0 ? "started" : raft_strerror(rv));
            }
        }
    }
}

/* One random fault: crash a node (more often the leader), restart one, cut or heal links, or
 * hand leadership over. */
static void sim_fault(sim_world_t *world)
{
    unsigned n = world->options.nodes;
    sim_node_t *node = sim_world_node(world, 1 + sim_random_below(world, n));
    for (unsigned i = 0; i < n && sim_chance(world, 400); i++) {
        if (world->nodes[i].running && raft_state(&world->nodes[i].raft) == RAFT_LEADER) {
            node = &world->nodes[i];
        }
    }
    unsigned pick = sim_random_below(world, 100);
    if (pick < 25 && node->running) {
        sim_node_crash(world, node);
        world->crashes++;
    } else if (pick < 40) {
        for (unsigned i = 0; i < n; i++) {
            if (!world->nodes[i].running) {
                sim_fault_restart(world, &world->nodes[i]);
                break;
            }
        }
    } else if (pick < 75) {
        sim_fault_partition(world);
    } else if (pick < 85) {
        sim_fault_transfer(world);
    } else {
        memset(world->cut, 0, sizeof world->cut);
    }
    if (sim_running_count(world) == 0) {
        sim_fault_restart(world, node);
    }
    sim_event_t event = {.at_ms = world->now_ms + 20 + sim_random_below(world, 400),
                         .kind = SIM_EVENT_FAULT};
    sim_schedule(world, &event);
}

/* The end of the faults: every link up, every node running, nothing lost any more. */
static void sim_heal(sim_world_t *world)
{
    world->healed = true;
    memset(world->cut, 0, sizeof world->cut);
    world->loss_per_mille = 0;
    world->config.sync_failure_per_mille = 0;
    for (unsigned i = 0; i < world->options.nodes; i++) {
        if (!world->nodes[i].running) {
            sim_fault_restart(world, &world->nodes[i]);
        }
    }
    sim_clients_wind_down(world->clients);
    if (world->options.trace) {
        printf("[%lld] healed\n", (long long)world->now_ms);
    }
}

/* ---- the run ---- */

static void sim_dispatch(sim_world_t *world, sim_event_t *event)
{
    sim_node_t *node = event->node > 0 ? sim_world_node(world, event->node) : NULL;
    switch (event->kind) {
    case SIM_EVENT_RAFT:
        if (!node->running || world->cut[event->from][event->node]) {
            world->messages_lost++;
            sim_message_release(event->message);
        } else {
            sim_node_receive(world, node, event->message);
        }
        break;
    case SIM_EVENT_DISK:
        if (node->running && node->incarnation == event->incarnation) {
            sim_node_disk_done(world, node);
        }
        break;
    case SIM_EVENT_REQUEST:
        if (node->running && node->incarnation == event->incarnation) {
            sim_service_receive(node->service, event->client, &event->request);
            sim_service_pump(node->service, &node->raft, &node->store);
        }
        break;
    case SIM_EVENT_ANSWER:
        sim_clients_answer(world->clients, event->client, event->request.request, &event->answer);
        break;
    case SIM_EVENT_TIMER:
        sim_clients_timer(world->clients, event->client, event->token);
        break;
    case SIM_EVENT_FAULT:
        if (!world->healed) {
            sim_fault(world);
        }
        break;
    }
}

static sim_node_t *sim_next_timeout(sim_world_t *world)
{
    sim_node_t *next = NULL;
    for (unsigned i = 0; i < world->options.nodes; i++) {
        sim_node_t *node = &world->nodes[i];
        if (node->running && (next == NULL || node->timeout_ms < next->timeout_ms)) {
            next = node;
        }
    }
    return next;
}

/* Settled: clients are done, every replica runs and has applied the same, leader's, index. */
static bool sim_settled(sim_world_t *world)
{
    if (!sim_clients_idle(world->clients)) {
        return false;
    }
    raft_index commit = 0;
    bool leader = false;
    for (unsigned i = 0; i < world->options.nodes; i++) {
        sim_node_t *node = &world->nodes[i];
        if (!node->running) {
            return false;
        }
        if (raft_state(&node->raft) == RAFT_LEADER) {
            leader = true;
            commit = raft_commit_index(&node->raft);
        }
    }
    for (unsigned i = 0; leader && i < world->options.nodes; i++) {
        if (world->nodes[i].store.applied_index != commit) {
            return false;
        }
    }
    return leader;
}

static void sim_loop(sim_world_t *world)
{
    int64_t heal_at = world->options.fault_ms;
    int64_t end_at = heal_at + world->options.heal_ms;
    int64_t give_up_at = end_at + 120000;
    while (world->violations == 0) {
        if (!world->healed && world->now_ms >= heal_at) {
            sim_heal(world);
        }
        if (world->healed && world->now_ms >= end_at && sim_settled(world)) {
            return;
        }
        if (world->now_ms >= give_up_at) {
            sim_world_violation(world, "the group did not settle within 120 s of healing");
            return;
        }
        sim_node_t *node = sim_next_timeout(world);
        if (node != NULL && (world->heap_len == 0 || node->timeout_ms <= world->heap[0].at_ms)) {
            if (node->timeout_ms > world->now_ms) {
                world->now_ms = node->timeout_ms;
            }
            struct raft_event event = {0};
            event.type = RAFT_TIMEOUT;
            sim_node_step(world, node, &event);
            continue;
        }
        if (world->heap_len == 0) {
            world->now_ms += 10;
            continue;
        }
        sim_event_t event = sim_pop(world);
        if (event.at_ms > world->now_ms) {
            world->now_ms = event.at_ms;
        }
        sim_dispatch(world, &event);
    }
}

static void sim_world_configure(sim_world_t *world)
{
    world->config.election_ms = 100 + sim_random_below(world, 200);
    world->config.heartbeat_ms = world->config.election_ms / 10;
    world->config.snapshot_threshold = 8 + sim_random_below(world, 56);
    world->config.snapshot_trailing = 4 + sim_random_below(world, 28);
    world->config.disk_latency_ms = 1 + sim_random_below(world, 15);
    world->config.sync_failure_per_mille = sim_random_below(world, 3);
    world->config.snapshot_unpersisted = world->options.snapshot_unpersisted;
    world->loss_per_mille = sim_random_below(world, 80);
    world->latency_ms = 1 + sim_random_below(world, 25);
}

static void sim_world_free(sim_world_t *world)
{
    for (unsigned i = 0; i < world->options.nodes; i++) {
        sim_node_free(&world->nodes[i]);
    }
    while (world->heap_len > 0) {
        sim_event_t event = sim_pop(world);
        if (event.kind == SIM_EVENT_RAFT) {
            sim_message_release(event.message);
        }
    }
    free(world->heap);
    free(world->index_hash);
    sim_clients_free(world->clients);
    free(world);
}

/* After the run: every replica holds exactly the same store; then the history checks. */
static unsigned sim_final_checks(sim_world_t *world)
{
    const sim_store_t *first = &world->nodes[0].store;
    for (unsigned i = 1; i < world->options.nodes; i++) {
        const sim_store_t *other = &world->nodes[i].store;
        if (other->applied_index != first->applied_index ||
            sim_store_hash(other) != sim_store_hash(first) ||
            other->ledger_len != first->ledger_len || other->records_len != first->records_len ||
            memcmp(other->ledger, first->ledger, first->ledger_len * sizeof *first->ledger) != 0 ||
            memcmp(other->records, first->records, first->records_len * sizeof *first->records) !=
                0) {
            sim_world_violation(world, "replicas 1 and %u hold different stores", i + 1);
        }
    }
    size_t count = 0, denials_count = 0;
    const sim_op_t *ops = sim_clients_history(world->clients, &count);
    const sim_denial_t *denials = sim_clients_denials(world->clients, &denials_count);
    return world->violations +
           sim_check_history(world->options.seed, ops, count, denials, denials_count, first);
}

unsigned sim_run(const sim_options_t *options, char *summary, size_t summary_capacity)
{
    sim_world_t *world = calloc(1, sizeof *world);
    if (world == NULL) {
        abort();
    }
    world->options = *options;
    sim_running_world = world;
    sim_first_violation[0] = '\0';
    sim_random_seed(world, options->seed);
    sim_world_configure(world);
    for (unsigned i = 0; i < options->nodes; i++) {
        sim_node_init(&world->nodes[i], i + 1, options->nodes, world);
    }
    world->clients = sim_clients_new(world, options->clients, options->nodes);
    for (unsigned i = 0; i < options->nodes; i++) {
        sim_node_start(world, &world->nodes[i], &world->config);
    }
    sim_clients_start(world->clients);
    sim_event_t fault = {.at_ms = 200 + sim_random_below(world, 300), .kind = SIM_EVENT_FAULT};
    sim_schedule(world, &fault);
    sim_loop(world);
    unsigned violations = world->violations > 0 ? world->violations : sim_final_checks(world);
    size_t count = 0;
    sim_clients_history(world->clients, &count);
    snprintf(summary, summary_capacity,
             "%zu ops, %llu entries, %llu crashes, %llu restarts, %llu partitions, %llu messages "
             "lost, %llu snapshots installed, %llu restarts with a snapshot ahead of the log, "
             "%llu probes past a follower's snapshot (progress.c:373), %lld ms",
             count, (unsigned long long)world->nodes[0].store.applied_index,
             (unsigned long long)world->crashes, (unsigned long long)world->restarts,
             (unsigned long long)world->partitions, (unsigned long long)world->messages_lost,
             (unsigned long long)world->installs, (unsigned long long)world->snapshots_ahead,
             (unsigned long long)world->library_defects, (long long)world->now_ms);
    sim_world_free(world);
    sim_running_world = NULL;
    return violations;
}
