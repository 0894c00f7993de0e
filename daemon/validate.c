/* validate.c — see validate.h. */
#include "validate.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "sd_limits.h"
#include "util.h"

#define SD_FIELD_PATH_BYTES_MAX 96

/* A field path built only when a violation must name it: most requests are valid, and
 * formatting "lines[3].item.app_id" for every field of every line costs more than checking it. */
typedef struct {
    const char *base;  /* "lines", "items", "tenant_id", … */
    size_t index;      /* SIZE_MAX: not a repeated field */
    const char *child; /* NULL or "item" */
    const char *leaf;  /* NULL or "app_id" */
} sd_path_t;

static const char *sd_path_format(const sd_path_t *path, char *out, size_t capacity)
{
    char index[32] = "";
    if (path->index != SIZE_MAX) {
        snprintf(index, sizeof(index), "[%zu]", path->index);
    }
    snprintf(out, capacity, "%s%s%s%s%s%s", path->base, index, path->child ? "." : "",
             path->child ? path->child : "", path->leaf ? "." : "", path->leaf ? path->leaf : "");
    return out;
}

static bool sd_check_text(const char *text, const sd_path_t *path, size_t bytes_max, bool required,
                          sd_error_t *error)
{
    size_t length = strlen(text);
    char field[SD_FIELD_PATH_BYTES_MAX];
    if (required && length == 0) {
        sd_error_add_field(error, sd_path_format(path, field, sizeof(field)),
                           "is required (1..%zu bytes)", bytes_max);
        return false;
    }
    if (length > bytes_max) {
        sd_error_add_field(error, sd_path_format(path, field, sizeof(field)),
                           "is %zu bytes long; at most %zu allowed: \"%.32s...\"", length,
                           bytes_max, text);
        return false;
    }
    if (!util_utf8_valid(text, length)) {
        sd_error_add_field(error, sd_path_format(path, field, sizeof(field)), "is not valid UTF-8");
        return false;
    }
    return true;
}

bool sd_validate_text(const char *text, const char *field, size_t bytes_max, bool required,
                      sd_error_t *error)
{
    sd_path_t path = {field, SIZE_MAX, NULL, NULL};
    return sd_check_text(text, &path, bytes_max, required, error);
}

bool sd_validate_tenant(const char *tenant_id, const char *field, sd_error_t *error)
{
    if (!sd_validate_text(tenant_id, field, SD_TENANT_BYTES_MAX, true, error)) {
        return false;
    }
    size_t valid = 0;
    if (!sd_tenant_valid(tenant_id, &valid)) {
        sd_error_add_field(error, field,
                           "\"%.64s\" has a character outside [A-Za-z0-9._:-] at byte %zu",
                           tenant_id, valid);
        return false;
    }
    return true;
}

/* The ids of an item key may hold no control character (C0 0x00-0x1F or DEL 0x7F): a line
 * break or tab in an id would break every line-oriented view of it (stockctl's CSV export,
 * logs, terminals), so an id that can be stored is always one that exports and imports back
 * byte for byte. Returns true when text is free of them; otherwise names the field. */
static bool sd_check_no_control(const char *text, const sd_path_t *path, sd_error_t *error)
{
    for (size_t i = 0; text[i] != '\0'; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c < 0x20 || c == 0x7F) {
            char field[SD_FIELD_PATH_BYTES_MAX];
            sd_error_add_field(error, sd_path_format(path, field, sizeof(field)),
                               "holds the control character 0x%02x at byte %zu; ids may not "
                               "contain C0 or DEL characters",
                               c, i);
            return false;
        }
    }
    return true;
}

/* Checks an ItemRef at base[index].child (index SIZE_MAX and child NULL when absent). */
static bool sd_check_item(const Stockd__V1__ItemRef *item, const char *base, size_t index,
                          const char *child, sd_error_t *error)
{
    sd_path_t path = {base, index, child, NULL};
    if (item == NULL) {
        char field[SD_FIELD_PATH_BYTES_MAX];
        sd_error_add_field(error, sd_path_format(&path, field, sizeof(field)), "is required");
        return false;
    }
    static const struct {
        const char *name;
        size_t offset;
        size_t bytes_max;
        bool required;
    } parts[] = {
        {"location_id", offsetof(Stockd__V1__ItemRef, location_id), SD_LOCATION_BYTES_MAX, false},
        {"app_id", offsetof(Stockd__V1__ItemRef, app_id), SD_APP_BYTES_MAX, true},
        {"catalog_item_id", offsetof(Stockd__V1__ItemRef, catalog_item_id),
         SD_CATALOG_ITEM_BYTES_MAX, true},
        {"variant", offsetof(Stockd__V1__ItemRef, variant), SD_VARIANT_BYTES_MAX, false},
    };
    bool ok = true;
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
        const char *text;
        memcpy(&text, (const char *)item + parts[i].offset, sizeof(text));
        path.leaf = parts[i].name;
        /* a child-less path (items[3]) names the part directly: items[3].app_id */
        if (!sd_check_text(text, &path, parts[i].bytes_max, parts[i].required, error) ||
            !sd_check_no_control(text, &path, error)) {
            ok = false;
        }
    }
    return ok;
}

