/* sim_store.c — the replicated state of the simulation: levels, ledger, idempotency records
 * and the applied index, as stockd keeps them in RocksDB; the entry format (a batch's effects)
 * and the snapshot format. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

#define SIM_ENTRY_MAGIC 0x53494d42u    /* "SIMB" */
#define SIM_SNAPSHOT_MAGIC 0x53494d53u /* "SIMS" */

typedef struct {
    uint32_t magic;
    uint32_t puts, lines, records;
    uint64_t last_seq;
} sim_entry_header_t;

typedef struct {
    uint32_t magic;
    uint32_t unused;
    uint64_t applied_index, last_seq, ledger_hash;
    uint64_t ledger_len, records_len;
    sim_level_t levels[SIM_SKUS];
} sim_snapshot_header_t;

static void *sim_grow(void *array, size_t *capacity, size_t needed, size_t size)
{
    if (needed <= *capacity) {
        return array;
    }
    size_t capacity_new = *capacity == 0 ? 64 : *capacity;
    while (capacity_new < needed) {
        capacity_new *= 2;
    }
    void *grown = realloc(array, capacity_new * size);
    if (grown == NULL) {
        fprintf(stderr, "sim: out of memory\n");
        abort();
    }
    *capacity = capacity_new;
    return grown;
}

static uint64_t sim_mix(uint64_t hash, uint64_t value)
{
    hash ^= value + 0x9e3779b97f4a7c15ull + (hash << 6) + (hash >> 2);
    return hash * 0xff51afd7ed558ccdull;
}

void sim_store_init(sim_store_t *store)
{
    memset(store, 0, sizeof *store);
    for (size_t i = 0; i < SIM_SKUS; i++) {
        store->levels[i].available = SIM_INITIAL_AVAILABLE;
    }
}

void sim_store_free(sim_store_t *store)
{
    free(store->ledger);
    free(store->records);
    memset(store, 0, sizeof *store);
}

void sim_store_copy(sim_store_t *dst, const sim_store_t *src)
{
    sim_store_free(dst);
    *dst = *src;
    dst->ledger = NULL;
    dst->records = NULL;
    dst->ledger_cap = dst->records_cap = 0;
    dst->ledger = sim_grow(NULL, &dst->ledger_cap, src->ledger_len + 1, sizeof *dst->ledger);
    dst->records = sim_grow(NULL, &dst->records_cap, src->records_len + 1, sizeof *dst->records);
    if (src->ledger_len > 0) {
        memcpy(dst->ledger, src->ledger, src->ledger_len * sizeof *src->ledger);
    }
    if (src->records_len > 0) {
        memcpy(dst->records, src->records, src->records_len * sizeof *src->records);
    }
}

uint64_t sim_store_hash(const sim_store_t *store)
{
    uint64_t hash = sim_mix(store->ledger_hash, store->last_seq);
    hash = sim_mix(hash, store->ledger_len);
    hash = sim_mix(hash, store->records_len);
    for (size_t i = 0; i < SIM_SKUS; i++) {
        hash = sim_mix(hash, (uint64_t)store->levels[i].available);
        hash = sim_mix(hash, store->levels[i].version);
    }
    return hash;
}

const sim_record_t *sim_store_find(const sim_store_t *store, uint64_t request)
{
    for (size_t i = store->records_len; i > 0; i--) {
        if (store->records[i - 1].request == request) {
            return &store->records[i - 1];
        }
    }
    return NULL;
}

struct raft_buffer sim_effects_encode(const sim_effects_t *effects)
{
    sim_entry_header_t header = {SIM_ENTRY_MAGIC, (uint32_t)effects->puts_len,
                                 (uint32_t)effects->lines_len, (uint32_t)effects->records_len,
                                 effects->last_seq};
    size_t puts = effects->puts_len * sizeof effects->puts[0];
    size_t lines = effects->lines_len * sizeof effects->lines[0];
    size_t records = effects->records_len * sizeof effects->records[0];
    struct raft_buffer buffer = {raft_malloc(sizeof header + puts + lines + records), 0};
    if (buffer.base == NULL) {
        abort();
    }
    unsigned char *cursor = buffer.base;
    memcpy(cursor, &header, sizeof header);
    memcpy(cursor + sizeof header, effects->puts, puts);
    memcpy(cursor + sizeof header + puts, effects->lines, lines);
    memcpy(cursor + sizeof header + puts + lines, effects->records, records);
    buffer.len = sizeof header + puts + lines + records;
    return buffer;
}

