/* sim_log.h — an in-memory Raft log: a node's disk and its entry cache (sim_log.c). */
#ifndef STOCKD_SIM_LOG_H
#define STOCKD_SIM_LOG_H

#include <raft.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct {
    raft_index start; /* index of entries[0] */
    struct raft_entry *entries;
    size_t len, cap;
} sim_log_t;

void sim_log_init(sim_log_t *log, raft_index start);
void sim_log_free(sim_log_t *log);
raft_index sim_log_last(const sim_log_t *log);
const struct raft_entry *sim_log_get(const sim_log_t *log, raft_index index);
void sim_log_truncate(sim_log_t *log, raft_index index);
void sim_log_drop_prefix(sim_log_t *log, raft_index index);
void sim_log_reset(sim_log_t *log, raft_index start);
bool sim_log_put(sim_log_t *log, raft_index index, const struct raft_entry *entry);
struct raft_entry *sim_log_copy_out(const sim_log_t *log, raft_index first, unsigned n);
void sim_entries_release(struct raft_entry *entries, unsigned n);

#endif
