/* log.c — JSON-line logger; see log.h. */
#include "log.h"

#include <stdlib.h>

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

#define LOG_LINE_BYTES_MAX 8192
#define LOG_VALUE_BYTES_MAX 1024

static const char *log_component = "stockd";
static log_level_t log_level_min = LOG_INFO;

static const char *log_level_name(log_level_t level)
{
    switch (level) {
    case LOG_DEBUG:
        return "debug";
    case LOG_INFO:
        return "info";
    case LOG_WARN:
        return "warn";
    case LOG_ERROR:
        return "error";
    }
    return "unknown";
}

void log_init(const char *component, log_level_t level_min)
{
    log_component = component;
    log_level_min = level_min;
}

bool log_level_parse(const char *text, log_level_t *level_out)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++) {
        if (strcmp(text, names[i]) == 0) {
            *level_out = (log_level_t)i;
            return true;
        }
    }
    return false;
}

bool log_enabled(log_level_t level)
{
    return level >= log_level_min;
}

typedef struct {
    char *data;
    size_t used;
    size_t capacity;
} log_buffer_t;

static void log_append_raw(log_buffer_t *buffer, const char *text, size_t length)
{
    size_t room = buffer->capacity - buffer->used;
    if (length > room) {
        length = room;
    }
    memcpy(buffer->data + buffer->used, text, length);
    buffer->used += length;
}

static void log_appendf(log_buffer_t *buffer, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

static void log_appendf(log_buffer_t *buffer, const char *format, ...)
{
    char scratch[64];
    va_list args;
    va_start(args, format);
    int n = vsnprintf(scratch, sizeof(scratch), format, args);
    va_end(args);
    if (n > 0) {
        log_append_raw(buffer, scratch,
                       (size_t)n < sizeof(scratch) ? (size_t)n : sizeof(scratch) - 1);
    }
}

static void log_append_string(log_buffer_t *buffer, const char *text)
{
    char escaped[LOG_VALUE_BYTES_MAX * 6 + 8];
    size_t n = util_json_escape(text ? text : "", LOG_VALUE_BYTES_MAX, escaped, sizeof(escaped));
    log_append_raw(buffer, "\"", 1);
    log_append_raw(buffer, escaped, n);
    log_append_raw(buffer, "\"", 1);
}

static void log_append_field(log_buffer_t *buffer, const log_field_t *field)
{
    log_append_raw(buffer, ",", 1);
    log_append_string(buffer, field->key);
    log_append_raw(buffer, ":", 1);
    switch (field->type) {
    case LOG_FIELD_STR:
        log_append_string(buffer, field->s);
        break;
    case LOG_FIELD_INT:
        log_appendf(buffer, "%lld", (long long)field->i);
        break;
    case LOG_FIELD_UINT:
        log_appendf(buffer, "%llu", (unsigned long long)field->u);
        break;
    case LOG_FIELD_DOUBLE:
        log_appendf(buffer, "%.3f", field->d);
        break;
    case LOG_FIELD_BOOL:
        log_append_raw(buffer, field->i ? "true" : "false", field->i ? 4 : 5);
        break;
    case LOG_FIELD_END:
        break;
    }
}

void log_emit(log_level_t level, const char *event, const log_field_t *fields)
{
    char line[LOG_LINE_BYTES_MAX];
    log_buffer_t buffer = {line, 0, sizeof(line) - 2};
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm utc;
    gmtime_r(&now.tv_sec, &utc);
    char stamp[40];
    size_t stamp_length = strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &utc);
    snprintf(stamp + stamp_length, sizeof(stamp) - stamp_length, ".%06ldZ",
             (long)(now.tv_nsec / 1000));
    log_append_raw(&buffer, "{\"time\":\"", 9);
    log_append_raw(&buffer, stamp, strlen(stamp));
    log_append_raw(&buffer, "\",\"level\":\"", 11);
    log_append_raw(&buffer, log_level_name(level), strlen(log_level_name(level)));
    log_append_raw(&buffer, "\",\"component\":", 14);
    log_append_string(&buffer, log_component);
    log_append_raw(&buffer, ",\"event\":", 9);
    log_append_string(&buffer, event);
    for (const log_field_t *field = fields; field->type != LOG_FIELD_END; field++) {
        log_append_field(&buffer, field);
    }
    line[buffer.used++] = '}';
    line[buffer.used++] = '\n';
    /* One write(2) keeps lines from concurrent threads whole. */
    ssize_t written = write(STDERR_FILENO, line, buffer.used);
    (void)written; /* nowhere left to report a failed log write */
}

void log_assert_failed(const char *expression, const char *file, int line)
{
    log_emit(LOG_ERROR, "assertion_failed",
             (const log_field_t[]){LF_STR("expression", expression), LF_STR("file", file),
                                   LF_INT("line", line), LF_END});
    abort();
}
