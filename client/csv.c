/* csv.c — see csv.h. */
#include "csv.h"

#include <string.h>

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
