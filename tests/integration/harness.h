/* harness.h — runs the real stockd binary for integration tests: a temporary data
 * directory, a free loopback port (port 0, read back from the "listening" log line), its
 * log captured to a file, and stop by signal with the exit status. */
#ifndef STOCKD_TEST_HARNESS_H
#define STOCKD_TEST_HARNESS_H

#include <pthread.h>
#include <stdbool.h>
#include <sys/types.h>

typedef struct {
    pid_t pid;
    int port;
    char address[64]; /* "127.0.0.1:PORT" */
    char log_path[512];
    int log_fd; /* read end of the child's stderr */
    pthread_t drain;
    bool draining;
} th_daemon_t;

/* Creates a fresh temporary directory (malloc'd path). */
char *th_temp_dir(void);
void th_remove_tree(const char *dir);

/* Starts `binary` with --listen 127.0.0.1:0 --data-dir data_dir plus extra_args
 * (NULL-terminated, may be NULL); waits up to 15 s for it to listen. */
bool th_daemon_start(th_daemon_t *daemon, const char *binary, const char *data_dir,
                     const char *const *extra_args);
/* Sends `signal_number` and waits; returns the exit code, or 128+signal when killed. */
int th_daemon_stop(th_daemon_t *daemon, int signal_number);
/* Prints the daemon's captured log to stderr (for failures). */
void th_daemon_dump_log(const th_daemon_t *daemon);

#endif
