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
    char message[SIM_VIOLATION_MAX];
    vsnprintf(message, sizeof message, format, args);
    va_end(args);
    printf("sim: seed %llu: VIOLATION: %s\n", (unsigned long long)checker->seed, message);
    sim_note_violation(message);
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
/* A record's lines are the request's: its SKUs, deltas (+/- each quantity by kind) and
 * restricted flag — the oversell check trusts that flag. */
static bool sim_record_matches(const sim_store_t *store, const sim_record_t *record,
                               const sim_request_t *request)
{
    if (record->lines != request->lines) {
        return false;
    }
    const sim_line_t *lines = &store->ledger[record->first_line];
    for (unsigned l = 0; l < record->lines; l++) {
        int64_t delta =
            request->kind == SIM_OP_INCREMENT ? request->quantities[l] : -request->quantities[l];
        if (lines[l].sku != request->skus[l] || lines[l].delta != delta ||
            lines[l].restricted != (request->kind == SIM_OP_RESTRICTED)) {
            return false;
        }
    }
    return true;
}

/* Each operation against its record: answered OK = recorded with what it was answered;
 * refused = not recorded (and only restricted decrements are refused); reads never recorded;
 * every record is its request. */
static void sim_check_answers(sim_checker_t *checker)
{
    const sim_store_t *store = checker->store;
    for (size_t i = 0; i < checker->count; i++) {
        const sim_op_t *op = &checker->ops[i];
        unsigned long long id = op->request.request;
        const sim_record_t *record = sim_store_find(store, op->request.request);
        checker->position[i] = record == NULL ? SIM_NONE : (size_t)(record - store->records);
        bool read = op->request.kind == SIM_OP_READ;
        bool ok = op->completed >= 0 && op->answer.kind == SIM_ANSWER_OK;
        bool refused = op->completed >= 0 && op->answer.kind == SIM_ANSWER_SHORT;
        if (refused && op->request.kind != SIM_OP_RESTRICTED) {
            sim_check_fail(checker, "refused: request %llx was refused but cannot be", id);
        }
        if (record != NULL && (read || refused)) {
            sim_check_fail(checker, "refused: request %llx was refused but is recorded", id);
        }
        if (record != NULL && !read && !sim_record_matches(store, record, &op->request)) {
            sim_check_fail(checker, "record: request %llx is recorded with other lines", id);
        }
        if (!ok || read) {
            continue;
        }
        if (record == NULL) {
            sim_check_fail(checker, "lost write: request %llx was acknowledged, not stored", id);
            continue;
        }
        const sim_line_t *lines = &store->ledger[record->first_line];
        bool same = record->lines == op->request.lines && lines[0].seq == op->answer.seq;
        for (unsigned l = 0; same && l < record->lines; l++) {
            same = lines[l].after == op->answer.afters[l];
        }
        if (!same) {
            sim_check_fail(checker, "answer: request %llx was answered other levels than stored",
                           id);
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
        windows->applied[windows->applied_len++] = (sim_mark_t){op->invoked, position};
        if (op->completed >= 0 && op->answer.kind == SIM_ANSWER_OK) {
            windows->done[windows->done_len++] = (sim_mark_t){op->completed, position + 1};
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

/* The reads and refusals already placed: each at the earliest prefix that explains it. */
typedef struct {
    int64_t completed;
    size_t prefix;
} sim_placed_t;

/* The prefix an operation sent at `invoked` may not precede: every read or refusal answered
 * before it was sent saw that much. */
static size_t sim_placed_floor(const sim_placed_t *placed, size_t count, int64_t invoked)
{
    size_t floor = 0;
    for (size_t i = 0; i < count; i++) {
        if (placed[i].completed < invoked && placed[i].prefix > floor) {
            floor = placed[i].prefix;
        }
    }
    return floor;
}

/* Writes take effect in ledger order, which must respect real time. Reads and refusals must
 * each match some prefix between their sending and their answer, in an order that respects
 * real time among themselves too: taken in sending order (the history's order), each gets the
 * earliest prefix that explains it at or after every prefix seen before it was sent — the
 * earliest choice leaves later operations the most room, so this finds an order if one
 * exists. */
static void sim_check_linearizable(sim_checker_t *checker)
{
    sim_windows_t windows;
    sim_windows_build(checker, &windows);
    size_t records = checker->store->records_len;
    sim_placed_t *placed = malloc((checker->count + 1) * sizeof *placed);
    size_t placed_len = 0;
    for (size_t i = 0; i < checker->count; i++) {
        const sim_op_t *op = &checker->ops[i];
        size_t low = sim_window_low(&windows, op->invoked);
        if (checker->position[i] != SIM_NONE) {
            if (checker->position[i] < low) {
                sim_check_fail(checker,
                               "%s: request %llx took effect before a write that was "
                               "acknowledged before it was sent",
                               "not linearizable", (unsigned long long)op->request.request);
            }
            continue;
        }
        bool judged = op->completed >= 0 &&
                      (op->request.kind == SIM_OP_READ || op->answer.kind == SIM_ANSWER_SHORT);
        if (!judged) {
            continue;
        }
        size_t floor = sim_placed_floor(placed, placed_len, op->invoked);
        size_t high = sim_window_high(&windows, op->completed, records);
        size_t p = low > floor ? low : floor;
        while (p <= high && p <= records && !sim_prefix_explains(checker, op, p)) {
            p++;
        }
        if (p > high || p > records) {
            sim_check_fail(checker,
                           "%s: request %llx's answer matches no state between its sending "
                           "and its answer, after what earlier answers showed",
                           op->request.kind == SIM_OP_READ ? "stale read" : "stale refusal",
                           (unsigned long long)op->request.request);
            continue;
        }
        placed[placed_len++] = (sim_placed_t){op->completed, p};
    }
    free(placed);
    free(windows.done);
    free(windows.applied);
}

/* "Not the leader; not applied" must be true: the attempt so answered wrote no record. */
static void sim_check_denials(sim_checker_t *checker, const sim_denial_t *denials, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        const sim_record_t *record = sim_store_find(checker->store, denials[i].request);
        if (record != NULL && record->attempt == denials[i].attempt) {
            sim_check_fail(checker,
                           "false refusal: request %llx's attempt %u was answered not applied "
                           "and was applied",
                           (unsigned long long)denials[i].request, denials[i].attempt);
        }
    }
}

unsigned sim_check_history(uint64_t seed, const sim_op_t *ops, size_t count,
                           const sim_denial_t *denials, size_t denials_count,
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
    sim_check_denials(&checker, denials, denials_count);
    free(checker.position);
    free(checker.prefix);
    return checker.violations;
}
