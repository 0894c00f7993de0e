/* queries.c — see queries.h. */
#include "queries.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "keys.h"
#include "log.h"
#include "sd_limits.h"
#include "util.h"
#include "validate.h"

bool sd_page_size(int32_t requested, const char *field, sd_error_t *error, size_t *size_out)
{
    if (requested < 0) {
        sd_error_add_field(error, field, "%d is negative", requested);
        return false;
    }
    *size_out = requested == 0                 ? SD_PAGE_SIZE_DEFAULT
                : requested > SD_PAGE_SIZE_MAX ? SD_PAGE_SIZE_MAX
                                               : (size_t)requested;
    return true;
}

static size_t sd_scan_budget(size_t page_size)
{
    size_t budget = page_size * SD_SCAN_PAGES_MAX;
    return budget < SD_SCAN_ENTRIES_MIN ? SD_SCAN_ENTRIES_MIN : budget;
}

/* ---- ListStock ---- */

/* One collected level with its own copies of the key strings. */
typedef struct {
    Stockd__V1__StockLevel level;
    Stockd__V1__ItemRef item;
    char strings[SD_ITEM_KEY_BYTES_MAX + 8];
} sd_listed_t;

typedef struct {
    const char *app_filter; /* NULL = none */
    sd_listed_t *listed;
    size_t count, page_size;
    uint8_t last_key[SD_ITEM_KEY_BYTES_MAX];
    size_t last_key_length;
    bool corrupt;
} sd_list_scan_t;

static char *sd_copy_part(char **cursor, sd_bytes_t part)
{
    char *start = *cursor;
    memcpy(start, part.data, part.length);
    start[part.length] = '\0';
    *cursor += part.length + 1;
    return start;
}

static bool sd_list_visit(void *context, const uint8_t *key, size_t key_length,
                          const uint8_t *value, size_t value_length)
{
    sd_list_scan_t *scan = context;
    sd_item_key_t parts;
    sd_level_t level;
    if (key_length > sizeof(scan->last_key) || !sd_key_decode_item(key, key_length, &parts) ||
        !sd_level_decode(value, value_length, &level)) {
        scan->corrupt = true;
        return false;
    }
    memcpy(scan->last_key, key, key_length);
    scan->last_key_length = key_length;
    if (scan->app_filter != NULL &&
        (parts.app_id.length != strlen(scan->app_filter) ||
         memcmp(parts.app_id.data, scan->app_filter, parts.app_id.length) != 0)) {
        return true;
    }
    sd_listed_t *listed = &scan->listed[scan->count++];
    char *cursor = listed->strings;
    stockd__v1__item_ref__init(&listed->item);
    listed->item.location_id = sd_copy_part(&cursor, parts.location_id);
    listed->item.app_id = sd_copy_part(&cursor, parts.app_id);
    listed->item.catalog_item_id = sd_copy_part(&cursor, parts.catalog_item_id);
    listed->item.variant = sd_copy_part(&cursor, parts.variant);
    sd_stock_level_fill(&listed->level, &listed->item, &level);
    return scan->count < scan->page_size;
}

/* The key prefix for the request's filters: tenant [+ location [+ app]]. */
static size_t sd_list_prefix(const Stockd__V1__ListStockRequest *request, uint8_t *out,
                             size_t capacity)
{
    sd_bytes_t location = sd_bytes_of(request->location_id);
    sd_bytes_t app = sd_bytes_of(request->app_id);
    bool by_location = request->location_id[0] != '\0' || request->default_location_only;
    return sd_key_encode_item_prefix(sd_bytes_of(request->tenant_id),
                                     by_location ? &location : NULL,
                                     by_location && app.length > 0 ? &app : NULL, out, capacity);
}

static bool sd_list_validate(const Stockd__V1__ListStockRequest *request, sd_error_t *error,
                             size_t *page_size)
{
    bool ok = sd_validate_tenant(request->tenant_id, "tenant_id", error);
    ok &=
        sd_validate_text(request->location_id, "location_id", SD_LOCATION_BYTES_MAX, false, error);
    ok &= sd_validate_text(request->app_id, "app_id", SD_APP_BYTES_MAX, false, error);
    ok &= sd_validate_text(request->page_token, "page_token", 4 * SD_ITEM_KEY_BYTES_MAX, false,
                           error);
    ok &= sd_page_size(request->page_size, "page_size", error, page_size);
    if (request->default_location_only && request->location_id[0] != '\0') {
        sd_error_add_field(error, "location_id", "must be empty with default_location_only");
        ok = false;
    }
    return ok;
}

