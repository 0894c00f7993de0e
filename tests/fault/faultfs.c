/* faultfs.c — an LD_PRELOAD shim that makes file-system calls fail on demand, so the tests
 * can show what stockd does when its disk fails under it (fdatasync EIO, a full disk, a
 * read-only data directory) with the real RocksDB and the real daemon.
 *
 * Control: the environment variable STOCKD_FAULT_CONTROL names a file. While that file holds
 * a rule, matching calls fail; the file is re-read whenever its modification time or size
 * changes, so a test arms a fault at the moment it chooses by writing the file. A rule is one
 * line:
 *
 *     OP ERRNO COUNT PATH-SUBSTRING
 *
 * OP is fdatasync (fdatasync and fsync), write (write, pwrite, pwrite64, writev) or open
 * (open/openat/creat with a write or create flag); ERRNO is EIO, ENOSPC or EROFS; COUNT is how
 * many matching calls fail (0 = every one, like a dead disk); PATH-SUBSTRING limits the rule
 * to files whose path contains it ("-" = any file). Every injected failure is counted in the
 * file named by STOCKD_FAULT_CONTROL with ".hits" appended, so a test can tell that the fault
 * was reached. Test-only: never linked into a binary. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

typedef enum { FAULT_NONE, FAULT_FDATASYNC, FAULT_WRITE, FAULT_OPEN } fault_op_t;

typedef struct {
    fault_op_t op;
    int error_number;
    long remaining; /* calls still to fail; -1 = every call */
    char path_part[PATH_MAX];
} fault_rule_t;

static pthread_mutex_t fault_mutex = PTHREAD_MUTEX_INITIALIZER;
static fault_rule_t fault_rule;
static struct timespec fault_control_mtime;
static off_t fault_control_size = -1;
static long fault_hits;
static __thread bool fault_busy; /* our own file I/O must not recurse into the shim */

static fault_op_t fault_op_parse(const char *text)
{
    if (strcmp(text, "fdatasync") == 0) {
        return FAULT_FDATASYNC;
    }
    if (strcmp(text, "write") == 0) {
        return FAULT_WRITE;
    }
    return strcmp(text, "open") == 0 ? FAULT_OPEN : FAULT_NONE;
}

static int fault_errno_parse(const char *text)
{
    if (strcmp(text, "ENOSPC") == 0) {
        return ENOSPC;
    }
    return strcmp(text, "EROFS") == 0 ? EROFS : EIO;
}

/* Reads the rule from the control file (empty or missing file: no rule). */
static void fault_rule_load(const char *control)
{
    char op[32] = "", error_name[32] = "", path_part[PATH_MAX] = "-";
    long count = 0;
    memset(&fault_rule, 0, sizeof(fault_rule));
    FILE *file = fopen(control, "r");
    if (file == NULL) {
        return;
    }
    int fields = fscanf(file, "%31s %31s %ld %4095s", op, error_name, &count, path_part);
    fclose(file);
    if (fields < 3) {
        return;
    }
    fault_rule.op = fault_op_parse(op);
    fault_rule.error_number = fault_errno_parse(error_name);
    fault_rule.remaining = count > 0 ? count : -1;
    snprintf(fault_rule.path_part, sizeof(fault_rule.path_part), "%s",
             strcmp(path_part, "-") == 0 ? "" : path_part);
}

/* Re-reads the control file when it changed. Called with fault_mutex held. */
static void fault_refresh(const char *control)
{
    struct stat info;
    if (stat(control, &info) != 0) {
        memset(&fault_rule, 0, sizeof(fault_rule));
        fault_control_size = -1;
        return;
    }
    if (info.st_size == fault_control_size && info.st_mtim.tv_sec == fault_control_mtime.tv_sec &&
        info.st_mtim.tv_nsec == fault_control_mtime.tv_nsec) {
        return;
    }
    fault_control_size = info.st_size;
    fault_control_mtime = info.st_mtim;
    fault_rule_load(control);
}

static void fault_count_hit(const char *control)
{
    char hits_path[PATH_MAX];
    snprintf(hits_path, sizeof(hits_path), "%s.hits", control);
    FILE *file = fopen(hits_path, "w");
    if (file != NULL) {
        fprintf(file, "%ld\n", ++fault_hits);
        fclose(file);
    }
}

/* Decides whether a call of `op` on `path` (or on descriptor fd when path is NULL) fails, and
 * with which errno (0 = let it through). */
