/* prom.c — see prom.h. */
#include "prom.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

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

void prom_family(prom_buffer_t *buffer, const char *name, const char *type, const char *help)
{
    prom_printf(buffer, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void prom_sample(prom_buffer_t *buffer, const char *name, const char *labels, double value)
{
    const char *open = labels[0] ? "{" : "", *close = labels[0] ? "}" : "";
    /* whole numbers (counts, bytes, seqs) exactly; fractions with microsecond precision */
    bool whole = value > -9007199254740992.0 && value < 9007199254740992.0 &&
                 value == (double)(long long)value; /* within 2^53: the cast is exact */
    if (whole) {
        prom_printf(buffer, "%s%s%s%s %.0f\n", name, open, labels, close, value);
    } else {
        prom_printf(buffer, "%s%s%s%s %.6f\n", name, open, labels, close, value);
    }
}

void prom_single(prom_buffer_t *buffer, const char *name, const char *type, const char *help,
                 double value)
{
    prom_family(buffer, name, type, help);
    prom_sample(buffer, name, "", value);
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
    char series[128];
    snprintf(series, sizeof(series), "%s_sum", name);
    prom_sample(buffer, series, labels, (double)atomic_load(&histogram->sum_micro) / 1e6);
    snprintf(series, sizeof(series), "%s_count", name);
    prom_sample(buffer, series, labels, (double)cumulative);
}

/* ---- process metrics (Linux /proc) ---- */

typedef struct {
    unsigned long user_ticks, system_ticks;
    unsigned long long start_ticks; /* since boot */
    unsigned long virtual_bytes;
    long resident_pages;
} prom_proc_stat_t;

/* Reads /proc/self/stat. The command name (field 2) may hold spaces and parentheses, so the
 * fields are read after its last ')'. */
static int prom_read_proc_stat(prom_proc_stat_t *stat)
{
    char line[1024];
    FILE *file = fopen("/proc/self/stat", "r");
    if (file == NULL) {
        return 0;
    }
    size_t length = fread(line, 1, sizeof(line) - 1, file);
    fclose(file);
    line[length] = '\0';
    const char *after_name = strrchr(line, ')');
    if (after_name == NULL) {
        return 0;
    }
    /* fields 3..24: state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt
     * utime stime cutime cstime priority nice num_threads itrealvalue starttime vsize rss */
    int read = sscanf(after_name + 1,
                      " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d %*d "
                      "%*d %llu %lu %ld",
                      &stat->user_ticks, &stat->system_ticks, &stat->start_ticks,
                      &stat->virtual_bytes, &stat->resident_pages);
    return read == 5;
}

/* The boot time in unix seconds, from /proc/stat's btime line (0 when unknown). */
static long long prom_boot_time_s(void)
{
    char line[256];
    long long boot_s = 0;
    FILE *file = fopen("/proc/stat", "r");
    if (file == NULL) {
        return 0;
    }
    while (fgets(line, sizeof(line), file) != NULL) {
        if (sscanf(line, "btime %lld", &boot_s) == 1) {
            break;
        }
    }
    fclose(file);
    return boot_s;
}

/* Open file descriptors: the entries of /proc/self/fd, less the one reading it. */
static long prom_open_fds(void)
{
    DIR *directory = opendir("/proc/self/fd");
    if (directory == NULL) {
        return -1;
    }
    long count = 0;
    for (struct dirent *entry = readdir(directory); entry != NULL; entry = readdir(directory)) {
        if (entry->d_name[0] != '.') {
            count++;
        }
    }
    closedir(directory);
    return count > 0 ? count - 1 : 0;
}

void prom_render_process(prom_buffer_t *buffer)
{
    prom_proc_stat_t stat;
    long ticks_per_s = sysconf(_SC_CLK_TCK), page_bytes = sysconf(_SC_PAGESIZE);
    if (prom_read_proc_stat(&stat) && ticks_per_s > 0 && page_bytes > 0) {
        prom_single(buffer, "process_cpu_seconds_total", "counter",
                    "Total user and system CPU time spent in seconds.",
                    (double)(stat.user_ticks + stat.system_ticks) / (double)ticks_per_s);
        prom_single(buffer, "process_resident_memory_bytes", "gauge",
                    "Resident memory size in bytes.", (double)stat.resident_pages * page_bytes);
        prom_single(buffer, "process_virtual_memory_bytes", "gauge",
                    "Virtual memory size in bytes.", (double)stat.virtual_bytes);
        long long boot_s = prom_boot_time_s();
        if (boot_s > 0) {
            prom_single(buffer, "process_start_time_seconds", "gauge",
                        "Start time of the process since unix epoch in seconds.",
                        (double)boot_s + (double)stat.start_ticks / (double)ticks_per_s);
        }
    }
    long open_fds = prom_open_fds();
    if (open_fds >= 0) {
        prom_single(buffer, "process_open_fds", "gauge", "Number of open file descriptors.",
                    (double)open_fds);
    }
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY) {
        prom_single(buffer, "process_max_fds", "gauge", "Maximum number of open file descriptors.",
                    (double)limit.rlim_cur);
    }
}
