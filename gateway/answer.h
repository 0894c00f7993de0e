/* answer.h — what the gateway answers: the one table from a stockd gRPC status to an HTTP
 * status and body, and the exact bodies Wix's own SDK sends. */
#ifndef STOCKD_GW_ANSWER_H
#define STOCKD_GW_ANSWER_H

#include <stddef.h>

#include "wix.h"

#define GW_REASON_HEADER_BYTES_MAX 512
#define GW_ERROR_MESSAGE_BYTES_MAX 256 /* of the message in an error body */

typedef enum {
    GW_BODY_EMPTY_OBJECT,      /* {} */
    GW_BODY_APPLICATION_ERROR, /* {"applicationError":{"code":"DECREMENT_NOT_POSSIBLE"}} */
    GW_BODY_ERROR,             /* {"error":{"code":…,"message":…}} */
} gw_body_kind_t;

typedef struct {
    unsigned int http_status;
    gw_body_kind_t body;
    const char *error_code; /* for GW_BODY_ERROR */
    int retry_after_s;      /* > 0: send Retry-After */
} gw_answer_t;

/* The answer for a stockd status code (grpc_status_code number). */
gw_answer_t gw_answer_for_grpc(int grpc_code);

/* Writes the body for an answer into out (NUL-terminated); returns its length. message is
 * used only for GW_BODY_ERROR and must not contain internal details; it is cut, on a UTF-8
 * character boundary, to GW_ERROR_MESSAGE_BYTES_MAX bytes and to what fits in capacity, so the
 * body is always complete JSON and valid UTF-8. */
size_t gw_answer_body(const gw_answer_t *answer, gw_wix_method_t method, const char *message,
                      char *out, size_t capacity);

/* Makes text safe for an HTTP header value: printable ASCII only, truncated. */
void gw_header_safe(const char *text, char *out, size_t capacity);

#endif
