/* handlers.h — what the write handlers (handlers.c) share with the Batch handler
 * (batch_rpc.c): how each write kind is unpacked, validated and turned into a writer job. */
#ifndef STOCKD_HANDLERS_H
#define STOCKD_HANDLERS_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>

#include "batch.h"
#include "rpc_status.h"
#include "server.h"
#include "writer.h"

#define SD_WRITE_KINDS 3

typedef struct {
    const ProtobufCMessageDescriptor *descriptor;
    bool (*validate)(const ProtobufCMessage *message, sd_error_t *error);
    sd_write_request_t (*to_request)(const ProtobufCMessage *message);
} sd_write_method_t;

/* Indexed by sd_write_kind_t. */
extern const sd_write_method_t sd_write_methods[SD_WRITE_KINDS];

/* Unpacks a request of `descriptor` (refusing NUL bytes in strings, naming the field); on
 * failure the call is answered and NULL returned. The message is kept by the call and freed
 * with it. */
ProtobufCMessage *sd_unpack(sd_call_t *call, const ProtobufCMessageDescriptor *descriptor,
                            const uint8_t *bytes, size_t length);

/* Fills job from a validated message of `kind`: the request (views into message), the
 * caller's identity, the call's deadline, an empty result. */
void sd_write_job_prepare(sd_call_t *call, const ProtobufCMessage *message, sd_write_kind_t kind,
                          sd_write_job_t *job);

/* What a write refused by sd_writer_submit is answered (RESOURCE_EXHAUSTED, UNAVAILABLE). */
const char *sd_write_refusal_message(sd_status_t status);

/* Replication: true after refusing the call with UNAVAILABLE and `message` (the stockd-leader
 * hint goes with it) when this stockd is a replica that does not lead; false otherwise. */
bool sd_refuse_off_leader(sd_call_t *call, const char *message);

/* Inventory/Batch (batch_rpc.c). */
void sd_handle_batch(sd_call_t *call, const uint8_t *bytes, size_t length);
/* stockd.v1.Admin/ClusterStatus, /TransferLeadership, /AddMember, /RemoveMember
 * (cluster_rpc.c). */
void sd_handle_cluster_status(sd_call_t *call, const uint8_t *bytes, size_t length);
void sd_handle_transfer_leadership(sd_call_t *call, const uint8_t *bytes, size_t length);
void sd_handle_add_member(sd_call_t *call, const uint8_t *bytes, size_t length);
void sd_handle_remove_member(sd_call_t *call, const uint8_t *bytes, size_t length);

#endif
