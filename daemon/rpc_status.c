/* rpc_status.c — see rpc_status.h. */
#include "rpc_status.h"
#include "alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "google/protobuf/any.pb-c.h"
#include "google/rpc/error_details.pb-c.h"
#include "google/rpc/status.pb-c.h"
#include "util.h"

void sd_error_init(sd_error_t *error)
{
    memset(error, 0, sizeof(*error));
    error->status = SD_OK;
}

static void sd_violations_free(sd_violation_t *violations, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        free(violations[i].first);
        free(violations[i].second);
        free(violations[i].third);
    }
    free(violations);
}

void sd_error_free(sd_error_t *error)
{
    sd_violations_free(error->field_violations, error->field_violations_count);
    sd_violations_free(error->precondition_violations, error->precondition_violations_count);
    sd_error_init(error);
}

void sd_error_set(sd_error_t *error, sd_status_t status, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    vsnprintf(error->message, sizeof(error->message), format, args);
    va_end(args);
    util_utf8_repair(error->message); /* a quoted value or the limit may have cut a character */
    error->status = status;
}

static char *sd_strdup_bounded(const char *text)
{
    size_t length = strnlen(text, SD_ERROR_TEXT_BYTES_MAX);
    char *copy = sd_malloc(length + 1);
    if (copy != NULL) {
        memcpy(copy, text, length);
        copy[length] = '\0';
        util_utf8_repair(copy);
    }
    return copy;
}

/* Appends a violation to a growable array; silently drops it past the cap or when memory is
 * short — the status and message still tell the client what happened. */
static sd_violation_t *sd_violation_push(sd_violation_t **array, size_t *count, size_t *capacity)
{
    if (*count >= SD_ERROR_VIOLATIONS_MAX) {
        return NULL;
    }
    if (*count == *capacity) {
        size_t grown = *capacity ? *capacity * 2 : 8;
        sd_violation_t *bigger = sd_realloc(*array, grown * sizeof(*bigger));
        if (bigger == NULL) {
            return NULL;
        }
        *array = bigger;
        *capacity = grown;
    }
    sd_violation_t *violation = &(*array)[(*count)++];
    memset(violation, 0, sizeof(*violation));
    return violation;
}

void sd_error_add_field(sd_error_t *error, const char *field, const char *format, ...)
{
    char description[SD_ERROR_TEXT_BYTES_MAX];
    va_list args;
    va_start(args, format);
    vsnprintf(description, sizeof(description), format, args);
    va_end(args);
    if (error->status != SD_INVALID_ARGUMENT) {
        sd_error_set(error, SD_INVALID_ARGUMENT, "%s: %s", field, description);
    }
    sd_violation_t *violation =
        sd_violation_push(&error->field_violations, &error->field_violations_count,
                          &error->violations_capacity_field);
    if (violation != NULL) {
        violation->first = sd_strdup_bounded(field);
        violation->second = sd_strdup_bounded(description);
    }
}

void sd_error_add_precondition(sd_error_t *error, const char *type, const char *subject,
                               const char *format, ...)
{
    char description[SD_ERROR_TEXT_BYTES_MAX];
    va_list args;
    va_start(args, format);
    vsnprintf(description, sizeof(description), format, args);
    va_end(args);
    sd_violation_t *violation =
        sd_violation_push(&error->precondition_violations, &error->precondition_violations_count,
                          &error->violations_capacity_precondition);
    if (violation != NULL) {
        violation->first = sd_strdup_bounded(type);
        violation->second = sd_strdup_bounded(subject);
        violation->third = sd_strdup_bounded(description);
    }
}

/* Packs a message into a freshly allocated Any. */
static bool sd_any_pack(Google__Protobuf__Any *any, const char *type_url,
                        const ProtobufCMessage *message)
{
    size_t length = protobuf_c_message_get_packed_size(message);
    uint8_t *bytes = sd_malloc(length ? length : 1);
    if (bytes == NULL) {
        return false;
    }
    protobuf_c_message_pack(message, bytes);
    any->type_url = (char *)type_url;
    any->value.data = bytes;
    any->value.len = length;
    return true;
}

/* How many of the violations fit in budget bytes once packed (each costs its own packed size
 * and a few bytes of framing). */
#define SD_VIOLATION_FRAMING_BYTES 4
static size_t sd_violations_fitting(const ProtobufCMessage *const *violations, size_t count,
                                    size_t *budget)
{
    size_t fitting = 0;
    for (; fitting < count; fitting++) {
        size_t cost =
            protobuf_c_message_get_packed_size(violations[fitting]) + SD_VIOLATION_FRAMING_BYTES;
        if (cost > *budget) {
            break;
        }
        *budget -= cost;
    }
    return fitting;
}

