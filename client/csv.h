/* csv.h — the CSV that stockctl import/export speak (RFC 4180: comma separated, fields with
 * commas, quotes or line breaks quoted, quotes doubled; a record is one line), and the
 * stock-level rows of those files:
 *   location_id,app_id,catalog_item_id,variant,available[,tracked,floor]
 *
 * A record is one line because stockd refuses control characters (C0 and DEL) in the four
 * ids: no id holds a line break, so every level export writes imports back byte for byte. */
#ifndef STOCKCLIENT_CSV_H
#define STOCKCLIENT_CSV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "sd_limits.h"

#define CSV_FIELDS_MAX 16
#define CSV_LINE_BYTES_MAX 4096
#define CSV_LEVEL_IDS_COUNT 4 /* location_id, app_id, catalog_item_id, variant */
#define CSV_LEVEL_COLUMNS_MIN 5
#define CSV_LEVEL_COLUMNS_MAX 7

/* The longest possible level row (every id byte a doubled quote, plus quotes, commas and
 * numbers) fits in one line, so export never writes a row that import refuses as too long. */
_Static_assert(2 * (SD_LOCATION_BYTES_MAX + SD_APP_BYTES_MAX + SD_CATALOG_ITEM_BYTES_MAX +
                    SD_VARIANT_BYTES_MAX) +
                       2 * CSV_LEVEL_IDS_COUNT + 6 + 3 * 21 <
                   CSV_LINE_BYTES_MAX,
               "a level row fits in a CSV line");

/* One stock-level row. */
typedef struct {
    const char *ids[CSV_LEVEL_IDS_COUNT]; /* location_id, app_id, catalog_item_id, variant */
    int64_t available;
    int tracked; /* 1 true, 0 false, -1 = keep the current value (empty column) */
    bool has_floor;
    int64_t floor;
} csv_level_row_t;

/* Cuts the line break off a line of `length` bytes as fgets read it: "\n" or "\r\n"
 * (spreadsheets on Windows write CRLF). A CR anywhere else stays in the line, where the parser
 * refuses it (a control character in an id, or not a number). Returns the new length. */
size_t csv_line_end_cut(char *line, size_t length);

/* True for a line (without its line break) with no data: empty, or only commas, as a
 * spreadsheet writes an empty row. Import skips such lines. */
bool csv_line_blank(const char *line);

/* Splits one line (without its line break) into fields, in place. Returns the number of
 * fields, or -1 when the line is malformed (an unterminated quote, text after a closing
 * quote, or more than CSV_FIELDS_MAX fields). */
int csv_split(char *line, char **fields, int fields_max);

/* Writes one field, quoted when needed. */
void csv_write_field(FILE *out, const char *text);

/* Checks the header line of a level file (split in place); a UTF-8 byte order mark before it
 * (spreadsheets write one) is skipped. Returns its number of columns (5..7), or -1 when it is
 * not location_id,app_id,catalog_item_id,variant,available[,tracked[,floor]]. */
int csv_level_header(char *line);

/* Parses one data line (without its line break) of a file whose header had `columns`
 * columns. The line is split in place and row->ids point into it. Returns NULL when the row
 * is good, otherwise a static description of the first problem (for "line N: …"). tracked
 * is true or false in any case (TRUE, as spreadsheets write it), 1 or 0, or empty. The ids
 * follow stockd's rules (bytes, UTF-8, no control character), so a good row is never
 * refused by stockd for its ids. */
const char *csv_level_parse(char *line, int columns, csv_level_row_t *row);

/* Writes one row as a full 7-column line with its line break: the export format, which
 * csv_level_parse reads back to the same row. tracked -1 is written as an empty column.
 * Returns false, writing nothing, when an id holds a control character: such an id (stored
 * before stockd refused them) cannot be written as one line that imports back the same. */
bool csv_level_write(FILE *out, const csv_level_row_t *row);

#endif
