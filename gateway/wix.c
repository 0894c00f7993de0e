/* wix.c — see wix.h. */
#include "wix.h"

#include "sd_limits.h"

#include <openssl/sha.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util.h"

/* Integer-valued JSON reals are accepted within ±10^15 (stockd's level range), which also keeps
 * every conversion to int64 defined. */
#define GW_JSON_INTEGER_ABS_MAX ((double)SD_LEVEL_ABS_MAX)
/* A SHA-256 in hex: the variant of a long option set is "sha256:" + this. */
#define GW_SHA256_HEX_BYTES 64
#define GW_QUOTE_BYTES_MAX (GW_QUOTED_VALUE_BYTES_MAX + 16) /* ", got \"…\"" */

static const struct {
    const char *name;
    Stockd__V1__Reason value;
} gw_reasons[] = {
    {"ORDER_PLACED", STOCKD__V1__REASON__REASON_ORDER_PLACED},
    {"ORDER_PAID", STOCKD__V1__REASON__REASON_ORDER_PAID},
    {"ORDER_CANCELED", STOCKD__V1__REASON__REASON_ORDER_CANCELED},
    {"ORDER_REFUNDED", STOCKD__V1__REASON__REASON_ORDER_REFUNDED},
    {"ORDER_EDITED", STOCKD__V1__REASON__REASON_ORDER_EDITED},
    {"ORDER_REJECTED", STOCKD__V1__REASON__REASON_ORDER_REJECTED},
};

static gw_wix_result_t gw_refuse(gw_wix_call_t *call, gw_wix_result_t result, const char *format,
                                 ...) __attribute__((format(printf, 3, 4)));

static gw_wix_result_t gw_refuse(gw_wix_call_t *call, gw_wix_result_t result, const char *format,
                                 ...)
{
    va_list args;
    va_start(args, format);
    vsnprintf(call->reason, sizeof(call->reason), format, args);
    va_end(args);
    util_utf8_repair(call->reason); /* a byte limit must not leave half a character */
    return result;
}

/* Every allocation goes through jansson's allocator (malloc unless json_set_alloc_funcs replaced
 * it): the JSON work of a mapping already does, and one hook then lets a test fail any
 * allocation of a mapping. Memory from these is released with gw_wix_free. */
static void *gw_wix_calloc(size_t count, size_t size)
{
    json_malloc_t allocate;
    json_free_t release;
    json_get_alloc_funcs(&allocate, &release);
    if (count != 0 && size > SIZE_MAX / count) {
        return NULL;
    }
    void *memory = allocate(count * size);
    if (memory != NULL) {
        memset(memory, 0, count * size);
    }
    return memory;
}

static void gw_wix_free(void *memory)
{
    json_malloc_t allocate;
    json_free_t release;
    json_get_alloc_funcs(&allocate, &release);
    if (memory != NULL) {
        release(memory);
    }
}

static char *gw_wix_strdup(const char *text)
{
    size_t length = strlen(text);
    char *copy = gw_wix_calloc(length + 1, 1);
    if (copy != NULL) {
        memcpy(copy, text, length);
    }
    return copy;
}

/* The text of a JSON string, or NULL when it is not a string or holds a NUL (jansson keeps
 * "\u0000", but C strings would silently cut there). */
static const char *gw_json_text(const json_t *value)
{
    const char *text = json_string_value(value);
    return text != NULL && strlen(text) == json_string_length(value) ? text : NULL;
}

/* Number of Unicode code points in valid UTF-8 text. */
static size_t gw_utf8_chars(const char *text)
{
    size_t count = 0;
    for (const unsigned char *c = (const unsigned char *)text; *c != '\0'; c++) {
        count += (*c & 0xC0) != 0x80;
    }
    return count;
}

static void gw_sha256_hex(const char *text, size_t length, char hex[65])
{
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)text, length, digest);
    util_hex(digest, sizeof(digest), hex);
}

/* Keeps a variant within the stockd limit: long ones become "sha256:" + hex. */
static char *gw_bounded_variant(const char *text)
{
    size_t length = strlen(text);
    if (length <= SD_VARIANT_BYTES_MAX) {
        return gw_wix_strdup(text);
    }
    char *hashed = gw_wix_calloc(sizeof("sha256:") - 1 + GW_SHA256_HEX_BYTES + 1, 1);
    if (hashed != NULL) {
        memcpy(hashed, "sha256:", 7);
        gw_sha256_hex(text, length, hashed + 7);
    }
    return hashed;
}

