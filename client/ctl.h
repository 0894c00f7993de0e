/* ctl.h — stockctl's exit codes, shared by its command files. */
#ifndef STOCKCLIENT_CTL_H
#define STOCKCLIENT_CTL_H

#include "status.h"

enum {
    EXIT_DONE = 0,
    EXIT_REFUSED = 1,     /* insufficient stock, version or request-id conflict */
    EXIT_INVALID = 2,     /* invalid input */
    EXIT_UNREACHABLE = 3, /* stockd unreachable, too slow or overloaded */
    EXIT_OTHER = 4,
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

#endif
