/* watch.c — see watch.h.
 *
 * One thread runs every watcher: it wakes on commits, on finished sends and on new streams,
 * and is the only thread that starts sends or ends streams. Stream events arrive on polling
 * threads; a CLOSED event releases the watcher there and then (so that when the server has
 * stopped, every watcher is gone). All watcher state is guarded by the hub's mutex, which the
 * hub thread holds across RocksDB scans and sends. The writer never takes it: a commit only
 * stores the committed seq (atomic) and raises the wake-up flag, under a mutex of its own that
 * nobody holds for longer than a flag update, so a commit never waits on watchers. */
#include "watch.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "keys.h"
#include "log.h"
#include "sd_limits.h"

typedef struct sd_watcher sd_watcher_t;

struct sd_watcher {
    sd_watch_hub_t *hub;
    sd_call_t *call;
    char tenant_id[SD_TENANT_BYTES_MAX + 1];
    uint64_t cursor;          /* the last seq sent (or the request's after_seq) */
    uint64_t scanned_through; /* committed seq up to which this tenant has nothing unsent */
    uint64_t sent_count;      /* entries sent so far */
    /* The last exact count of unsent entries (sd_watcher_behind): how many there were when
     * the newest commit was checked_committed and sent_count was checked_sent. */
    bool checked;
    uint64_t checked_backlog, checked_committed, checked_sent;
    uint8_t *pending[SD_WATCH_CHUNK_ENTRIES]; /* serialized entries read, not yet sent */
    size_t pending_lengths[SD_WATCH_CHUNK_ENTRIES];
    uint64_t pending_seqs[SD_WATCH_CHUNK_ENTRIES];
    size_t pending_head, pending_count;
    bool sending;    /* a send is in flight */
    bool failed;     /* a send failed: the call is going away */
    bool close_seen; /* the CLOSED event arrived */
    bool owner_ref;  /* we still hold the call's owner reference */
    sd_watcher_t *next;
};

struct sd_watch_hub {
    sd_storage_t *storage;
    uint64_t lag_max;
    pthread_t thread;
    pthread_mutex_t mutex; /* watcher state; held across scans and sends */
    sd_watcher_t *watchers;
    _Atomic uint64_t committed_seq;
    /* The wake-up: held only to update or wait for these flags, never across work. */
    pthread_mutex_t wake_mutex;
    pthread_cond_t wakeup;
    bool wake_pending;
    bool stopping;
};

/* Makes the hub thread run its watchers once more. Never called with wake_mutex held. */
static void sd_watch_hub_wake(sd_watch_hub_t *hub)
{
    pthread_mutex_lock(&hub->wake_mutex);
    hub->wake_pending = true;
    pthread_cond_signal(&hub->wakeup);
    pthread_mutex_unlock(&hub->wake_mutex);
}

void sd_watch_hub_on_commit(void *context, uint64_t last_seq)
{
    sd_watch_hub_t *hub = context;
    atomic_store(&hub->committed_seq, last_seq);
    sd_watch_hub_wake(hub);
}

static void sd_watcher_free_pending(sd_watcher_t *watcher);

/* Unlinks and frees a watcher; the hub's mutex is held. */
static void sd_watcher_destroy(sd_watcher_t *watcher)
{
    sd_watch_hub_t *hub = watcher->hub;
    for (sd_watcher_t **link = &hub->watchers; *link != NULL; link = &(*link)->next) {
        if (*link == watcher) {
            *link = watcher->next;
            break;
        }
    }
    sd_watcher_free_pending(watcher);
    free(watcher);
}

static void sd_watcher_on_event(void *context, sd_stream_event_t event, bool ok)
{
    sd_watcher_t *watcher = context;
    sd_watch_hub_t *hub = watcher->hub;
    pthread_mutex_lock(&hub->mutex);
    if (event == SD_STREAM_SENT) {
        watcher->sending = false;
        watcher->failed |= !ok;
    } else {
        watcher->close_seen = true;
        if (watcher->owner_ref) {
            watcher->owner_ref = false;
            sd_call_stream_release(watcher->call);
        }
    }
    bool destroyed = watcher->close_seen && !watcher->sending;
    if (destroyed) {
        sd_watcher_destroy(watcher); /* no event can follow */
    }
    pthread_mutex_unlock(&hub->mutex);
    if (!destroyed) {
        sd_watch_hub_wake(hub);
    }
}

/* ---- reading the ledger ---- */

typedef struct {
    sd_watcher_t *watcher;
    uint64_t committed_seq;
    bool corrupt; /* a value was not a known ledger format */
} sd_watch_scan_t;

