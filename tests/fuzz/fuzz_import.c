/* fuzz_import.c — libFuzzer target for stockctl import/export (client/csv.c).
 *
 * The first input byte picks the mode:
 *  - even: the rest is an import file, cut into lines as ctl_read_rows does; the first line
 *    must be the header, every other line is parsed as a level row (csv_level_parse);
 *  - odd: the rest is four ids separated by 0xFF (never a byte of UTF-8): an item as stockd
 *    might hold it.
 * Properties that must hold abort, so the fuzzer reports them as crashes:
 *  - a row import accepts has ids stockd accepts (sd_validate_item: the daemon's own rule),
 *    and export writes it as one line that imports back to the same row, byte for byte;
 *  - for any ids, stockd accepts them exactly when export can write them and import reads
 *    them back: every id stockd stores survives export → import.
 * Replayed from tests/fuzz/corpus/import as an ordinary test; built with clang
 * -fsanitize=fuzzer (with every library instrumented) for fuzzing. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csv.h"
#include "sd_limits.h"
#include "validate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An always-on check of a property of the code under test (never of the input). */
#define FUZZ_CHECK(condition)                                                                      \
    do {                                                                                           \
        if (!(condition)) {                                                                        \
            fprintf(stderr, "fuzz_import: %s:%d: check failed: %s\n", __FILE__, __LINE__,          \
                    #condition);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* stockd's verdict on an item with these ids. */
static bool fuzz_daemon_accepts(const char *const ids[CSV_LEVEL_IDS_COUNT])
{
    Stockd__V1__ItemRef item = STOCKD__V1__ITEM_REF__INIT;
    item.location_id = (char *)ids[0];
    item.app_id = (char *)ids[1];
    item.catalog_item_id = (char *)ids[2];
    item.variant = (char *)ids[3];
    sd_error_t error;
    sd_error_init(&error);
    bool ok = sd_validate_item(&item, "item", &error);
    sd_error_free(&error);
    return ok;
}

static bool fuzz_rows_equal(const csv_level_row_t *a, const csv_level_row_t *b)
{
    for (int i = 0; i < CSV_LEVEL_IDS_COUNT; i++) {
        if (strcmp(a->ids[i], b->ids[i]) != 0) {
            return false;
        }
    }
    return a->available == b->available && a->tracked == b->tracked &&
           a->has_floor == b->has_floor && (!a->has_floor || a->floor == b->floor);
}

/* Exports row and imports the line back. Returns false when export refused to write it;
 * otherwise the line must be one record that imports to an equal row (checked here). */
static bool fuzz_export_import(const csv_level_row_t *row)
{
    char *text = NULL;
    size_t text_length = 0;
    FILE *out = open_memstream(&text, &text_length);
    FUZZ_CHECK(out != NULL);
    bool written = csv_level_write(out, row);
    FUZZ_CHECK(fclose(out) == 0);
    if (!written) {
        FUZZ_CHECK(text_length == 0);
        free(text);
        return false;
    }
    /* one line, within import's line limit, with nothing import would cut it at */
    FUZZ_CHECK(text_length > 0 && text_length <= CSV_LINE_BYTES_MAX);
    FUZZ_CHECK(memchr(text, '\n', text_length) == text + text_length - 1);
    FUZZ_CHECK(memchr(text, '\r', text_length) == NULL && strlen(text) == text_length);
    text[text_length - 1] = '\0';
    csv_level_row_t back;
    const char *reason = csv_level_parse(text, CSV_LEVEL_COLUMNS_MAX, &back);
    if (reason != NULL) {
        fprintf(stderr, "fuzz_import: exported line does not import: %s\n", reason);
    }
    FUZZ_CHECK(reason == NULL);
    FUZZ_CHECK(fuzz_rows_equal(row, &back));
    free(text);
    return true;
}

/* One data line of an import file. */
static void fuzz_row(char *line, int columns)
{
    csv_level_row_t row;
    const char *reason = csv_level_parse(line, columns, &row);
    if (reason != NULL) {
        FUZZ_CHECK(reason[0] != '\0');
        return;
    }
    FUZZ_CHECK(fuzz_daemon_accepts(row.ids));
    FUZZ_CHECK(fuzz_export_import(&row));
}

/* An import file, cut into lines as ctl_read_rows does (at LF, then csv_line_end_cut drops
 * the LF or CRLF; blank lines are skipped). */
static void fuzz_file(const uint8_t *data, size_t size)
{
    char line[CSV_LINE_BYTES_MAX + 3];
    int columns = -1;
    size_t offset = 0;
    for (size_t number = 1; offset < size; number++) {
        const uint8_t *start = data + offset;
        const uint8_t *end = memchr(start, '\n', size - offset);
        size_t length = end != NULL ? (size_t)(end - start) : size - offset;
        offset += length + (end != NULL);
        if (length > CSV_LINE_BYTES_MAX + 1) {
            continue; /* reported as too long */
        }
        memcpy(line, start, length + (end != NULL));
        line[length + (end != NULL)] = '\0';
        if (csv_line_end_cut(line, length + (end != NULL)) > CSV_LINE_BYTES_MAX) {
            continue; /* reported as too long */
        }
        if (number == 1) {
            columns = csv_level_header(line);
            if (columns < 0) {
                return;
            }
            FUZZ_CHECK(columns >= CSV_LEVEL_COLUMNS_MIN && columns <= CSV_LEVEL_COLUMNS_MAX);
            continue;
        }
        if (!csv_line_blank(line)) {
            fuzz_row(line, columns);
        }
    }
}

/* Four ids separated by 0xFF: stockd accepts them exactly when they survive export and
 * import. */
static void fuzz_ids(const uint8_t *data, size_t size)
{
    char *copy = malloc(size + 1);
    FUZZ_CHECK(copy != NULL);
    memcpy(copy, data, size);
    copy[size] = '\0';
    if (strlen(copy) != size) {
        free(copy); /* a NUL: stockd's wire check refuses it before any validation */
        return;
    }
    const char *ids[CSV_LEVEL_IDS_COUNT] = {"", "", "", ""};
    char *cursor = copy;
    for (int i = 0; i < CSV_LEVEL_IDS_COUNT && cursor != NULL; i++) {
        ids[i] = cursor;
        cursor = strchr(cursor, '\xff');
        if (cursor != NULL) {
            *cursor++ = '\0';
        }
    }
    csv_level_row_t row = {{ids[0], ids[1], ids[2], ids[3]},
                           (int64_t)size - 100,
                           (int)(size % 3) - 1,
                           (size & 1) != 0,
                           -(int64_t)size};
    bool accepted = fuzz_daemon_accepts(ids);
    char *text = NULL;
    size_t text_length = 0;
    FILE *out = open_memstream(&text, &text_length);
    FUZZ_CHECK(out != NULL);
    bool written = csv_level_write(out, &row);
    FUZZ_CHECK(fclose(out) == 0);
    bool imported = false;
    if (written) {
        text[text_length - 1] = '\0';
        csv_level_row_t back;
        imported = csv_level_parse(text, CSV_LEVEL_COLUMNS_MAX, &back) == NULL;
    }
    free(text);
    FUZZ_CHECK(accepted == imported);
    if (accepted) {
        FUZZ_CHECK(fuzz_export_import(&row)); /* and byte for byte */
    }
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) {
        return 0;
    }
    if ((data[0] & 1) == 0) {
        fuzz_file(data + 1, size - 1);
    } else {
        fuzz_ids(data + 1, size - 1);
    }
    return 0;
}
