/* replication_snapshot.c — see replication_snapshot.h. */
#include "replication_snapshot.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "keys.h"

#define SD_SNAPSHOT_MAGIC "SDS"
#define SD_SNAPSHOT_FORMAT 1               /* the records */
#define SD_SNAPSHOT_FORMAT_DELTAS 2        /* the records, then entries applied after them */
#define SD_SNAPSHOT_RECORD_HEADER_BYTES 9  /* cf u8, key length u32, value length u32 */
#define SD_SNAPSHOT_DELTA_HEADER_BYTES 20  /* index u64, last seq u64, length u32 */
#define SD_SNAPSHOT_DELTAS_HEADER_BYTES 16 /* the section's: count u64, records' index u64 */

/* ---- taking ---- */

typedef struct {
    struct raft_buffer *buffers;
    unsigned count, capacity;
    size_t chunk_capacity; /* of the last buffer */
    uint64_t records, payload;
    bool out_of_memory;
    const atomic_bool *cancel; /* (may be NULL) set: stop copying */
} sd_snapshot_builder_t;

/* Makes room for `need` more bytes at the end of the last buffer (a new buffer when it is
 * full: a record never spans two). */
static uint8_t *sd_snapshot_room(sd_snapshot_builder_t *builder, size_t need)
{
    struct raft_buffer *last = builder->count > 0 ? &builder->buffers[builder->count - 1] : NULL;
    if (last != NULL && builder->chunk_capacity - last->len >= need) {
        return (uint8_t *)last->base + last->len;
    }
    if (builder->count == builder->capacity) {
        unsigned capacity = builder->capacity > 0 ? 2 * builder->capacity : 8;
        struct raft_buffer *grown =
            raft_realloc(builder->buffers, capacity * sizeof(*builder->buffers));
        if (grown == NULL) {
            return NULL;
        }
        builder->buffers = grown;
        builder->capacity = capacity;
    }
    /* 8 spare bytes: the padding at the end always fits */
    size_t capacity = (need > SD_SNAPSHOT_CHUNK_BYTES ? need : SD_SNAPSHOT_CHUNK_BYTES) + 8;
    void *base = raft_malloc(capacity);
    if (base == NULL) {
        return NULL;
    }
    builder->buffers[builder->count++] = (struct raft_buffer){base, 0};
    builder->chunk_capacity = capacity - 8;
    return base;
}

/* Counts the `need` bytes just written at `out` (from sd_snapshot_room) into the last buffer
 * and the payload, and into *crc when given. */
static void sd_snapshot_written(sd_snapshot_builder_t *builder, const uint8_t *out, size_t need,
                                uLong *crc)
{
    builder->buffers[builder->count - 1].len += need;
    builder->payload += need;
    if (crc != NULL) {
        *crc = crc32_z(*crc, out, need);
    }
}

static bool sd_snapshot_add(void *context, sd_cf_t cf, const uint8_t *key, size_t key_length,
                            const uint8_t *value, size_t value_length)
{
    sd_snapshot_builder_t *builder = context;
    if (builder->cancel != NULL && atomic_load(builder->cancel)) {
        return false;
    }
    size_t need = SD_SNAPSHOT_RECORD_HEADER_BYTES + key_length + value_length;
    uint8_t *out = key_length <= UINT32_MAX && value_length <= UINT32_MAX
                       ? sd_snapshot_room(builder, need)
                       : NULL;
    if (out == NULL) {
        builder->out_of_memory = true;
        return false;
    }
    out[0] = (uint8_t)cf;
    sd_be32_put(out + 1, (uint32_t)key_length);
    sd_be32_put(out + 5, (uint32_t)value_length);
    memcpy(out + SD_SNAPSHOT_RECORD_HEADER_BYTES, key, key_length);
    memcpy(out + SD_SNAPSHOT_RECORD_HEADER_BYTES + key_length, value, value_length);
    sd_snapshot_written(builder, out, need, NULL);
    builder->records++;
    return true;
}

static void sd_snapshot_builder_free(sd_snapshot_builder_t *builder)
{
    for (unsigned i = 0; i < builder->count; i++) {
        raft_free(builder->buffers[i].base);
    }
    raft_free(builder->buffers);
}

/* Starts a snapshot: the header's room, then every record of the store as of `point`;
 * *crc_out: the CRC-32 of the records. */
