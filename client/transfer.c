/* transfer.c — see transfer.h. */
#include "transfer.h"

#include "sd_limits.h"

#include <grpc/status.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "csv.h"
#include "ctl.h"
#include "ctl_output.h"
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

/* The summary: on stderr, or with json one object (with the error, if stockd failed) on
 * stdout, or on stderr when the CSV itself goes to stdout. */
static void ctl_export_summary(const ctl_transfer_t *transfer, const ctl_export_t *export,
                               bool csv_on_stdout, const sc_status_t *status)
{
    if (!transfer->json) {
        if (status->code != 0) {
            fprintf(stderr, "stockctl: export failed: %s: %s\n", sc_code_name(status->code),
                    status->message);
        }
        fprintf(stderr, "stockctl: exported %zu rows", export->rows);
        if (export->skipped_rows > 0) {
            fprintf(stderr, "; %zu rows not exported (control characters in ids)",
                    export->skipped_rows);
        }
        fputc('\n', stderr);
        return;
    }
    json_t *summary = json_pack("{s:I,s:I}", "rows", (json_int_t) export->rows, "rows_not_exported",
                                (json_int_t) export->skipped_rows);
    if (summary != NULL && status->code != 0) {
        json_object_set_new(
            summary, "error",
            json_pack("{s:s,s:s}", "code", sc_code_name(status->code), "message", status->message));
    }
    if (!csv_on_stdout) {
        ctl_json_print(summary);
        return;
    }
    char *text = summary != NULL ? json_dumps(summary, JSON_COMPACT) : NULL;
    fprintf(stderr, "%s\n", text != NULL ? text : "{}");
    free(text);
    json_decref(summary);
}