static bool sd_watch_visit(void *context, const uint8_t *key, size_t key_length,
                           const uint8_t *value, size_t value_length)
{
    sd_watch_scan_t *scan = context;
    sd_watcher_t *watcher = scan->watcher;
    uint64_t seq = sd_be64_get(key + key_length - 8);
    if (seq > scan->committed_seq) {
        return false; /* committed_seq is what we were told about: stop there */
    }
    const uint8_t *payload = NULL;
    size_t payload_length = 0;
    if (!sd_ledger_value_payload(value, value_length, &payload, &payload_length)) {
        SD_LOG(LOG_ERROR, "storage_corrupt_ledger", LF_UINT("seq", seq));
        scan->corrupt = true;
        return false;
    }
    size_t slot = (watcher->pending_head + watcher->pending_count) % SD_WATCH_CHUNK_ENTRIES;
    watcher->pending[slot] = malloc(payload_length ? payload_length : 1);
    if (watcher->pending[slot] == NULL) {
        return false;
    }
    memcpy(watcher->pending[slot], payload, payload_length);
    watcher->pending_lengths[slot] = payload_length;
    watcher->pending_seqs[slot] = seq;
    watcher->pending_count++;
    return watcher->pending_count < SD_WATCH_CHUNK_ENTRIES;
}

/* Reads the next chunk of the tenant's entries after the last one read. */
static sd_status_t sd_watcher_refill(sd_watcher_t *watcher, uint64_t committed_seq)
{
    uint8_t prefix[SD_TENANT_PREFIX_BYTES_MAX], start[SD_LEDGER_KEY_BYTES_MAX];
    uint64_t after =
        watcher->pending_count > 0
            ? watcher->pending_seqs[(watcher->pending_head + watcher->pending_count - 1) %
                                    SD_WATCH_CHUNK_ENTRIES]
            : watcher->cursor;
    size_t prefix_length =
        sd_key_encode_tenant(sd_bytes_of(watcher->tenant_id), prefix, sizeof(prefix));
    size_t start_length =
        sd_key_encode_ledger(sd_bytes_of(watcher->tenant_id), after + 1, start, sizeof(start));
    sd_watch_scan_t scan = {watcher, committed_seq, false};
    bool more = false;
    sd_status_t status =
        sd_storage_scan(watcher->hub->storage, SD_CF_LEDGER, prefix, prefix_length, start,
                        start_length, false, SD_WATCH_CHUNK_ENTRIES, sd_watch_visit, &scan, &more);
    if (status == SD_OK && scan.corrupt) {
        return SD_INTERNAL;
    }
    if (status == SD_OK && watcher->pending_count == 0) {
        watcher->scanned_through = committed_seq;
    }
    return status;
}

static void sd_watcher_free_pending(sd_watcher_t *watcher)
{
    for (size_t i = 0; i < watcher->pending_count; i++) {
        free(watcher->pending[(watcher->pending_head + i) % SD_WATCH_CHUNK_ENTRIES]);
    }
    watcher->pending_count = 0;
}

/* Ends the watcher's stream with a status (its CLOSED event then frees it). */
static void sd_watcher_end(sd_watcher_t *watcher, sd_status_t status, const char *message)
{
    SD_LOG(LOG_INFO, "watch_ended", LF_STR("tenant", watcher->tenant_id),
           LF_STR("status", sd_status_name(status)), LF_UINT("cursor", watcher->cursor));
    sd_watcher_free_pending(watcher);
    watcher->owner_ref = false;
    sd_call_stream_end(watcher->call, status, message);
}

/* The seq distance from the watcher's oldest unsent entry to the newest commit: an upper bound
 * of what it still has to receive (other tenants' entries fall in between), and 0 when it has
 * nothing pending, however much other tenants write. */
static uint64_t sd_watcher_lag(const sd_watcher_t *watcher, uint64_t committed_seq)
{
    uint64_t oldest_unsent = watcher->pending_seqs[watcher->pending_head];
    return committed_seq >= oldest_unsent ? committed_seq - oldest_unsent + 1 : 0;
}

typedef struct {
    uint64_t committed_seq;
    uint64_t count;
} sd_backlog_count_t;

static bool sd_backlog_visit(void *context, const uint8_t *key, size_t key_length,
                             const uint8_t *value, size_t value_length)
{
    (void)value, (void)value_length;
    sd_backlog_count_t *counting = context;
    if (sd_be64_get(key + key_length - 8) > counting->committed_seq) {
        return false;
    }
    counting->count++;
    return true;
}

/* Counts the tenant's entries from the oldest unsent one to committed_seq, stopping past
 * limit: exactly what the watcher still has to receive. */