static sd_status_t sd_snapshot_build_records(sd_storage_t *storage, const sd_storage_point_t *point,
                                             sd_snapshot_builder_t *builder, uint64_t *applied_out,
                                             uLong *crc_out)
{
    if (sd_snapshot_room(builder, SD_SNAPSHOT_HEADER_BYTES) == NULL) {
        return SD_RESOURCE_EXHAUSTED;
    }
    builder->buffers[0].len = SD_SNAPSHOT_HEADER_BYTES;
    sd_status_t status =
        sd_storage_export_at(storage, point, sd_snapshot_add, builder, applied_out);
    if (status != SD_OK) {
        return builder->out_of_memory ? SD_RESOURCE_EXHAUSTED : status;
    }
    const uint8_t *first = builder->buffers[0].base;
    uLong crc = crc32_z(0L, Z_NULL, 0);
    crc = crc32_z(crc, first + SD_SNAPSHOT_HEADER_BYTES,
                  builder->buffers[0].len - SD_SNAPSHOT_HEADER_BYTES);
    for (unsigned i = 1; i < builder->count; i++) {
        crc = crc32_z(crc, builder->buffers[i].base, builder->buffers[i].len);
    }
    *crc_out = crc;
    return SD_OK;
}

/* Writes the header and the padding: the buffers are the snapshot's. */
static void sd_snapshot_seal(sd_snapshot_builder_t *builder, int format, uLong crc,
                             uint64_t applied, struct raft_buffer **buffers_out,
                             unsigned *count_out, sd_snapshot_info_t *info_out)
{
    uint8_t *header = builder->buffers[0].base; /* the first buffer never moves */
    memset(header, 0, SD_SNAPSHOT_HEADER_BYTES);
    memcpy(header, SD_SNAPSHOT_MAGIC, 3);
    header[3] = (uint8_t)format;
    sd_be32_put(header + 4, (uint32_t)crc);
    sd_be64_put(header + 8, applied);
    sd_be64_put(header + 16, builder->records);
    sd_be64_put(header + 24, builder->payload);
    /* the library's files want 8-byte multiples; the spare room of the last buffer holds it */
    uint64_t total = SD_SNAPSHOT_HEADER_BYTES + builder->payload;
    size_t padding = (size_t)((8 - total % 8) % 8);
    struct raft_buffer *last = &builder->buffers[builder->count - 1];
    memset((uint8_t *)last->base + last->len, 0, padding);
    last->len += padding;
    *buffers_out = builder->buffers;
    *count_out = builder->count;
    *info_out = (sd_snapshot_info_t){applied, builder->records, total + padding, 0, 0, 0};
}

sd_status_t sd_snapshot_take(sd_storage_t *storage, struct raft_buffer **buffers_out,
                             unsigned *count_out, sd_snapshot_info_t *info_out)
{
    sd_storage_point_t *point = sd_storage_point_take(storage);
    if (point == NULL) {
        return SD_RESOURCE_EXHAUSTED;
    }
    sd_snapshot_builder_t builder = {0};
    uint64_t applied = 0;
    uLong crc = 0;
    sd_status_t status = sd_snapshot_build_records(storage, point, &builder, &applied, &crc);
    sd_storage_point_release(storage, point);
    if (status != SD_OK) {
        sd_snapshot_builder_free(&builder);
        return status;
    }
    sd_snapshot_seal(&builder, SD_SNAPSHOT_FORMAT, crc, applied, buffers_out, count_out, info_out);
    return SD_OK;
}

/* ---- prepared off the loop: the records, then the entries applied meanwhile ---- */

typedef struct {
    uint64_t index, last_seq;
    void *data;
    size_t length;
} sd_snapshot_delta_t;

struct sd_snapshot_prep {
    sd_storage_t *storage;
    sd_storage_point_t *point;
    pthread_t thread;
    bool thread_started;
    atomic_bool done;   /* the thread finished: builder, status, applied and crc are its */
    atomic_bool cancel; /* abandoned: the thread stops at the next record */
    sd_snapshot_builder_t builder;
    sd_status_t status;
    uint64_t applied; /* the store's applied index at the point */
    uLong crc;
    /* the caller's thread: entries written to the store after the point, in order */
    sd_snapshot_delta_t *deltas;
    size_t deltas_count, deltas_capacity;
    bool deltas_failed;
};

