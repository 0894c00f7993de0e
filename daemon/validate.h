/* validate.h — the contract's field rules (docs/api.md §2, §3), checked before a request reaches
 * the writer. Every violation is added to the error with its field path (for example
 * "lines[3].quantity") and the bad value quoted, truncated. */
#ifndef STOCKD_VALIDATE_H
#define STOCKD_VALIDATE_H

#include <stdbool.h>
#include <stdint.h>

#include "rpc_status.h"
#include "stockd/v1/inventory.pb-c.h"

/* Each returns true when the request is valid; otherwise adds violations to error
 * (status INVALID_ARGUMENT) and returns false. */
bool sd_validate_decrement(const Stockd__V1__DecrementRequest *request, sd_error_t *error);
bool sd_validate_increment(const Stockd__V1__IncrementRequest *request, sd_error_t *error);
bool sd_validate_set_stock(const Stockd__V1__SetStockRequest *request, sd_error_t *error);
bool sd_validate_get_stock(const Stockd__V1__GetStockRequest *request, sd_error_t *error);

/* Building blocks, exposed for the other RPCs and for tests. */
bool sd_validate_tenant(const char *tenant_id, const char *field, sd_error_t *error);
bool sd_validate_item(const Stockd__V1__ItemRef *item, const char *field, sd_error_t *error);
bool sd_validate_reason(int reason, const char *field, sd_error_t *error);
/* after_seq of History and Watch: below 2^64-1 (INVALID_ARGUMENT), and not before what ledger
 * retention removed (OUT_OF_RANGE, naming both seqs: the entries after it are gone). */
bool sd_validate_after_seq(uint64_t after_seq, uint64_t pruned_through, sd_error_t *error);
/* A string field of 0..bytes_max (or 1..bytes_max when required) bytes of valid UTF-8. */
bool sd_validate_text(const char *text, const char *field, size_t bytes_max, bool required,
                      sd_error_t *error);

#endif
