/* checkpoints.c — see checkpoints.h. */
#define _XOPEN_SOURCE 700 /* nftw */
#include "checkpoints.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

struct sd_checkpoints {
    char directory[1024];
    size_t max;
    int64_t interval_s;
    pthread_mutex_t mutex; /* one checkpoint at a time; guards last_taken_ms */
    double last_taken_ms;  /* monotonic; < 0: none taken since start */
};

/* True when path is base or lies inside it (both resolved already). */
static bool sd_path_within(const char *path, const char *base)
{
    size_t length = strlen(base);
    return strncmp(path, base, length) == 0 &&
           (path[length] == '\0' || path[length] == '/' || strcmp(base, "/") == 0);
}

sd_checkpoints_t *sd_checkpoints_new(const char *directory, const char *data_dir, size_t max,
                                     int64_t interval_s, char *error, size_t error_capacity)
{
    char backups[PATH_MAX], data[PATH_MAX];
    if (mkdir(directory, 0750) != 0 && errno != EEXIST) {
        snprintf(error, error_capacity, "cannot create the backup directory %s: %s", directory,
                 strerror(errno));
        return NULL;
    }
    if (realpath(directory, backups) == NULL || realpath(data_dir, data) == NULL) {
        snprintf(error, error_capacity, "cannot resolve %s or %s: %s", directory, data_dir,
                 strerror(errno));
        return NULL;
    }
    if (sd_path_within(data, backups)) {
        snprintf(error, error_capacity,
                 "--backup-dir %s holds the data directory %s: its checkpoints could not be told "
                 "from the live database; choose another directory",
                 directory, data_dir);
        return NULL;
    }
    sd_checkpoints_t *checkpoints = calloc(1, sizeof(*checkpoints));
    if (checkpoints == NULL) {
        snprintf(error, error_capacity, "out of memory");
        return NULL;
    }
    snprintf(checkpoints->directory, sizeof(checkpoints->directory), "%s", directory);
    checkpoints->max = max;
    checkpoints->interval_s = interval_s;
    checkpoints->last_taken_ms = -1;
    pthread_mutex_init(&checkpoints->mutex, NULL);
    return checkpoints;
}

void sd_checkpoints_free(sd_checkpoints_t *checkpoints)
{
    if (checkpoints != NULL) {
        pthread_mutex_destroy(&checkpoints->mutex);
        free(checkpoints);
    }
}

size_t sd_checkpoints_max(const sd_checkpoints_t *checkpoints)
{
    return checkpoints->max;
}

bool sd_checkpoint_name_valid(const char *name)
{
    size_t length = strlen(name);
    return length > 0 && length <= SD_CHECKPOINT_NAME_BYTES_MAX && name[0] != '.' &&
           util_identifier_span(name, "._-") == length;
}

void sd_checkpoints_path(const sd_checkpoints_t *checkpoints, const char *name, char *out,
                         size_t capacity)
{
    snprintf(out, capacity, "%s/%s", checkpoints->directory, name);
}

static int sd_compare_created(const void *a, const void *b)
{
    const sd_checkpoint_info_t *x = a, *y = b;
    if (x->created_unix_seconds != y->created_unix_seconds) {
        return x->created_unix_seconds < y->created_unix_seconds ? -1 : 1;
    }
    return strcmp(x->name, y->name);
}

/* Every directory in the backup directory counts, finished or not (a half-made one from a
 * crash pins disk space too). */