static void *sd_snapshot_prep_main(void *argument)
{
    sd_snapshot_prep_t *prep = argument;
    sd_storage_thread_init();
    prep->status = sd_snapshot_build_records(prep->storage, prep->point, &prep->builder,
                                             &prep->applied, &prep->crc);
    atomic_store(&prep->done, true);
    return NULL;
}

sd_snapshot_prep_t *sd_snapshot_prep_start(sd_storage_t *storage)
{
    sd_snapshot_prep_t *prep = calloc(1, sizeof(*prep));
    if (prep == NULL) {
        return NULL;
    }
    prep->storage = storage;
    prep->builder.cancel = &prep->cancel;
    prep->point = sd_storage_point_take(storage);
    if (prep->point == NULL ||
        pthread_create(&prep->thread, NULL, sd_snapshot_prep_main, prep) != 0) {
        sd_snapshot_prep_abandon(prep);
        return NULL;
    }
    prep->thread_started = true;
    return prep;
}

bool sd_snapshot_prep_ready(const sd_snapshot_prep_t *prep)
{
    return atomic_load(&prep->done);
}

void sd_snapshot_prep_add_delta(sd_snapshot_prep_t *prep, const void *data, size_t length,
                                uint64_t index, uint64_t last_seq)
{
    if (prep->deltas_failed) {
        return;
    }
    if (prep->deltas_count == prep->deltas_capacity) {
        size_t capacity = prep->deltas_capacity > 0 ? 2 * prep->deltas_capacity : 64;
        sd_snapshot_delta_t *grown = realloc(prep->deltas, capacity * sizeof(*grown));
        if (grown == NULL) {
            prep->deltas_failed = true;
            return;
        }
        prep->deltas = grown;
        prep->deltas_capacity = capacity;
    }
    void *copy = length <= UINT32_MAX ? malloc(length > 0 ? length : 1) : NULL;
    if (copy == NULL) {
        prep->deltas_failed = true;
        return;
    }
    memcpy(copy, data, length);
    prep->deltas[prep->deltas_count++] = (sd_snapshot_delta_t){index, last_seq, copy, length};
}

size_t sd_snapshot_prep_delta_count(const sd_snapshot_prep_t *prep)
{
    return prep->deltas_count;
}

/* Appends the delta section (count, then each entry) to the records; false when out of
 * memory. Updates *crc over what it appends. */
static bool sd_snapshot_append_deltas(sd_snapshot_prep_t *prep, uLong *crc)
{
    uint8_t *out = sd_snapshot_room(&prep->builder, SD_SNAPSHOT_DELTAS_HEADER_BYTES);
    if (out == NULL) {
        return false;
    }
    sd_be64_put(out, prep->deltas_count);
    sd_be64_put(out + 8, prep->applied); /* the records' applied index */
    sd_snapshot_written(&prep->builder, out, SD_SNAPSHOT_DELTAS_HEADER_BYTES, crc);
    for (size_t i = 0; i < prep->deltas_count; i++) {
        const sd_snapshot_delta_t *delta = &prep->deltas[i];
        size_t need = SD_SNAPSHOT_DELTA_HEADER_BYTES + delta->length;
        out = sd_snapshot_room(&prep->builder, need);
        if (out == NULL) {
            return false;
        }
        sd_be64_put(out, delta->index);
        sd_be64_put(out + 8, delta->last_seq);
        sd_be32_put(out + 16, (uint32_t)delta->length);
        memcpy(out + SD_SNAPSHOT_DELTA_HEADER_BYTES, delta->data, delta->length);
        sd_snapshot_written(&prep->builder, out, need, crc);
    }
    return true;
}

