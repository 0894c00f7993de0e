/* wire.c — see wire.h. */
#include "wire.h"

#include <stdio.h>
#include <string.h>

#define SD_WIRE_FIELDS_MAX 32 /* repeated-field counters per message level */

static bool sd_wire_varint(const uint8_t *data, size_t length, size_t *offset, uint64_t *value)
{
    *value = 0;
    for (int shift = 0; shift < 64 && *offset < length; shift += 7) {
        uint8_t byte = data[(*offset)++];
        *value |= (uint64_t)(byte & 0x7F) << shift;
        if ((byte & 0x80) == 0) {
            return true;
        }
    }
    return false;
}

/* Skips a value of wire type `type`; false when malformed. */
static bool sd_wire_skip(const uint8_t *data, size_t length, size_t *offset, uint32_t type)
{
    uint64_t value = 0;
    switch (type) {
    case 0:
        return sd_wire_varint(data, length, offset, &value);
    case 1:
        *offset += 8;
        return *offset <= length;
    case 5:
        *offset += 4;
        return *offset <= length;
    case 2:
        if (!sd_wire_varint(data, length, offset, &value) || value > length - *offset) {
            return false;
        }
        *offset += (size_t)value;
        return true;
    default:
        return false;
    }
}

/* Counts occurrences per field so repeated fields get an index in the path. */
typedef struct {
    uint32_t numbers[SD_WIRE_FIELDS_MAX];
    unsigned counts[SD_WIRE_FIELDS_MAX];
    size_t used;
} sd_wire_counts_t;

static unsigned sd_wire_next_index(sd_wire_counts_t *counts, uint32_t number)
{
    for (size_t i = 0; i < counts->used; i++) {
        if (counts->numbers[i] == number) {
            return counts->counts[i]++;
        }
    }
    if (counts->used < SD_WIRE_FIELDS_MAX) {
        counts->numbers[counts->used] = number;
        counts->counts[counts->used++] = 1;
    }
    return 0;
}

/* Writes the path of a field with a NUL into field_out: "name", "name[i]", with the path
 * below it (already in field_out) after a dot. Only on failure: a clean message, the common
 * case, formats nothing. */
static void sd_wire_name(const ProtobufCFieldDescriptor *field, unsigned index, bool below,
                         char *field_out, size_t field_capacity)
{
    char inner[160];
    snprintf(inner, sizeof(inner), "%s", below ? field_out : "");
    char segment[96];
    if (field->label == PROTOBUF_C_LABEL_REPEATED) {
        snprintf(segment, sizeof(segment), "%s[%u]", field->name, index);
    } else {
        snprintf(segment, sizeof(segment), "%s", field->name);
    }
    snprintf(field_out, field_capacity, "%s%s%s", segment, below ? "." : "", inner);
}

static bool sd_wire_walk(const ProtobufCMessageDescriptor *descriptor, const uint8_t *data,
                         size_t length, int depth, char *field_out, size_t field_capacity)
{
    sd_wire_counts_t counts = {{0}, {0}, 0};
    size_t offset = 0;
    while (offset < length) {
        uint64_t key = 0;
        if (!sd_wire_varint(data, length, &offset, &key)) {
            return true;
        }
        uint32_t number = (uint32_t)(key >> 3), type = (uint32_t)(key & 7);
        const ProtobufCFieldDescriptor *field =
            protobuf_c_message_descriptor_get_field(descriptor, number);
        size_t start = offset;
        if (!sd_wire_skip(data, length, &offset, type)) {
            return true;
        }
        if (field == NULL || type != 2 ||
            (field->type != PROTOBUF_C_TYPE_STRING && field->type != PROTOBUF_C_TYPE_MESSAGE)) {
            continue;
        }
        uint64_t size = 0;
        sd_wire_varint(data, length, &start, &size); /* cannot fail: skipped above */
        unsigned index =
            field->label == PROTOBUF_C_LABEL_REPEATED ? sd_wire_next_index(&counts, number) : 0;
        if (field->type == PROTOBUF_C_TYPE_STRING && memchr(data + start, 0, (size_t)size)) {
            sd_wire_name(field, index, false, field_out, field_capacity);
            return false;
        }
        if (field->type == PROTOBUF_C_TYPE_MESSAGE && depth < SD_WIRE_DEPTH_MAX &&
            !sd_wire_walk(field->descriptor, data + start, (size_t)size, depth + 1, field_out,
                          field_capacity)) {
            sd_wire_name(field, index, true, field_out, field_capacity);
            return false;
        }
    }
    return true;
}

bool sd_wire_strings_clean(const ProtobufCMessageDescriptor *descriptor, const uint8_t *data,
                           size_t length, char *field_out, size_t field_capacity)
{
    /* no zero byte at all: no string can hold one (most requests; proto3 omits defaults) */
    if (length == 0 || memchr(data, 0, length) == NULL) {
        return true;
    }
    return sd_wire_walk(descriptor, data, length, 0, field_out, field_capacity);
}
