/* checkpoints.h — the backup directory's RocksDB checkpoints, bounded.
 *
 * A checkpoint hard-links the live SST files, so it is cheap to take but pins their disk
 * space until it is removed: without bounds, a loop of Admin.Checkpoint calls fills the disk.
 * So at most `max` may exist, one may be taken at most every `interval_s` seconds, and only
 * one is taken at a time. */
#ifndef STOCKD_CHECKPOINTS_H
#define STOCKD_CHECKPOINTS_H

#include <stddef.h>
#include <stdint.h>

#include "rpc_status.h"
#include "storage.h"

#define SD_CHECKPOINT_NAME_BYTES_MAX 64

typedef struct sd_checkpoints sd_checkpoints_t;

typedef struct {
    char name[SD_CHECKPOINT_NAME_BYTES_MAX + 1];
    int64_t created_unix_seconds;
} sd_checkpoint_info_t;

/* The backup directory is made if missing. NULL with the reason in error when it cannot be,
 * or when it is, or holds, the live data directory (listing or removing "checkpoints" there
 * would reach the live database). */
sd_checkpoints_t *sd_checkpoints_new(const char *directory, const char *data_dir, size_t max,
                                     int64_t interval_s, char *error, size_t error_capacity);
void sd_checkpoints_free(sd_checkpoints_t *checkpoints);
size_t sd_checkpoints_max(const sd_checkpoints_t *checkpoints);

/* True for a valid checkpoint name: 1..64 bytes of [A-Za-z0-9._-], not starting with '.'. */
bool sd_checkpoint_name_valid(const char *name);

/* Takes a checkpoint <directory>/<name>. On failure the status says why and message
 * what to do (FAILED_PRECONDITION: as many as allowed exist; RESOURCE_EXHAUSTED: too soon
 * after the last one; ALREADY_EXISTS; UNAVAILABLE: the disk). path_out gets the path. */
sd_status_t sd_checkpoints_take(sd_checkpoints_t *checkpoints, sd_storage_t *storage,
                                const char *name, char *path_out, size_t path_capacity,
                                char *message, size_t message_capacity);

/* The checkpoints, oldest first: a malloc'd array of *count_out (free it). */
sd_status_t sd_checkpoints_list(sd_checkpoints_t *checkpoints, sd_checkpoint_info_t **list_out,
                                size_t *count_out);

/* Removes <directory>/<name>: NOT_FOUND when there is none. */
sd_status_t sd_checkpoints_remove(sd_checkpoints_t *checkpoints, const char *name, char *message,
                                  size_t message_capacity);

/* <directory>/<name> into out. */
void sd_checkpoints_path(const sd_checkpoints_t *checkpoints, const char *name, char *out,
                         size_t capacity);

#endif