sd_status_t sd_snapshot_prep_finish(sd_snapshot_prep_t *prep, struct raft_buffer **buffers_out,
                                    unsigned *count_out, sd_snapshot_info_t *info_out)
{
    pthread_join(prep->thread, NULL);
    prep->thread_started = false;
    sd_status_t status = prep->deltas_failed ? SD_RESOURCE_EXHAUSTED : prep->status;
    uLong crc = prep->crc;
    uint64_t records_end = SD_SNAPSHOT_HEADER_BYTES + prep->builder.payload;
    if (status == SD_OK && prep->deltas_count > 0 && !sd_snapshot_append_deltas(prep, &crc)) {
        status = SD_RESOURCE_EXHAUSTED;
    }
    if (status == SD_OK) {
        uint64_t applied =
            prep->deltas_count > 0 ? prep->deltas[prep->deltas_count - 1].index : prep->applied;
        sd_snapshot_seal(&prep->builder,
                         prep->deltas_count > 0 ? SD_SNAPSHOT_FORMAT_DELTAS : SD_SNAPSHOT_FORMAT,
                         crc, applied, buffers_out, count_out, info_out);
        info_out->deltas = prep->deltas_count;
        info_out->deltas_offset = prep->deltas_count > 0 ? records_end : 0;
        info_out->deltas_base = prep->deltas_count > 0 ? prep->applied : 0;
        prep->builder = (sd_snapshot_builder_t){0}; /* the buffers are the caller's */
    }
    sd_snapshot_prep_abandon(prep);
    return status;
}

void sd_snapshot_prep_abandon(sd_snapshot_prep_t *prep)
{
    if (prep == NULL) {
        return;
    }
    if (prep->thread_started) {
        atomic_store(&prep->cancel, true);
        pthread_join(prep->thread, NULL);
    }
    sd_storage_point_release(prep->storage, prep->point);
    sd_snapshot_builder_free(&prep->builder);
    for (size_t i = 0; i < prep->deltas_count; i++) {
        free(prep->deltas[i].data);
    }
    free(prep->deltas);
    free(prep);
}

/* ---- checking and restoring ---- */

/* Walks the records (checked by sd_snapshot_check first), as an export of the state would. */
static void sd_snapshot_each(const uint8_t *bytes, const sd_snapshot_info_t *info,
                             sd_export_fn *visit, void *context)
{
    const uint8_t *at = bytes + SD_SNAPSHOT_HEADER_BYTES;
    for (uint64_t i = 0; i < info->records; i++) {
        uint32_t key_length = sd_be32_get(at + 1), value_length = sd_be32_get(at + 5);
        const uint8_t *key = at + SD_SNAPSHOT_RECORD_HEADER_BYTES;
        if (!visit(context, (sd_cf_t)at[0], key, key_length, key + key_length, value_length)) {
            return;
        }
        at = key + key_length + value_length;
    }
}

/* Walks the records' framing: each inside the payload, of a known family, as many as the
 * header says; *left_out: the bytes after them (none in format 1). */
static bool sd_snapshot_check_records(const uint8_t *at, uint64_t payload, uint64_t records,
                                      uint64_t *left_out, char *error, size_t error_capacity)
{
    uint64_t left = payload;
    for (uint64_t i = 0; i < records; i++) {
        if (left < SD_SNAPSHOT_RECORD_HEADER_BYTES || at[0] >= SD_CF_COUNT) {
            snprintf(error, error_capacity, "snapshot record %llu is cut off or of no family",
                     (unsigned long long)i + 1);
            return false;
        }
        uint64_t key_length = sd_be32_get(at + 1), value_length = sd_be32_get(at + 5);
        left -= SD_SNAPSHOT_RECORD_HEADER_BYTES;
        if (key_length > left || value_length > left - key_length) {
            snprintf(error, error_capacity, "snapshot record %llu runs past the end",
                     (unsigned long long)i + 1);
            return false;
        }
        left -= key_length + value_length;
        at += SD_SNAPSHOT_RECORD_HEADER_BYTES + key_length + value_length;
    }
    *left_out = left;
    return true;
}

/* Walks the delta section's framing (format 2: a count, the records' applied index, then
 * each entry: index, last seq, length, the entry's effects — a WriteBatch, 12 bytes of header
 * at least), `length` bytes at `at`: every entry inside it, indexes rising past the records',
 * nothing after; fills info's deltas, deltas_base and *last_index_out. */
