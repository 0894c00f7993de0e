/* sim_clients.c — closed-loop clients with the habits of stockd's real callers (the gateway,
 * libstockclient): one operation at a time, a deadline per attempt, the same request id on
 * every retry of a write whose outcome is unknown, leader hints followed. Every operation goes
 * into the history with the time it was first sent and the time a definite answer came. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

#define SIM_ATTEMPT_TIMEOUT_MS 250
#define SIM_NEXT_OP_TOKEN UINT64_MAX

typedef struct {
    unsigned target;  /* the node it sends to */
    bool busy;        /* an operation is under way */
    size_t op;        /* its index in the history */
    uint64_t token;   /* the attempt's timer */
    uint64_t counter; /* request ids: client << 32 | counter */
} sim_client_t;

struct sim_clients {
    sim_world_t *world;
    unsigned count, nodes;
    bool winding_down;
    sim_client_t clients[SIM_MAX_CLIENTS + 1];
    sim_op_t *ops;
    size_t ops_len, ops_cap;
    sim_denial_t *denials;
    size_t denials_len, denials_cap;
};

sim_clients_t *sim_clients_new(sim_world_t *world, unsigned count, unsigned nodes)
{
    sim_clients_t *clients = calloc(1, sizeof *clients);
    if (clients == NULL) {
        abort();
    }
    clients->world = world;
    clients->count = count > SIM_MAX_CLIENTS ? SIM_MAX_CLIENTS : count;
    clients->nodes = nodes;
    return clients;
}

void sim_clients_free(sim_clients_t *clients)
{
    if (clients != NULL) {
        free(clients->ops);
        free(clients->denials);
        free(clients);
    }
}

const sim_denial_t *sim_clients_denials(const sim_clients_t *clients, size_t *count_out)
{
    *count_out = clients->denials_len;
    return clients->denials;
}

static void sim_clients_note_denial(sim_clients_t *clients, uint64_t request, uint32_t attempt)
{
    if (clients->denials_len == clients->denials_cap) {
        clients->denials_cap = clients->denials_cap == 0 ? 256 : clients->denials_cap * 2;
        clients->denials =
            realloc(clients->denials, clients->denials_cap * sizeof *clients->denials);
        if (clients->denials == NULL) {
            abort();
        }
    }
    clients->denials[clients->denials_len++] = (sim_denial_t){request, attempt};
}

const sim_op_t *sim_clients_history(const sim_clients_t *clients, size_t *count_out)
{
    *count_out = clients->ops_len;
    return clients->ops;
}

bool sim_clients_idle(const sim_clients_t *clients)
{
    for (unsigned i = 1; i <= clients->count; i++) {
        if (clients->clients[i].busy) {
            return false;
        }
    }
    return true;
}

void sim_clients_wind_down(sim_clients_t *clients)
{
    clients->winding_down = true;
}

static void sim_client_attempt(sim_clients_t *clients, unsigned id)
{
    sim_client_t *client = &clients->clients[id];
    sim_op_t *op = &clients->ops[client->op];
    op->attempts++;
    op->request.attempt = op->attempts;
    /* every fourth client sets no deadline, as a gRPC caller may not (stockd then evaluates
     * an attempt however late it is taken) */
    op->request.deadline_ms =
        id % 4 == 0 ? INT64_MAX : sim_now(clients->world) + SIM_ATTEMPT_TIMEOUT_MS;
    client->token++;
    if (sim_tracing(clients->world)) {
        printf("[%lld] client %u: request %llx attempt %u to node %u\n",
               (long long)sim_now(clients->world), id, (unsigned long long)op->request.request,
               op->attempts, client->target);
    }
    sim_send_request(clients->world, id, client->target, &op->request);
    sim_schedule_client_timer(clients->world, id, sim_now(clients->world) + SIM_ATTEMPT_TIMEOUT_MS,
                              client->token);
}

/* A new operation: restricted decrements of 1-3 distinct SKUs (the checkout), unrestricted
 * decrements and increments (merchant edits, refunds), and reads. */
static void sim_request_random(sim_world_t *world, sim_request_t *request)
{
    unsigned pick = sim_random_below(world, 100);
    request->kind = pick < 45   ? SIM_OP_RESTRICTED
                    : pick < 55 ? SIM_OP_DECREMENT
                    : pick < 80 ? SIM_OP_INCREMENT
                                : SIM_OP_READ;
    request->lines = request->kind == SIM_OP_READ ? 1 : 1 + sim_random_below(world, SIM_MAX_LINES);
    unsigned first = sim_random_below(world, SIM_SKUS);
    for (unsigned i = 0; i < request->lines; i++) {
        request->skus[i] = (first + i) % SIM_SKUS; /* distinct */
        request->quantities[i] = 1 + sim_random_below(world, 3);
    }
}

