/* log.h — one JSON line per event on stderr.
 *
 * Usage:  SD_LOG(LOG_INFO, "listening", LF_STR("address", addr), LF_INT("port", port));
 * The level is checked before any argument is evaluated, so disabled debug lines cost one
 * comparison. Never pass secrets or whole request bodies as fields. */
#ifndef STOCKD_LOG_H
#define STOCKD_LOG_H

#include <stdbool.h>
#include <stdint.h>

typedef enum { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 } log_level_t;

typedef enum {
    LOG_FIELD_END = 0,
    LOG_FIELD_STR,
    LOG_FIELD_INT,
    LOG_FIELD_UINT,
    LOG_FIELD_DOUBLE,
    LOG_FIELD_BOOL
} log_field_type_t;

typedef struct {
    const char *key;
    log_field_type_t type;
    const char *s;
    int64_t i;
    uint64_t u;
    double d;
} log_field_t;

#define LF_STR(k, v) ((log_field_t){.key = (k), .type = LOG_FIELD_STR, .s = (v)})
#define LF_INT(k, v) ((log_field_t){.key = (k), .type = LOG_FIELD_INT, .i = (int64_t)(v)})
#define LF_UINT(k, v) ((log_field_t){.key = (k), .type = LOG_FIELD_UINT, .u = (uint64_t)(v)})
#define LF_DBL(k, v) ((log_field_t){.key = (k), .type = LOG_FIELD_DOUBLE, .d = (double)(v)})
#define LF_BOOL(k, v) ((log_field_t){.key = (k), .type = LOG_FIELD_BOOL, .i = (v) ? 1 : 0})
#define LF_END ((log_field_t){.key = NULL, .type = LOG_FIELD_END})

#define SD_LOG(level, event, ...)                                                                  \
    do {                                                                                           \
        if (log_enabled(level)) {                                                                  \
            log_emit((level), (event), (const log_field_t[]){__VA_ARGS__, LF_END});                \
        }                                                                                          \
    } while (0)

/* Sets the component name written on every line ("stockd", "gateway", ...) and the minimum
 * level. The component string must outlive all logging (a literal). */
void log_init(const char *component, log_level_t level_min);

/* Parses "debug"/"info"/"warn"/"error"; returns false for anything else. */
bool log_level_parse(const char *text, log_level_t *level_out);

bool log_enabled(log_level_t level);

/* Writes one line: {"time":…,"level":…,"component":…,"event":…, fields…}. Thread-safe:
 * the line is formatted into a local buffer and written with one write(2). Long string
 * values are truncated so a line never exceeds 8 KiB. */
void log_emit(log_level_t level, const char *event, const log_field_t *fields);

/* Always on, in every build: for programmer errors only (an invariant of our own state that
 * cannot be false unless the code is wrong), never for input or I/O outcomes, which are
 * handled. Logs the expression, file and line as an "assertion_failed" event, then aborts, so
 * a broken invariant stops the process before it can store or answer something wrong. */
#define SD_ASSERT(expression)                                                                      \
    ((expression) ? (void)0 : log_assert_failed(#expression, __FILE__, __LINE__))

_Noreturn void log_assert_failed(const char *expression, const char *file, int line);

#endif
