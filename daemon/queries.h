/* queries.h — the paged read RPCs: ListStock (a tenant's levels) and History (a tenant's
 * ledger). Both read RocksDB directly, bound the entries scanned per call, and return
 * serialized responses. */
#ifndef STOCKD_QUERIES_H
#define STOCKD_QUERIES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rpc_status.h"
#include "stockd/v1/inventory.pb-c.h"
#include "storage.h"

/* Entries scanned per call at most, whatever the filters: a page may come back short (with
 * a next page token) instead of scanning without bound. */
#define SD_SCAN_ENTRIES_MIN 1000
#define SD_SCAN_PAGES_MAX 10

/* Each returns SD_OK with a malloc'd serialized response in *packed_out (caller frees), or a
 * failure described in error. */
sd_status_t sd_query_list_stock(sd_storage_t *storage, const Stockd__V1__ListStockRequest *request,
                                sd_error_t *error, uint8_t **packed_out, size_t *packed_length_out);

/* pruned_through: the highest ledger seq that retention has deleted (0 = none); asking for
 * entries after an older seq answers OUT_OF_RANGE. */
sd_status_t sd_query_history(sd_storage_t *storage, uint64_t pruned_through,
                             const Stockd__V1__HistoryRequest *request, sd_error_t *error,
                             uint8_t **packed_out, size_t *packed_length_out);

/* History with an item or order_id filter reads the ledger's index (keys.h); false makes it
 * scan the tenant's ledger as before the index (same results, far more work). For benchmarks
 * and tests; true by default. */
void sd_query_history_use_index(bool enabled);

/* Validates page_size: negative is invalid, 0 means the default, above the maximum is
 * lowered to it (as AIP-158 suggests). */
bool sd_page_size(int32_t requested, const char *field, sd_error_t *error, size_t *size_out);

#endif