bool sd_validate_item(const Stockd__V1__ItemRef *item, const char *field, sd_error_t *error)
{
    return sd_check_item(item, field, SIZE_MAX, NULL, error);
}

bool sd_validate_reason(int reason, const char *field, sd_error_t *error)
{
    if (reason < STOCKD__V1__REASON__REASON_UNSPECIFIED ||
        reason > STOCKD__V1__REASON__REASON_TRANSFER) {
        sd_error_add_field(error, field, "%d is not a known Reason value", reason);
        return false;
    }
    return true;
}

static bool sd_validate_lines_count(size_t count, sd_error_t *error)
{
    if (count == 0 || count > SD_LINES_MAX) {
        sd_error_add_field(error, "lines", "has %zu entries; 1..%d allowed", count, SD_LINES_MAX);
        return false;
    }
    return true;
}

static bool sd_validate_lines(Stockd__V1__Line *const *lines, size_t count, sd_error_t *error)
{
    if (!sd_validate_lines_count(count, error)) {
        return false;
    }
    bool ok = true;
    char path[SD_FIELD_PATH_BYTES_MAX];
    for (size_t i = 0; i < count; i++) {
        ok &= sd_check_item(lines[i]->item, "lines", i, "item", error);
        if (lines[i]->quantity < 1 || lines[i]->quantity > SD_QUANTITY_MAX) {
            snprintf(path, sizeof(path), "lines[%zu].quantity", i);
            sd_error_add_field(error, path, "%lld is outside 1..%lld",
                               (long long)lines[i]->quantity, (long long)SD_QUANTITY_MAX);
            ok = false;
        }
    }
    return ok;
}

/* The fields every write request shares. */
static bool sd_validate_write_common(const char *tenant_id, const char *order_id, int reason,
                                     const char *reason_text, const char *request_id,
                                     sd_error_t *error)
{
    bool ok = sd_validate_tenant(tenant_id, "tenant_id", error);
    ok &= sd_validate_text(order_id, "order_id", SD_ORDER_ID_BYTES_MAX, false, error);
    ok &= sd_validate_reason(reason, "reason", error);
    ok &= sd_validate_text(reason_text, "reason_text", SD_REASON_TEXT_BYTES_MAX, false, error);
    ok &= sd_validate_text(request_id, "request_id", SD_REQUEST_ID_BYTES_MAX, false, error);
    return ok;
}

bool sd_validate_decrement(const Stockd__V1__DecrementRequest *request, sd_error_t *error)
{
    bool ok = sd_validate_write_common(request->tenant_id, request->order_id, request->reason,
                                       request->reason_text, request->request_id, error);
    ok &= sd_validate_lines(request->lines, request->n_lines, error);
    return ok;
}

bool sd_validate_increment(const Stockd__V1__IncrementRequest *request, sd_error_t *error)
{
    bool ok = sd_validate_write_common(request->tenant_id, request->order_id, request->reason,
                                       request->reason_text, request->request_id, error);
    ok &= sd_validate_lines(request->lines, request->n_lines, error);
    return ok;
}

bool sd_validate_set_stock(const Stockd__V1__SetStockRequest *request, sd_error_t *error)
{
    bool ok = sd_validate_write_common(request->tenant_id, "", request->reason,
                                       request->reason_text, request->request_id, error);
    if (!sd_validate_lines_count(request->n_lines, error)) {
        return false;
    }
    for (size_t i = 0; i < request->n_lines; i++) {
        ok &= sd_check_item(request->lines[i]->item, "lines", i, "item", error);
    }
    return ok;
}

bool sd_validate_get_stock(const Stockd__V1__GetStockRequest *request, sd_error_t *error)
{
    bool ok = sd_validate_tenant(request->tenant_id, "tenant_id", error);
    if (request->n_items == 0 || request->n_items > SD_LINES_MAX) {
        sd_error_add_field(error, "items", "has %zu entries; 1..%d allowed", request->n_items,
                           SD_LINES_MAX);
        return false;
    }
    for (size_t i = 0; i < request->n_items; i++) {
        ok &= sd_check_item(request->items[i], "items", i, NULL, error);
    }
    return ok;
}

bool sd_validate_after_seq(uint64_t after_seq, uint64_t pruned_through, sd_error_t *error)
{
    if (after_seq == UINT64_MAX) {
        sd_error_add_field(error, "after_seq", "must be below 2^64-1");
        return false;
    }
    if (after_seq < pruned_through) {
        sd_error_set(error, SD_OUT_OF_RANGE,
                     "after_seq %llu: entries up to seq %llu were removed by ledger retention",
                     (unsigned long long)after_seq, (unsigned long long)pruned_through);
        return false;
    }
    return true;
}