static sd_status_t sd_list_pack(sd_list_scan_t *scan, bool more, uint8_t **packed_out,
                                size_t *packed_length_out)
{
    Stockd__V1__StockLevel **pointers = calloc(scan->count + 1, sizeof(*pointers));
    char *token = more ? util_base64url_encode(scan->last_key, scan->last_key_length) : NULL;
    if (pointers == NULL || (more && token == NULL)) {
        free(pointers);
        free(token);
        return SD_UNAVAILABLE;
    }
    for (size_t i = 0; i < scan->count; i++) {
        pointers[i] = &scan->listed[i].level;
    }
    Stockd__V1__ListStockResponse response = STOCKD__V1__LIST_STOCK_RESPONSE__INIT;
    response.n_levels = scan->count;
    response.levels = pointers;
    response.next_page_token = token ? token : "";
    *packed_length_out = stockd__v1__list_stock_response__get_packed_size(&response);
    *packed_out = malloc(*packed_length_out + 1);
    if (*packed_out != NULL) {
        stockd__v1__list_stock_response__pack(&response, *packed_out);
    }
    free(pointers);
    free(token);
    return *packed_out ? SD_OK : SD_UNAVAILABLE;
}

sd_status_t sd_query_list_stock(sd_storage_t *storage, const Stockd__V1__ListStockRequest *request,
                                sd_error_t *error, uint8_t **packed_out, size_t *packed_length_out)
{
    size_t page_size = 0;
    if (!sd_list_validate(request, error, &page_size)) {
        return SD_INVALID_ARGUMENT;
    }
    uint8_t prefix[SD_ITEM_KEY_BYTES_MAX];
    size_t prefix_length = sd_list_prefix(request, prefix, sizeof(prefix));
    size_t start_length = 0;
    uint8_t *start = NULL;
    if (request->page_token[0] != '\0') {
        start =
            util_base64url_decode(request->page_token, strlen(request->page_token), &start_length);
        if (start == NULL || start_length < prefix_length ||
            memcmp(start, prefix, prefix_length) != 0) {
            free(start);
            sd_error_add_field(error, "page_token", "is not a token of this listing");
            return SD_INVALID_ARGUMENT;
        }
    }
    sd_list_scan_t scan = {.app_filter = request->location_id[0] == '\0' &&
                                                 !request->default_location_only &&
                                                 request->app_id[0] != '\0'
                                             ? request->app_id
                                             : NULL,
                           .listed = calloc(page_size, sizeof(sd_listed_t)),
                           .page_size = page_size};
    bool more = false;
    sd_status_t status =
        scan.listed == NULL
            ? SD_UNAVAILABLE
            : sd_storage_scan(storage, SD_CF_LEVELS, prefix, prefix_length, start, start_length,
                              true, sd_scan_budget(page_size), sd_list_visit, &scan, &more);
    free(start);
    if (status == SD_OK && scan.corrupt) {
        SD_LOG(LOG_ERROR, "storage_corrupt_level", LF_STR("where", "ListStock"));
        status = SD_INTERNAL;
    }
    if (status == SD_OK) {
        status = sd_list_pack(&scan, more, packed_out, packed_length_out);
    }
    if (status != SD_OK) {
        sd_error_set(error, status, "cannot list stock: %s", sd_status_message(status));
    }
    free(scan.listed);
    return status;
}

/* ---- History ---- */

typedef struct {
    const Stockd__V1__ItemRef *item_filter; /* NULL = none */
    const char *order_filter;               /* NULL = none */
    Stockd__V1__LedgerEntry **entries;
    size_t count, page_size;
    uint64_t last_seq;
    bool corrupt;
} sd_history_scan_t;

static bool sd_item_equal(const Stockd__V1__ItemRef *a, const Stockd__V1__ItemRef *b)
{
    return a != NULL && strcmp(a->location_id, b->location_id) == 0 &&
           strcmp(a->app_id, b->app_id) == 0 &&
           strcmp(a->catalog_item_id, b->catalog_item_id) == 0 &&
           strcmp(a->variant, b->variant) == 0;
}

static bool sd_history_visit(void *context, const uint8_t *key, size_t key_length,
                             const uint8_t *value, size_t value_length)
{
    sd_history_scan_t *scan = context;
    Stockd__V1__LedgerEntry *entry = sd_ledger_value_decode(value, value_length);
    if (entry == NULL || key_length < 8 || entry->seq != sd_be64_get(key + key_length - 8)) {
        if (entry != NULL) {
            stockd__v1__ledger_entry__free_unpacked(entry, NULL);
        }
        scan->corrupt = true;
        return false;
    }
    scan->last_seq = entry->seq;
    bool wanted = (scan->item_filter == NULL || sd_item_equal(entry->item, scan->item_filter)) &&
                  (scan->order_filter == NULL || strcmp(entry->order_id, scan->order_filter) == 0);
    if (!wanted) {
        stockd__v1__ledger_entry__free_unpacked(entry, NULL);
        return true;
    }
    scan->entries[scan->count++] = entry;
    return scan->count < scan->page_size;
}

