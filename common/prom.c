/* prom.c — see prom.h. */
#include "prom.h"

#include <stdarg.h>
#include <stdio.h>

void prom_histogram_init(prom_histogram_t *histogram, const double *bounds, size_t bounds_count)
{
    histogram->bounds = bounds;
    histogram->bounds_count = bounds_count < PROM_BUCKETS_MAX ? bounds_count : PROM_BUCKETS_MAX;
    for (size_t i = 0; i <= PROM_BUCKETS_MAX; i++) {
        atomic_init(&histogram->counts[i], 0);
    }
    atomic_init(&histogram->sum_micro, 0);
}

void prom_histogram_observe(prom_histogram_t *histogram, double value)
{
    size_t bucket = 0;
    while (bucket < histogram->bounds_count && value > histogram->bounds[bucket]) {
        bucket++;
    }
    atomic_fetch_add(&histogram->counts[bucket], 1);
    atomic_fetch_add(&histogram->sum_micro, (uint64_t)(value > 0 ? value * 1e6 : 0));
}

void prom_printf(prom_buffer_t *buffer, const char *format, ...)
{
    if (buffer->used >= buffer->capacity) {
        return;
    }
    va_list args;
    va_start(args, format);
    int n = vsnprintf(buffer->data + buffer->used, buffer->capacity - buffer->used, format, args);
    va_end(args);
    if (n > 0) {
        size_t room = buffer->capacity - buffer->used;
        buffer->used += (size_t)n < room ? (size_t)n : room - 1;
    }
}

void prom_render_histogram(prom_buffer_t *buffer, const char *name, const char *labels,
                           prom_histogram_t *histogram)
{
    uint64_t cumulative = 0;
    const char *separator = labels[0] ? "," : "";
    for (size_t i = 0; i <= histogram->bounds_count; i++) {
        cumulative += atomic_load(&histogram->counts[i]);
        if (i < histogram->bounds_count) {
            prom_printf(buffer, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, separator,
                        histogram->bounds[i], (unsigned long long)cumulative);
        } else {
            prom_printf(buffer, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, separator,
                        (unsigned long long)cumulative);
        }
    }
    prom_printf(buffer, "%s_sum{%s} %.6f\n%s_count{%s} %llu\n", name, labels,
                (double)atomic_load(&histogram->sum_micro) / 1e6, name, labels,
                (unsigned long long)cumulative);
}
