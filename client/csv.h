/* csv.h — the CSV that stockctl import/export speak (RFC 4180: comma separated, fields with
 * commas, quotes or line breaks quoted, quotes doubled; a record is one line). */
#ifndef STOCKCLIENT_CSV_H
#define STOCKCLIENT_CSV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define CSV_FIELDS_MAX 16
#define CSV_LINE_BYTES_MAX 4096

/* Splits one line (without its line break) into fields, in place. Returns the number of
 * fields, or -1 when the line is malformed (an unterminated quote, text after a closing
 * quote, or more than CSV_FIELDS_MAX fields). */
int csv_split(char *line, char **fields, int fields_max);

/* Writes one field, quoted when needed. */
void csv_write_field(FILE *out, const char *text);

#endif
