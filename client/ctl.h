/* ctl.h — stockctl's exit codes, shared by its command files. */
#ifndef STOCKCLIENT_CTL_H
#define STOCKCLIENT_CTL_H

enum {
    EXIT_DONE = 0,
    EXIT_REFUSED = 1,     /* insufficient stock, version or request-id conflict */
    EXIT_INVALID = 2,     /* invalid input */
    EXIT_UNREACHABLE = 3, /* stockd unreachable, too slow or overloaded */
    EXIT_OTHER = 4,
};

/* The exit code for a gRPC status code (the one table of that mapping). */
static inline int ctl_exit_for(int grpc_code)
{
    switch (grpc_code) {
    case 0:
        return EXIT_DONE;
    case 9:  /* FAILED_PRECONDITION */
    case 10: /* ABORTED */
    case 6:  /* ALREADY_EXISTS */
        return EXIT_REFUSED;
    case 3:  /* INVALID_ARGUMENT */
    case 11: /* OUT_OF_RANGE */
        return EXIT_INVALID;
    case 14: /* UNAVAILABLE */
    case 4:  /* DEADLINE_EXCEEDED */
    case 8:  /* RESOURCE_EXHAUSTED */
        return EXIT_UNREACHABLE;
    default:
        return EXIT_OTHER;
    }
}

#endif