#define SD_WRITE_BATCH_HEADER_BYTES 12
static bool sd_snapshot_check_deltas(const uint8_t *at, uint64_t length, sd_snapshot_info_t *info,
                                     uint64_t *last_index_out, char *error, size_t error_capacity)
{
    if (length < SD_SNAPSHOT_DELTAS_HEADER_BYTES) {
        snprintf(error, error_capacity, "a snapshot whose entries section is cut off");
        return false;
    }
    uint64_t count = sd_be64_get(at), previous = sd_be64_get(at + 8);
    uint64_t left = length - SD_SNAPSHOT_DELTAS_HEADER_BYTES;
    info->deltas_base = previous;
    at += SD_SNAPSHOT_DELTAS_HEADER_BYTES;
    for (uint64_t i = 0; i < count; i++) {
        uint64_t index = left >= SD_SNAPSHOT_DELTA_HEADER_BYTES ? sd_be64_get(at) : 0;
        uint64_t size = left >= SD_SNAPSHOT_DELTA_HEADER_BYTES ? sd_be32_get(at + 16) : 0;
        if (left < SD_SNAPSHOT_DELTA_HEADER_BYTES || size > left - SD_SNAPSHOT_DELTA_HEADER_BYTES ||
            size < SD_WRITE_BATCH_HEADER_BYTES || index <= previous) {
            snprintf(error, error_capacity, "snapshot entry %llu is cut off or out of order",
                     (unsigned long long)i + 1);
            return false;
        }
        previous = index;
        left -= SD_SNAPSHOT_DELTA_HEADER_BYTES + size;
        at += SD_SNAPSHOT_DELTA_HEADER_BYTES + size;
    }
    if (left != 0 || count == 0) {
        snprintf(error, error_capacity,
                 count == 0 ? "a snapshot of format 2 without entries"
                            : "a snapshot with bytes after its last entry");
        return false;
    }
    info->deltas = count;
    *last_index_out = previous;
    return true;
}

/* The framing after the header: records, then (format 2) the entries applied after them,
 * the last of which is the applied index the header names. */
static bool sd_snapshot_check_body(const uint8_t *bytes, uint64_t payload, sd_snapshot_info_t *info,
                                   char *error, size_t error_capacity)
{
    uint64_t left = 0, last_index = 0;
    const uint8_t *body = bytes + SD_SNAPSHOT_HEADER_BYTES;
    if (!sd_snapshot_check_records(body, payload, info->records, &left, error, error_capacity)) {
        return false;
    }
    if (bytes[3] == SD_SNAPSHOT_FORMAT) {
        if (left != 0) {
            snprintf(error, error_capacity, "a snapshot with bytes after its last record");
            return false;
        }
        return true;
    }
    info->deltas_offset = SD_SNAPSHOT_HEADER_BYTES + payload - left;
    if (!sd_snapshot_check_deltas(bytes + info->deltas_offset, left, info, &last_index, error,
                                  error_capacity)) {
        return false;
    }
    if (last_index != info->applied_index) {
        snprintf(error, error_capacity, "a snapshot whose last entry is not its applied index");
        return false;
    }
    return true;
}

sd_status_t sd_snapshot_check(const void *data, size_t length, sd_snapshot_info_t *info_out,
                              char *error, size_t error_capacity)
{
    const uint8_t *bytes = data;
    if (length < SD_SNAPSHOT_HEADER_BYTES || memcmp(bytes, SD_SNAPSHOT_MAGIC, 3) != 0 ||
        (bytes[3] != SD_SNAPSHOT_FORMAT && bytes[3] != SD_SNAPSHOT_FORMAT_DELTAS)) {
        snprintf(error, error_capacity, "not a stockd snapshot of format %d or %d",
                 SD_SNAPSHOT_FORMAT, SD_SNAPSHOT_FORMAT_DELTAS);
        return SD_INVALID_ARGUMENT;
    }
    sd_snapshot_info_t info = {sd_be64_get(bytes + 8), sd_be64_get(bytes + 16), length, 0, 0, 0};
    uint64_t payload = sd_be64_get(bytes + 24);
    uint64_t padding = length - SD_SNAPSHOT_HEADER_BYTES - payload;
    if (payload > length - SD_SNAPSHOT_HEADER_BYTES || padding >= 8) {
        snprintf(error, error_capacity, "a snapshot %s than its header says",
                 payload > length - SD_SNAPSHOT_HEADER_BYTES ? "shorter" : "longer");
        return SD_INVALID_ARGUMENT;
    }
    const uint8_t *records = bytes + SD_SNAPSHOT_HEADER_BYTES;
    /* the library's snapshot files carry no checksum of their data */
    uLong crc = crc32_z(crc32_z(0L, Z_NULL, 0), records, (size_t)payload);
    if ((uint32_t)crc != sd_be32_get(bytes + 4)) {
        snprintf(error, error_capacity, "a snapshot whose checksum does not match: damaged");
        return SD_INVALID_ARGUMENT;
    }
    for (uint64_t i = 0; i < padding; i++) {
        if (records[payload + i] != 0) {
            snprintf(error, error_capacity, "a snapshot with bytes after its last record");
            return SD_INVALID_ARGUMENT;
        }
    }
    if (!sd_snapshot_check_body(bytes, payload, &info, error, error_capacity)) {
        return SD_INVALID_ARGUMENT;
    }
    *info_out = info;
    return SD_OK;
}

