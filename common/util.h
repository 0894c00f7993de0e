/* util.h — small helpers shared by every binary: time, UTF-8, JSON escaping, numbers. */
#ifndef STOCKD_UTIL_H
#define STOCKD_UTIL_H

#include <pthread.h>
#include <stdbool.h>
#include <sys/types.h>
#include <time.h>
#include <stddef.h>
#include <stdint.h>

/* Wall-clock time in unix microseconds / seconds. */
int64_t util_now_us(void);
int64_t util_now_s(void);
/* Monotonic time in milliseconds, as a double for latency measurements. */
double util_monotonic_ms(void);
/* The time `clock` will read `us` microseconds from now: the absolute deadline that
 * pthread_cond_timedwait (CLOCK_MONOTONIC with a condvar from util_cond_init_monotonic) and
 * sem_timedwait (CLOCK_REALTIME) take. */
struct timespec util_time_after_us(clockid_t clock, int64_t us);
/* Initialises a condition variable whose timed waits run on CLOCK_MONOTONIC (a wall-clock
 * jump must not cut a wait short or stretch it); false when it could not be made. */
bool util_cond_init_monotonic(pthread_cond_t *cond);

/* True when bytes[0..length) is well-formed UTF-8 (no overlongs, no surrogates) without NUL. */
bool util_utf8_valid(const char *bytes, size_t length);

/* Drops, in place, every byte of text that is not part of a complete, well-formed UTF-8
 * character, so a message cut by a byte limit (snprintf, %.64s) stays valid UTF-8 for clients
 * that decode it strictly (Python grpcio). Returns the new length. */
size_t util_utf8_repair(char *text);

/* Writes JSON-escaped text (without quotes) into out, reading at most input_bytes_max bytes of
 * input; always NUL-terminates; never cuts a UTF-8 character in two (input or output limit),
 * and stops at a malformed one; returns the bytes written (excluding NUL). */
size_t util_json_escape(const char *text, size_t input_bytes_max, char *out, size_t out_capacity);

/* The length of the leading run of text made of ASCII letters, digits and the characters of
 * `marks` (identifiers such as tenants "[A-Za-z0-9._:-]"): equal to strlen(text) when every
 * character is allowed, otherwise the index of the first one that is not. */
size_t util_identifier_span(const char *text, const char *marks);

/* Strict decimal parse of a whole string into int64; false on junk, empty or overflow. */
bool util_parse_int64(const char *text, int64_t *value_out);

/* Parses a duration "90", "90s", "15m", "12h", "7d" into seconds. */
bool util_parse_duration_s(const char *text, int64_t *seconds_out);

/* Lower-case hex of bytes into out (2*length+1 bytes). */
void util_hex(const unsigned char *bytes, size_t length, char *out);

/* base64url without padding (RFC 4648 §5), as JWS and page tokens use it. Both return
 * malloc'd buffers (NULL on invalid input or out of memory); decoding rejects padding,
 * characters outside the alphabet and non-zero leftover bits, so each value has exactly one
 * encoding. */
char *util_base64url_encode(const unsigned char *bytes, size_t length);
unsigned char *util_base64url_decode(const char *text, size_t length, size_t *decoded_length);

/* Checked arithmetic: false when the result would overflow. */
bool util_add_int64(int64_t a, int64_t b, int64_t *result_out);

/* What tells that a file changed: Kubernetes swaps a mounted Secret by replacing a symlink,
 * which changes the device and inode stat() sees; editors change size or mtime. */
typedef struct {
    dev_t device;
    ino_t inode;
    off_t size;
    struct timespec modified;
} util_file_stamp_t;

/* The stamp of path (followed through symlinks); false, with *stamp_out all zeros, when it
 * cannot be stat'ed. */
bool util_file_stamp(const char *path, util_file_stamp_t *stamp_out);
bool util_file_stamp_equal(const util_file_stamp_t *a, const util_file_stamp_t *b);

/* Reads a whole file of at most bytes_max bytes into a malloc'd NUL-terminated buffer
 * (*length_out bytes before the NUL). NULL with a reason in error (e.g. "cannot open: No such
 * file or directory", "larger than 1048576 bytes") when it cannot. */
char *util_read_file(const char *path, size_t bytes_max, size_t *length_out, char *error,
                     size_t error_capacity);

/* Replaces path with bytes[0..length) durably: written to path.tmp, fsynced, renamed over
 * path, and the directory fsynced, so after a crash path holds the old content or the new,
 * whole. False (errno set) when any step fails. */
bool util_write_file_synced(const char *path, const void *bytes, size_t length);

#endif
