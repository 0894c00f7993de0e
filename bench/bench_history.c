/* bench_history — History by item and by order over the ledger's index, against the scan it
 * replaced (BENCHMARKS.md "History queries"; `make bench-history`).
 *
 * Builds a ledger of --entries entries (default 1,000,000) in one tenant through stockd's real
 * write path (sd_batch_apply + sd_batch_commit: levels, ledger, index keys, idempotency-free
 * requests of 1-3 lines over --items items, every other request with its own order_id, and
 * --group requests per commit, WAL not synced), then times:
 *   - the first History page (page_size 100) of random items and orders, over the index;
 *   - the same with the index path switched off (sd_query_history_use_index(false)): the first
 *     call, and the calls and time until the first page's entries are all found (the scan ends
 *     with the ledger when an item has fewer than a page of entries);
 *   - rebuilding the index at open, as an older data directory would (marker removed).
 * Both paths' answers are compared entry by entry. The last line is one JSON object. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "batch.h"
#include "queries.h"
#include "storage.h"
#include "util.h"

typedef struct {
    const char *dir;
    uint64_t entries;
    unsigned items;
    unsigned group;
    unsigned index_queries;
    unsigned scan_queries;
    bool keep;
    bool fill_only;
} bench_options_t;

typedef struct {
    sd_storage_t *storage;
    uint64_t requests;
    uint64_t last_seq; /* of the ledger written */
    double apply_ms;   /* in sd_batch_apply (checks, ledger and index encoding) */
    double commit_ms;  /* in sd_batch_commit (the RocksDB write: WAL, memtable inserts) */
    double cpu_ms;     /* CPU time of the writing thread while filling */
    uint32_t random;
} bench_t;

static uint32_t bench_random(bench_t *bench)
{
    bench->random = bench->random * 1103515245u + 12345u;
    return (bench->random >> 8) & 0xFFFFFF;
}

/* CPU time of the calling thread (the bench's writer), in ms: the machine's load does not
 * change it, unlike wall time. */
static double bench_thread_cpu_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
    return (double)now.tv_sec * 1000 + (double)now.tv_nsec / 1e6;
}

static sd_storage_t *bench_open(const char *dir)
{
    sd_storage_options_t options = {dir, 256 << 20, 64 << 20, 7 * 86400, 64 << 20, false};
    sd_storage_t *storage = NULL;
    char error[256];
    if (sd_storage_open(&options, &storage, error, sizeof(error)) != SD_OK) {
        fprintf(stderr, "bench_history: %s\n", error);
        exit(1);
    }
    return storage;
}

/* One request of 1-3 lines over random items; every other request has order "ord-<n>". */
static void bench_apply_one(bench_t *bench, sd_batch_t *batch, unsigned items)
{
    static char skus[3][32], order[32];
    Stockd__V1__ItemRef refs[3];
    Stockd__V1__Line lines[3], *pointers[3];
    size_t count = 1 + bench_random(bench) % 3;
    for (size_t i = 0; i < count; i++) {
        snprintf(skus[i], sizeof(skus[i]), "item-%u", bench_random(bench) % items);
        stockd__v1__item_ref__init(&refs[i]);
        refs[i].app_id = "app";
        refs[i].catalog_item_id = skus[i];
        stockd__v1__line__init(&lines[i]);
        lines[i].item = &refs[i];
        lines[i].quantity = 1;
        pointers[i] = &lines[i];
    }
    snprintf(order, sizeof(order), "ord-%llu", (unsigned long long)bench->requests / 2);
    sd_write_request_t request = {.kind = SD_WRITE_DECREMENT,
                                  .tenant_id = "bench",
                                  .lines_count = count,
                                  .lines = pointers,
                                  .order_id = bench->requests % 2 == 0 ? order : "",
                                  .reason = STOCKD__V1__REASON__REASON_ORDER_PLACED,
                                  .reason_text = "",
                                  .request_id = ""};
    sd_write_result_t result;
    sd_write_result_init(&result);
    double started_ms = util_monotonic_ms();
    sd_batch_apply(batch, &request, util_now_us(), &result);
    bench->apply_ms += util_monotonic_ms() - started_ms;
    if (result.error.status != SD_OK) {
        fprintf(stderr, "bench_history: write failed: %s\n", result.error.message);
        exit(1);
    }
    sd_write_result_free(&result);
    bench->requests++;
}

