/* transfer.c — see transfer.h. */
#include "transfer.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "csv.h"
#include "ctl.h"
#include "util.h"

/* ---- export ---- */

typedef struct {
    FILE *out;
    size_t rows;
    size_t skipped_rows; /* ids with control characters: not writable as one CSV line */
} ctl_export_t;

static void ctl_export_row(ctl_export_t *export, const Stockd__V1__StockLevel *level)
{
    const Stockd__V1__ItemRef *item = level->item;
    csv_level_row_t row = {{item->location_id, item->app_id, item->catalog_item_id, item->variant},
                           level->available,
                           level->tracked,
                           true,
                           level->floor};
    if (csv_level_write(export->out, &row)) {
        export->rows++;
        return;
    }
    /* Stored before stockd refused control characters in ids: say so rather than write a
     * row that would import as something else. */
    char escaped[4][128];
    for (int i = 0; i < 4; i++) {
        util_json_escape(row.ids[i], 32, escaped[i], sizeof(escaped[i]));
    }
    fprintf(stderr,
            "stockctl: not exported (an id holds a control character): location_id \"%s\" "
            "app_id \"%s\" catalog_item_id \"%s\" variant \"%s\"\n",
            escaped[0], escaped[1], escaped[2], escaped[3]);
    export->skipped_rows++;
}

static bool ctl_export_page(void *context, Stockd__V1__StockLevel *const *levels, size_t count)
{
    ctl_export_t *export = context;
    for (size_t i = 0; i < count; i++) {
        ctl_export_row(export, levels[i]);
    }
    return true;
}

int ctl_export(const ctl_transfer_t *transfer, const char *path)
{
    FILE *out = strcmp(path, "-") == 0 ? stdout : fopen(path, "w");
    if (out == NULL) {
        fprintf(stderr, "stockctl: cannot write %s\n", path);
        return EXIT_INVALID;
    }
    fprintf(out, "location_id,app_id,catalog_item_id,variant,available,tracked,floor\n");
    Stockd__V1__ListStockRequest request = STOCKD__V1__LIST_STOCK_REQUEST__INIT;
    request.tenant_id = (char *)transfer->tenant;
    request.page_size = 1000;
    ctl_export_t export = {out, 0, 0};
    sc_status_t status;
    int code = sc_list_all(transfer->client, &request, ctl_export_page, &export,
                           transfer->deadline_ms, &status);
    int exit_code = ctl_exit_for(code);
    if (code != 0) {
        fprintf(stderr, "stockctl: export failed: %s: %s\n", sc_code_name(code), status.message);
    }
    sc_status_free(&status);
    if (out != stdout && fclose(out) != 0) {
        exit_code = EXIT_OTHER;
    }
    if (export.skipped_rows > 0 && exit_code == EXIT_DONE) {
        exit_code = EXIT_OTHER;
    }
    fprintf(stderr, "stockctl: exported %zu rows", export.rows);
    if (export.skipped_rows > 0) {
        fprintf(stderr, "; %zu rows not exported (control characters in ids)", export.skipped_rows);
    }
    fputc('\n', stderr);
    return exit_code;
}

/* ---- import ---- */

typedef struct {
    char *parts[4]; /* location_id, app_id, catalog_item_id, variant (owned) */
    int64_t available;
    int tracked; /* -1 = keep the current value */
    bool has_floor;
    int64_t floor;
    size_t line;
    bool bad;
} ctl_row_t;

typedef struct {
    ctl_row_t *rows;
    size_t count, capacity;
    size_t bad_count;
    bool json;
} ctl_rows_t;

static void ctl_bad_row(ctl_rows_t *rows, size_t line, const char *reason)
{
    rows->bad_count++;
    if (rows->json) {
        char escaped[512];
        util_json_escape(reason, 256, escaped, sizeof(escaped));
        printf("{\"line\":%zu,\"error\":\"%s\"}\n", line, escaped);
    } else {
        fprintf(stderr, "line %zu: %s (not applied)\n", line, reason);
    }
}