typedef struct {
    const uint8_t *bytes;
    const sd_snapshot_info_t *info;
} sd_restore_t;

static void sd_snapshot_records(void *context, sd_export_fn *emit, void *emit_context)
{
    const sd_restore_t *restore = context;
    sd_snapshot_each(restore->bytes, restore->info, emit, emit_context);
}

/* Format 2: the entries applied after the records, each with its index as when it was first
 * applied (not synced: a crash before the last leaves the store short of the snapshot's
 * applied index, and the snapshot is restored again at the next start). */
static sd_status_t sd_snapshot_apply_deltas(sd_storage_t *storage, const uint8_t *bytes,
                                            const sd_snapshot_info_t *info, uint64_t after)
{
    const uint8_t *at = bytes + info->deltas_offset + SD_SNAPSHOT_DELTAS_HEADER_BYTES;
    for (uint64_t i = 0; i < info->deltas; i++) {
        uint64_t index = sd_be64_get(at), last_seq = sd_be64_get(at + 8);
        uint32_t size = sd_be32_get(at + 16);
        sd_status_t status =
            index <= after
                ? SD_OK
                : sd_storage_apply_replicated(storage, at + SD_SNAPSHOT_DELTA_HEADER_BYTES, size,
                                              index, last_seq);
        if (status != SD_OK) {
            return status;
        }
        at += SD_SNAPSHOT_DELTA_HEADER_BYTES + size;
    }
    return SD_OK;
}

sd_status_t sd_snapshot_restore(sd_storage_t *storage, const void *data, size_t length,
                                sd_snapshot_info_t *info_out, bool *restored_out, char *error,
                                size_t error_capacity)
{
    *restored_out = false;
    sd_status_t status = sd_snapshot_check(data, length, info_out, error, error_capacity);
    if (status != SD_OK) {
        return status;
    }
    uint64_t applied = 0, base_seq = 0;
    status = sd_storage_load_applied_index(storage, &applied);
    if (status == SD_OK) {
        status = sd_storage_load_group_base(storage, &base_seq);
    }
    if (status != SD_OK) {
        snprintf(error, error_capacity, "storage could not say what it holds (%s)",
                 sd_status_name(status));
        return status;
    }
    /* held already: Raft's own last snapshot, handed back at start. A group restored from a
     * store (--restore-group) holds data at applied index 0, so a store that applied no entry
     * takes any snapshot (a new member must get the base from the group's first one) — unless
     * it is that base: a store adopted as a group base, or restored from one, holds exactly
     * the base as long as it applied no entry, and so does any snapshot at applied index 0. */
    if (applied > 0 ? info_out->applied_index <= applied
                    : info_out->applied_index == 0 && base_seq > 0) {
        return SD_OK;
    }
    /* Format 2 on a store that applied at least as far as its records: the entries after the
     * store's index take it to the snapshot's, as the log would (the store's entries are the
     * same committed ones). Replacing it with the older records first would move it back in
     * between (what History reads here, and a crash there) and redo entries it holds. */
    if (info_out->deltas > 0 && applied > 0 && applied >= info_out->deltas_base) {
        status = sd_snapshot_apply_deltas(storage, data, info_out, applied);
    } else {
        sd_restore_t restore = {data, info_out};
        status = sd_storage_replace_all(storage, sd_snapshot_records, &restore);
        if (status == SD_OK) {
            status = sd_snapshot_apply_deltas(storage, data, info_out, 0);
        }
    }
    if (status != SD_OK) {
        snprintf(error, error_capacity, "storage could not replace its state (%s)",
                 sd_status_name(status));
        return status;
    }
    *restored_out = true;
    return SD_OK;
}
