/* wire.h — a check protobuf-c cannot make: string fields containing a NUL byte.
 *
 * protobuf-c hands strings to C as NUL-terminated, so "abc\0x" would silently become "abc" —
 * a different item key than the client sent. The contract says strings carry no NUL, so such
 * a request must be refused, naming the field. This walks the serialized message with the
 * generated descriptors, which know which fields are strings and which are sub-messages. */
#ifndef STOCKD_WIRE_H
#define STOCKD_WIRE_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SD_WIRE_DEPTH_MAX 8

/* Returns true when no string field (at any depth) of the message holds a NUL byte. On false,
 * field_out names the first offending field ("lines[2].item.variant"). Malformed input
 * returns true: protobuf-c's own unpack reports it. */
bool sd_wire_strings_clean(const ProtobufCMessageDescriptor *descriptor, const uint8_t *data,
                           size_t length, char *field_out, size_t field_capacity);

#endif
