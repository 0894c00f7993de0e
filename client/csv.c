/* csv.c — see csv.h. */
#include "csv.h"

#include <string.h>
#include <strings.h>

#include "util.h"

static const char *const csv_level_columns[CSV_LEVEL_COLUMNS_MAX] = {
    "location_id", "app_id", "catalog_item_id", "variant", "available", "tracked", "floor"};

/* The UTF-8 encoding of U+FEFF, which spreadsheets put before the first line. */
static const char csv_utf8_bom[] = "\xEF\xBB\xBF";

size_t csv_line_end_cut(char *line, size_t length)
{
    if (length > 0 && line[length - 1] == '\n') {
        line[--length] = '\0';
        if (length > 0 && line[length - 1] == '\r') {
            line[--length] = '\0';
        }
    }
    return length;
}

bool csv_line_blank(const char *line)
{
    return line[strspn(line, ",")] == '\0';
}

/* Parses a quoted field starting after its opening quote; returns the position after it. */
static char *csv_quoted(char *cursor, char **field)
{
    char *write = cursor;
    *field = cursor;
    for (;;) {
        if (*cursor == '\0') {
            return NULL; /* unterminated */
        }
        if (*cursor == '"') {
            if (cursor[1] == '"') {
                *write++ = '"';
                cursor += 2;
                continue;
            }
            *write = '\0';
            return cursor + 1;
        }
        *write++ = *cursor++;
    }
}

int csv_split(char *line, char **fields, int fields_max)
{
    int count = 0;
    char *cursor = line;
    for (;;) {
        if (count == fields_max) {
            return -1;
        }
        if (*cursor == '"') {
            cursor = csv_quoted(cursor + 1, &fields[count++]);
            if (cursor == NULL || (*cursor != ',' && *cursor != '\0')) {
                return -1;
            }
        } else {
            fields[count++] = cursor;
            cursor += strcspn(cursor, ",");
            if (memchr(fields[count - 1], '"', (size_t)(cursor - fields[count - 1])) != NULL) {
                return -1; /* a quote inside an unquoted field */
            }
        }
        if (*cursor == '\0') {
            return count;
        }
        *cursor++ = '\0';
    }
}

void csv_write_field(FILE *out, const char *text)
{
    if (strpbrk(text, ",\"\r\n") == NULL) {
        fputs(text, out);
        return;
    }
    fputc('"', out);
    for (const char *c = text; *c != '\0'; c++) {
        if (*c == '"') {
            fputc('"', out);
        }
        fputc(*c, out);
    }
    fputc('"', out);
}

int csv_level_header(char *line)
{
    char *fields[CSV_FIELDS_MAX];
    if (strncmp(line, csv_utf8_bom, sizeof(csv_utf8_bom) - 1) == 0) {
        line += sizeof(csv_utf8_bom) - 1;
    }
    int count = csv_split(line, fields, CSV_FIELDS_MAX);
    if (count < CSV_LEVEL_COLUMNS_MIN || count > CSV_LEVEL_COLUMNS_MAX) {
        return -1;
    }
    for (int i = 0; i < count; i++) {
        if (strcmp(fields[i], csv_level_columns[i]) != 0) {
            return -1;
        }
    }
    return count;
}

/* True when text holds a control character (C0 or DEL): one that would break the
 * one-record-per-line format, or hide in a terminal or spreadsheet. */
static bool csv_has_control(const char *text)
{
    for (const unsigned char *c = (const unsigned char *)text; *c != '\0'; c++) {
        if (*c < 0x20 || *c == 0x7F) {
            return true;
        }
    }
    return false;
}

/* stockd's rule for an id: minimum..maximum bytes of UTF-8 without a control character. */
static bool csv_id_valid(const char *text, size_t minimum, size_t maximum)
{
    size_t length = strlen(text);
    return length >= minimum && length <= maximum && util_utf8_valid(text, length) &&
           !csv_has_control(text);
}

static const char *csv_level_ids(char **fields, csv_level_row_t *row)
{
    static const struct {
        size_t minimum, maximum;
        const char *rule;
    } ids[CSV_LEVEL_IDS_COUNT] = {
        {0, SD_LOCATION_BYTES_MAX, "location_id: 0..64 bytes of UTF-8, no control characters"},
        {1, SD_APP_BYTES_MAX, "app_id: 1..64 bytes of UTF-8, no control characters"},
        {1, SD_CATALOG_ITEM_BYTES_MAX,
         "catalog_item_id: 1..256 bytes of UTF-8, no control characters"},
        {0, SD_VARIANT_BYTES_MAX, "variant: 0..256 bytes of UTF-8, no control characters"},
    };
    for (int i = 0; i < CSV_LEVEL_IDS_COUNT; i++) {
        if (!csv_id_valid(fields[i], ids[i].minimum, ids[i].maximum)) {
            return ids[i].rule;
        }
        row->ids[i] = fields[i];
    }
    return NULL;
}

static bool csv_level_number(const char *text, int64_t *value_out)
{
    return util_parse_int64(text, value_out) && *value_out <= SD_LEVEL_ABS_MAX &&
           *value_out >= -SD_LEVEL_ABS_MAX;
}

const char *csv_level_parse(char *line, int columns, csv_level_row_t *row)
{
    char *fields[CSV_FIELDS_MAX];
    int count = csv_split(line, fields, CSV_FIELDS_MAX);
    if (count < 0) {
        return "malformed CSV";
    }
    if (count != columns) {
        return "wrong number of columns";
    }
    const char *reason = csv_level_ids(fields, row);
    if (reason != NULL) {
        return reason;
    }
    if (!csv_level_number(fields[4], &row->available)) {
        return "available: an integer within +-10^15";
    }
    row->tracked = -1;
    if (columns > 5 && fields[5][0] != '\0') {
        /* spreadsheets write TRUE and FALSE */
        bool yes = strcasecmp(fields[5], "true") == 0 || strcmp(fields[5], "1") == 0;
        bool no = strcasecmp(fields[5], "false") == 0 || strcmp(fields[5], "0") == 0;
        if (!yes && !no) {
            return "tracked: true, false, 1, 0 or empty";
        }
        row->tracked = yes;
    }
    row->has_floor = columns > 6 && fields[6][0] != '\0';
    row->floor = 0;
    if (row->has_floor && !csv_level_number(fields[6], &row->floor)) {
        return "floor: an integer within +-10^15, or empty";
    }
    return NULL;
}

bool csv_level_write(FILE *out, const csv_level_row_t *row)
{
    for (int i = 0; i < CSV_LEVEL_IDS_COUNT; i++) {
        if (csv_has_control(row->ids[i])) {
            return false;
        }
    }
    for (int i = 0; i < CSV_LEVEL_IDS_COUNT; i++) {
        csv_write_field(out, row->ids[i]);
        fputc(',', out);
    }
    fprintf(out, "%lld,%s,", (long long)row->available,
            row->tracked < 0 ? ""
            : row->tracked   ? "true"
                             : "false");
    if (row->has_floor) {
        fprintf(out, "%lld", (long long)row->floor);
    }
    fputc('\n', out);
    return true;
}