/* Reads the whole file: good rows kept, bad rows reported. Updates the SHA-256 digest. */
static int ctl_read_rows(FILE *in, EVP_MD_CTX *digest, ctl_rows_t *rows)
{
    char line[CSV_LINE_BYTES_MAX + 2];
    int columns = -1;
    for (size_t number = 1; fgets(line, sizeof(line), in) != NULL; number++) {
        size_t length = strlen(line);
        EVP_DigestUpdate(digest, line, length);
        bool complete = length > 0 && line[length - 1] == '\n';
        line[strcspn(line, "\r\n")] = '\0';
        if (!complete && !feof(in)) {
            int c;
            while ((c = fgetc(in)) != EOF && c != '\n') {
            }
            ctl_bad_row(rows, number, "line longer than 4096 bytes");
            continue;
        }
        if (number == 1) {
            columns = csv_level_header(line);
            if (columns < 0) {
                fprintf(stderr, "stockctl: line 1 must be the header "
                                "location_id,app_id,catalog_item_id,variant,available"
                                "[,tracked[,floor]]\n");
                return EXIT_INVALID;
            }
            continue;
        }
        if (line[0] == '\0') {
            continue;
        }
        csv_level_row_t parsed;
        const char *reason = csv_level_parse(line, columns, &parsed);
        if (reason != NULL) {
            ctl_bad_row(rows, number, reason);
            continue;
        }
        if (rows->count == rows->capacity) {
            size_t capacity = rows->capacity ? rows->capacity * 2 : 1024;
            ctl_row_t *bigger = realloc(rows->rows, capacity * sizeof(*rows->rows));
            if (bigger == NULL) {
                fprintf(stderr, "stockctl: out of memory\n");
                return EXIT_OTHER;
            }
            rows->rows = bigger;
            rows->capacity = capacity;
        }
        ctl_row_t row = {.available = parsed.available,
                         .tracked = parsed.tracked,
                         .has_floor = parsed.has_floor,
                         .floor = parsed.floor,
                         .line = number};
        for (int i = 0; i < 4; i++) {
            row.parts[i] = strdup(parsed.ids[i]);
        }
        rows->rows[rows->count++] = row; /* owned by rows now, even if a copy failed */
        if (!row.parts[0] || !row.parts[1] || !row.parts[2] || !row.parts[3]) {
            fprintf(stderr, "stockctl: out of memory\n");
            return EXIT_OTHER;
        }
    }
    return columns < 0 ? EXIT_INVALID : 0;
}

static int ctl_compare_rows(const void *a, const void *b)
{
    const ctl_row_t *x = *(ctl_row_t *const *)a, *y = *(ctl_row_t *const *)b;
    for (int i = 0; i < 4; i++) {
        int c = strcmp(x->parts[i], y->parts[i]);
        if (c != 0) {
            return c;
        }
    }
    return x->line < y->line ? -1 : x->line > y->line;
}

/* SetStock takes each item once per request: a repeated item is a bad row. */
static void ctl_mark_duplicates(ctl_rows_t *rows)
{
    ctl_row_t **sorted = malloc((rows->count + 1) * sizeof(*sorted));
    for (size_t i = 0; sorted != NULL && i < rows->count; i++) {
        sorted[i] = &rows->rows[i];
    }
    if (sorted == NULL) {
        return;
    }
    qsort(sorted, rows->count, sizeof(*sorted), ctl_compare_rows);
    size_t run_start = 0; /* sorted by key then line: a run's first row is the original */
    for (size_t i = 1; i < rows->count; i++) {
        bool same = true;
        for (int p = 0; p < 4 && same; p++) {
            same = strcmp(sorted[i]->parts[p], sorted[i - 1]->parts[p]) == 0;
        }
        if (!same) {
            run_start = i;
            continue;
        }
        char reason[64];
        snprintf(reason, sizeof(reason), "repeats the item of line %zu", sorted[run_start]->line);
        sorted[i]->bad = true;
        ctl_bad_row(rows, sorted[i]->line, reason);
    }
    free(sorted);
}