static int fault_check(fault_op_t op, int fd, const char *path)
{
    const char *control = getenv("STOCKD_FAULT_CONTROL");
    if (control == NULL || fault_busy) {
        return 0;
    }
    fault_busy = true;
    int error_number = 0;
    pthread_mutex_lock(&fault_mutex);
    fault_refresh(control);
    if (fault_rule.op == op && fault_rule.remaining != 0) {
        char resolved[PATH_MAX] = "";
        if (path == NULL) {
            char link[64];
            snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
            ssize_t length = readlink(link, resolved, sizeof(resolved) - 1);
            resolved[length > 0 ? length : 0] = '\0';
            path = resolved;
        }
        if (strstr(path, fault_rule.path_part) != NULL) {
            error_number = fault_rule.error_number;
            if (fault_rule.remaining > 0) {
                fault_rule.remaining--;
            }
            fault_count_hit(control);
        }
    }
    pthread_mutex_unlock(&fault_mutex);
    fault_busy = false;
    return error_number;
}

/* The next definition of a libc function. The object-to-function pointer conversion goes
 * through memcpy, the form POSIX documents for dlsym's result. */
#define FAULT_REAL(type, name, ...)                                                                \
    static type (*real)(__VA_ARGS__);                                                              \
    if (real == NULL) {                                                                            \
        void *symbol = dlsym(RTLD_NEXT, name);                                                     \
        memcpy(&real, &symbol, sizeof(real));                                                      \
    }

/* Makes the calling interposer fail (-1, errno set) when a rule applies to this call. */
#define FAULT_INJECT(applies, op, fd, path)                                                        \
    do {                                                                                           \
        int error_number = (applies) ? fault_check((op), (fd), (path)) : 0;                        \
        if (error_number != 0) {                                                                   \
            errno = error_number;                                                                  \
            return -1;                                                                             \
        }                                                                                          \
    } while (0)

int fdatasync(int fd)
{
    FAULT_REAL(int, "fdatasync", int);
    FAULT_INJECT(true, FAULT_FDATASYNC, fd, NULL);
    return real(fd);
}

int fsync(int fd)
{
    FAULT_REAL(int, "fsync", int);
    FAULT_INJECT(true, FAULT_FDATASYNC, fd, NULL);
    return real(fd);
}

ssize_t write(int fd, const void *buffer, size_t count)
{
    FAULT_REAL(ssize_t, "write", int, const void *, size_t);
    FAULT_INJECT(fd > 2, FAULT_WRITE, fd, NULL);
    return real(fd, buffer, count);
}

ssize_t pwrite(int fd, const void *buffer, size_t count, off_t offset)
{
    FAULT_REAL(ssize_t, "pwrite", int, const void *, size_t, off_t);
    FAULT_INJECT(true, FAULT_WRITE, fd, NULL);
    return real(fd, buffer, count, offset);
}

ssize_t pwrite64(int fd, const void *buffer, size_t count, off_t offset)
{
    FAULT_REAL(ssize_t, "pwrite64", int, const void *, size_t, off_t);
    FAULT_INJECT(true, FAULT_WRITE, fd, NULL);
    return real(fd, buffer, count, offset);
}

ssize_t writev(int fd, const struct iovec *vector, int count)
{
    FAULT_REAL(ssize_t, "writev", int, const struct iovec *, int);
    FAULT_INJECT(fd > 2, FAULT_WRITE, fd, NULL);
    return real(fd, vector, count);
}

static bool fault_open_writes(int flags)
{
    return (flags & (O_WRONLY | O_RDWR | O_CREAT | O_TRUNC)) != 0;
}

/* open and openat take a mode only with O_CREAT or O_TMPFILE; read it the same way. */
static mode_t fault_mode_of(int flags, va_list arguments)
{
    return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? (mode_t)va_arg(arguments, int)
                                                                 : 0;
}

int open(const char *path, int flags, ...)
{
    FAULT_REAL(int, "open", const char *, int, ...);
    va_list arguments;
    va_start(arguments, flags);
    mode_t mode = fault_mode_of(flags, arguments);
    va_end(arguments);
    FAULT_INJECT(fault_open_writes(flags), FAULT_OPEN, -1, path);
    return real(path, flags, mode);
}

int open64(const char *path, int flags, ...)
{
    FAULT_REAL(int, "open64", const char *, int, ...);
    va_list arguments;
    va_start(arguments, flags);
    mode_t mode = fault_mode_of(flags, arguments);
    va_end(arguments);
    FAULT_INJECT(fault_open_writes(flags), FAULT_OPEN, -1, path);
    return real(path, flags, mode);
}

int openat(int directory, const char *path, int flags, ...)
{
    FAULT_REAL(int, "openat", int, const char *, int, ...);
    va_list arguments;
    va_start(arguments, flags);
    mode_t mode = fault_mode_of(flags, arguments);
    va_end(arguments);
    FAULT_INJECT(fault_open_writes(flags), FAULT_OPEN, -1, path);
    return real(directory, path, flags, mode);
}
