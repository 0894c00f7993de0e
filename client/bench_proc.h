/* bench_proc.h — what the load generators (stockbench, bench/peerbench) measure about
 * processes around a measured phase, from /proc: CPU time of the servers, of the machine and
 * of the load generator itself, and the TCP connections it really holds. */
#ifndef STOCKD_BENCH_PROC_H
#define STOCKD_BENCH_PROC_H

/* CPU seconds used so far by the comma-separated pids (at most 16) and their direct children
 * (PostgreSQL's backends are children of its postmaster); -1 when pids is empty. */
double bp_pids_cpu_s(const char *pids);
/* CPU seconds every CPU of the machine has spent busy so far (/proc/stat: user, nice, system,
 * irq, softirq); minus ours and the server's, what other processes took during a run. */
double bp_machine_busy_s(void);
/* This process's CPU seconds so far. */
double bp_own_cpu_s(void);
/* This process's established TCP connections to `port` (0: to any port), so that "64
 * connections" is seen, not assumed. -1 when unknown. */
int bp_count_connections(int port);

#endif