typedef struct {
    size_t applied_rows, replayed_chunks, chunks;
    double started_ms;
    bool terminal;
} ctl_progress_t;

static void ctl_show_progress(const ctl_progress_t *progress, size_t done, size_t total)
{
    if (!progress->terminal || total == 0) {
        return;
    }
    double seconds = (util_monotonic_ms() - progress->started_ms) / 1000.0;
    double rate = seconds > 0 ? (double)done / seconds : 0;
    int width = 30, filled = (int)((double)width * (double)done / (double)total);
    fprintf(stderr, "\r[%-*.*s] %3d%%  %zu/%zu rows  %.0f rows/s  ETA %.0fs ", width, filled,
            "##############################", (int)(100 * done / total), done, total, rate,
            rate > 0 ? (double)(total - done) / rate : 0.0);
}

/* Sends rows[first..first+count) (good ones only) as one atomic SetStock. */
static int ctl_send_chunk(const ctl_transfer_t *transfer, ctl_row_t **chunk, size_t count,
                          const char *request_id, const char *reason_text, bool *replayed)
{
    Stockd__V1__ItemRef *items = calloc(count, sizeof(*items));
    Stockd__V1__SetLine *lines = calloc(count, sizeof(*lines));
    Stockd__V1__SetLine **pointers = calloc(count, sizeof(*pointers));
    Google__Protobuf__BoolValue *tracked = calloc(count, sizeof(*tracked));
    Google__Protobuf__Int64Value *floors = calloc(count, sizeof(*floors));
    int code = 13;
    if (items && lines && pointers && tracked && floors) {
        for (size_t i = 0; i < count; i++) {
            stockd__v1__item_ref__init(&items[i]);
            items[i].location_id = chunk[i]->parts[0];
            items[i].app_id = chunk[i]->parts[1];
            items[i].catalog_item_id = chunk[i]->parts[2];
            items[i].variant = chunk[i]->parts[3];
            stockd__v1__set_line__init(&lines[i]);
            lines[i].item = &items[i];
            lines[i].available = chunk[i]->available;
            google__protobuf__bool_value__init(&tracked[i]);
            tracked[i].value = chunk[i]->tracked == 1;
            lines[i].tracked = chunk[i]->tracked >= 0 ? &tracked[i] : NULL;
            google__protobuf__int64_value__init(&floors[i]);
            floors[i].value = chunk[i]->floor;
            lines[i].floor = chunk[i]->has_floor ? &floors[i] : NULL;
            pointers[i] = &lines[i];
        }
        Stockd__V1__SetStockRequest request = STOCKD__V1__SET_STOCK_REQUEST__INIT;
        request.tenant_id = (char *)transfer->tenant;
        request.n_lines = count;
        request.lines = pointers;
        request.reason = STOCKD__V1__REASON__REASON_RECOUNT;
        request.reason_text = (char *)reason_text;
        request.request_id = (char *)request_id;
        Stockd__V1__SetStockResponse *response = NULL;
        sc_status_t status;
        code = sc_set_stock(transfer->client, &request, &response, transfer->deadline_ms, &status);
        if (code != 0) {
            fprintf(stderr, "\nstockctl: chunk %s failed: %s: %s\n", request_id, sc_code_name(code),
                    status.message);
        }
        *replayed = response != NULL && response->replayed;
        if (response != NULL) {
            stockd__v1__set_stock_response__free_unpacked(response, NULL);
        }
        sc_status_free(&status);
    }
    free(items);
    free(lines);
    free(pointers);
    free(tracked);
    free(floors);
    return code;
}