static sd_status_t sd_watcher_count_backlog(sd_watcher_t *watcher, uint64_t committed_seq,
                                            uint64_t limit, uint64_t *count_out)
{
    uint8_t prefix[SD_TENANT_PREFIX_BYTES_MAX], start[SD_LEDGER_KEY_BYTES_MAX];
    size_t prefix_length =
        sd_key_encode_tenant(sd_bytes_of(watcher->tenant_id), prefix, sizeof(prefix));
    size_t start_length =
        sd_key_encode_ledger(sd_bytes_of(watcher->tenant_id),
                             watcher->pending_seqs[watcher->pending_head], start, sizeof(start));
    sd_backlog_count_t counting = {committed_seq, 0};
    bool more = false;
    sd_status_t status =
        sd_storage_scan(watcher->hub->storage, SD_CF_LEDGER, prefix, prefix_length, start,
                        start_length, false, limit + 1, sd_backlog_visit, &counting, &more);
    *count_out = counting.count;
    return status;
}

/* True when the watcher has more than lag_max of its tenant's entries still to receive. The
 * seq distance bounds that number from above, so most checks cost nothing; past it, the last
 * exact count (less what was sent since, plus every seq committed since) bounds it; only when
 * both bounds exceed lag_max is the backlog counted again, exactly (at most lag_max + 1 keys,
 * and not again before that many more seqs are committed). */
static bool sd_watcher_behind(sd_watcher_t *watcher, uint64_t committed_seq, uint64_t lag_max)
{
    if (sd_watcher_lag(watcher, committed_seq) <= lag_max) {
        return false;
    }
    if (watcher->checked) {
        uint64_t sent_since = watcher->sent_count - watcher->checked_sent;
        uint64_t left =
            watcher->checked_backlog > sent_since ? watcher->checked_backlog - sent_since : 0;
        if (left + (committed_seq - watcher->checked_committed) <= lag_max) {
            return false;
        }
    }
    uint64_t backlog = 0;
    if (sd_watcher_count_backlog(watcher, committed_seq, lag_max, &backlog) != SD_OK) {
        return false; /* cannot tell: keep streaming (a read error ends it at the next refill) */
    }
    watcher->checked = true;
    watcher->checked_backlog = backlog;
    watcher->checked_committed = committed_seq;
    watcher->checked_sent = watcher->sent_count;
    return backlog > lag_max;
}

/* The seq through which the watcher has seen every entry of its tenant: what it was sent, or
 * further when a scan found nothing more of its tenant up to a later commit. */
static uint64_t sd_watcher_position(const sd_watcher_t *watcher)
{
    return watcher->scanned_through > watcher->cursor ? watcher->scanned_through : watcher->cursor;
}

/* Sends the next entry, reading more first when none are pending; the hub's mutex is held
 * (starting a batch never runs a completion synchronously, so this cannot deadlock). */
static void sd_watcher_pump(sd_watcher_t *watcher, uint64_t committed_seq)
{
    sd_watch_hub_t *hub = watcher->hub;
    if (sd_watcher_position(watcher) < sd_storage_pruned_through(hub->storage)) {
        sd_watcher_end(watcher, SD_OUT_OF_RANGE,
                       "the watch fell behind ledger retention; resume from a newer seq");
        return;
    }
    if (watcher->pending_count == 0 && watcher->scanned_through < committed_seq) {
        sd_status_t status = sd_watcher_refill(watcher, committed_seq);
        if (status != SD_OK) {
            sd_watcher_end(watcher, status,
                           status == SD_INTERNAL ? "a ledger entry is corrupt (logged)"
                                                 : "cannot read the ledger; resume later");
            return;
        }
    }
    if (watcher->pending_count == 0) {
        return;
    }
    if (sd_watcher_behind(watcher, committed_seq, hub->lag_max)) {
        sd_watcher_end(watcher, SD_RESOURCE_EXHAUSTED,
                       "the watch fell too far behind; resume from the last seq received");
        return;
    }
    char message[384];
    sd_status_t denied = SD_OK;
    if (!sd_call_still_authorized(watcher->call, watcher->tenant_id, &denied, message,
                                  sizeof(message))) {
        sd_watcher_end(watcher, denied, message); /* the policy changed: revoked, not resent */
        return;
    }
    size_t slot = watcher->pending_head;
    uint64_t seq = watcher->pending_seqs[slot];
    watcher->sending = true;
    if (!sd_call_stream_send(watcher->call, watcher->pending[slot],
                             watcher->pending_lengths[slot])) {
        watcher->sending = false;
        watcher->failed = true;
    }
    free(watcher->pending[slot]);
    watcher->pending_head = (slot + 1) % SD_WATCH_CHUNK_ENTRIES;
    watcher->pending_count--;
    watcher->cursor = seq;
    watcher->sent_count++;
}

/* ---- the hub thread ---- */

