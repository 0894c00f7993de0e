/* test_helpers.h — shared by the unit tests that need a real RocksDB in a temporary
 * directory (batch, writer). */
#ifndef STOCKD_TEST_HELPERS_H
#define STOCKD_TEST_HELPERS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "storage.h"

/* Creates a fresh temporary directory; returns a malloc'd path. */
static inline char *th_temp_dir(void)
{
    char template_path[] = "/tmp/stockd-unit-XXXXXX";
    char *dir = mkdtemp(template_path);
    return dir ? strdup(dir) : NULL;
}

static inline void th_remove_tree(const char *dir)
{
    char command[512];
    snprintf(command, sizeof(command), "rm -rf '%s'", dir);
    if (system(command) != 0) {
        fprintf(stderr, "could not remove %s\n", dir);
    }
}

static inline sd_storage_t *th_open_storage(const char *dir)
{
    sd_storage_options_t options = {dir, 8 << 20, 4 << 20, 7 * 86400, 64 << 20, false};
    sd_storage_t *storage = NULL;
    char error[256];
    if (sd_storage_open(&options, &storage, error, sizeof(error)) != SD_OK) {
        fprintf(stderr, "open failed: %s\n", error);
        return NULL;
    }
    return storage;
}

#endif