static void sim_client_next(sim_clients_t *clients, unsigned id)
{
    sim_client_t *client = &clients->clients[id];
    if (clients->winding_down) {
        return;
    }
    if (clients->ops_len == clients->ops_cap) {
        clients->ops_cap = clients->ops_cap == 0 ? 256 : clients->ops_cap * 2;
        clients->ops = realloc(clients->ops, clients->ops_cap * sizeof *clients->ops);
        if (clients->ops == NULL) {
            abort();
        }
    }
    sim_op_t *op = &clients->ops[clients->ops_len];
    memset(op, 0, sizeof *op);
    sim_request_random(clients->world, &op->request);
    op->request.request = ((uint64_t)id << 32) | ++client->counter;
    op->invoked = sim_stamp(clients->world);
    op->completed = -1;
    client->op = clients->ops_len++;
    client->busy = true;
    sim_client_attempt(clients, id);
}

void sim_clients_start(sim_clients_t *clients)
{
    for (unsigned id = 1; id <= clients->count; id++) {
        clients->clients[id].target = 1 + sim_random_below(clients->world, clients->nodes);
        sim_schedule_client_timer(clients->world, id,
                                  sim_now(clients->world) + sim_random_below(clients->world, 50),
                                  SIM_NEXT_OP_TOKEN);
    }
}

static void sim_client_retry(sim_clients_t *clients, unsigned id, unsigned hint)
{
    sim_client_t *client = &clients->clients[id];
    client->target = hint != 0 ? hint : 1 + client->target % clients->nodes;
    client->token++; /* the attempt's own timer no longer counts */
    sim_schedule_client_timer(clients->world, id,
                              sim_now(clients->world) + 5 + sim_random_below(clients->world, 20),
                              client->token | (1ull << 63));
}

static void sim_client_done(sim_clients_t *clients, unsigned id, const sim_answer_t *answer)
{
    sim_client_t *client = &clients->clients[id];
    sim_op_t *op = &clients->ops[client->op];
    op->answer = *answer;
    op->completed = sim_stamp(clients->world);
    client->busy = false;
    client->token++;
    if (sim_tracing(clients->world)) {
        printf("[%lld] client %u: request %llx answered %s%s\n", (long long)sim_now(clients->world),
               id, (unsigned long long)op->request.request,
               answer->kind == SIM_ANSWER_OK ? "OK" : "short", answer->replayed ? " (replay)" : "");
    }
    sim_schedule_client_timer(clients->world, id,
                              sim_now(clients->world) + sim_random_below(clients->world, 15),
                              SIM_NEXT_OP_TOKEN);
}

void sim_clients_answer(sim_clients_t *clients, unsigned id, uint64_t request,
                        const sim_answer_t *answer)
{
    if (answer->kind == SIM_ANSWER_NOT_LEADER || answer->kind == SIM_ANSWER_EXPIRED) {
        sim_clients_note_denial(clients, request, answer->attempt); /* whichever attempt */
    }
    sim_client_t *client = &clients->clients[id];
    if (!client->busy || clients->ops[client->op].request.request != request) {
        return; /* an answer to an operation already decided */
    }
    sim_op_t *op = &clients->ops[client->op];
    /* Only the latest attempt's answer counts, as for an HTTP or gRPC caller that gave up on
     * the earlier ones: a refusal of an earlier attempt says nothing about a retry that may
     * still be applied. */
    if (answer->attempt != op->attempts) {
        return;
    }
    if (answer->kind == SIM_ANSWER_OK || answer->kind == SIM_ANSWER_SHORT) {
        sim_client_done(clients, id, answer);
        return;
    }
    if (sim_tracing(clients->world)) {
        printf("[%lld] client %u: request %llx attempt %u answered %s\n",
               (long long)sim_now(clients->world), id, (unsigned long long)request, answer->attempt,
               answer->kind == SIM_ANSWER_UNKNOWN ? "unknown" : "not leader");
    }
    sim_client_retry(clients, id, answer->kind == SIM_ANSWER_NOT_LEADER ? answer->leader_hint : 0);
}

void sim_clients_timer(sim_clients_t *clients, unsigned id, uint64_t token)
{
    sim_client_t *client = &clients->clients[id];
    if (token == SIM_NEXT_OP_TOKEN) {
        if (!client->busy) {
            sim_client_next(clients, id);
        }
        return;
    }
    if (!client->busy || (token & ~(1ull << 63)) != client->token) {
        return;
    }
    if ((token & (1ull << 63)) == 0) {
        client->target = 1 + client->target % clients->nodes; /* the attempt timed out */
    }
    sim_client_attempt(clients, id);
}
