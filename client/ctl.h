/* ctl.h — what stockctl's command files share: the exit codes, the options every command reads,
 * and the shape of a command. */
#ifndef STOCKCLIENT_CTL_H
#define STOCKCLIENT_CTL_H

#include <stdbool.h>
#include <stdint.h>

#include "status.h"
#include "stockclient.h"

enum {
    EXIT_DONE = 0,
    EXIT_REFUSED = 1,     /* insufficient stock, version or request-id conflict */
    EXIT_INVALID = 2,     /* invalid input */
    EXIT_UNREACHABLE = 3, /* stockd unreachable, too slow or overloaded */
    EXIT_OTHER = 4,
    EXIT_NEVER_SET = 5, /* get: the item was never set (its level is shown, version 0) */
};

/* The exit code for a gRPC status code (the one table of that mapping), written in the
 * contract's status names; a status added to status.h without a case here fails to compile
 * (-Wswitch, no default). */
static inline int ctl_exit_for(int grpc_code)
{
    sd_status_t status = sd_status_from_grpc_code(grpc_code);
    switch (status) {
    case SD_OK:
        return EXIT_DONE;
    case SD_FAILED_PRECONDITION:
    case SD_ABORTED:
    case SD_ALREADY_EXISTS:
        return EXIT_REFUSED;
    case SD_INVALID_ARGUMENT:
    case SD_OUT_OF_RANGE:
        return EXIT_INVALID;
    case SD_UNAVAILABLE:
    case SD_DEADLINE_EXCEEDED:
    case SD_RESOURCE_EXHAUSTED:
        return EXIT_UNREACHABLE;
    case SD_CANCELLED:
    case SD_UNKNOWN:
    case SD_NOT_FOUND:
    case SD_UNIMPLEMENTED:
    case SD_INTERNAL:
        return EXIT_OTHER;
    }
    return EXIT_OTHER;
}

/* stockctl's options (one declarative table in stockctl.c fills it). Strings point into argv,
 * the environment or the table's defaults; NULL = not given (for options without a default). */
typedef struct {
    const char *stockd;
    const char *tenant;
    const char *location;
    bool default_location; /* list: only the default location */
    const char *variant;
    int64_t deadline_ms;
    bool json;
    bool restrict_inventory;
    const char *request_id;
    const char *order_id;
    const char *app;
    int64_t page_size;
    const char *after_seq;   /* history/watch: start after this seq; NULL = not given */
    const char *from_seq;    /* history/watch: start at this seq; NULL = not given */
    bool from_start;         /* watch: replay the whole ledger first */
    const char *tracked;     /* set: "true" or "false"; NULL = keep the current value */
    const char *floor_value; /* set: an integer; NULL = keep the current value */
    int64_t count;
    int64_t chunk_rows;
    /* wix-sign */
    const char *key;
    const char *app_id;
    const char *instance_id;
    const char *alg;
    int64_t ttl_s;
} ctl_config_t;

/* One command: args[0..count) are its positional arguments; client is NULL for a command that
 * does not talk to stockd. Returns an exit code. */
typedef int ctl_command_fn(const ctl_config_t *config, sc_client_t *client, char **args, int count);

#endif