static bool sd_pack_bad_request(const sd_error_t *error, Google__Protobuf__Any *any, size_t *budget)
{
    size_t count = error->field_violations_count;
    Google__Rpc__BadRequest request = GOOGLE__RPC__BAD_REQUEST__INIT;
    Google__Rpc__BadRequest__FieldViolation *items = sd_calloc(count, sizeof(*items));
    Google__Rpc__BadRequest__FieldViolation **pointers = sd_calloc(count, sizeof(*pointers));
    bool ok = items != NULL && pointers != NULL;
    for (size_t i = 0; ok && i < count; i++) {
        google__rpc__bad_request__field_violation__init(&items[i]);
        items[i].field = error->field_violations[i].first ? error->field_violations[i].first : "";
        items[i].description =
            error->field_violations[i].second ? error->field_violations[i].second : "";
        pointers[i] = &items[i];
    }
    request.n_field_violations =
        ok ? sd_violations_fitting((const ProtobufCMessage *const *)pointers, count, budget) : 0;
    request.field_violations = pointers;
    ok = ok && sd_any_pack(any, "type.googleapis.com/google.rpc.BadRequest", &request.base);
    free(items);
    free(pointers);
    return ok;
}

static bool sd_pack_precondition(const sd_error_t *error, Google__Protobuf__Any *any,
                                 size_t *budget)
{
    size_t count = error->precondition_violations_count;
    Google__Rpc__PreconditionFailure failure = GOOGLE__RPC__PRECONDITION_FAILURE__INIT;
    Google__Rpc__PreconditionFailure__Violation *items = sd_calloc(count, sizeof(*items));
    Google__Rpc__PreconditionFailure__Violation **pointers = sd_calloc(count, sizeof(*pointers));
    bool ok = items != NULL && pointers != NULL;
    for (size_t i = 0; ok && i < count; i++) {
        const sd_violation_t *violation = &error->precondition_violations[i];
        google__rpc__precondition_failure__violation__init(&items[i]);
        items[i].type = violation->first ? violation->first : "";
        items[i].subject = violation->second ? violation->second : "";
        items[i].description = violation->third ? violation->third : "";
        pointers[i] = &items[i];
    }
    failure.n_violations =
        ok ? sd_violations_fitting((const ProtobufCMessage *const *)pointers, count, budget) : 0;
    failure.violations = pointers;
    ok =
        ok && sd_any_pack(any, "type.googleapis.com/google.rpc.PreconditionFailure", &failure.base);
    free(items);
    free(pointers);
    return ok;
}

bool sd_error_pack_status(const sd_error_t *error, uint8_t **bytes_out, size_t *length_out)
{
    Google__Rpc__Status status = GOOGLE__RPC__STATUS__INIT;
    Google__Protobuf__Any details[2];
    Google__Protobuf__Any *detail_pointers[2];
    size_t details_count = 0;
    bool ok = true;
    status.code = sd_status_grpc_code(error->status);
    status.message =
        (char *)(error->message[0] ? error->message : sd_status_message(error->status));
    /* what the message, the type URLs and the framing leave of the bound */
    size_t budget = SD_STATUS_DETAILS_BYTES_MAX - SD_ERROR_MESSAGE_BYTES_MAX - 2 * 64;
    if (error->field_violations_count > 0) {
        google__protobuf__any__init(&details[details_count]);
        ok = sd_pack_bad_request(error, &details[details_count], &budget);
        detail_pointers[details_count] = &details[details_count];
        details_count += ok ? 1 : 0;
    }
    if (ok && error->precondition_violations_count > 0) {
        google__protobuf__any__init(&details[details_count]);
        ok = sd_pack_precondition(error, &details[details_count], &budget);
        detail_pointers[details_count] = &details[details_count];
        details_count += ok ? 1 : 0;
    }
    status.n_details = details_count;
    status.details = detail_pointers;
    size_t length = google__rpc__status__get_packed_size(&status);
    uint8_t *bytes = ok ? sd_malloc(length ? length : 1) : NULL;
    if (bytes != NULL) {
        google__rpc__status__pack(&status, bytes);
    }
    for (size_t i = 0; i < details_count; i++) {
        free(details[i].value.data);
    }
    *bytes_out = bytes;
    *length_out = length;
    return bytes != NULL;
}