/* Writes requests until the ledger holds `entries` entries; returns the seconds it took. */
static double bench_fill(bench_t *bench, const bench_options_t *options)
{
    sd_batch_t *batch = sd_batch_new(bench->storage, sd_storage_last_seq(bench->storage),
                                     INT64_C(7) * 86400 * 1000000);
    double started_ms = util_monotonic_ms(), cpu_started_ms = bench_thread_cpu_ms();
    while (sd_batch_last_seq(batch) < options->entries) {
        for (unsigned i = 0; i < options->group && sd_batch_last_seq(batch) < options->entries;
             i++) {
            bench_apply_one(bench, batch, options->items);
        }
        double commit_started_ms = util_monotonic_ms();
        if (sd_batch_commit(batch, false) != SD_OK) {
            fprintf(stderr, "bench_history: commit failed\n");
            exit(1);
        }
        bench->commit_ms += util_monotonic_ms() - commit_started_ms;
        sd_batch_reset(batch, sd_batch_last_seq(batch));
    }
    bench->last_seq = sd_batch_last_seq(batch);
    bench->cpu_ms = bench_thread_cpu_ms() - cpu_started_ms;
    sd_batch_free(batch);
    return (util_monotonic_ms() - started_ms) / 1000;
}

/* One History call: its entries (packed, appended to *bytes) and next_after_seq. */
typedef struct {
    double ms;
    size_t entries;
    uint64_t next_after_seq;
} bench_call_t;

static bench_call_t bench_history_call(sd_storage_t *storage, const char *sku, const char *order,
                                       uint64_t after_seq, uint8_t **bytes, size_t *length)
{
    Stockd__V1__ItemRef item = STOCKD__V1__ITEM_REF__INIT;
    Stockd__V1__HistoryRequest request = STOCKD__V1__HISTORY_REQUEST__INIT;
    request.tenant_id = "bench";
    item.app_id = "app";
    item.catalog_item_id = (char *)(sku ? sku : "");
    request.item = sku ? &item : NULL;
    request.order_id = (char *)(order ? order : "");
    request.after_seq = after_seq;
    request.page_size = 100;
    sd_error_t error;
    sd_error_init(&error);
    uint8_t *packed = NULL;
    size_t packed_length = 0;
    bench_call_t call = {util_monotonic_ms(), 0, 0};
    sd_status_t status = sd_query_history(storage, 0, &request, &error, &packed, &packed_length);
    call.ms = util_monotonic_ms() - call.ms;
    sd_error_free(&error);
    Stockd__V1__HistoryResponse *response =
        status == SD_OK ? stockd__v1__history_response__unpack(NULL, packed_length, packed) : NULL;
    if (response == NULL) {
        fprintf(stderr, "bench_history: History failed (%s)\n", sd_status_name(status));
        exit(1);
    }
    call.entries = response->n_entries;
    call.next_after_seq = response->next_after_seq;
    for (size_t i = 0; i < response->n_entries; i++) {
        size_t size = stockd__v1__ledger_entry__get_packed_size(response->entries[i]);
        *bytes = realloc(*bytes, *length + size + 1);
        *length += stockd__v1__ledger_entry__pack(response->entries[i], *bytes + *length);
    }
    stockd__v1__history_response__free_unpacked(response, NULL);
    free(packed);
    return call;
}

/* The first page of a filter: the first call, then (without the index) calls until a page's
 * worth of entries has come back or the ledger ends. */
typedef struct {
    double first_call_ms, first_page_ms;
    size_t calls, entries;
    uint8_t *bytes;
    size_t length;
} bench_page_t;

static bench_page_t bench_first_page(sd_storage_t *storage, bool use_index, const char *sku,
                                     const char *order)
{
    bench_page_t page = {0};
    sd_query_history_use_index(use_index);
    uint64_t after = 0;
    do {
        bench_call_t call =
            bench_history_call(storage, sku, order, after, &page.bytes, &page.length);
        page.first_call_ms = page.calls == 0 ? call.ms : page.first_call_ms;
        page.first_page_ms += call.ms;
        page.calls++;
        page.entries += call.entries;
        after = call.next_after_seq;
    } while (after != 0 && page.entries < 100);
    sd_query_history_use_index(true);
    return page;
}

static int bench_compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y ? 1 : 0;
}

/* Median and 99th percentile (nearest rank) of values[count], sorted in place. */
static void bench_quantiles(double *values, size_t count, double *median, double *p99)
{
    qsort(values, count, sizeof(*values), bench_compare_doubles);
    *median = values[count / 2];
    *p99 = values[count - 1 - count / 100];
}

/* Figures of one kind of filter (items or orders) over both paths. */
typedef struct {
    double index_median_ms, index_p99_ms, index_entries_mean;
    double scan_first_call_ms, scan_first_page_ms, scan_calls_mean;
    size_t mismatches;
} bench_kind_t;

