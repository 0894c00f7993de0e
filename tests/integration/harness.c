/* harness.c — see harness.h. */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TH_ARGS_MAX 32

char *th_temp_dir(void)
{
    char template_path[] = "/tmp/stockd-it-XXXXXX";
    char *dir = mkdtemp(template_path);
    return dir ? strdup(dir) : NULL;
}

void th_remove_tree(const char *dir)
{
    char command[600];
    snprintf(command, sizeof(command), "rm -rf '%s'", dir);
    if (system(command) != 0) {
        fprintf(stderr, "could not remove %s\n", dir);
    }
}

/* Copies the child's stderr into the log file until the child closes it. */
static void *th_drain(void *argument)
{
    th_daemon_t *daemon = argument;
    int out = open(daemon->log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    char buffer[4096];
    ssize_t n;
    while ((n = read(daemon->log_fd, buffer, sizeof(buffer))) > 0) {
        if (out >= 0 && write(out, buffer, (size_t)n) != n) {
            break;
        }
    }
    if (out >= 0) {
        close(out);
    }
    return NULL;
}

static pid_t th_spawn(const char *binary, const char *data_dir, const char *const *extra_args,
                      int *read_fd)
{
    const char *args[TH_ARGS_MAX] = {binary, "--listen", "127.0.0.1:0", "--data-dir", data_dir};
    int count = 5;
    for (int i = 0; extra_args && extra_args[i] && count < TH_ARGS_MAX - 1; i++) {
        args[count++] = extra_args[i];
    }
    args[count] = NULL;
    int fds[2];
    if (pipe(fds) != 0) {
        return -1;
    }
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], STDERR_FILENO);
        close(fds[0]);
        close(fds[1]);
        execv(binary, (char *const *)args);
        _exit(127);
    }
    close(fds[1]);
    *read_fd = fds[0];
    return pid;
}

/* Reads log lines until the "listening" line appears; copies what it read into the log. */
static bool th_wait_listening(th_daemon_t *daemon)
{
    char line[8192];
    size_t used = 0;
    FILE *log = fopen(daemon->log_path, "a");
    time_t give_up = time(NULL) + 15;
    bool found = false;
    while (!found && time(NULL) < give_up) {
        struct pollfd pfd = {daemon->log_fd, POLLIN, 0};
        if (poll(&pfd, 1, 200) <= 0) {
            continue;
        }
        ssize_t n = read(daemon->log_fd, line + used, 1);
        if (n <= 0) {
            break;
        }
        if (line[used] != '\n' && used + 2 < sizeof(line)) {
            used++;
            continue;
        }
        line[used] = '\0';
        if (log != NULL) {
            fprintf(log, "%s\n", line);
        }
        const char *marker = strstr(line, "\"event\":\"listening\",\"address\":\"127.0.0.1:");
        if (marker != NULL) {
            daemon->port = (int)strtol(
                marker + strlen("\"event\":\"listening\",\"address\":\"127.0.0.1:"), NULL, 10);
            found = daemon->port > 0;
        }
        used = 0;
    }
    if (log != NULL) {
        fclose(log);
    }
    return found;
}

bool th_daemon_start(th_daemon_t *daemon, const char *binary, const char *data_dir,
                     const char *const *extra_args)
{
    memset(daemon, 0, sizeof(*daemon));
    snprintf(daemon->log_path, sizeof(daemon->log_path), "%s.log", data_dir);
    daemon->pid = th_spawn(binary, data_dir, extra_args, &daemon->log_fd);
    if (daemon->pid < 0 || !th_wait_listening(daemon)) {
        fprintf(stderr, "stockd did not start; log:\n");
        th_daemon_dump_log(daemon);
        if (daemon->pid > 0) {
            kill(daemon->pid, SIGKILL);
            waitpid(daemon->pid, NULL, 0);
        }
        return false;
    }
    snprintf(daemon->address, sizeof(daemon->address), "127.0.0.1:%d", daemon->port);
    daemon->draining = pthread_create(&daemon->drain, NULL, th_drain, daemon) == 0;
    return true;
}

int th_daemon_stop(th_daemon_t *daemon, int signal_number)
{
    int status = 0;
    kill(daemon->pid, signal_number);
    while (waitpid(daemon->pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (daemon->draining) {
        pthread_join(daemon->drain, NULL);
    }
    close(daemon->log_fd);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void th_daemon_dump_log(const th_daemon_t *daemon)
{
    FILE *log = fopen(daemon->log_path, "r");
    char line[8192];
    while (log != NULL && fgets(line, sizeof(line), log) != NULL) {
        fputs(line, stderr);
    }
    if (log != NULL) {
        fclose(log);
    }
}
