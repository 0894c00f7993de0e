/* util.c — see util.h. */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int64_t util_now_us(void)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000;
}

int64_t util_now_s(void)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (int64_t)now.tv_sec;
}

double util_monotonic_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec * 1000.0 + (double)now.tv_nsec / 1e6;
}

bool util_cond_init_monotonic(pthread_cond_t *cond)
{
    pthread_condattr_t attributes;
    if (pthread_condattr_init(&attributes) != 0) {
        return false;
    }
    bool ok = pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC) == 0 &&
              pthread_cond_init(cond, &attributes) == 0;
    pthread_condattr_destroy(&attributes);
    return ok;
}

struct timespec util_time_after_us(clockid_t clock, int64_t us)
{
    struct timespec at;
    clock_gettime(clock, &at);
    int64_t nanoseconds = (int64_t)at.tv_nsec + us % 1000000 * 1000;
    at.tv_sec += (time_t)(us / 1000000 + nanoseconds / 1000000000);
    at.tv_nsec = (long)(nanoseconds % 1000000000);
    return at;
}

/* Returns the length of the UTF-8 sequence starting at bytes[0], or 0 when malformed. */
static size_t util_utf8_sequence_length(const unsigned char *bytes, size_t remaining)
{
    unsigned char lead = bytes[0];
    if (lead == 0) {
        return 0;
    }
    if (lead < 0x80) {
        return 1;
    }
    size_t length;
    uint32_t code;
    if ((lead & 0xE0) == 0xC0) {
        length = 2;
        code = lead & 0x1F;
    } else if ((lead & 0xF0) == 0xE0) {
        length = 3;
        code = lead & 0x0F;
    } else if ((lead & 0xF8) == 0xF0) {
        length = 4;
        code = lead & 0x07;
    } else {
        return 0;
    }
    if (length > remaining) {
        return 0;
    }
    for (size_t i = 1; i < length; i++) {
        if ((bytes[i] & 0xC0) != 0x80) {
            return 0;
        }
        code = (code << 6) | (bytes[i] & 0x3F);
    }
    static const uint32_t minimum[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (code < minimum[length] || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) {
        return 0;
    }
    return length;
}

bool util_utf8_valid(const char *bytes, size_t length)
{
    const unsigned char *cursor = (const unsigned char *)bytes;
    size_t index = 0;
    while (index < length) {
        size_t step = util_utf8_sequence_length(cursor + index, length - index);
        if (step == 0) {
            return false;
        }
        index += step;
    }
    return true;
}

size_t util_utf8_repair(char *text)
{
    size_t length = strlen(text), read = 0, written = 0;
    while (read < length) {
        size_t step = util_utf8_sequence_length((const unsigned char *)text + read, length - read);
        if (step == 0) {
            read++; /* a byte of a cut or broken character: dropped */
            continue;
        }
        memmove(text + written, text + read, step);
        read += step;
        written += step;
    }
    text[written] = '\0';
    return written;
}

/* The JSON form of the character at text (its escape, or its bytes) into escape; returns its
 * length in escape and the bytes of input it covers in *input_step (0 when the input ends
 * within a character, or holds a broken one: escaping stops there). */
static size_t util_json_escape_one(const char *text, size_t input_left, char escape[8],
                                   size_t *input_step)
{
    unsigned char c = (unsigned char)text[0];
    if (c == '"' || c == '\\') {
        escape[0] = '\\';
        escape[1] = (char)c;
        *input_step = 1;
        return 2;
    }
    if (c < 0x20 || c == 0x7F) {
        *input_step = 1;
        return (size_t)snprintf(escape, 8, "\\u%04x", c);
    }
    size_t step = util_utf8_sequence_length((const unsigned char *)text, input_left);
    memcpy(escape, text, step);
    *input_step = step;
    return step;
}

size_t util_json_escape(const char *text, size_t input_bytes_max, char *out, size_t out_capacity)
{
    size_t used = 0;
    if (out_capacity == 0) {
        return 0;
    }
    size_t input_length = strnlen(text, input_bytes_max);
    for (size_t i = 0; i < input_length;) {
        char escape[8];
        size_t step = 0;
        size_t n = util_json_escape_one(text + i, input_length - i, escape, &step);
        if (step == 0 || used + n >= out_capacity) {
            break; /* never cut a character in two */
        }
        memcpy(out + used, escape, n);
        used += n;
        i += step;
    }
    out[used] = '\0';
    return used;
}

size_t util_identifier_span(const char *text, const char *marks)
{
    size_t index = 0;
    for (; text[index] != '\0'; index++) {
        char c = text[index];
        bool allowed = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                       strchr(marks, c) != NULL;
        if (!allowed) {
            break;
        }
    }
    return index;
}

bool util_parse_int64(const char *text, int64_t *value_out)
{
    if (text == NULL || *text == '\0') {
        return false;
    }
    char *end = NULL;
    errno = 0;
    long long value = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0') {
        return false;
    }
    *value_out = (int64_t)value;
    return true;
}

bool util_parse_duration_s(const char *text, int64_t *seconds_out)
{
    static const struct {
        char suffix;
        int64_t seconds;
    } units[] = {{'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400}};
    size_t length = text ? strlen(text) : 0;
    if (length == 0 || length > 32) {
        return false;
    }
    char number[33];
    memcpy(number, text, length + 1);
    int64_t multiplier = 1;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (number[length - 1] == units[i].suffix) {
            multiplier = units[i].seconds;
            number[length - 1] = '\0';
            break;
        }
    }
    int64_t value;
    if (!util_parse_int64(number, &value) || value < 0 || value > INT64_MAX / multiplier) {
        return false;
    }
    *seconds_out = value * multiplier;
    return true;
}

void util_hex(const unsigned char *bytes, size_t length, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < length; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 0x0F];
    }
    out[2 * length] = '\0';
}

