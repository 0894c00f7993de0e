/* sim_main.c — runs the seeded Raft group simulation over a range of seeds (sim.h).
 *
 *   stockd_sim [--seeds N] [--from S | --seed S] [--nodes 3|5] [--fault-ms MS] [--heal-ms MS]
 *              [--verbose] [--trace]
 *              [--break barrier|fence|early-ack|idempotency] [--expect-violations]
 *              [--expect TEXT] [--pre-vote-always] [--snapshot-unpersisted] [--reorder]
 *              [--follower-snapshots-anytime]
 *
 * Each seed picks its own cluster size (3 or 5, unless --nodes), clients, timeouts, snapshot
 * thresholds, disk and network latencies and loss, clock offsets and rates; then faults
 * (crashes losing unsynced writes, failed syncs, restarts, partitions, one-way cuts,
 * leadership transfers) for --fault-ms of simulated time, then --heal-ms without faults, then
 * the checks. A failing seed prints what failed; `--seed S --trace` replays it exactly, with
 * every fault, answer and library diagnostic.
 *
 * --break runs with a deliberate defect in the model of stockd; --pre-vote-always and
 * --snapshot-unpersisted with stockd's earlier behaviours; --reorder and
 * --follower-snapshots-anytime expose library defects (sim_world.c, sim_node.c). With
 * --expect-violations the exit status is 0 only when some seed fails (and with --expect TEXT,
 * when its first violation contains TEXT; "library": a library assertion): the checks are not
 * blind to that defect. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sim.h"

static volatile uint64_t sim_current_seed;

/* The library's assertions abort: say which seed. */
static void sim_on_abort(int signal_number)
{
    char text[64] = "sim: aborted in seed ";
    size_t length = strlen(text);
    char digits[24];
    size_t n = 0;
    uint64_t seed = sim_current_seed;
    do {
        digits[n++] = (char)('0' + seed % 10);
        seed /= 10;
    } while (seed > 0 && n < sizeof digits);
    while (n > 0 && length < sizeof text - 2) {
        text[length++] = digits[--n];
    }
    text[length++] = '\n';
    ssize_t written = write(STDERR_FILENO, text, length);
    (void)written;
    signal(signal_number, SIG_DFL);
    raise(signal_number);
}

typedef struct {
    uint64_t from, seeds;
    unsigned nodes; /* 0: chosen per seed */
    unsigned fault_ms, heal_ms;
    sim_break_t breakage;
    const char *expect; /* --expect TEXT: the first violation must contain it */
    bool expect_violations, trace, verbose, reorder, pre_vote_always, snapshot_unpersisted,
        follower_snapshots_any;
} sim_args_t;

static bool sim_parse_break(const char *name, sim_break_t *out)
{
    static const struct {
        const char *name;
        sim_break_t value;
    } names[] = {{"barrier", SIM_BREAK_BARRIER},
                 {"fence", SIM_BREAK_FENCE},
                 {"early-ack", SIM_BREAK_EARLY_ACK},
                 {"idempotency", SIM_BREAK_IDEMPOTENCY}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(name, names[i].name) == 0) {
            *out = names[i].value;
            return true;
        }
    }
    return false;
}

