/* sim_check.c — judges a run's client history against the store every replica agreed on:
 *  - nothing acknowledged is lost: every write answered OK is recorded, with the levels and
 *    seq it was answered with; nothing refused is recorded; nothing unsent is recorded;
 *  - nothing is applied twice (one record per request id);
 *  - the ledger adds up (each line's level = the one before + its delta, seqs without gaps,
 *    the levels stored are the ledger's), and no restricted decrement took a level below 0;
 *  - linearizability of the per-item operations: the ledger's order is the only order the
 *    writes took effect in, so it must respect real time (a write answered before another
 *    was sent comes first), and every refusal and every read must match the levels at some
 *    point between its sending and its answer. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

typedef struct {
    uint64_t seed;
    const sim_op_t *ops;
    size_t count;
    const sim_store_t *store;
    size_t *position;                /* per op: its record's index, or SIZE_MAX */
    sim_level_t (*prefix)[SIM_SKUS]; /* levels after the first k records, k = 0..records */
    unsigned violations;
} sim_checker_t;

#define SIM_NONE SIZE_MAX

static void sim_check_fail(sim_checker_t *checker, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

static void sim_check_fail(sim_checker_t *checker, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    printf("sim: seed %llu: VIOLATION: ", (unsigned long long)checker->seed);
    vprintf(format, args);
    printf("\n");
    va_end(args);
    checker->violations++;
}

static int sim_compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* One record per request id, and only for requests a client sent. */
static void sim_check_records(sim_checker_t *checker)
{
    const sim_store_t *store = checker->store;
    uint64_t *sent = malloc((checker->count + 1) * sizeof *sent);
    uint64_t *recorded = malloc((store->records_len + 1) * sizeof *recorded);
    for (size_t i = 0; i < checker->count; i++) {
        sent[i] = checker->ops[i].request.request;
    }
    for (size_t i = 0; i < store->records_len; i++) {
        recorded[i] = store->records[i].request;
    }
    qsort(sent, checker->count, sizeof *sent, sim_compare_u64);
    qsort(recorded, store->records_len, sizeof *recorded, sim_compare_u64);
    for (size_t i = 0; i < store->records_len; i++) {
        if (i > 0 && recorded[i] == recorded[i - 1]) {
            sim_check_fail(checker, "%s: request %llx applied twice", "double apply",
                           (unsigned long long)recorded[i]);
        }
        if (bsearch(&recorded[i], sent, checker->count, sizeof *sent, sim_compare_u64) == NULL) {
            sim_check_fail(checker, "%s: request %llx recorded, never sent", "phantom",
                           (unsigned long long)recorded[i]);
        }
    }
    free(sent);
    free(recorded);
}

/* The ledger adds up from the initial levels, never oversells, and ends at the stored levels;
 * prefix[k] holds the levels after the first k records. */
static void sim_check_ledger(sim_checker_t *checker)
{
    const sim_store_t *store = checker->store;
    sim_level_t levels[SIM_SKUS];
    for (size_t i = 0; i < SIM_SKUS; i++) {
        levels[i] = (sim_level_t){SIM_INITIAL_AVAILABLE, 0};
    }
    memcpy(checker->prefix[0], levels, sizeof levels);
    size_t line = 0;
    for (size_t r = 0; r < store->records_len; r++) {
        const sim_record_t *record = &store->records[r];
        for (uint32_t i = 0; i < record->lines; i++, line++) {
            const sim_line_t *entry = &store->ledger[record->first_line + i];
            sim_level_t *level = &levels[entry->sku];
            if (record->first_line + i != line || entry->seq != line + 1) {
                sim_check_fail(checker, "%s: request %llx's lines out of order", "ledger",
                               (unsigned long long)record->request);
            }
            level->available += entry->delta;
            level->version++;
            if (entry->after != level->available) {
                sim_check_fail(checker, "%s: request %llx's level after does not add up", "ledger",
                               (unsigned long long)record->request);
            }
            if (entry->restricted && entry->after < 0) {
                sim_check_fail(checker, "%s: request %llx took a level below 0", "oversold",
                               (unsigned long long)record->request);
            }
        }
        memcpy(checker->prefix[r + 1], levels, sizeof levels);
    }
    if (line != store->ledger_len || memcmp(levels, store->levels, sizeof levels) != 0) {
        sim_check_fail(checker, "%s: the stored levels are not the ledger's (%llx)", "ledger",
                       (unsigned long long)0);
    }
}

/* Each operation against its record: answered OK = recorded with what it was answered;
 * refused = not recorded; reads never recorded. */
static void sim_check_answers(sim_checker_t *checker)
{
    const sim_store_t *store = checker->store;
    for (size_t i = 0; i < checker->count; i++) {
        const sim_op_t *op = &checker->ops[i];
        const sim_record_t *record = sim_store_find(store, op->request.request);
        checker->position[i] = record == NULL ? SIM_NONE : (size_t)(record - store->records);
        bool read = op->request.kind == SIM_OP_READ;
        bool ok = op->completed_ms >= 0 && op->answer.kind == SIM_ANSWER_OK;
        bool refused = op->completed_ms >= 0 && op->answer.kind == SIM_ANSWER_SHORT;
        if (record != NULL && (read || refused)) {
            sim_check_fail(checker, "%s: request %llx was refused but is recorded", "refused",
                           (unsigned long long)op->request.request);
        }
        if (!ok || read) {
            continue;
        }
        if (record == NULL) {
            sim_check_fail(checker, "%s: request %llx was acknowledged but is not stored",
                           "lost write", (unsigned long long)op->request.request);
            continue;
        }
        const sim_line_t *lines = &store->ledger[record->first_line];
        bool same = record->lines == op->request.lines && lines[0].seq == op->answer.seq;
        for (unsigned l = 0; same && l < record->lines; l++) {
            same = lines[l].sku == op->request.skus[l] && lines[l].after == op->answer.afters[l];
        }
        if (!same) {
            sim_check_fail(checker, "%s: request %llx was answered other levels than stored",
                           "answer", (unsigned long long)op->request.request);
        }
    }
}

typedef struct {
    int64_t time;
    size_t position;
} sim_mark_t;

static int sim_compare_marks(const void *a, const void *b)
{
    const sim_mark_t *x = a, *y = b;
    return x->time < y->time ? -1 : x->time > y->time;
}

typedef struct {
    sim_mark_t *done; /* acknowledged writes by answer time; position = max(pos + 1) so far */
    size_t done_len;
    sim_mark_t *applied; /* recorded writes by sending time; position = min(pos) from here on */
    size_t applied_len;
} sim_windows_t;

/* The first prefix an operation sent at `time` may see: it holds every write acknowledged
 * before. */
static size_t sim_window_low(const sim_windows_t *windows, int64_t time)
{
    size_t low = 0, lo = 0, hi = windows->done_len;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (windows->done[mid].time < time) {
            low = windows->done[mid].position;
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return low;
}

/* The last prefix an operation answered at `time` may see: none of the writes sent after. */
static size_t sim_window_high(const sim_windows_t *windows, int64_t time, size_t records)
{
    size_t lo = 0, hi = windows->applied_len;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (windows->applied[mid].time <= time) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo < windows->applied_len ? windows->applied[lo].position : records;
}

static void sim_windows_build(const sim_checker_t *checker, sim_windows_t *windows)
{
    windows->done = malloc((checker->count + 1) * sizeof *windows->done);
    windows->applied = malloc((checker->count + 1) * sizeof *windows->applied);
    windows->done_len = windows->applied_len = 0;
    for (size_t i = 0; i < checker->count; i++) {
        const sim_op_t *op = &checker->ops[i];
        size_t position = checker->position[i];
        if (position == SIM_NONE) {
            continue;
        }
        windows->applied[windows->applied_len++] = (sim_mark_t){op->invoked_ms, position};
        if (op->completed_ms >= 0 && op->answer.kind == SIM_ANSWER_OK) {
            windows->done[windows->done_len++] = (sim_mark_t){op->completed_ms, position + 1};
        }
    }
    qsort(windows->done, windows->done_len, sizeof *windows->done, sim_compare_marks);
    qsort(windows->applied, windows->applied_len, sizeof *windows->applied, sim_compare_marks);
    for (size_t i = 1; i < windows->done_len; i++) {
        if (windows->done[i].position < windows->done[i - 1].position) {
            windows->done[i].position = windows->done[i - 1].position;
        }
    }
    for (size_t i = windows->applied_len; i > 1; i--) {
        if (windows->applied[i - 2].position > windows->applied[i - 1].position) {
            windows->applied[i - 2].position = windows->applied[i - 1].position;
        }
    }
}

/* Does the state after the first p records explain the operation's answer? */
static bool sim_prefix_explains(const sim_checker_t *checker, const sim_op_t *op, size_t p)
{
    const sim_level_t *levels = checker->prefix[p];
    if (op->request.kind == SIM_OP_READ) {
        return levels[op->request.skus[0]].available == op->answer.afters[0];
    }
    for (unsigned i = 0; i < op->request.lines; i++) {
        if (levels[op->request.skus[i]].available < op->request.quantities[i]) {
            return true; /* short: refused */
        }
    }
    return false;
}

static void sim_check_linearizable(sim_checker_t *checker)
{
    sim_windows_t windows;
    sim_windows_build(checker, &windows);
    size_t records = checker->store->records_len;
    for (size_t i = 0; i < checker->count; i++) {
        const sim_op_t *op = &checker->ops[i];
        size_t low = sim_window_low(&windows, op->invoked_ms);
        if (checker->position[i] != SIM_NONE) {
            if (checker->position[i] < low) {
                sim_check_fail(checker,
                               "%s: request %llx took effect before a write that was "
                               "acknowledged before it was sent",
                               "not linearizable", (unsigned long long)op->request.request);
            }
            continue;
        }
        bool judged = op->completed_ms >= 0 &&
                      (op->request.kind == SIM_OP_READ || op->answer.kind == SIM_ANSWER_SHORT);
        if (!judged) {
            continue;
        }
        size_t high = sim_window_high(&windows, op->completed_ms, records);
        bool explained = false;
        for (size_t p = low; !explained && p <= high && p <= records; p++) {
            explained = sim_prefix_explains(checker, op, p);
        }
        if (!explained) {
            sim_check_fail(checker,
                           "%s: request %llx's answer matches no state between its "
                           "sending and its answer",
                           op->request.kind == SIM_OP_READ ? "stale read" : "stale refusal",
                           (unsigned long long)op->request.request);
        }
    }
    free(windows.done);
    free(windows.applied);
}

unsigned sim_check_history(uint64_t seed, const sim_op_t *ops, size_t count,
                           const sim_store_t *store)
{
    sim_checker_t checker = {.seed = seed, .ops = ops, .count = count, .store = store};
    checker.position = malloc((count + 1) * sizeof *checker.position);
    checker.prefix = malloc((store->records_len + 1) * sizeof *checker.prefix);
    if (checker.position == NULL || checker.prefix == NULL) {
        abort();
    }
    sim_check_records(&checker);
    sim_check_ledger(&checker);
    sim_check_answers(&checker);
    sim_check_linearizable(&checker);
    free(checker.position);
    free(checker.prefix);
    return checker.violations;
}
