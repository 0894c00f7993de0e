/* answer.c — see answer.h. */
#include "answer.h"

#include <stdio.h>
#include <string.h>

#include "status.h"
#include "util.h"

/* The one gRPC → HTTP table (docs/api.md §4), in the contract's status names; a status added
 * to status.h without a case here fails to compile (-Wswitch, no default). */
gw_answer_t gw_answer_for_grpc(int grpc_code)
{
    static const gw_answer_t ok = {200, GW_BODY_EMPTY_OBJECT, NULL, 0};
    static const gw_answer_t refused = {428, GW_BODY_APPLICATION_ERROR, NULL, 0};
    static const gw_answer_t unavailable = {503, GW_BODY_ERROR, "UNAVAILABLE", 1};
    static const gw_answer_t deadline = {504, GW_BODY_ERROR, "DEADLINE_EXCEEDED", 0};
    static const gw_answer_t internal = {500, GW_BODY_ERROR, "INTERNAL", 0};
    switch (sd_status_from_grpc_code(grpc_code)) {
    case SD_OK:
        return ok;
    case SD_FAILED_PRECONDITION:
    case SD_INVALID_ARGUMENT:
    case SD_OUT_OF_RANGE:
    case SD_ALREADY_EXISTS:
        return refused;
    case SD_UNAVAILABLE:
    case SD_RESOURCE_EXHAUSTED:
        return unavailable;
    case SD_DEADLINE_EXCEEDED:
        return deadline;
    case SD_CANCELLED:
    case SD_UNKNOWN:
    case SD_NOT_FOUND:
    case SD_ABORTED:
    case SD_UNIMPLEMENTED:
    case SD_INTERNAL:
    /* stockd refused the gateway's own identity: a deployment mistake, not Wix's */
    case SD_PERMISSION_DENIED:
    case SD_UNAUTHENTICATED:
        return internal;
    }
    return internal;
}

/* The error body {"error":{"code":…,"message":…}}: the message is cut to what fits (whole
 * UTF-8 characters; bytes that are not UTF-8 are dropped), so the body is always complete JSON;
 * when not even the code fits, the body is empty. */
static size_t gw_error_body(const gw_answer_t *answer, const char *message, char *out,
                            size_t capacity)
{
    static const char format[] = "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}";
    const char *code = answer->error_code ? answer->error_code : "INTERNAL";
    size_t frame = sizeof(format) - 1 - 4 + strlen(code); /* the body without the message */
    char clean[GW_ERROR_MESSAGE_BYTES_MAX + 1];
    snprintf(clean, sizeof(clean), "%s", message ? message : "");
    util_utf8_repair(clean); /* drops a character cut by the byte limit, and any stray bytes */
    char escaped[GW_ERROR_MESSAGE_BYTES_MAX * 6 + 1]; /* each byte escaped as \u00XX at most */
    size_t escaped_capacity = capacity > frame ? capacity - frame : 0;
    if (escaped_capacity == 0) {
        if (capacity > 0) {
            out[0] = '\0';
        }
        return 0;
    }
    /* util_json_escape stops before an escape or a character that does not fit */
    util_json_escape(clean, sizeof(clean), escaped,
                     escaped_capacity < sizeof(escaped) ? escaped_capacity : sizeof(escaped));
    int n = snprintf(out, capacity, format, code, escaped);
    return n < 0 ? 0 : (size_t)n;
}

size_t gw_answer_body(const gw_answer_t *answer, gw_wix_method_t method, const char *message,
                      char *out, size_t capacity)
{
    int n = 0;
    switch (answer->body) {
    case GW_BODY_EMPTY_OBJECT:
        n = snprintf(out, capacity, "{}");
        break;
    case GW_BODY_APPLICATION_ERROR:
        n = snprintf(out, capacity, "{\"applicationError\":{\"code\":\"%s\"}}",
                     method == GW_WIX_DECREMENT ? "DECREMENT_NOT_POSSIBLE"
                                                : "INCREMENT_NOT_POSSIBLE");
        break;
    case GW_BODY_ERROR:
        return gw_error_body(answer, message, out, capacity);
    }
    return n < 0 ? 0 : (size_t)n < capacity ? (size_t)n : capacity - 1;
}

void gw_header_safe(const char *text, char *out, size_t capacity)
{
    size_t used = 0;
    for (const char *c = text; *c != '\0' && used + 1 < capacity; c++) {
        unsigned char byte = (unsigned char)*c;
        out[used++] = byte >= 0x20 && byte < 0x7F ? (char)byte : '?';
    }
    out[used] = '\0';
}