static void sim_store_append_line(sim_store_t *store, const sim_line_t *line)
{
    store->ledger =
        sim_grow(store->ledger, &store->ledger_cap, store->ledger_len + 1, sizeof *line);
    store->ledger[store->ledger_len++] = *line;
    store->ledger_hash = sim_mix(store->ledger_hash, line->seq);
    store->ledger_hash = sim_mix(store->ledger_hash, line->request);
    store->ledger_hash = sim_mix(store->ledger_hash, (uint64_t)line->after);
}

static void sim_store_append_record(sim_store_t *store, const sim_record_t *record)
{
    store->records =
        sim_grow(store->records, &store->records_cap, store->records_len + 1, sizeof *record);
    store->records[store->records_len++] = *record;
    store->ledger_hash = sim_mix(store->ledger_hash, record->request);
}

bool sim_store_apply(sim_store_t *store, const struct raft_buffer *data)
{
    sim_entry_header_t header;
    if (data->len < sizeof header) {
        return false;
    }
    memcpy(&header, data->base, sizeof header);
    size_t puts = header.puts * sizeof(sim_put_t);
    size_t lines = header.lines * sizeof(sim_line_t);
    size_t records = header.records * sizeof(sim_batch_record_t);
    if (header.magic != SIM_ENTRY_MAGIC || data->len != sizeof header + puts + lines + records) {
        return false;
    }
    const unsigned char *cursor = (const unsigned char *)data->base + sizeof header;
    for (uint32_t i = 0; i < header.puts; i++, cursor += sizeof(sim_put_t)) {
        sim_put_t put;
        memcpy(&put, cursor, sizeof put);
        if (put.sku >= SIM_SKUS) {
            return false;
        }
        store->levels[put.sku] = (sim_level_t){put.available, put.version};
    }
    size_t first_line = store->ledger_len;
    for (uint32_t i = 0; i < header.lines; i++, cursor += sizeof(sim_line_t)) {
        sim_line_t line;
        memcpy(&line, cursor, sizeof line);
        sim_store_append_line(store, &line);
    }
    for (uint32_t i = 0; i < header.records; i++, cursor += sizeof(sim_batch_record_t)) {
        sim_batch_record_t record;
        memcpy(&record, cursor, sizeof record);
        sim_store_append_record(store,
                                &(sim_record_t){record.request, first_line + record.first_line,
                                                record.lines, record.attempt});
    }
    store->last_seq = header.last_seq;
    return true;
}

struct raft_buffer sim_store_encode(const sim_store_t *store)
{
    sim_snapshot_header_t header = {SIM_SNAPSHOT_MAGIC,   0,
                                    store->applied_index, store->last_seq,
                                    store->ledger_hash,   store->ledger_len,
                                    store->records_len,   {{0, 0}}};
    memcpy(header.levels, store->levels, sizeof header.levels);
    size_t lines = store->ledger_len * sizeof *store->ledger;
    size_t records = store->records_len * sizeof *store->records;
    struct raft_buffer buffer = {raft_malloc(sizeof header + lines + records),
                                 sizeof header + lines + records};
    if (buffer.base == NULL) {
        abort();
    }
    unsigned char *cursor = buffer.base;
    memcpy(cursor, &header, sizeof header);
    if (lines > 0) {
        memcpy(cursor + sizeof header, store->ledger, lines);
    }
    if (records > 0) {
        memcpy(cursor + sizeof header + lines, store->records, records);
    }
    return buffer;
}

bool sim_store_decode(const struct raft_buffer *buffer, sim_store_t *store)
{
    sim_snapshot_header_t header;
    if (buffer->len < sizeof header) {
        return false;
    }
    memcpy(&header, buffer->base, sizeof header);
    size_t lines = header.ledger_len * sizeof(sim_line_t);
    size_t records = header.records_len * sizeof(sim_record_t);
    if (header.magic != SIM_SNAPSHOT_MAGIC || buffer->len != sizeof header + lines + records) {
        return false;
    }
    sim_store_free(store);
    store->applied_index = header.applied_index;
    store->last_seq = header.last_seq;
    store->ledger_hash = header.ledger_hash;
    memcpy(store->levels, header.levels, sizeof store->levels);
    store->ledger = sim_grow(NULL, &store->ledger_cap, header.ledger_len + 1, sizeof(sim_line_t));
    store->records =
        sim_grow(NULL, &store->records_cap, header.records_len + 1, sizeof(sim_record_t));
    const unsigned char *cursor = (const unsigned char *)buffer->base + sizeof header;
    memcpy(store->ledger, cursor, lines);
    memcpy(store->records, cursor + lines, records);
    store->ledger_len = header.ledger_len;
    store->records_len = header.records_len;
    return true;
}