int ctl_export(const ctl_transfer_t *transfer, const char *path)
{
    bool to_stdout = strcmp(path, "-") == 0;
    FILE *out = to_stdout ? stdout : fopen(path, "w");
    if (out == NULL) {
        return ctl_invalid(transfer->json, "cannot write %s", path);
    }
    fprintf(out, "location_id,app_id,catalog_item_id,variant,available,tracked,floor\n");
    Stockd__V1__ListStockRequest request = STOCKD__V1__LIST_STOCK_REQUEST__INIT;
    request.tenant_id = (char *)transfer->tenant;
    request.page_size = SD_PAGE_SIZE_MAX;
    ctl_export_t export = {out, 0, 0};
    sc_status_t status;
    int code = sc_list_all(transfer->client, &request, ctl_export_page, &export,
                           transfer->deadline_ms, &status);
    int exit_code = ctl_exit_for(code);
    if (!to_stdout && fclose(out) != 0) {
        fprintf(stderr, "stockctl: writing %s failed\n", path);
        exit_code = EXIT_OTHER;
    }
    if (export.skipped_rows > 0 && exit_code == EXIT_DONE) {
        exit_code = EXIT_OTHER;
    }
    ctl_export_summary(transfer, &export, to_stdout, &status);
    sc_status_free(&status);
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

/* Reads one line of the file into line[0..capacity) and cuts its line break (LF or CRLF).
 * Every byte read goes into the digest. Returns false at the end of the file. Sets
 * *problem_out, skipping the rest of the line, when the line is longer than
 * CSV_LINE_BYTES_MAX or holds a NUL byte (as every line of a UTF-16 file does); else NULL. */
static bool ctl_read_line(FILE *in, EVP_MD_CTX *digest, char *line, size_t capacity,
                          const char **problem_out)
{
    if (fgets(line, (int)capacity, in) == NULL) {
        return false;
    }
    size_t length = strlen(line);
    EVP_DigestUpdate(digest, line, length);
    bool complete = length > 0 && line[length - 1] == '\n';
    *problem_out = NULL;
    if (!complete && !feof(in)) { /* the buffer filled up, or a NUL hid the rest */
        *problem_out = length + 1 < capacity ? "a NUL byte in the line (is the file UTF-16?)"
                                             : "line longer than 4096 bytes";
        int c;
        while ((c = fgetc(in)) != EOF && c != '\n') {
            unsigned char byte = (unsigned char)c;
            EVP_DigestUpdate(digest, &byte, 1);
        }
        if (c == '\n') {
            EVP_DigestUpdate(digest, "\n", 1);
        }
        return true;
    }
    if (csv_line_end_cut(line, length) > CSV_LINE_BYTES_MAX) {
        *problem_out = "line longer than 4096 bytes";
    }
    return true;
}

/* Keeps a good row (copying its ids). Returns 0 or EXIT_OTHER when out of memory. */
static int ctl_keep_row(ctl_rows_t *rows, const csv_level_row_t *parsed, size_t number)
{
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
    ctl_row_t row = {.available = parsed->available,
                     .tracked = parsed->tracked,
                     .has_floor = parsed->has_floor,
                     .floor = parsed->floor,
                     .line = number};
    for (int i = 0; i < 4; i++) {
        row.parts[i] = strdup(parsed->ids[i]);
    }
    rows->rows[rows->count++] = row; /* owned by rows now, even if a copy failed */
    if (!row.parts[0] || !row.parts[1] || !row.parts[2] || !row.parts[3]) {
        fprintf(stderr, "stockctl: out of memory\n");
        return EXIT_OTHER;
    }
    return 0;
}

/* Reads line 1 (NULL: missing) into *columns_out; `problem` is ctl_read_line's. Returns 0,
 * or EXIT_INVALID after saying why it is not the header (naming UTF-16, which spreadsheets
 * write as "Unicode text"). */
static int ctl_header(const ctl_rows_t *rows, char *line, const char *problem, int *columns_out)
{
    bool utf16 =
        line != NULL && (strncmp(line, "\xFF\xFE", 2) == 0 || strncmp(line, "\xFE\xFF", 2) == 0);
    *columns_out = line != NULL && problem == NULL ? csv_level_header(line) : -1;
    if (*columns_out >= 0) {
        return 0;
    }
    return ctl_invalid(rows->json,
                       "line 1 must be the header location_id,app_id,catalog_item_id,variant,"
                       "available[,tracked[,floor]]%s",
                       utf16 ? " (this file is UTF-16: save it as \"CSV UTF-8\")" : "");
}

/* Reads the whole file: good rows kept, bad rows reported. Updates the SHA-256 digest.
 * Returns 0, EXIT_INVALID (no header; reported) or EXIT_OTHER. */
static int ctl_read_rows(FILE *in, EVP_MD_CTX *digest, ctl_rows_t *rows)
{
    char line[CSV_LINE_BYTES_MAX + 3]; /* the longest line, its "\r\n" and the NUL */
    int columns = -1;
    const char *problem = NULL;
    for (size_t number = 1; ctl_read_line(in, digest, line, sizeof(line), &problem); number++) {
        if (number == 1) {
            if (ctl_header(rows, line, problem, &columns) != 0) {
                return EXIT_INVALID;
            }
            continue;
        }
        if (problem != NULL) {
            ctl_bad_row(rows, number, problem);
            continue;
        }
        if (csv_line_blank(line)) {
            continue;
        }
        csv_level_row_t parsed;
        const char *reason = csv_level_parse(line, columns, &parsed);
        if (reason != NULL) {
            ctl_bad_row(rows, number, reason);
            continue;
        }
        int code = ctl_keep_row(rows, &parsed, number);
        if (code != 0) {
            return code;
        }
    }
    return columns < 0 ? ctl_header(rows, NULL, NULL, &columns) : 0; /* an empty file */
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
    int error_code;          /* the gRPC code of the chunk that failed, or 0 */
    char error_message[512]; /* and its message */
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

/* One chunk as a SetStock request, with the memory it points into. */
typedef struct {
    Stockd__V1__SetStockRequest request;
    Stockd__V1__BatchWrite write;
    Stockd__V1__ItemRef *items;
    Stockd__V1__SetLine *lines;
    Stockd__V1__SetLine **pointers;
    Google__Protobuf__BoolValue *tracked;
    Google__Protobuf__Int64Value *floors;
    char request_id[96];
    size_t rows;
} ctl_chunk_t;

static void ctl_chunk_free(ctl_chunk_t *chunk)
{
    free(chunk->items);
    free(chunk->lines);
    free(chunk->pointers);
    free(chunk->tracked);
    free(chunk->floors);
    memset(chunk, 0, sizeof(*chunk));
}

/* Builds the SetStock of `count` good rows (false when out of memory). */
static bool ctl_chunk_build(ctl_chunk_t *out, ctl_row_t **rows, size_t count, const char *tenant,
                            const char *reason_text)
{
    out->items = calloc(count, sizeof(*out->items));
    out->lines = calloc(count, sizeof(*out->lines));
    out->pointers = calloc(count, sizeof(*out->pointers));
    out->tracked = calloc(count, sizeof(*out->tracked));
    out->floors = calloc(count, sizeof(*out->floors));
    if (!out->items || !out->lines || !out->pointers || !out->tracked || !out->floors) {
        ctl_chunk_free(out);
        return false;
    }
    for (size_t i = 0; i < count; i++) {
        stockd__v1__item_ref__init(&out->items[i]);
        out->items[i].location_id = rows[i]->parts[0];
        out->items[i].app_id = rows[i]->parts[1];
        out->items[i].catalog_item_id = rows[i]->parts[2];
        out->items[i].variant = rows[i]->parts[3];
        stockd__v1__set_line__init(&out->lines[i]);
        out->lines[i].item = &out->items[i];
        out->lines[i].available = rows[i]->available;
        google__protobuf__bool_value__init(&out->tracked[i]);
        out->tracked[i].value = rows[i]->tracked == 1;
        out->lines[i].tracked = rows[i]->tracked >= 0 ? &out->tracked[i] : NULL;
        google__protobuf__int64_value__init(&out->floors[i]);
        out->floors[i].value = rows[i]->floor;
        out->lines[i].floor = rows[i]->has_floor ? &out->floors[i] : NULL;
        out->pointers[i] = &out->lines[i];
    }
    stockd__v1__set_stock_request__init(&out->request);
    out->request.tenant_id = (char *)tenant;
    out->request.n_lines = count;
    out->request.lines = out->pointers;
    out->request.reason = STOCKD__V1__REASON__REASON_RECOUNT;
    out->request.reason_text = (char *)reason_text;
    out->request.request_id = out->request_id;
    stockd__v1__batch_write__init(&out->write);
    out->write.write_case = STOCKD__V1__BATCH_WRITE__WRITE_SET_STOCK;
    out->write.set_stock = &out->request;
    out->rows = count;
    return true;
}

/* Records a failed chunk (the first one only: that is where a re-run resumes). */
static void ctl_chunk_failed(ctl_progress_t *progress, const char *request_id, int code,
                             const char *message)
{
    fprintf(stderr, "\nstockctl: chunk %s failed: %s: %s\n", request_id, sc_code_name(code),
            message);
    if (progress->error_code == 0) {
        progress->error_code = code;
        snprintf(progress->error_message, sizeof(progress->error_message), "chunk %.96s: %.400s",
                 request_id, message);
    }
}

/* Counts an applied chunk. */
static void ctl_chunk_applied(ctl_progress_t *progress, const ctl_chunk_t *chunk, bool replayed,
                              size_t *done, size_t good)
{
    progress->chunks++;
    progress->replayed_chunks += replayed;
    progress->applied_rows += replayed ? 0 : chunk->rows;
    *done += chunk->rows;
    ctl_show_progress(progress, *done, good);
}

/* Sends each chunk alone as a SetStock: a single chunk, one too large for a Batch, or any
 * chunk when stockd has no Batch (an older version). Returns 0 or the first failure's code. */
static int ctl_send_alone(const ctl_transfer_t *transfer, ctl_chunk_t *chunks, size_t count,
                          ctl_progress_t *progress, size_t *done, size_t good)
{
    int first_failure = 0;
    for (size_t i = 0; i < count; i++) {
        Stockd__V1__SetStockResponse *response = NULL;
        sc_status_t status;
        int code = sc_set_stock(transfer->client, &chunks[i].request, &response,
                                transfer->deadline_ms, &status);
        if (code != 0) {
            ctl_chunk_failed(progress, chunks[i].request_id, code, status.message);
            first_failure = first_failure != 0 ? first_failure : code;
        } else {
            ctl_chunk_applied(progress, &chunks[i], response != NULL && response->replayed, done,
                              good);
        }
        if (response != NULL) {
            stockd__v1__set_stock_response__free_unpacked(response, NULL);
        }
        sc_status_free(&status);
    }
    return first_failure;
}

/* Sends chunks[0..count) as one Batch (each chunk is its own atomic SetStock) and counts what
 * was applied. Returns 0, or the gRPC code of the first chunk that failed (the others are
 * still counted: each chunk stands alone). */
static int ctl_send_batch(const ctl_transfer_t *transfer, ctl_chunk_t *chunks, size_t count,
                          ctl_progress_t *progress, size_t *done, size_t good)
{
    if (count == 1) {
        return ctl_send_alone(transfer, chunks, count, progress, done, good);
    }
    Stockd__V1__BatchWrite **writes = calloc(count, sizeof(*writes));
    if (writes == NULL) {
        return 13;
    }
    for (size_t i = 0; i < count; i++) {
        writes[i] = &chunks[i].write;
    }
    Stockd__V1__BatchRequest request = STOCKD__V1__BATCH_REQUEST__INIT;
    request.n_writes = count;
    request.writes = writes;
    Stockd__V1__BatchResponse *response = NULL;
    sc_status_t status;
    int code = sc_batch(transfer->client, &request, &response, transfer->deadline_ms, &status);
    free(writes);
    if (code == GRPC_STATUS_UNIMPLEMENTED) { /* nothing applied: an older stockd */
        sc_status_free(&status);
        return ctl_send_alone(transfer, chunks, count, progress, done, good);
    }
    if (code != 0) {
        ctl_chunk_failed(progress, chunks[0].request_id, code, status.message);
    }
    for (size_t i = 0; response != NULL && i < count; i++) {
        const Stockd__V1__BatchResult *result = response->results[i];
        int result_code = sc_batch_result_code(result);
        if (result_code != 0) {
            ctl_chunk_failed(progress, chunks[i].request_id, result_code,
                             sc_batch_result_message(result));
            code = code != 0 ? code : result_code;
            continue;
        }
        ctl_chunk_applied(progress, &chunks[i],
                          result->set_stock != NULL && result->set_stock->replayed, done, good);
    }
    if (response != NULL) {
        stockd__v1__batch_response__free_unpacked(response, NULL);
    }
    sc_status_free(&status);
    return code;
}

/* Whether one more chunk still fits the Batch under way (SD_BATCH_* limits, with room for
 * the framing of each write). */
static bool ctl_batch_has_room(size_t chunks, size_t lines, size_t bytes, const ctl_chunk_t *next)
{
    size_t next_bytes = stockd__v1__set_stock_request__get_packed_size(&next->request) + 16;
    return chunks < SD_BATCH_WRITES_MAX && lines + next->rows <= SD_BATCH_LINES_MAX &&
           bytes + next_bytes <= SD_BATCH_REQUEST_BYTES_MAX - 1024;
}

/* Sends the good rows in chunks of chunk_rows, several chunks per Batch call; stops after
 * the first Batch in which a chunk failed. */
static int ctl_send_rows(const ctl_transfer_t *transfer, ctl_rows_t *rows, const char *digest_hex,
                         const char *path, ctl_progress_t *progress)
{
    ctl_row_t **chunk = malloc(transfer->chunk_rows * sizeof(*chunk));
    ctl_chunk_t *pending = calloc(SD_BATCH_WRITES_MAX, sizeof(*pending));
    size_t good = rows->count, done = 0, filled = 0, queued = 0, lines = 0, bytes = 0;
    for (size_t i = 0; i < rows->count; i++) {
        good -= rows->rows[i].bad;
    }
    char reason_text[256];
    snprintf(reason_text, sizeof(reason_text), "stockctl import %.200s", path);
    /* run name (default: the file's digest) + chunk size + chunk number: the same import
     * gives the same ids, so it resumes; another name applies the file afresh */
    const char *name = transfer->import_name[0] != '\0' ? transfer->import_name : digest_hex;
    size_t chunk_number = 0;
    int code = chunk == NULL || pending == NULL ? 13 : 0;
    for (size_t i = 0; code == 0 && i <= rows->count; i++) {
        if (i < rows->count && !rows->rows[i].bad) {
            chunk[filled++] = &rows->rows[i];
        }
        bool last = i == rows->count;
        if (filled > 0 && (filled == transfer->chunk_rows || last)) {
            ctl_chunk_t next;
            if (!ctl_chunk_build(&next, chunk, filled, transfer->tenant, reason_text)) {
                code = 13;
                break;
            }
            snprintf(next.request_id, sizeof(next.request_id), "import:%.64s:%zu:%zu", name,
                     transfer->chunk_rows, chunk_number++);
            if (queued > 0 && !ctl_batch_has_room(queued, lines, bytes, &next)) {
                code = ctl_send_batch(transfer, pending, queued, progress, &done, good);
                for (size_t c = 0; c < queued; c++) {
                    ctl_chunk_free(&pending[c]);
                }
                queued = lines = bytes = 0;
            }
            lines += next.rows;
            bytes += stockd__v1__set_stock_request__get_packed_size(&next.request) + 16;
            pending[queued] = next;
            /* the copy's own pointers must point into the copy */
            pending[queued].request.request_id = pending[queued].request_id;
            pending[queued].write.set_stock = &pending[queued].request;
            queued++;
            filled = 0;
        }
        if (code == 0 && last && queued > 0) {
            code = ctl_send_batch(transfer, pending, queued, progress, &done, good);
        }
    }
    for (size_t c = 0; pending != NULL && c < queued; c++) {
        ctl_chunk_free(&pending[c]);
    }
    free(pending);
    free(chunk);
    if (code == 13 && progress->error_message[0] == '\0') {
        snprintf(progress->error_message, sizeof(progress->error_message),
                 "out of memory in stockctl");
    }
    progress->error_code = code;
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

/* The summary: on stderr, or with json one object on stdout (with the error of the chunk
 * that failed, if one did). */
static void ctl_import_summary(const ctl_transfer_t *transfer, const ctl_progress_t *progress,
                               size_t bad_rows)
{
    double seconds = (util_monotonic_ms() - progress->started_ms) / 1000.0;
    if (progress->terminal) {
        fputc('\n', stderr);
    }
    if (!transfer->json) {
        fprintf(stderr,
                "stockctl: %zu rows applied in %zu chunks (%zu chunks were already applied), "
                "%zu bad rows, %.1f s\n",
                progress->applied_rows, progress->chunks, progress->replayed_chunks, bad_rows,
                seconds);
        if (progress->replayed_chunks > 0) {
            fprintf(stderr, "stockctl: already applied chunks came from an earlier run of this "
                            "import (the same file within stockd's --idempotency-ttl); they were "
                            "not applied again. To apply the file again (a new recount), give "
                            "this run a new name: --request-id NAME\n");
        }
        return;
    }
    json_t *summary =
        json_pack("{s:I,s:I,s:I,s:I,s:f}", "rows_applied", (json_int_t)progress->applied_rows,
                  "chunks", (json_int_t)progress->chunks, "chunks_already_applied",
                  (json_int_t)progress->replayed_chunks, "bad_rows", (json_int_t)bad_rows,
                  "seconds", seconds);
    if (summary != NULL && progress->error_code != 0) {
        json_object_set_new(summary, "error",
                            json_pack("{s:s,s:s}", "code", sc_code_name(progress->error_code),
                                      "message", progress->error_message));
    }
    ctl_json_print(summary);
}

/* Reads the file's rows and its SHA-256 (as hex). Returns 0 or an exit code (reported). */
static int ctl_import_read(const ctl_transfer_t *transfer, const char *path, ctl_rows_t *rows,
                           char digest_hex[65])
{
    FILE *in = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (in == NULL) {
        return ctl_invalid(transfer->json, "cannot read %s", path);
    }
    EVP_MD_CTX *digest = EVP_MD_CTX_new();
    if (digest == NULL || EVP_DigestInit_ex(digest, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(digest);
        if (in != stdin) {
            fclose(in);
        }
        fprintf(stderr, "stockctl: out of memory\n");
        return EXIT_OTHER;
    }
    int exit_code = ctl_read_rows(in, digest, rows);
    if (in != stdin) {
        fclose(in);
    }
    unsigned char hash[32];
    unsigned int hash_length = 0;
    EVP_DigestFinal_ex(digest, hash, &hash_length);
    EVP_MD_CTX_free(digest);
    util_hex(hash, sizeof(hash), digest_hex);
    return exit_code;
}

int ctl_import(const ctl_transfer_t *transfer, const char *path)
{
    ctl_rows_t rows = {NULL, 0, 0, 0, transfer->json};
    char digest_hex[65];
    ctl_progress_t progress = {.started_ms = util_monotonic_ms(),
                               .terminal = isatty(STDERR_FILENO) == 1};
    int exit_code = ctl_import_read(transfer, path, &rows, digest_hex);
    if (exit_code == 0) {
        ctl_mark_duplicates(&rows);
        int code = ctl_send_rows(transfer, &rows, digest_hex, path, &progress);
        exit_code = code != 0 ? ctl_exit_for(code) : rows.bad_count > 0 ? EXIT_INVALID : 0;
        if (code != 0) {
            fprintf(stderr, "stockctl: stopped; run the same command again to resume (applied "
                            "chunks are recognised and skipped)\n");
        }
        ctl_import_summary(transfer, &progress, rows.bad_count);
    }
    ctl_free_rows(&rows);
    return exit_code;
}
