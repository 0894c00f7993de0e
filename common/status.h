/* status.h — the one status enum of stockd. Each status has a symbolic name, a default
 * message and its gRPC code, all in one X-macro list (the only gRPC mapping table). The HTTP
 * mapping lives in the gateway, also as one table. */
#ifndef STOCKD_STATUS_H
#define STOCKD_STATUS_H

/* X(name, grpc code number, default message) */
#define SD_STATUS_MAP(X)                                                                           \
    X(OK, 0, "ok")                                                                                 \
    X(CANCELLED, 1, "the call was cancelled")                                                      \
    X(UNKNOWN, 2, "unknown error")                                                                 \
    X(INVALID_ARGUMENT, 3, "invalid argument")                                                     \
    X(DEADLINE_EXCEEDED, 4, "deadline passed before the write was applied; not applied")           \
    X(NOT_FOUND, 5, "not found")                                                                   \
    X(ALREADY_EXISTS, 6, "request_id was already used with different content")                     \
    X(PERMISSION_DENIED, 7, "the caller may not do this")                                          \
    X(RESOURCE_EXHAUSTED, 8, "write queue is full; retry later")                                   \
    X(FAILED_PRECONDITION, 9, "insufficient stock")                                                \
    X(ABORTED, 10, "version mismatch (compare-and-set failed)")                                    \
    X(OUT_OF_RANGE, 11, "stock level would leave the range +-10^15")                               \
    X(UNIMPLEMENTED, 12, "method not implemented")                                                 \
    X(INTERNAL, 13, "internal error")                                                              \
    X(UNAVAILABLE, 14, "service unavailable")                                                      \
    X(UNAUTHENTICATED, 16, "no valid credentials")

typedef enum {
#define SD_STATUS_ENUM(name, code, message) SD_##name,
    SD_STATUS_MAP(SD_STATUS_ENUM)
#undef SD_STATUS_ENUM
} sd_status_t;

/* How many statuses there are, counted from the list itself, so arrays indexed by status
 * (metrics) grow with it. A constant rather than an enumerator, so that switches over
 * sd_status_t stay exhaustive without a case for it. */
#define SD_STATUS_COUNT_ONE(name, code, message) +1
#define SD_STATUS_COUNT (0 SD_STATUS_MAP(SD_STATUS_COUNT_ONE))

/* "INVALID_ARGUMENT" etc. — for logs, metrics labels and tests. */
const char *sd_status_name(sd_status_t status);
/* The default human-readable message. */
const char *sd_status_message(sd_status_t status);
/* The gRPC status code number (grpc_status_code values). */
int sd_status_grpc_code(sd_status_t status);
/* The sd status for a gRPC code number; codes stockd never sends map to SD_UNKNOWN. */
sd_status_t sd_status_from_grpc_code(int code);

#endif
