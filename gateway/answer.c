/* answer.c — see answer.h. */
#include "answer.h"

#include <stdio.h>
#include <string.h>

#include "util.h"

/* The one gRPC → HTTP table (docs/api.md §4). Codes not listed answer 500. */
static const struct {
    int grpc_code;
    gw_answer_t answer;
} gw_grpc_answers[] = {
    {0, {200, GW_BODY_EMPTY_OBJECT, NULL, 0}},
    {9, {428, GW_BODY_APPLICATION_ERROR, NULL, 0}},  /* FAILED_PRECONDITION */
    {3, {428, GW_BODY_APPLICATION_ERROR, NULL, 0}},  /* INVALID_ARGUMENT */
    {11, {428, GW_BODY_APPLICATION_ERROR, NULL, 0}}, /* OUT_OF_RANGE */
    {6, {428, GW_BODY_APPLICATION_ERROR, NULL, 0}},  /* ALREADY_EXISTS */
    {14, {503, GW_BODY_ERROR, "UNAVAILABLE", 1}},    /* UNAVAILABLE */
    {8, {503, GW_BODY_ERROR, "UNAVAILABLE", 1}},     /* RESOURCE_EXHAUSTED */
    {4, {504, GW_BODY_ERROR, "DEADLINE_EXCEEDED", 0}},
};

gw_answer_t gw_answer_for_grpc(int grpc_code)
{
    for (size_t i = 0; i < sizeof(gw_grpc_answers) / sizeof(gw_grpc_answers[0]); i++) {
        if (gw_grpc_answers[i].grpc_code == grpc_code) {
            return gw_grpc_answers[i].answer;
        }
    }
    gw_answer_t internal = {500, GW_BODY_ERROR, "INTERNAL", 0};
    return internal;
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
    case GW_BODY_ERROR: {
        char escaped[512];
        util_json_escape(message ? message : "", 256, escaped, sizeof(escaped));
        n = snprintf(out, capacity, "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}",
                     answer->error_code ? answer->error_code : "INTERNAL", escaped);
        break;
    }
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