bool util_add_int64(int64_t a, int64_t b, int64_t *result_out)
{
    return !__builtin_add_overflow(a, b, result_out);
}

static int util_base64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    return c == '-' ? 62 : c == '_' ? 63 : -1;
}

unsigned char *util_base64url_decode(const char *text, size_t length, size_t *decoded_length)
{
    /* RFC 7515 §2: base64url without padding; a length of 1 mod 4 cannot occur. */
    if (length % 4 == 1) {
        return NULL;
    }
    unsigned char *out = malloc(length * 3 / 4 + 3);
    if (out == NULL) {
        return NULL;
    }
    size_t used = 0;
    uint32_t accumulator = 0;
    int bits = 0;
    for (size_t i = 0; i < length; i++) {
        int value = util_base64url_value((unsigned char)text[i]);
        if (value < 0) {
            free(out);
            return NULL;
        }
        accumulator = (accumulator << 6) | (uint32_t)value;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[used++] = (unsigned char)(accumulator >> bits);
        }
    }
    /* The leftover bits must be zero, so each token has exactly one encoding. */
    if (bits > 0 && (accumulator & ((1u << bits) - 1)) != 0) {
        free(out);
        return NULL;
    }
    *decoded_length = used;
    return out;
}

char *util_base64url_encode(const unsigned char *bytes, size_t length)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char *out = malloc(length / 3 * 4 + 5);
    size_t used = 0;
    uint32_t accumulator = 0;
    int bits = 0;
    if (out == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < length; i++) {
        accumulator = (accumulator << 8) | bytes[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[used++] = alphabet[(accumulator >> bits) & 0x3F];
        }
    }
    if (bits > 0) {
        out[used++] = alphabet[(accumulator << (6 - bits)) & 0x3F];
    }
    out[used] = '\0';
    return out;
}

char *util_read_file(const char *path, size_t bytes_max, size_t *length_out, char *error,
                     size_t error_capacity)
{
    FILE *file = fopen(path, "rb");
    if (file == NULL) {
        snprintf(error, error_capacity, "cannot open: %s", strerror(errno));
        return NULL;
    }
    char *data = malloc(bytes_max + 1);
    /* one byte more than allowed tells "too large" from "exactly the limit" */
    size_t length = data ? fread(data, 1, bytes_max + 1, file) : 0;
    bool read_failed = ferror(file) != 0;
    fclose(file);
    if (data == NULL || read_failed || length > bytes_max) {
        if (data == NULL) {
            snprintf(error, error_capacity, "out of memory");
        } else if (read_failed) {
            snprintf(error, error_capacity, "cannot read");
        } else {
            snprintf(error, error_capacity, "larger than %zu bytes", bytes_max);
        }
        free(data);
        return NULL;
    }
    data[length] = '\0';
    *length_out = length;
    return data;
}

bool util_file_stamp(const char *path, util_file_stamp_t *stamp_out)
{
    struct stat info;
    if (stat(path, &info) != 0) {
        memset(stamp_out, 0, sizeof(*stamp_out));
        return false;
    }
    *stamp_out = (util_file_stamp_t){info.st_dev, info.st_ino, info.st_size, info.st_mtim};
    return true;
}

bool util_file_stamp_equal(const util_file_stamp_t *a, const util_file_stamp_t *b)
{
    return a->device == b->device && a->inode == b->inode && a->size == b->size &&
           a->modified.tv_sec == b->modified.tv_sec && a->modified.tv_nsec == b->modified.tv_nsec;
}

/* Writes every byte to fd, across short writes and EINTR. */
static bool util_write_all(int fd, const unsigned char *bytes, size_t length)
{
    while (length > 0) {
        ssize_t written = write(fd, bytes, length);
        if (written < 0 && errno == EINTR) {
            continue;
        }
        if (written <= 0) {
            return false;
        }
        bytes += written;
        length -= (size_t)written;
    }
    return true;
}

static bool util_fsync_path(const char *path, int flags)
{
    int fd = open(path, flags | O_CLOEXEC);
    if (fd < 0) {
        return false;
    }
    bool synced = fsync(fd) == 0;
    int saved = errno;
    close(fd);
    errno = saved;
    return synced;
}

bool util_write_file_synced(const char *path, const void *bytes, size_t length)
{
    char temporary[PATH_MAX];
    char directory[PATH_MAX];
    if ((size_t)snprintf(temporary, sizeof(temporary), "%s.tmp", path) >= sizeof(temporary) ||
        (size_t)snprintf(directory, sizeof(directory), "%s", path) >= sizeof(directory)) {
        errno = ENAMETOOLONG;
        return false;
    }
    int fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) {
        return false;
    }
    bool written = util_write_all(fd, bytes, length) && fsync(fd) == 0;
    int saved = errno;
    close(fd);
    if (!written || rename(temporary, path) != 0) {
        saved = written ? errno : saved;
        unlink(temporary);
        errno = saved;
        return false;
    }
    return util_fsync_path(dirname(directory), O_RDONLY | O_DIRECTORY);
}