/* Sends the good rows in chunks; stops at the first failure. */
static int ctl_send_rows(const ctl_transfer_t *transfer, ctl_rows_t *rows, const char *digest_hex,
                         const char *path, ctl_progress_t *progress)
{
    ctl_row_t **chunk = malloc(transfer->chunk_rows * sizeof(*chunk));
    size_t good = rows->count, done = 0, filled = 0;
    for (size_t i = 0; i < rows->count; i++) {
        good -= rows->rows[i].bad;
    }
    char reason_text[256];
    snprintf(reason_text, sizeof(reason_text), "stockctl import %.200s", path);
    int code = chunk == NULL ? 13 : 0;
    for (size_t i = 0; code == 0 && i <= rows->count; i++) {
        if (i < rows->count && !rows->rows[i].bad) {
            chunk[filled++] = &rows->rows[i];
        }
        if (filled == 0 || (filled < transfer->chunk_rows && i < rows->count)) {
            continue;
        }
        char request_id[96];
        bool replayed = false;
        /* file digest + chunk size + chunk number: the same import gives the same ids */
        snprintf(request_id, sizeof(request_id), "import:%.32s:%zu:%zu", digest_hex,
                 transfer->chunk_rows, progress->chunks);
        code = ctl_send_chunk(transfer, chunk, filled, request_id, reason_text, &replayed);
        if (code == 0) {
            progress->chunks++;
            progress->replayed_chunks += replayed;
            progress->applied_rows += replayed ? 0 : filled;
            done += filled;
            ctl_show_progress(progress, done, good);
        }
        filled = 0;
    }
    free(chunk);
    return code;
}

static void ctl_free_rows(ctl_rows_t *rows)
{
    for (size_t i = 0; i < rows->count; i++) {
        for (int p = 0; p < 4; p++) {
            free(rows->rows[i].parts[p]);
        }
    }
    free(rows->rows);
}

int ctl_import(const ctl_transfer_t *transfer, const char *path)
{
    FILE *in = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (in == NULL) {
        fprintf(stderr, "stockctl: cannot read %s\n", path);
        return EXIT_INVALID;
    }
    ctl_rows_t rows = {NULL, 0, 0, 0, transfer->json};
    EVP_MD_CTX *digest = EVP_MD_CTX_new();
    EVP_DigestInit_ex(digest, EVP_sha256(), NULL);
    int exit_code = ctl_read_rows(in, digest, &rows);
    if (in != stdin) {
        fclose(in);
    }
    unsigned char hash[32];
    unsigned int hash_length = 0;
    EVP_DigestFinal_ex(digest, hash, &hash_length);
    EVP_MD_CTX_free(digest);
    char digest_hex[65];
    util_hex(hash, sizeof(hash), digest_hex);
    ctl_progress_t progress = {0, 0, 0, util_monotonic_ms(), isatty(STDERR_FILENO) == 1};
    if (exit_code == 0) {
        ctl_mark_duplicates(&rows);
        int code = ctl_send_rows(transfer, &rows, digest_hex, path, &progress);
        exit_code = code != 0 ? ctl_exit_for(code) : rows.bad_count > 0 ? EXIT_INVALID : 0;
        if (code != 0) {
            fprintf(stderr, "stockctl: stopped; run the same command again to resume (applied "
                            "chunks are recognised and skipped)\n");
        }
    }
    double seconds = (util_monotonic_ms() - progress.started_ms) / 1000.0;
    if (progress.terminal) {
        fputc('\n', stderr);
    }
    if (transfer->json) {
        printf("{\"rows_applied\":%zu,\"chunks\":%zu,\"chunks_already_applied\":%zu,"
               "\"bad_rows\":%zu,\"seconds\":%.3f}\n",
               progress.applied_rows, progress.chunks, progress.replayed_chunks, rows.bad_count,
               seconds);
    } else {
        fprintf(stderr,
                "stockctl: %zu rows applied in %zu chunks (%zu chunks were already applied), "
                "%zu bad rows, %.1f s\n",
                progress.applied_rows, progress.chunks, progress.replayed_chunks, rows.bad_count,
                seconds);
    }
    ctl_free_rows(&rows);
    return exit_code;
}
