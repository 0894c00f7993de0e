/* prom.h — lock-free Prometheus primitives (counters, histograms), text rendering, and the
 * standard process_* metrics read from /proc/self. */
#ifndef STOCKD_PROM_H
#define STOCKD_PROM_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define PROM_BUCKETS_MAX 16

typedef struct {
    const double *bounds; /* upper bounds, ascending; +Inf is implicit */
    size_t bounds_count;  /* <= PROM_BUCKETS_MAX */
    _Atomic uint64_t counts[PROM_BUCKETS_MAX + 1];
    _Atomic uint64_t sum_micro; /* sum of observations × 10^6 */
} prom_histogram_t;

/* A growing text buffer with a hard cap: output past the cap is dropped. */
typedef struct {
    char *data;
    size_t used;
    size_t capacity;
} prom_buffer_t;

void prom_histogram_init(prom_histogram_t *histogram, const double *bounds, size_t bounds_count);
void prom_histogram_observe(prom_histogram_t *histogram, double value);

void prom_printf(prom_buffer_t *buffer, const char *format, ...)
    __attribute__((format(printf, 2, 3)));
/* Writes the "# HELP" and "# TYPE" lines of a family; type is "counter", "gauge" or
 * "histogram". */
void prom_family(prom_buffer_t *buffer, const char *name, const char *type, const char *help);
/* Writes one sample; labels is "" (no braces are written then) or "key=\"value\",...". */
void prom_sample(prom_buffer_t *buffer, const char *name, const char *labels, double value);
/* Writes a whole family of one unlabelled sample (HELP, TYPE and the sample). */
void prom_single(prom_buffer_t *buffer, const char *name, const char *type, const char *help,
                 double value);
/* Writes the _bucket/_sum/_count series; labels is "" or "key=\"value\"" (no empty "{}" is
 * ever written). */
void prom_render_histogram(prom_buffer_t *buffer, const char *name, const char *labels,
                           prom_histogram_t *histogram);

/* Writes the standard process metrics of the calling process, as every Prometheus client
 * library names them: process_cpu_seconds_total, process_resident_memory_bytes,
 * process_virtual_memory_bytes, process_open_fds, process_max_fds and
 * process_start_time_seconds. A figure /proc does not give is left out (never a made-up 0). */
void prom_render_process(prom_buffer_t *buffer);

#endif