static bool sd_item_filter_set(const Stockd__V1__ItemRef *item)
{
    return item != NULL && (item->location_id[0] || item->app_id[0] || item->catalog_item_id[0] ||
                            item->variant[0]);
}

static bool sd_history_validate(const Stockd__V1__HistoryRequest *request, uint64_t pruned_through,
                                sd_error_t *error, size_t *page_size)
{
    bool ok = sd_validate_tenant(request->tenant_id, "tenant_id", error);
    if (sd_item_filter_set(request->item)) {
        ok &= sd_validate_item(request->item, "item", error);
    }
    ok &= sd_validate_text(request->order_id, "order_id", SD_ORDER_ID_BYTES_MAX, false, error);
    ok &= sd_page_size(request->page_size, "page_size", error, page_size);
    return ok && sd_validate_after_seq(request->after_seq, pruned_through, error);
}

/* ---- History over the ledger's index (keys.h) ----
 * With an item or order_id filter, History walks that item's or order's index keys from
 * after_seq on and reads only the entries they name, so the first page comes back directly
 * instead of after thousands of short pages. Each entry read counts against the same budget
 * as the scan's, and goes through the same filters (so both filters combine). */

static atomic_bool sd_history_index_enabled = true;

void sd_query_history_use_index(bool enabled)
{
    atomic_store(&sd_history_index_enabled, enabled);
}

typedef struct {
    sd_storage_t *storage;
    sd_history_scan_t *scan;
    uint8_t ledger_key[SD_LEDGER_KEY_BYTES_MAX]; /* the tenant prefix, then the seq read */
    size_t tenant_length;
    size_t prefix_length; /* of the index keys walked */
    bool runs;            /* order index: each key covers a run of seqs */
    uint64_t from_seq;
    size_t budget; /* entries that may still be read */
    sd_status_t status;
} sd_index_walk_t;

/* Reads ledger entry seq into the page; false to stop (page full, corrupt, read failed). */
static bool sd_index_walk_entry(sd_index_walk_t *walk, uint64_t seq)
{
    char *value = NULL;
    size_t value_length = 0;
    walk->budget--;
    sd_be64_put(walk->ledger_key + walk->tenant_length, seq);
    walk->status = sd_storage_get(walk->storage, SD_CF_LEDGER, walk->ledger_key,
                                  walk->tenant_length + 8, &value, &value_length);
    if (walk->status != SD_OK) {
        return false;
    }
    if (value == NULL) { /* pruned since the request was checked: as the scan, skip it */
        walk->scan->last_seq = seq;
        return true;
    }
    bool go_on = sd_history_visit(walk->scan, walk->ledger_key, walk->tenant_length + 8,
                                  (const uint8_t *)value, value_length);
    sd_storage_free(value);
    return go_on;
}

static bool sd_index_visit(void *context, const uint8_t *key, size_t key_length,
                           const uint8_t *value, size_t value_length)
{
    sd_index_walk_t *walk = context;
    uint64_t last = 0, first = 0;
    if (walk->budget == 0) {
        return false; /* more to read: the page comes back short, with next_after_seq */
    }
    if (key_length != walk->prefix_length + 8 || !sd_key_index_seq(key, key_length, &last) ||
        (walk->runs && !sd_order_index_value_decode(value, value_length, last, &first))) {
        walk->scan->corrupt = true;
        return false;
    }
    first = walk->runs ? first : last;
    for (uint64_t seq = first > walk->from_seq ? first : walk->from_seq; seq <= last; seq++) {
        if (walk->budget == 0 || !sd_index_walk_entry(walk, seq)) {
            return false;
        }
        if (seq == last) {
            break;
        }
    }
    return true;
}

/* The index prefix History walks: the order's when order_id is set (alone or with an item: an
 * order has few entries), else the item's. Returns its length (0: cannot be encoded). */
static size_t sd_history_index_prefix(const Stockd__V1__HistoryRequest *request,
                                      const sd_history_scan_t *scan, uint8_t *out, size_t capacity)
{
    if (scan->order_filter != NULL) {
        return sd_key_encode_order_index_prefix(sd_bytes_of(request->tenant_id),
                                                sd_bytes_of(request->order_id), out, capacity);
    }
    uint8_t item_key[SD_ITEM_KEY_BYTES_MAX];
    sd_item_key_t parts = sd_item_key_of(request->tenant_id, request->item);
    size_t item_length = sd_key_encode_item(&parts, item_key, sizeof(item_key));
    return sd_key_encode_item_index_prefix(item_key, item_length, out, capacity);
}