sd_status_t sd_checkpoints_list(sd_checkpoints_t *checkpoints, sd_checkpoint_info_t **list_out,
                                size_t *count_out)
{
    *list_out = NULL;
    *count_out = 0;
    DIR *directory = opendir(checkpoints->directory);
    if (directory == NULL) {
        return errno == ENOENT ? SD_OK : SD_UNAVAILABLE; /* none taken yet */
    }
    sd_checkpoint_info_t *list = NULL;
    size_t count = 0, capacity = 0;
    sd_status_t status = SD_OK;
    struct dirent *entry;
    while (status == SD_OK && (entry = readdir(directory)) != NULL) {
        char path[2048];
        struct stat info;
        sd_checkpoints_path(checkpoints, entry->d_name, path, sizeof(path));
        if (entry->d_name[0] == '.' || strlen(entry->d_name) > SD_CHECKPOINT_NAME_BYTES_MAX ||
            lstat(path, &info) != 0 || !S_ISDIR(info.st_mode)) {
            continue;
        }
        if (count == capacity) {
            capacity = capacity ? 2 * capacity : 16;
            sd_checkpoint_info_t *grown = realloc(list, capacity * sizeof(*list));
            if (grown == NULL) {
                status = SD_UNAVAILABLE;
                break;
            }
            list = grown;
        }
        snprintf(list[count].name, sizeof(list[count].name), "%.64s", entry->d_name);
        list[count++].created_unix_seconds = info.st_mtim.tv_sec;
    }
    closedir(directory);
    if (status != SD_OK) {
        free(list);
        return status;
    }
    if (count > 1) { /* qsort may not be given a NULL array, even of none */
        qsort(list, count, sizeof(*list), sd_compare_created);
    }
    *list_out = list;
    *count_out = count;
    return SD_OK;
}

sd_status_t sd_checkpoints_take(sd_checkpoints_t *checkpoints, sd_storage_t *storage,
                                const char *name, char *path_out, size_t path_capacity,
                                char *message, size_t message_capacity)
{
    pthread_mutex_lock(&checkpoints->mutex);
    double now_ms = util_monotonic_ms();
    double wait_s =
        checkpoints->last_taken_ms < 0
            ? 0
            : (double)checkpoints->interval_s - (now_ms - checkpoints->last_taken_ms) / 1000.0;
    sd_checkpoint_info_t *list = NULL;
    size_t count = 0;
    sd_status_t status = SD_OK;
    if (wait_s > 0) {
        snprintf(message, message_capacity,
                 "a checkpoint was taken less than %lld s ago (--checkpoint-interval); retry in "
                 "%.0f s",
                 (long long)checkpoints->interval_s, wait_s + 0.5);
        status = SD_RESOURCE_EXHAUSTED;
    } else if (sd_checkpoints_list(checkpoints, &list, &count) != SD_OK) {
        snprintf(message, message_capacity, "cannot read the backup directory %s",
                 checkpoints->directory);
        status = SD_UNAVAILABLE;
    } else if (count >= checkpoints->max) {
        snprintf(message, message_capacity,
                 "%zu checkpoints exist, the most allowed (--checkpoints-max); remove old ones "
                 "with `stockctl backup remove NAME` (oldest: %s)",
                 count, list[0].name);
        status = SD_FAILED_PRECONDITION;
    } else if (mkdir(checkpoints->directory, 0750) != 0 && errno != EEXIST) {
        snprintf(message, message_capacity, "cannot create the backup directory %s: %s",
                 checkpoints->directory, strerror(errno));
        status = SD_UNAVAILABLE;
    } else {
        sd_checkpoints_path(checkpoints, name, path_out, path_capacity);
        status = sd_storage_checkpoint(storage, path_out, message, message_capacity);
        if (status == SD_OK) {
            checkpoints->last_taken_ms = now_ms;
        }
    }
    pthread_mutex_unlock(&checkpoints->mutex);
    free(list);
    return status;
}

static int sd_remove_entry(const char *path, const struct stat *info, int type, struct FTW *walk)
{
    (void)info;
    (void)walk;
    return (type == FTW_DP ? rmdir(path) : unlink(path)) == 0 ? 0 : -1;
}

sd_status_t sd_checkpoints_remove(sd_checkpoints_t *checkpoints, const char *name, char *message,
                                  size_t message_capacity)
{
    char path[2048];
    sd_checkpoints_path(checkpoints, name, path, sizeof(path));
    struct stat info;
    pthread_mutex_lock(&checkpoints->mutex); /* not while one is being taken */
    sd_status_t status = SD_OK;
    if (lstat(path, &info) != 0 || !S_ISDIR(info.st_mode)) {
        snprintf(message, message_capacity, "no checkpoint named \"%s\" in %s", name,
                 checkpoints->directory);
        status = SD_NOT_FOUND;
    } else if (nftw(path, sd_remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0) {
        snprintf(message, message_capacity, "cannot remove %s: %s", path, strerror(errno));
        status = SD_UNAVAILABLE;
    } else {
        SD_LOG(LOG_INFO, "checkpoint_removed", LF_STR("path", path));
    }
    pthread_mutex_unlock(&checkpoints->mutex);
    return status;
}
