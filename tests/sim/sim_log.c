/* sim_log.c — a Raft log held in memory, used twice per node: as its disk (what survives a
 * crash) and as the cache the node fills AppendEntries messages from. Every entry owns a copy
 * of its data. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim_log.h"

void sim_log_init(sim_log_t *log, raft_index start)
{
    memset(log, 0, sizeof *log);
    log->start = start;
}

void sim_log_free(sim_log_t *log)
{
    for (size_t i = 0; i < log->len; i++) {
        free(log->entries[i].buf.base);
    }
    free(log->entries);
    memset(log, 0, sizeof *log);
}

raft_index sim_log_last(const sim_log_t *log)
{
    return log->start + log->len - 1;
}

const struct raft_entry *sim_log_get(const sim_log_t *log, raft_index index)
{
    if (index < log->start || index > sim_log_last(log)) {
        return NULL;
    }
    return &log->entries[index - log->start];
}

void sim_log_truncate(sim_log_t *log, raft_index index)
{
    while (log->len > 0 && sim_log_last(log) >= index) {
        free(log->entries[log->len - 1].buf.base);
        log->len--;
    }
}

/* Drops every entry up to and including `index` (behind a snapshot). */
void sim_log_drop_prefix(sim_log_t *log, raft_index index)
{
    if (index < log->start) {
        return;
    }
    size_t drop = index - log->start + 1;
    if (drop > log->len) {
        drop = log->len;
    }
    for (size_t i = 0; i < drop; i++) {
        free(log->entries[i].buf.base);
    }
    memmove(log->entries, log->entries + drop, (log->len - drop) * sizeof *log->entries);
    log->len -= drop;
    log->start = index + 1;
}

void sim_log_reset(sim_log_t *log, raft_index start)
{
    sim_log_truncate(log, log->start);
    log->start = start;
}

/* Appends a copy of entry at `index`: entries from index on are replaced; an index past the
 * end leaves a gap, which is refused (false). */
bool sim_log_put(sim_log_t *log, raft_index index, const struct raft_entry *entry)
{
    if (index < log->start) {
        return true; /* behind a snapshot: already covered */
    }
    if (index > sim_log_last(log) + 1) {
        return false;
    }
    sim_log_truncate(log, index);
    if (log->len == log->cap) {
        size_t cap = log->cap == 0 ? 64 : log->cap * 2;
        struct raft_entry *grown = realloc(log->entries, cap * sizeof *grown);
        if (grown == NULL) {
            abort();
        }
        log->entries = grown;
        log->cap = cap;
    }
    struct raft_entry *copy = &log->entries[log->len++];
    *copy = *entry;
    copy->batch = NULL;
    copy->buf.base = malloc(entry->buf.len > 0 ? entry->buf.len : 1);
    if (copy->buf.base == NULL) {
        abort();
    }
    if (entry->buf.len > 0) {
        memcpy(copy->buf.base, entry->buf.base, entry->buf.len);
    }
    return true;
}

/* n entries from `first` as one raft_malloc'ed batch, as the library expects to own them. */
struct raft_entry *sim_log_copy_out(const sim_log_t *log, raft_index first, unsigned n)
{
    if (n == 0) {
        return NULL;
    }
    size_t size = 0;
    for (unsigned i = 0; i < n; i++) {
        const struct raft_entry *entry = sim_log_get(log, first + i);
        if (entry == NULL) {
            fprintf(stderr, "sim: entry %llu is not in the log (start %llu, last %llu)\n",
                    (unsigned long long)(first + i), (unsigned long long)log->start,
                    (unsigned long long)sim_log_last(log));
            abort();
        }
        size += entry->buf.len;
    }
    struct raft_entry *entries = raft_malloc(n * sizeof *entries);
    unsigned char *batch = raft_malloc(size > 0 ? size : 1);
    if (entries == NULL || batch == NULL) {
        abort();
    }
    unsigned char *cursor = batch;
    for (unsigned i = 0; i < n; i++) {
        const struct raft_entry *entry = sim_log_get(log, first + i);
        entries[i] = *entry;
        entries[i].buf.base = cursor;
        entries[i].batch = batch;
        memcpy(cursor, entry->buf.base, entry->buf.len);
        cursor += entry->buf.len;
    }
    return entries;
}

void sim_entries_release(struct raft_entry *entries, unsigned n)
{
    if (entries == NULL) {
        return;
    }
    if (n > 0) {
        raft_free(entries[0].batch);
    }
    raft_free(entries);
}
