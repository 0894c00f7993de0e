/* bench_proc.c — see bench_proc.h. */
#include "bench_proc.h"

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <unistd.h>

#define BP_PIDS_MAX 16
#define BP_FDS_MAX 4096

/* Reads utime + stime (clock ticks) and the parent of `pid`; false when it is gone. */
static bool bp_stat_read(long pid, long *parent_out, unsigned long long *ticks_out)
{
    char path[64], line[1024];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    FILE *file = fopen(path, "r");
    if (file == NULL) {
        return false;
    }
    bool ok = fgets(line, sizeof(line), file) != NULL;
    fclose(file);
    const char *name_end = ok ? strrchr(line, ')') : NULL; /* the name may hold spaces */
    unsigned long long user = 0, system = 0;
    ok = name_end != NULL &&
         sscanf(name_end + 1, " %*c %ld %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", parent_out,
                &user, &system) == 3;
    *ticks_out = user + system;
    return ok;
}

/* CPU seconds used so far by the comma-separated pids and their direct children (PostgreSQL's
 * backends are children of its postmaster); -1 when pids is empty. */
double bp_pids_cpu_s(const char *pids)
{
    long wanted[BP_PIDS_MAX];
    int wanted_count = 0;
    for (const char *p = pids; *p != '\0' && wanted_count < BP_PIDS_MAX;) {
        char *end = NULL;
        long pid = strtol(p, &end, 10);
        if (end == p) {
            break;
        }
        wanted[wanted_count++] = pid;
        p = *end == ',' ? end + 1 : end;
    }
    if (wanted_count == 0) {
        return -1;
    }
    unsigned long long total = 0;
    DIR *proc = opendir("/proc");
    for (struct dirent *entry = proc ? readdir(proc) : NULL; entry; entry = readdir(proc)) {
        long pid = strtol(entry->d_name, NULL, 10), parent = 0;
        unsigned long long ticks = 0;
        if (pid <= 0 || !bp_stat_read(pid, &parent, &ticks)) {
            continue;
        }
        for (int i = 0; i < wanted_count; i++) {
            if (wanted[i] == pid || wanted[i] == parent) {
                total += ticks;
                break;
            }
        }
    }
    if (proc != NULL) {
        closedir(proc);
    }
    return (double)total / (double)sysconf(_SC_CLK_TCK);
}

/* CPU seconds every CPU of the machine has spent busy so far (/proc/stat: user, nice, system,
 * irq, softirq); minus ours and the server's, what other processes took during a run. */
double bp_machine_busy_s(void)
{
    unsigned long long user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0;
    FILE *file = fopen("/proc/stat", "r");
    if (file == NULL) {
        return 0;
    }
    int fields = fscanf(file, "cpu %llu %llu %llu %llu %llu %llu %llu", &user, &nice, &system,
                        &idle, &iowait, &irq, &softirq);
    fclose(file);
    return fields == 7
               ? (double)(user + nice + system + irq + softirq) / (double)sysconf(_SC_CLK_TCK)
               : 0;
}

double bp_own_cpu_s(void)
{
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    return (double)usage.ru_utime.tv_sec + (double)usage.ru_utime.tv_usec / 1e6 +
           (double)usage.ru_stime.tv_sec + (double)usage.ru_stime.tv_usec / 1e6;
}

static int bp_compare_inodes(const void *a, const void *b)
{
    unsigned long x = *(const unsigned long *)a, y = *(const unsigned long *)b;
    return x < y ? -1 : x > y ? 1 : 0;
}

/* This process's established TCP connections to `port` (so that "64 connections" is seen,
 * not assumed: gRPC could share one subchannel between channels). -1 when unknown. */
int bp_count_connections(int port)
{
    static unsigned long inodes[BP_FDS_MAX];
    size_t inodes_count = 0;
    DIR *fds = opendir("/proc/self/fd");
    for (struct dirent *entry = fds ? readdir(fds) : NULL; entry && inodes_count < BP_FDS_MAX;
         entry = readdir(fds)) {
        char path[64], target[64];
        snprintf(path, sizeof(path), "/proc/self/fd/%.16s", entry->d_name);
        ssize_t n = readlink(path, target, sizeof(target) - 1);
        target[n > 0 ? n : 0] = '\0';
        if (sscanf(target, "socket:[%lu]", &inodes[inodes_count]) == 1) {
            inodes_count++;
        }
    }
    if (fds == NULL) {
        return -1;
    }
    closedir(fds);
    qsort(inodes, inodes_count, sizeof(inodes[0]), bp_compare_inodes);
    int count = 0;
    const char *const tables[] = {"/proc/self/net/tcp", "/proc/self/net/tcp6"};
    for (size_t t = 0; t < 2; t++) {
        FILE *file = fopen(tables[t], "r");
        char line[512];
        while (file != NULL && fgets(line, sizeof(line), file) != NULL) {
            unsigned int remote_port = 0, state = 0;
            unsigned long inode = 0;
            if (sscanf(
                    line,
                    " %*d: %*[0-9A-Fa-f]:%*x %*[0-9A-Fa-f]:%x %x %*x:%*x %*x:%*x %*x %*u %*d %lu",
                    &remote_port, &state, &inode) == 3 &&
                state == 1 /* ESTABLISHED */ && (port == 0 || (int)remote_port == port) &&
                bsearch(&inode, inodes, inodes_count, sizeof(inodes[0]), bp_compare_inodes)) {
                count++;
            }
        }
        if (file != NULL) {
            fclose(file);
        }
    }
    return count;
}