static void bench_filter_name(bench_t *bench, bool by_order, uint64_t requests, unsigned items,
                              char *out, size_t capacity)
{
    if (by_order) { /* orders of the whole ledger: early, middle and late */
        snprintf(out, capacity, "ord-%llu",
                 (unsigned long long)(bench_random(bench) % (requests / 2)));
    } else {
        snprintf(out, capacity, "item-%u", bench_random(bench) % items);
    }
}

static bench_kind_t bench_kind(bench_t *bench, const bench_options_t *options, bool by_order)
{
    bench_kind_t kind = {0};
    double *index_ms = calloc(options->index_queries, sizeof(double));
    double index_entries = 0, scan_first = 0, scan_page = 0, scan_calls = 0;
    char name[64];
    for (unsigned q = 0; q < options->index_queries; q++) {
        bench_filter_name(bench, by_order, bench->requests, options->items, name, sizeof(name));
        bench_page_t indexed =
            bench_first_page(bench->storage, true, by_order ? NULL : name, by_order ? name : NULL);
        index_ms[q] = indexed.first_call_ms;
        index_entries += (double)indexed.entries;
        if (q < options->scan_queries) {
            bench_page_t scanned = bench_first_page(bench->storage, false, by_order ? NULL : name,
                                                    by_order ? name : NULL);
            scan_first += scanned.first_call_ms;
            scan_page += scanned.first_page_ms;
            scan_calls += (double)scanned.calls;
            /* the scan may have gathered past a page: compare the index's page with the
             * scan's first entries */
            size_t expected = scanned.entries < 100 ? scanned.entries : 100;
            kind.mismatches +=
                indexed.entries != expected || indexed.length > scanned.length ||
                (indexed.length > 0 && memcmp(indexed.bytes, scanned.bytes, indexed.length) != 0);
            free(scanned.bytes);
        }
        free(indexed.bytes);
    }
    bench_quantiles(index_ms, options->index_queries, &kind.index_median_ms, &kind.index_p99_ms);
    kind.index_entries_mean = index_entries / options->index_queries;
    unsigned scans = options->scan_queries < options->index_queries ? options->scan_queries
                                                                    : options->index_queries;
    kind.scan_first_call_ms = scans ? scan_first / scans : 0;
    kind.scan_first_page_ms = scans ? scan_page / scans : 0;
    kind.scan_calls_mean = scans ? scan_calls / scans : 0;
    free(index_ms);
    return kind;
}

/* Reopens the directory with the index marker removed: the open indexes the whole ledger
 * again, as it does for a data directory from before the index. Returns its seconds. */
static double bench_rebuild(bench_t *bench, const char *dir)
{
    static const char marker[] = "meta:ledger_index_built"; /* storage.c */
    sd_write_batch_t *batch = sd_write_batch_new();
    sd_write_batch_delete(bench->storage, batch, SD_CF_DEFAULT, (const uint8_t *)marker,
                          sizeof(marker) - 1);
    if (sd_storage_write(bench->storage, batch, true) != SD_OK) {
        exit(1);
    }
    sd_write_batch_free(batch);
    sd_storage_close(bench->storage);
    double started_ms = util_monotonic_ms();
    bench->storage = bench_open(dir);
    return (util_monotonic_ms() - started_ms) / 1000;
}

static void bench_report_kind(const char *what, const bench_kind_t *kind)
{
    printf("%s: index first page median %.3f ms, p99 %.3f ms (%.1f entries); scan first call "
           "%.2f ms, %.1f calls and %.1f ms to the first page; mismatches %zu\n",
           what, kind->index_median_ms, kind->index_p99_ms, kind->index_entries_mean,
           kind->scan_first_call_ms, kind->scan_calls_mean, kind->scan_first_page_ms,
           kind->mismatches);
}

static void bench_usage(void)
{
    fprintf(stderr, "usage: bench_history [--dir DIR] [--entries N] [--items N] [--group N]\n"
                    "                     [--index-queries N] [--scan-queries N] [--keep]\n"
                    "                     [--fill-only]\n");
    exit(2);
}

