/* ctl.h — what stockctl's command files share: the exit codes, the options every command reads,
 * and the shape of a command. */
#ifndef STOCKCLIENT_CTL_H
#define STOCKCLIENT_CTL_H

#include <stdbool.h>
#include <stdint.h>

#include <grpc/status.h>

#include "stockclient.h"

enum {
    EXIT_DONE = 0,
    EXIT_REFUSED = 1,     /* insufficient stock, version or request-id conflict, no such backup */
    EXIT_INVALID = 2,     /* invalid input */
    EXIT_UNREACHABLE = 3, /* stockd unreachable, too slow or overloaded */
    EXIT_OTHER = 4,
    EXIT_NEVER_SET = 5, /* get: the item was never set (its level is shown, version 0) */
    EXIT_DENIED = 6,    /* credentials missing or refused, or the identity may not do this */
};

/* The exit code for a gRPC status code (the one table of that mapping). It switches over the
 * gRPC core's own enum rather than stockd's status list, so every code a client can meet
 * (UNAUTHENTICATED, PERMISSION_DENIED, DATA_LOSS) has its row, and a code without a case
 * fails to compile (-Wswitch, no default). */
static inline int ctl_exit_for(int grpc_code)
{
    switch ((grpc_status_code)grpc_code) {
    case GRPC_STATUS_OK:
        return EXIT_DONE;
    case GRPC_STATUS_FAILED_PRECONDITION:
    case GRPC_STATUS_ABORTED:
    case GRPC_STATUS_ALREADY_EXISTS:
    case GRPC_STATUS_NOT_FOUND: /* backup remove: no checkpoint of that name */
        return EXIT_REFUSED;
    case GRPC_STATUS_INVALID_ARGUMENT:
    case GRPC_STATUS_OUT_OF_RANGE:
        return EXIT_INVALID;
    case GRPC_STATUS_UNAVAILABLE:
    case GRPC_STATUS_DEADLINE_EXCEEDED:
    case GRPC_STATUS_RESOURCE_EXHAUSTED:
        return EXIT_UNREACHABLE;
    case GRPC_STATUS_UNAUTHENTICATED:
    case GRPC_STATUS_PERMISSION_DENIED:
        return EXIT_DENIED;
    case GRPC_STATUS_CANCELLED:
    case GRPC_STATUS_UNKNOWN:
    case GRPC_STATUS_UNIMPLEMENTED:
    case GRPC_STATUS_INTERNAL:
    case GRPC_STATUS_DATA_LOSS:
    case GRPC_STATUS__DO_NOT_USE:
        return EXIT_OTHER;
    }
    return EXIT_OTHER;
}

/* stockctl's options (one declarative table in stockctl.c fills it). Strings point into argv,
 * the environment or the table's defaults; NULL = not given (for options without a default). */
typedef struct {
    const char *stockd;
    const char *admin; /* where stockd serves stockd.v1.Admin (its --admin-listen) */
    /* TLS and the bearer token (docs/api.md §6); "" = not given */
    const char *tls_ca;
    bool insecure; /* send the token in plaintext off loopback */
    const char *tls_cert;
    const char *tls_key;
    const char *token;
    const char *token_file;
    /* Set by the dispatcher, not by the options: the address the command's client talks to,
     * and whether it is the admin listener (for error hints). */
    const char *target;
    bool target_admin;
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