static sd_status_t sd_history_walk_index(sd_storage_t *storage,
                                         const Stockd__V1__HistoryRequest *request,
                                         sd_history_scan_t *scan, size_t budget, bool *more_out)
{
    sd_index_walk_t walk = {.storage = storage,
                            .scan = scan,
                            .runs = scan->order_filter != NULL,
                            .from_seq = request->after_seq + 1,
                            .budget = budget,
                            .status = SD_OK};
    walk.tenant_length = sd_key_encode_tenant(sd_bytes_of(request->tenant_id), walk.ledger_key,
                                              sizeof(walk.ledger_key));
    uint8_t prefix[SD_LEDGER_INDEX_KEY_BYTES_MAX], start[SD_LEDGER_INDEX_KEY_BYTES_MAX];
    walk.prefix_length = sd_history_index_prefix(request, scan, prefix, sizeof(prefix));
    if (walk.tenant_length == 0 || walk.prefix_length == 0) {
        return SD_INTERNAL; /* validated ids always fit */
    }
    memcpy(start, prefix, walk.prefix_length);
    sd_be64_put(start + walk.prefix_length, walk.from_seq);
    sd_status_t status =
        sd_storage_scan(storage, SD_CF_LEDGER_INDEX, prefix, walk.prefix_length, start,
                        walk.prefix_length + 8, false, SIZE_MAX, sd_index_visit, &walk, more_out);
    return status != SD_OK ? status : walk.status;
}

static sd_status_t sd_history_pack(sd_history_scan_t *scan, bool more, uint8_t **packed_out,
                                   size_t *packed_length_out)
{
    Stockd__V1__HistoryResponse response = STOCKD__V1__HISTORY_RESPONSE__INIT;
    response.n_entries = scan->count;
    response.entries = scan->entries;
    response.next_after_seq = more ? scan->last_seq : 0;
    *packed_length_out = stockd__v1__history_response__get_packed_size(&response);
    *packed_out = malloc(*packed_length_out + 1);
    if (*packed_out == NULL) {
        return SD_UNAVAILABLE;
    }
    stockd__v1__history_response__pack(&response, *packed_out);
    return SD_OK;
}

sd_status_t sd_query_history(sd_storage_t *storage, uint64_t pruned_through,
                             const Stockd__V1__HistoryRequest *request, sd_error_t *error,
                             uint8_t **packed_out, size_t *packed_length_out)
{
    size_t page_size = 0;
    if (!sd_history_validate(request, pruned_through, error, &page_size)) {
        return error->status;
    }
    uint8_t prefix[SD_TENANT_PREFIX_BYTES_MAX], start[SD_LEDGER_KEY_BYTES_MAX];
    size_t prefix_length =
        sd_key_encode_tenant(sd_bytes_of(request->tenant_id), prefix, sizeof(prefix));
    size_t start_length = sd_key_encode_ledger(sd_bytes_of(request->tenant_id),
                                               request->after_seq + 1, start, sizeof(start));
    sd_history_scan_t scan = {.item_filter =
                                  sd_item_filter_set(request->item) ? request->item : NULL,
                              .order_filter = request->order_id[0] ? request->order_id : NULL,
                              .entries = calloc(page_size, sizeof(Stockd__V1__LedgerEntry *)),
                              .page_size = page_size};
    bool more = false;
    bool indexed = atomic_load(&sd_history_index_enabled) &&
                   (scan.item_filter != NULL || scan.order_filter != NULL);
    sd_status_t status =
        scan.entries == NULL ? SD_UNAVAILABLE
        : indexed
            ? sd_history_walk_index(storage, request, &scan, sd_scan_budget(page_size), &more)
            : sd_storage_scan(storage, SD_CF_LEDGER, prefix, prefix_length, start, start_length,
                              false, sd_scan_budget(page_size), sd_history_visit, &scan, &more);
    if (status == SD_OK && scan.corrupt) {
        SD_LOG(LOG_ERROR, "storage_corrupt_ledger", LF_UINT("after_seq", scan.last_seq));
        status = SD_INTERNAL;
    }
    if (status == SD_OK) {
        status = sd_history_pack(&scan, more, packed_out, packed_length_out);
    }
    if (status != SD_OK) {
        sd_error_set(error, status, "cannot read the ledger: %s", sd_status_message(status));
    }
    for (size_t i = 0; i < scan.count; i++) {
        stockd__v1__ledger_entry__free_unpacked(scan.entries[i], NULL);
    }
    free(scan.entries);
    return status;
}