static void *sd_watch_hub_main(void *argument)
{
    sd_watch_hub_t *hub = argument;
    for (;;) {
        pthread_mutex_lock(&hub->wake_mutex);
        while (!hub->wake_pending && !hub->stopping) {
            pthread_cond_wait(&hub->wakeup, &hub->wake_mutex);
        }
        hub->wake_pending = false;
        bool stopping = hub->stopping;
        pthread_mutex_unlock(&hub->wake_mutex);
        if (stopping) {
            return NULL;
        }
        uint64_t committed_seq = atomic_load(&hub->committed_seq);
        pthread_mutex_lock(&hub->mutex);
        for (sd_watcher_t *watcher = hub->watchers; watcher != NULL; watcher = watcher->next) {
            if (watcher->owner_ref && !watcher->sending && !watcher->failed &&
                !watcher->close_seen) {
                sd_watcher_pump(watcher, committed_seq);
            }
        }
        pthread_mutex_unlock(&hub->mutex);
    }
}

sd_watch_hub_t *sd_watch_hub_new(sd_storage_t *storage, uint64_t committed_seq, uint64_t lag_max)
{
    sd_watch_hub_t *hub = calloc(1, sizeof(*hub));
    if (hub == NULL) {
        return NULL;
    }
    hub->storage = storage;
    hub->lag_max = lag_max;
    atomic_store(&hub->committed_seq, committed_seq);
    pthread_mutex_init(&hub->mutex, NULL);
    pthread_mutex_init(&hub->wake_mutex, NULL);
    pthread_cond_init(&hub->wakeup, NULL);
    if (pthread_create(&hub->thread, NULL, sd_watch_hub_main, hub) != 0) {
        SD_LOG(LOG_ERROR, "thread_start_failed", LF_STR("thread", "watch hub"));
        pthread_mutex_destroy(&hub->mutex);
        pthread_mutex_destroy(&hub->wake_mutex);
        pthread_cond_destroy(&hub->wakeup);
        free(hub);
        return NULL;
    }
    return hub;
}

void sd_watch_hub_free(sd_watch_hub_t *hub)
{
    if (hub == NULL) {
        return;
    }
    pthread_mutex_lock(&hub->wake_mutex);
    hub->stopping = true;
    pthread_cond_signal(&hub->wakeup);
    pthread_mutex_unlock(&hub->wake_mutex);
    pthread_join(hub->thread, NULL);
    /* The server has stopped, so every stream has delivered CLOSED and every watcher is gone;
     * anything left means a stream outlived the server, which is a bug worth logging. */
    if (hub->watchers != NULL) {
        SD_LOG(LOG_ERROR, "invariant_violated", LF_STR("what", "watchers left at shutdown"));
    }
    pthread_mutex_destroy(&hub->mutex);
    pthread_mutex_destroy(&hub->wake_mutex);
    pthread_cond_destroy(&hub->wakeup);
    free(hub);
}

void sd_watch_hub_add(sd_watch_hub_t *hub, sd_call_t *call, const char *tenant_id,
                      uint64_t after_seq)
{
    sd_watcher_t *watcher = calloc(1, sizeof(*watcher));
    if (watcher == NULL) {
        sd_call_reply_status(call, SD_UNAVAILABLE, "out of memory; retry later");
        return;
    }
    watcher->hub = hub;
    watcher->call = call;
    watcher->cursor = after_seq;
    watcher->owner_ref = true;
    snprintf(watcher->tenant_id, sizeof(watcher->tenant_id), "%s", tenant_id);
    pthread_mutex_lock(&hub->mutex);
    if (!sd_call_stream_open(call, sd_watcher_on_event, watcher)) {
        pthread_mutex_unlock(&hub->mutex);
        free(watcher);
        return;
    }
    watcher->next = hub->watchers;
    hub->watchers = watcher;
    pthread_mutex_unlock(&hub->mutex);
    sd_watch_hub_wake(hub);
}

void sd_watch_hub_stats(sd_watch_hub_t *hub, sd_watch_stats_t *stats_out)
{
    uint64_t committed_seq = atomic_load(&hub->committed_seq);
    *stats_out = (sd_watch_stats_t){0, 0, hub->lag_max};
    pthread_mutex_lock(&hub->mutex);
    for (const sd_watcher_t *watcher = hub->watchers; watcher != NULL; watcher = watcher->next) {
        if (!watcher->owner_ref || watcher->close_seen) {
            continue; /* ended: only waiting for its CLOSED event */
        }
        stats_out->watchers_count++;
        uint64_t lag = watcher->pending_count > 0 ? sd_watcher_lag(watcher, committed_seq) : 0;
        stats_out->lag_max = lag > stats_out->lag_max ? lag : stats_out->lag_max;
    }
    pthread_mutex_unlock(&hub->mutex);
}