char *gw_wix_variant(const json_t *options)
{
    if (options == NULL || json_is_null(options) ||
        (json_is_object(options) && json_object_size(options) == 0)) {
        return gw_wix_strdup("");
    }
    const char *variant_id = gw_json_text(json_object_get(options, "variantId"));
    if (variant_id != NULL) {
        return gw_bounded_variant(variant_id);
    }
    json_t *copy = json_deep_copy(options);
    if (copy == NULL) {
        return NULL;
    }
    json_object_del(copy, "customTextFields");
    char *canonical = json_object_size(copy) == 0
                          ? gw_wix_strdup("")
                          : json_dumps(copy, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    json_decref(copy);
    if (canonical == NULL) {
        return NULL;
    }
    char *variant = gw_bounded_variant(canonical);
    gw_wix_free(canonical);
    return variant;
}

/* An integer-valued JSON number (JSON has one number type: 2.0 is the integer 2). */
static bool gw_json_integer(const json_t *value, int64_t *out)
{
    if (json_is_integer(value)) {
        *out = (int64_t)json_integer_value(value);
        return true;
    }
    if (!json_is_real(value)) {
        return false;
    }
    double real = json_real_value(value);
    /* the range first: converting a double outside int64 (1e300) is undefined behaviour */
    if (!(real >= -GW_JSON_INTEGER_ABS_MAX && real <= GW_JSON_INTEGER_ABS_MAX) ||
        real != (double)(int64_t)real) {
        return false;
    }
    *out = (int64_t)real;
    return true;
}

/* ", got \"…\"" quoting a bad string value for a reason (at most GW_QUOTED_VALUE_BYTES_MAX
 * bytes, whole characters), or "" when the value is not a string. Returns out. */
static const char *gw_quote(const json_t *value, char out[GW_QUOTE_BYTES_MAX])
{
    out[0] = '\0';
    if (json_is_string(value)) {
        snprintf(out, GW_QUOTE_BYTES_MAX, ", got \"%.*s", GW_QUOTED_VALUE_BYTES_MAX,
                 json_string_value(value));
        size_t length = util_utf8_repair(out); /* the cut may have split a character */
        snprintf(out + length, GW_QUOTE_BYTES_MAX - length, "\"");
    }
    return out;
}

/* metadata → tenant and request_id. */
static gw_wix_result_t gw_map_metadata(const json_t *metadata, const char *default_tenant,
                                       gw_wix_call_t *call)
{
    const json_t *instance = json_object_get(metadata, "instanceId");
    const char *tenant = default_tenant;
    char quoted[GW_QUOTE_BYTES_MAX];
    if (instance != NULL && !json_is_null(instance)) {
        tenant = gw_json_text(instance);
        if (tenant == NULL || !sd_tenant_valid(tenant, NULL)) {
            return gw_refuse(call, GW_WIX_BAD_REQUEST,
                             "metadata.instanceId: must be a string of 1..%d [A-Za-z0-9._:-]%s",
                             SD_TENANT_BYTES_MAX, gw_quote(instance, quoted));
        }
    }
    snprintf(call->tenant_id, sizeof(call->tenant_id), "%s", tenant);
    const char *request_id = gw_json_text(json_object_get(metadata, "requestId"));
    call->request_id[0] = '\0';
    if (request_id != NULL && request_id[0] != '\0') {
        if (strlen(request_id) + 4 <= SD_REQUEST_ID_BYTES_MAX) {
            snprintf(call->request_id, sizeof(call->request_id), "wix:%s", request_id);
        } else { /* keep any requestId usable: long ones are hashed */
            char hex[65];
            gw_sha256_hex(request_id, strlen(request_id), hex);
            snprintf(call->request_id, sizeof(call->request_id), "wix:sha256:%s", hex);
        }
    }
    return GW_WIX_OK;
}

/* An optional string field: absent or null gives "", otherwise a string of at most
 * bytes_max bytes. */
static bool gw_optional_string(const json_t *parent, const char *name, size_t bytes_max,
                               const char **out)
{
    const json_t *value = json_object_get(parent, name);
    *out = "";
    if (value == NULL || json_is_null(value)) {
        return true;
    }
    if (gw_json_text(value) == NULL || json_string_length(value) > bytes_max) {
        return false;
    }
    *out = gw_json_text(value);
    return true;
}

static gw_wix_result_t gw_map_catalog_reference(const json_t *item, size_t index,
                                                gw_wix_call_t *call)
{
    const json_t *reference = json_object_get(item, "catalogReference");
    if (!json_is_object(reference)) {
        return gw_refuse(call, GW_WIX_BAD_REQUEST,
                         "request.items[%zu].catalogReference: required object", index);
    }
    char quoted[GW_QUOTE_BYTES_MAX];
    const json_t *catalog_value = json_object_get(reference, "catalogItemId");
    const char *catalog_item = gw_json_text(catalog_value);
    if (catalog_item == NULL || gw_utf8_chars(catalog_item) < 1 ||
        gw_utf8_chars(catalog_item) > GW_WIX_CATALOG_ITEM_CHARS_MAX) {
        return gw_refuse(call, GW_WIX_BAD_REQUEST,
                         "request.items[%zu].catalogReference.catalogItemId: must be a string "
                         "of 1..36 characters%s",
                         index, gw_quote(catalog_value, quoted));
    }
    const json_t *app_value = json_object_get(reference, "appId");
    const char *app = gw_json_text(app_value);
    if (app == NULL || app[0] == '\0' || strlen(app) > SD_APP_BYTES_MAX) {
        return gw_refuse(call, GW_WIX_BAD_REQUEST,
                         "request.items[%zu].catalogReference.appId: must be a non-empty string "
                         "of at most %d bytes%s",
                         index, SD_APP_BYTES_MAX, gw_quote(app_value, quoted));
    }
    const json_t *options = json_object_get(reference, "options");
    if (options != NULL && !json_is_null(options) && !json_is_object(options)) {
        return gw_refuse(call, GW_WIX_BAD_REQUEST,
                         "request.items[%zu].catalogReference.options: must be an object or null",
                         index);
    }
    call->variants[index] = gw_wix_variant(options);
    if (call->variants[index] == NULL) {
        return gw_refuse(call, GW_WIX_NO_MEMORY, "out of memory");
    }
    Stockd__V1__ItemRef *ref = &call->items[index];
    ref->app_id = (char *)app;
    ref->catalog_item_id = (char *)catalog_item;
    ref->variant = call->variants[index];
    return GW_WIX_OK;
}

static gw_wix_result_t gw_map_item(const json_t *item, size_t index, gw_wix_call_t *call)
{
    if (!json_is_object(item)) {
        return gw_refuse(call, GW_WIX_BAD_REQUEST, "request.items[%zu]: must be an object", index);
    }
    stockd__v1__item_ref__init(&call->items[index]);
    stockd__v1__line__init(&call->lines[index]);
    gw_wix_result_t result = gw_map_catalog_reference(item, index, call);
    if (result != GW_WIX_OK) {
        return result;
    }
    const char *location = "";
    if (!gw_optional_string(item, "locationId", SD_LOCATION_BYTES_MAX, &location)) {
        return gw_refuse(call, GW_WIX_BAD_REQUEST,
                         "request.items[%zu].locationId: must be a string of at most %d bytes "
                         "or null",
                         index, SD_LOCATION_BYTES_MAX);
    }
    call->items[index].location_id = (char *)location;
    int64_t quantity = 0;
    if (!gw_json_integer(json_object_get(item, "quantity"), &quantity) || quantity < 1 ||
        quantity > GW_WIX_QUANTITY_MAX) {
        return gw_refuse(call, GW_WIX_BAD_REQUEST,
                         "request.items[%zu].quantity: must be an integer 1..100000", index);
    }
    const json_t *subscription = json_object_get(item, "subscriptionItem");
    if (subscription != NULL && !json_is_null(subscription) && !json_is_boolean(subscription)) {
        return gw_refuse(call, GW_WIX_BAD_REQUEST,
                         "request.items[%zu].subscriptionItem: must be a boolean", index);
    }
    call->lines[index].item = &call->items[index];
    call->lines[index].quantity = quantity;
    call->lines[index].subscription_item = json_is_true(subscription);
    call->line_pointers[index] = &call->lines[index];
    return GW_WIX_OK;
}

static gw_wix_result_t gw_map_items(const json_t *request, gw_wix_call_t *call)
{
    const json_t *items = json_object_get(request, "items");
    size_t count = json_is_array(items) ? json_array_size(items) : 0;
    if (count < 1 || count > GW_WIX_ITEMS_MAX) {
        return gw_refuse(call, GW_WIX_BAD_REQUEST,
                         "request.items: must be an array of 1..300 items");
    }
    call->items = gw_wix_calloc(count, sizeof(*call->items));
    call->lines = gw_wix_calloc(count, sizeof(*call->lines));
    call->line_pointers = gw_wix_calloc(count, sizeof(*call->line_pointers));
    call->variants = gw_wix_calloc(count, sizeof(*call->variants));
    if (!call->items || !call->lines || !call->line_pointers || !call->variants) {
        return gw_refuse(call, GW_WIX_NO_MEMORY, "out of memory");
    }
    call->lines_count = count;
    for (size_t i = 0; i < count; i++) {
        gw_wix_result_t result = gw_map_item(json_array_get(items, i), i, call);
        if (result != GW_WIX_OK) {
            return result;
        }
    }
    return GW_WIX_OK;
}

static bool gw_reason_of(const json_t *request, Stockd__V1__Reason *reason_out)
{
    const char *reason = gw_json_text(json_object_get(request, "reason"));
    for (size_t i = 0; reason != NULL && i < sizeof(gw_reasons) / sizeof(gw_reasons[0]); i++) {
        if (strcmp(reason, gw_reasons[i].name) == 0) {
            *reason_out = gw_reasons[i].value;
            return true;
        }
    }
    return false;
}

static gw_wix_result_t gw_map_request(gw_wix_method_t method, const json_t *request,
                                      gw_wix_call_t *call)
{
    if (!json_is_object(request)) {
        return gw_refuse(call, GW_WIX_BAD_REQUEST, "request: required object");
    }
    gw_wix_result_t result = gw_map_items(request, call);
    if (result != GW_WIX_OK) {
        return result;
    }
    char quoted[GW_QUOTE_BYTES_MAX];
    const json_t *order = json_object_get(request, "orderId");
    if (gw_json_text(order) == NULL || json_string_length(order) > SD_ORDER_ID_BYTES_MAX) {
        return gw_refuse(call, GW_WIX_BAD_REQUEST,
                         "request.orderId: must be a string of at most %d bytes%s",
                         SD_ORDER_ID_BYTES_MAX, gw_quote(order, quoted));
    }
    Stockd__V1__Reason reason;
    if (!gw_reason_of(request, &reason)) {
        return gw_refuse(call, GW_WIX_BAD_REQUEST,
                         "request.reason: must be one of ORDER_PLACED, ORDER_PAID, "
                         "ORDER_CANCELED, ORDER_REFUNDED, ORDER_EDITED, ORDER_REJECTED%s",
                         gw_quote(json_object_get(request, "reason"), quoted));
    }
    const json_t *restrict_value = json_object_get(request, "restrictInventoryValue");
    if (method == GW_WIX_DECREMENT && !json_is_boolean(restrict_value)) {
        return gw_refuse(call, GW_WIX_BAD_REQUEST,
                         "request.restrictInventoryValue: must be a boolean");
    }
    if (method == GW_WIX_DECREMENT) {
        Stockd__V1__DecrementRequest *d = &call->decrement;
        d->tenant_id = call->tenant_id;
        d->n_lines = call->lines_count;
        d->lines = call->line_pointers;
        d->restrict_inventory = json_is_true(restrict_value);
        d->order_id = (char *)json_string_value(order);
        d->reason = reason;
        d->request_id = call->request_id;
    } else {
        Stockd__V1__IncrementRequest *i = &call->increment;
        i->tenant_id = call->tenant_id;
        i->n_lines = call->lines_count;
        i->lines = call->line_pointers;
        i->order_id = (char *)json_string_value(order);
        i->reason = reason;
        i->request_id = call->request_id;
    }
    return GW_WIX_OK;
}

gw_wix_result_t gw_wix_map(gw_wix_method_t method, json_t *payload, const char *default_tenant,
                           gw_wix_call_t *call)
{
    memset(call, 0, sizeof(*call));
    call->method = method;
    call->payload = json_incref(payload);
    stockd__v1__decrement_request__init(&call->decrement);
    stockd__v1__increment_request__init(&call->increment);
    const json_t *data = json_object_get(payload, "data");
    const json_t *metadata = json_object_get(data, "metadata");
    if (!json_is_object(data) || !json_is_object(metadata)) {
        return gw_refuse(call, GW_WIX_BAD_ENVELOPE,
                         "data: must be an object holding a "
                         "metadata object");
    }
    const char *type = gw_json_text(json_object_get(metadata, "appExtensionType"));
    if (type == NULL || strcasecmp(type, GW_WIX_APP_EXTENSION_TYPE) != 0) {
        return gw_refuse(call, GW_WIX_BAD_EXTENSION,
                         "data.metadata.appExtensionType: must be ECOM_INVENTORY");
    }
    gw_wix_result_t result = gw_map_metadata(metadata, default_tenant, call);
    if (result != GW_WIX_OK) {
        return result;
    }
    return gw_map_request(method, json_object_get(data, "request"), call);
}

void gw_wix_use_token_request_id(gw_wix_call_t *call, const char token_digest_hex[65])
{
    if (call->request_id[0] == '\0') {
        snprintf(call->request_id, sizeof(call->request_id), "%s%.64s",
                 GW_WIX_TOKEN_REQUEST_ID_PREFIX, token_digest_hex);
    }
}

void gw_wix_call_free(gw_wix_call_t *call)
{
    for (size_t i = 0; call->variants != NULL && i < call->lines_count; i++) {
        gw_wix_free(call->variants[i]);
    }
    gw_wix_free(call->variants);
    gw_wix_free(call->items);
    gw_wix_free(call->lines);
    gw_wix_free(call->line_pointers);
    json_decref(call->payload);
    memset(call, 0, sizeof(*call));
}
