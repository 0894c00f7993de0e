/* ctl_output.h — how stockctl prints: tables for people, JSON for scripts, one error shape.
 *
 * JSON shapes (README "## stockctl" documents them for users):
 *  - a level:  {"location_id","app_id","catalog_item_id","variant","available","tracked",
 *               "floor","version","updated_at_us","exists"}; exists is false for an item that
 *               was never set (version 0);
 *  - a ledger entry: {"seq","time_us","time","op","location_id","app_id","catalog_item_id",
 *               "variant","order_id","delta","available_after","reason","request_id",
 *               "reason_text","actor","on_behalf_of"}, time in ISO 8601 UTC, actor and
 *               on_behalf_of "" when the ledger has none;
 *  - backup list: {"checkpoints":[{"name","path","created_unix_seconds","created"}],"count",
 *               "checkpoints_max"}, created in ISO 8601 UTC;
 *  - an error: {"error":{"code","message"[,"request_id"]}} on stdout, code a gRPC status name
 *               (INVALID_ARGUMENT for bad arguments stockctl finds itself). */
#ifndef STOCKCLIENT_CTL_OUTPUT_H
#define STOCKCLIENT_CTL_OUTPUT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ctl.h"
#include "stockclient.h"
#include "stockd/v1/admin.pb-c.h"

/* A listing of levels printed as it arrives, page after page, as one table (header once,
 * column widths fixed by the first rows) or one JSON array. */
typedef struct {
    bool json;
    bool started; /* the header or the opening "[" is out */
    size_t rows;
    int widths[4]; /* LOCATION, APP, ITEM, VARIANT */
} ctl_listing_t;

void ctl_listing_init(ctl_listing_t *listing, bool json);

/* Prints levels[0..count): the first call that has rows fixes the column widths (as wide as
 * the longest of those ids, at most 64; a longer id later is printed whole and pushes its
 * row right). */
void ctl_listing_add(ctl_listing_t *listing, Stockd__V1__StockLevel *const *levels, size_t count);

/* Ends a complete listing: an empty one is the table header alone, or "[]". */
void ctl_listing_end(ctl_listing_t *listing);

/* Ends a listing cut short by an error (reported after it): a JSON array that began is left
 * open, so the output never parses as a complete listing. */
void ctl_listing_abort(ctl_listing_t *listing);

/* Ledger entries (history, watch) printed as they arrive: a table whose header comes once,
 * with the first entries, and whose columns are fixed then (as for levels), or with json one
 * JSON object per line (JSON lines: a watch never ends, so there is no enclosing array). */
typedef struct {
    bool json;
    bool started;
    size_t rows;
    int widths[7]; /* LOCATION, APP, ITEM, VARIANT, ORDER, ACTOR, REQUEST */
} ctl_entries_t;

void ctl_entries_init(ctl_entries_t *entries, bool json);
void ctl_entries_add(ctl_entries_t *entries, Stockd__V1__LedgerEntry *const *page, size_t count);
/* Ends the entries: when there were none, a table is its header alone (JSON: nothing). */
void ctl_entries_end(ctl_entries_t *entries);

/* Writes time_us as ISO 8601 UTC with milliseconds ("2026-01-31T09:05:00.123Z"). */
void ctl_time_iso(int64_t time_us, char out[32]);
/* Writes unix seconds as ISO 8601 UTC ("2026-01-31T09:05:00Z"); "-" when out of range. */
void ctl_time_iso_seconds(int64_t seconds, char out[32]);

/* backup list: a table NAME CREATED (UTC) PATH and a last line "N of MAX checkpoints", or
 * with json the one object described above. */
void ctl_checkpoints_print(bool json, const Stockd__V1__ListCheckpointsResponse *response);

/* Prints value as one compact JSON line on stdout and releases it. */
void ctl_json_print(json_t *value);

/* Reports an error: {"error":{...}} on stdout with json, "stockctl: CODE: message" on stderr
 * otherwise. request_id may be NULL. */
void ctl_error_print(bool json, const char *code, const char *message, const char *request_id);

/* An error stockctl finds itself (arguments, options): printed as ctl_error_print does with
 * code INVALID_ARGUMENT, the message formatted with printf rules. Returns EXIT_INVALID. */
int ctl_invalid(bool json, const char *format, ...) __attribute__((format(printf, 2, 3)));

/* Reports a failed call to stockd and returns its exit code. Without json it adds what to do
 * on stderr: for an unreachable stockd its address and what to check (and, with TLS flags
 * set, the TLS set-up); for UNAUTHENTICATED which flags and variables supply credentials; for
 * PERMISSION_DENIED that the policy must grant it; for UNIMPLEMENTED at the admin address
 * that it is not stockd's admin listener. A write whose outcome is unknown gets its retry
 * hint in both modes. */
int ctl_report_error(const ctl_config_t *config, const sc_status_t *status);

#endif
