/* transfer.h — stockctl import and export: CSV files of stock levels,
 *   location_id,app_id,catalog_item_id,variant,available[,tracked,floor]
 * with the header line required. */
#ifndef STOCKCLIENT_TRANSFER_H
#define STOCKCLIENT_TRANSFER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stockclient.h"

typedef struct {
    sc_client_t *client;
    const char *tenant;
    int64_t deadline_ms;
    bool json;
    size_t chunk_rows; /* rows per SetStock request (each chunk is atomic) */
    /* import: names this import run ("" = the file's SHA-256, so running the same file again
     * resumes it); chunk request ids are "import:<name>:<chunk rows>:<chunk number>" */
    const char *import_name;
} ctl_transfer_t;

/* Writes every level of the tenant as CSV to path ("-" = stdout). Returns a stockctl exit
 * code. */
int ctl_export(const ctl_transfer_t *transfer, const char *path);

/* Applies a CSV file in atomic chunks with SetStock. Bad rows are reported with their line
 * numbers and not applied. Each chunk's request_id is derived from the file's SHA-256 and the
 * chunk number, so running the same import again resumes: chunks already applied are
 * recognised by stockd and not applied twice. Shows progress on a terminal. Returns a stockctl
 * exit code (2 when any row was bad). */
int ctl_import(const ctl_transfer_t *transfer, const char *path);

#endif
