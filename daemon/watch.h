/* watch.h — the Watch RPC's hub: follows tenants' ledgers for server-streaming calls.
 *
 * Each watcher sends the ledger entries of its tenant after its cursor, read from RocksDB in
 * small chunks, one message in flight at a time, then waits for the next commit. Since the
 * entries are read from the durable ledger in seq order, a watcher sees every entry once, in
 * order, without gaps, and a slow watcher never holds up writers: it only falls behind. One
 * that falls more than lag_max seqs behind is ended with RESOURCE_EXHAUSTED, and one whose
 * cursor was removed by retention with OUT_OF_RANGE; either can resume from its last seq. */
#ifndef STOCKD_WATCH_H
#define STOCKD_WATCH_H

#include <stddef.h>
#include <stdint.h>

#include "server.h"
#include "storage.h"

#define SD_WATCH_CHUNK_ENTRIES 64

typedef struct sd_watch_hub sd_watch_hub_t;

/* Starts the hub thread. Returns NULL when out of resources. */
sd_watch_hub_t *sd_watch_hub_new(sd_storage_t *storage, uint64_t committed_seq, uint64_t lag_max);
/* Stops the thread and frees the hub; every stream must have ended (server stopped). */
void sd_watch_hub_free(sd_watch_hub_t *hub);

/* The writer's commit callback: entries up to last_seq are durable. */
void sd_watch_hub_on_commit(void *hub, uint64_t last_seq);

/* Follows tenant_id's ledger after after_seq on call's stream (the Watch handler validated
 * both). Answers the call itself when the stream cannot be opened. */
void sd_watch_hub_add(sd_watch_hub_t *hub, sd_call_t *call, const char *tenant_id,
                      uint64_t after_seq);

/* What /metrics shows of the hub at one moment. */
typedef struct {
    size_t watchers_count; /* open Watch streams */
    uint64_t lag_max;      /* the largest lag among them, in seqs (0 when none is behind) */
    uint64_t lag_limit;    /* --watch-lag-max: a watch further behind is ended */
} sd_watch_stats_t;

/* Takes a snapshot of the watchers under the hub's mutex. The lag is measured as the hub
 * measures it to end a watch: from a watcher's oldest entry read but not yet sent to the
 * newest commit. */
void sd_watch_hub_stats(sd_watch_hub_t *hub, sd_watch_stats_t *stats_out);

#endif
