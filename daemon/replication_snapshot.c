/* replication_snapshot.c — see replication_snapshot.h. */
#include "replication_snapshot.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "keys.h"

#define SD_SNAPSHOT_MAGIC "SDS"
#define SD_SNAPSHOT_FORMAT 1
#define SD_SNAPSHOT_RECORD_HEADER_BYTES 9 /* cf u8, key length u32, value length u32 */

/* ---- taking ---- */

typedef struct {
    struct raft_buffer *buffers;
    unsigned count, capacity;
    size_t chunk_capacity; /* of the last buffer */
    uint64_t records, payload;
    bool out_of_memory;
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

static bool sd_snapshot_add(void *context, sd_cf_t cf, const uint8_t *key, size_t key_length,
                            const uint8_t *value, size_t value_length)
{
    sd_snapshot_builder_t *builder = context;
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
    builder->buffers[builder->count - 1].len += need;
    builder->records++;
    builder->payload += need;
    return true;
}

static void sd_snapshot_builder_free(sd_snapshot_builder_t *builder)
{
    for (unsigned i = 0; i < builder->count; i++) {
        raft_free(builder->buffers[i].base);
    }
    raft_free(builder->buffers);
}

sd_status_t sd_snapshot_take(sd_storage_t *storage, struct raft_buffer **buffers_out,
                             unsigned *count_out, sd_snapshot_info_t *info_out)
{
    sd_snapshot_builder_t builder = {0};
    uint8_t *header = sd_snapshot_room(&builder, SD_SNAPSHOT_HEADER_BYTES);
    if (header == NULL) {
        sd_snapshot_builder_free(&builder);
        return SD_RESOURCE_EXHAUSTED;
    }
    builder.buffers[0].len = SD_SNAPSHOT_HEADER_BYTES;
    uint64_t applied = 0;
    sd_status_t status = sd_storage_export(storage, sd_snapshot_add, &builder, &applied);
    if (status != SD_OK) {
        sd_snapshot_builder_free(&builder);
        return builder.out_of_memory ? SD_RESOURCE_EXHAUSTED : status;
    }
    header = builder.buffers[0].base; /* the first buffer never moves */
    memset(header, 0, SD_SNAPSHOT_HEADER_BYTES);
    memcpy(header, SD_SNAPSHOT_MAGIC, 3);
    header[3] = SD_SNAPSHOT_FORMAT;
    uLong crc = crc32_z(0L, Z_NULL, 0);
    crc = crc32_z(crc, (const Bytef *)header + SD_SNAPSHOT_HEADER_BYTES,
                  builder.buffers[0].len - SD_SNAPSHOT_HEADER_BYTES);
    for (unsigned i = 1; i < builder.count; i++) {
        crc = crc32_z(crc, builder.buffers[i].base, builder.buffers[i].len);
    }
    sd_be32_put(header + 4, (uint32_t)crc);
    sd_be64_put(header + 8, applied);
    sd_be64_put(header + 16, builder.records);
    sd_be64_put(header + 24, builder.payload);
    /* the library's files want 8-byte multiples; the spare room of the last buffer holds it */
    uint64_t total = SD_SNAPSHOT_HEADER_BYTES + builder.payload;
    size_t padding = (size_t)((8 - total % 8) % 8);
    struct raft_buffer *last = &builder.buffers[builder.count - 1];
    memset((uint8_t *)last->base + last->len, 0, padding);
    last->len += padding;
    *buffers_out = builder.buffers;
    *count_out = builder.count;
    *info_out = (sd_snapshot_info_t){applied, builder.records, total + padding};
    return SD_OK;
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
 * header says, none after them. */
static bool sd_snapshot_check_records(const uint8_t *at, uint64_t payload, uint64_t records,
                                      char *error, size_t error_capacity)
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
    if (left != 0) {
        snprintf(error, error_capacity, "a snapshot with bytes after its last record");
        return false;
    }
    return true;
}

sd_status_t sd_snapshot_check(const void *data, size_t length, sd_snapshot_info_t *info_out,
                              char *error, size_t error_capacity)
{
    const uint8_t *bytes = data;
    if (length < SD_SNAPSHOT_HEADER_BYTES || memcmp(bytes, SD_SNAPSHOT_MAGIC, 3) != 0 ||
        bytes[3] != SD_SNAPSHOT_FORMAT) {
        snprintf(error, error_capacity, "not a stockd snapshot of format %d", SD_SNAPSHOT_FORMAT);
        return SD_INVALID_ARGUMENT;
    }
    sd_snapshot_info_t info = {sd_be64_get(bytes + 8), sd_be64_get(bytes + 16), length};
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
    if (!sd_snapshot_check_records(records, payload, info.records, error, error_capacity)) {
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
    sd_restore_t restore = {data, info_out};
    status = sd_storage_replace_all(storage, sd_snapshot_records, &restore);
    if (status != SD_OK) {
        snprintf(error, error_capacity, "storage could not replace its state (%s)",
                 sd_status_name(status));
        return status;
    }
    *restored_out = true;
    return SD_OK;
}
