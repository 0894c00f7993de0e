/* replication_snapshot.h — a replica's whole state as one Raft snapshot, and back.
 *
 * Raft keeps its log bounded by replacing the entries a replica has applied with a snapshot
 * of the state they produced; a replica too far behind for the leader's log (down for long,
 * or new) is sent the snapshot instead of the entries. The state is every record of every
 * column family, read through one RocksDB snapshot (a single point in time while entries are
 * applied), including the Raft index it reflects (meta:raft_applied_index), so the copy says
 * exactly which entries it holds.
 *
 * Format (big-endian): "SDS", format 1, the CRC-32 of the records (u32), the applied index
 * (u64), the record count (u64), the records' byte length (u64); then each record: column
 * family (u8), key length (u32), value length (u32), key, value; zeros to a multiple of 8
 * bytes. Format 2 (a snapshot prepared off the loop, below) has, between the records and the
 * zeros, the entries applied after them: their count (u64), the records' applied index (u64),
 * then each: Raft index (u64), last ledger seq (u64), length (u32), the entry's effects (a
 * WriteBatch, as in the log); the last index is the applied index, and the byte length and CRC
 * cover the records and the entries.
 * A snapshot is checked whole (checksum, framing) before anything is written.
 *
 * Restoring replaces the state in one synced RocksDB write (every record deleted, every record
 * of the snapshot put), so a crash leaves either the old state or the new one; a format-2
 * snapshot's entries are then applied in order, as the log's are (a crash among them leaves
 * the store short of the snapshot's index: it is restored again at the next start). A store
 * that applied as far as a format-2 snapshot's records or further only applies the entries
 * past its own index: its state never moves back. A snapshot no
 * newer than what the store has applied is not restored: at start Raft hands back the last
 * snapshot it took, which the store already holds (entries applied after it are replayed past
 * the stored index as before). */
#ifndef STOCKD_REPLICATION_SNAPSHOT_H
#define STOCKD_REPLICATION_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <raft.h>

#include "status.h"
#include "storage.h"

#define SD_SNAPSHOT_HEADER_BYTES 32
/* Records are gathered into buffers of about this size (the library writes them one after
 * the other, and hands a restore one contiguous buffer). */
#define SD_SNAPSHOT_CHUNK_BYTES (4u << 20)

typedef struct {
    uint64_t applied_index; /* the last Raft entry the state holds */
    uint64_t records;
    uint64_t bytes;         /* the whole snapshot, header and padding included */
    uint64_t deltas;        /* format 2: entries applied after the records */
    uint64_t deltas_offset; /* where their section starts */
    uint64_t deltas_base;   /* the records' applied index */
} sd_snapshot_info_t;

/* Copies the state into raft_malloc'ed buffers (*buffers_out, itself raft_malloc'ed, holds
 * *count_out of them: the library frees them after writing). SD_UNAVAILABLE on a read error,
 * SD_RESOURCE_EXHAUSTED when out of memory; nothing is returned then. */
sd_status_t sd_snapshot_take(sd_storage_t *storage, struct raft_buffer **buffers_out,
                             unsigned *count_out, sd_snapshot_info_t *info_out);

/* A snapshot prepared off the replication loop: sd_snapshot_prep_start takes a point in time
 * of the store (O(1)) and copies its records on a thread of its own; meanwhile the loop hands
 * it every entry it writes to the store after that point (sd_snapshot_prep_add_delta, a copy
 * each); once sd_snapshot_prep_ready, sd_snapshot_prep_finish (loop thread) appends those
 * entries to the records (format 2) and hands the buffers over as sd_snapshot_take does. So
 * the loop holds still for the entries applied meanwhile, not for a copy of the whole state
 * (4.4 ms per MB here: past the election timeout for states of a few hundred MB). */
typedef struct sd_snapshot_prep sd_snapshot_prep_t;
sd_snapshot_prep_t *sd_snapshot_prep_start(sd_storage_t *storage); /* NULL: could not start */
bool sd_snapshot_prep_ready(const sd_snapshot_prep_t *prep);
void sd_snapshot_prep_add_delta(sd_snapshot_prep_t *prep, const void *data, size_t length,
                                uint64_t index, uint64_t last_seq);
size_t sd_snapshot_prep_delta_count(const sd_snapshot_prep_t *prep);
/* Waits for the thread (done when ready), frees prep, and returns the snapshot or why not. */
sd_status_t sd_snapshot_prep_finish(sd_snapshot_prep_t *prep, struct raft_buffer **buffers_out,
                                    unsigned *count_out, sd_snapshot_info_t *info_out);
/* Waits for the thread and frees everything (NULL allowed). */
void sd_snapshot_prep_abandon(sd_snapshot_prep_t *prep);

/* Checks a snapshot: header, checksum, every record inside the buffer and of a known column
 * family, the counts it declares. SD_INVALID_ARGUMENT with the reason in error otherwise. */
sd_status_t sd_snapshot_check(const void *data, size_t length, sd_snapshot_info_t *info_out,
                              char *error, size_t error_capacity);

/* Replaces the store's state with the snapshot's, unless the store has applied an entry and
 * that far already (*restored_out = false). Nothing changes on an invalid snapshot
 * (SD_INVALID_ARGUMENT) or a failed read; a failed write is the storage's failure (fail-stop). */
sd_status_t sd_snapshot_restore(sd_storage_t *storage, const void *data, size_t length,
                                sd_snapshot_info_t *info_out, bool *restored_out, char *error,
                                size_t error_capacity);

#endif