static bench_options_t bench_parse(int argc, char **argv)
{
    bench_options_t options = {NULL, 1000000, 10000, 64, 1000, 10, false, false};
    for (int i = 1; i < argc; i++) {
        bool has_value = i + 1 < argc;
        if (strcmp(argv[i], "--keep") == 0) {
            options.keep = true;
        } else if (strcmp(argv[i], "--fill-only") == 0) {
            options.fill_only = true;
        } else if (strcmp(argv[i], "--dir") == 0 && has_value) {
            options.dir = argv[++i];
        } else if (strcmp(argv[i], "--entries") == 0 && has_value) {
            options.entries = strtoull(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--items") == 0 && has_value) {
            options.items = (unsigned)strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--group") == 0 && has_value) {
            options.group = (unsigned)strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--index-queries") == 0 && has_value) {
            options.index_queries = (unsigned)strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--scan-queries") == 0 && has_value) {
            options.scan_queries = (unsigned)strtoul(argv[++i], NULL, 10);
        } else {
            bench_usage();
        }
    }
    if (options.entries < 100 || options.items == 0 || options.group == 0 ||
        options.index_queries == 0) {
        bench_usage();
    }
    return options;
}

/* The sizes of the ledger and of its index, after a flush. */
static void bench_sizes(sd_storage_t *storage, double *ledger_mb, double *index_mb)
{
    sd_storage_flush_and_compact(storage, SD_CF_LEDGER);
    sd_storage_flush_and_compact(storage, SD_CF_LEDGER_INDEX);
    sd_storage_stats_t stats;
    sd_storage_stats(storage, &stats);
    *ledger_mb = (double)stats.live_sst_bytes[SD_CF_LEDGER] / 1e6;
    *index_mb = (double)stats.live_sst_bytes[SD_CF_LEDGER_INDEX] / 1e6;
}

/* Closes the storage and removes the directory it made (unless --keep or --dir). */
static void bench_finish(bench_t *bench, const bench_options_t *options, const char *dir)
{
    sd_storage_close(bench->storage);
    if (!options->keep && options->dir == NULL) {
        char command[512];
        snprintf(command, sizeof(command), "rm -rf '%s'", dir);
        (void)!system(command);
    }
}

int main(int argc, char **argv)
{
    bench_options_t options = bench_parse(argc, argv);
    char template_dir[] = "/tmp/stockd-bench-history-XXXXXX";
    const char *dir = options.dir ? options.dir : mkdtemp(template_dir);
    bench_t bench = {bench_open(dir), 0, 0, 0, 0, 0, 12345};
    double fill_s = bench_fill(&bench, &options);
    printf("wrote %llu entries (%llu requests) over %u items in %.1f s: %.0f entries/s\n",
           (unsigned long long)bench.last_seq, (unsigned long long)bench.requests, options.items,
           fill_s, (double)options.entries / fill_s);
    printf("writer thread per entry: %.2f us CPU; %.2f us applying, %.2f us committing (wall)\n",
           bench.cpu_ms * 1000 / (double)bench.last_seq,
           bench.apply_ms * 1000 / (double)bench.last_seq,
           bench.commit_ms * 1000 / (double)bench.last_seq);
    if (options.fill_only) {
        bench_finish(&bench, &options, dir);
        return 0;
    }
    double ledger_mb = 0, index_mb = 0;
    bench_sizes(bench.storage, &ledger_mb, &index_mb);
    printf("ledger %.1f MB, index %.1f MB (SST files, LZ4)\n", ledger_mb, index_mb);
    bench_kind_t items = bench_kind(&bench, &options, false);
    bench_report_kind("by item", &items);
    bench_kind_t orders = bench_kind(&bench, &options, true);
    bench_report_kind("by order", &orders);
    double rebuild_s = bench_rebuild(&bench, dir);
    printf("index rebuilt at open in %.1f s\n", rebuild_s);
    printf("{\"entries\":%llu,\"items\":%u,\"fill_entries_per_s\":%.0f,\"ledger_mb\":%.1f,"
           "\"index_mb\":%.1f,\"item_index_median_ms\":%.3f,\"item_index_p99_ms\":%.3f,"
           "\"item_scan_first_call_ms\":%.2f,\"item_scan_calls\":%.1f,"
           "\"item_scan_first_page_ms\":%.1f,\"order_index_median_ms\":%.3f,"
           "\"order_index_p99_ms\":%.3f,\"order_scan_first_call_ms\":%.2f,"
           "\"order_scan_calls\":%.1f,\"order_scan_first_page_ms\":%.1f,\"rebuild_s\":%.1f,"
           "\"mismatches\":%zu}\n",
           (unsigned long long)options.entries, options.items, (double)options.entries / fill_s,
           ledger_mb, index_mb, items.index_median_ms, items.index_p99_ms, items.scan_first_call_ms,
           items.scan_calls_mean, items.scan_first_page_ms, orders.index_median_ms,
           orders.index_p99_ms, orders.scan_first_call_ms, orders.scan_calls_mean,
           orders.scan_first_page_ms, rebuild_s, items.mismatches + orders.mismatches);
    bench_finish(&bench, &options, dir);
    return items.mismatches + orders.mismatches == 0 ? 0 : 1;
}
