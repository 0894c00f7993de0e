/* coalesce.h — concurrent Wix calls go to stockd together, in Batch calls.
 *
 * Each HTTP handler thread queues its mapped call. While fewer than `senders` calls to stockd
 * are in flight, the queuing thread itself becomes a sender (no hand-off to another thread):
 * it takes everything queued, within the Batch limits, sends it — alone when it is one call,
 * as one Inventory/Batch otherwise — and hands every call its own result: the gRPC code and
 * message a lone Decrement/Increment would have got, so each Wix call is answered exactly as
 * before. When all sender places are taken, calls wait in the queue and the next free place
 * sends them together. A lone call is sent at once; a sender waits (at most wait_us) for more
 * only while other calls are announced (verified, being mapped), so a burst leaves together.
 * Batches are what make stockd's per-call costs (HTTP/2 stream, metadata, completion-queue
 * round trips — on both sides) shared by many Wix calls. */
#ifndef STOCKD_GW_COALESCE_H
#define STOCKD_GW_COALESCE_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stockclient.h"

typedef struct gw_coalescer gw_coalescer_t;

typedef struct {
    sc_client_t *client; /* shared; must outlive the coalescer */
    size_t senders;      /* calls to stockd in flight at once, 1..64 */
    int64_t wait_us;     /* longest wait for announced calls, 0..10000 */
} gw_coalescer_options_t;

/* Counters for the metrics (read without the lock: approximate while calls run). */
typedef struct {
    uint64_t batches;     /* Batch calls sent */
    uint64_t batch_calls; /* Wix calls that went in them */
    uint64_t lone_calls;  /* Wix calls sent alone */
} gw_coalescer_stats_t;

/* NULL when out of memory. */
gw_coalescer_t *gw_coalescer_new(const gw_coalescer_options_t *options);
/* Frees; no call may be in progress or made after. */
void gw_coalescer_free(gw_coalescer_t *coalescer);

/* A call is on its way (its token verified, the call being mapped): senders may wait a little
 * for it. Every announcement must end with gw_coalescer_call or gw_coalescer_withdraw. */
void gw_coalescer_announce(gw_coalescer_t *coalescer);
void gw_coalescer_withdraw(gw_coalescer_t *coalescer);
/* gw_coalescer_withdraw when `announced` (a call that did not go to stockd after all). */
void gw_coalescer_withdraw_if(gw_coalescer_t *coalescer, bool announced);

/* One write: a DecrementRequest or IncrementRequest (kept by pointer until this returns), made
 * for on_behalf_of ("" = nobody). Consumes one announcement. Blocks until its outcome is
 * known; returns its gRPC code and writes the message into message_out. deadline_ms is the
 * call's own budget from now. */
int gw_coalescer_call(gw_coalescer_t *coalescer, const ProtobufCMessage *request,
                      const char *on_behalf_of, int64_t deadline_ms, char *message_out,
                      size_t message_capacity);

void gw_coalescer_stats(gw_coalescer_t *coalescer, gw_coalescer_stats_t *out);

#endif