static bool sim_parse_args(int argc, char **argv, sim_args_t *args)
{
    *args = (sim_args_t){.from = 1, .seeds = 100, .fault_ms = 6000, .heal_ms = 1000};
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        bool takes = true;
        if (strcmp(arg, "--seeds") == 0 && value != NULL) {
            args->seeds = strtoull(value, NULL, 10);
        } else if (strcmp(arg, "--from") == 0 && value != NULL) {
            args->from = strtoull(value, NULL, 10);
        } else if (strcmp(arg, "--seed") == 0 && value != NULL) {
            args->from = strtoull(value, NULL, 10);
            args->seeds = 1;
        } else if (strcmp(arg, "--nodes") == 0 && value != NULL) {
            args->nodes = (unsigned)atoi(value);
        } else if (strcmp(arg, "--fault-ms") == 0 && value != NULL) {
            args->fault_ms = (unsigned)atoi(value);
        } else if (strcmp(arg, "--heal-ms") == 0 && value != NULL) {
            args->heal_ms = (unsigned)atoi(value);
        } else if (strcmp(arg, "--expect") == 0 && value != NULL) {
            args->expect = value; /* implies --expect-violations */
            args->expect_violations = true;
        } else if (strcmp(arg, "--break") == 0 && value != NULL) {
            if (!sim_parse_break(value, &args->breakage)) {
                return false;
            }
        } else {
            takes = false;
            if (strcmp(arg, "--expect-violations") == 0) {
                args->expect_violations = true;
            } else if (strcmp(arg, "--verbose") == 0) {
                args->verbose = true;
            } else if (strcmp(arg, "--snapshot-unpersisted") == 0) {
                args->snapshot_unpersisted = true;
            } else if (strcmp(arg, "--follower-snapshots-anytime") == 0) {
                args->follower_snapshots_any = true;
            } else if (strcmp(arg, "--pre-vote-always") == 0) {
                args->pre_vote_always = true;
            } else if (strcmp(arg, "--reorder") == 0) {
                args->reorder = true;
            } else if (strcmp(arg, "--trace") == 0) {
                args->trace = true;
            } else {
                return false;
            }
        }
        i += takes;
    }
    return args->seeds > 0 && (args->nodes == 0 || args->nodes == 3 || args->nodes == 5);
}

int main(int argc, char **argv)
{
    sim_args_t args;
    if (!sim_parse_args(argc, argv, &args)) {
        fprintf(
            stderr,
            "usage: stockd_sim [--seeds N] [--from S] [--seed S] [--nodes 3|5] "
            "[--fault-ms MS] [--heal-ms MS] [--break barrier|fence|early-ack|"
            "idempotency] [--expect-violations] [--expect TEXT] [--reorder] [--pre-vote-always] "
            "[--snapshot-unpersisted] "
            "[--follower-snapshots-anytime] "
            "[--verbose] [--trace]\n");
        return 2;
    }
    signal(SIGABRT, sim_on_abort);
    sim_assertion_is_a_finding = args.expect_violations;
    /* a library assertion counts as the expected finding only for --expect library */
    sim_assertion_exit_status = args.expect == NULL || strcmp(args.expect, "library") == 0 ? 0 : 1;
    if (args.trace) {
        setvbuf(stdout, NULL, _IOLBF, 0); /* nothing lost when an assertion aborts */
    }
    uint64_t failed = 0;
    bool found = false;
    for (uint64_t seed = args.from; seed < args.from + args.seeds; seed++) {
        sim_current_seed = seed;
        sim_options_t options = {.seed = seed,
                                 .nodes = args.nodes != 0 ? args.nodes : (seed % 4 == 0 ? 5 : 3),
                                 .clients = 2 + (unsigned)(seed % 7),
                                 .fault_ms = args.fault_ms,
                                 .heal_ms = args.heal_ms,
                                 .breakage = args.breakage,
                                 .trace = args.trace,
                                 .reorder = args.reorder,
                                 .pre_vote_always = args.pre_vote_always,
                                 .snapshot_unpersisted = args.snapshot_unpersisted,
                                 .follower_snapshots_any = args.follower_snapshots_any};
        char summary[256];
        unsigned violations = sim_run(&options, summary, sizeof summary);
        if (violations > 0 || args.trace || args.verbose) {
            printf("sim: seed %llu (%u nodes): %s%s\n", (unsigned long long)seed, options.nodes,
                   violations > 0 ? "FAILED: " : "", summary);
        }
        failed += violations > 0;
        bool expected = args.expect == NULL || strstr(sim_first_violation, args.expect) != NULL;
        if (violations > 0 && args.expect_violations && expected) {
            found = true;
            break; /* one is enough to show the checks see the defect */
        }
    }
    printf("sim: seeds %llu..%llu: %llu failed\n", (unsigned long long)args.from,
           (unsigned long long)(args.from + args.seeds - 1), (unsigned long long)failed);
    if (args.expect_violations) {
        return found ? 0 : 1;
    }
    return failed > 0 ? 1 : 0;
}
