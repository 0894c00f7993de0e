/* rpc_status.h — an error being built for a reply: status, message and the google.rpc
 * details (BadRequest field violations, PreconditionFailure violations) that travel in the
 * grpc-status-details-bin trailer as a serialized google.rpc.Status. */
#ifndef STOCKD_RPC_STATUS_H
#define STOCKD_RPC_STATUS_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define SD_ERROR_MESSAGE_BYTES_MAX 512
/* A violation's field, subject or description: room for the JSON subject of the largest item
 * key (every id byte escaped). */
#define SD_ERROR_TEXT_BYTES_MAX 4096
/* The serialized google.rpc.Status in grpc-status-details-bin. gRPC clients refuse trailing
 * metadata larger than 8 KiB by default (the whole call then fails with RESOURCE_EXHAUSTED
 * and the real status is lost), so the details carry the first violations that fit; the
 * message says how many more there are. */
#define SD_STATUS_DETAILS_BYTES_MAX 4096
/* Violations are bounded so an error can never grow without limit; a request has at most
 * SD_LINES_MAX lines and each line yields at most a few violations. */
#define SD_ERROR_VIOLATIONS_MAX 16384

typedef struct {
    char *first;  /* field (BadRequest) or type (PreconditionFailure) */
    char *second; /* description (BadRequest) or subject (PreconditionFailure) */
    char *third;  /* description (PreconditionFailure) */
} sd_violation_t;

typedef struct {
    sd_status_t status;
    char message[SD_ERROR_MESSAGE_BYTES_MAX];
    sd_violation_t *field_violations; /* owned */
    size_t field_violations_count;
    sd_violation_t *precondition_violations; /* owned */
    size_t precondition_violations_count;
    size_t violations_capacity_field, violations_capacity_precondition;
} sd_error_t;

void sd_error_init(sd_error_t *error);
/* Frees the violations; the struct can be reused after sd_error_init. */
void sd_error_free(sd_error_t *error);

/* Sets status and message (printf-style). */
void sd_error_set(sd_error_t *error, sd_status_t status, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

/* Adds a google.rpc.BadRequest field violation; sets status INVALID_ARGUMENT and, for the
 * first violation, the message "<field>: <description>". */
void sd_error_add_field(sd_error_t *error, const char *field, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

/* Adds a google.rpc.PreconditionFailure violation (does not change status or message). */
void sd_error_add_precondition(sd_error_t *error, const char *type, const char *subject,
                               const char *format, ...) __attribute__((format(printf, 4, 5)));

/* Serializes google.rpc.Status{code, message, details} into a malloc'd buffer owned by the
 * caller. Returns false on allocation failure. */
bool sd_error_pack_status(const sd_error_t *error, uint8_t **bytes_out, size_t *length_out);

#endif
