/* fuzz_request.c — libFuzzer target for stockd's protobuf request path.
 *
 * The first input byte picks the RPC; the rest is its request message as gRPC hands it to a
 * handler. Each goes through what stockd does before anything touches storage (handlers.c
 * sd_unpack and sd_handle_write): the NUL-in-string wire walk (wire.c), protobuf-c unpacking,
 * the field validation (validate.c; for ListStock and History the checks of queries.c, reached
 * by including that file), the BadRequest packing of a refusal, and, for a valid request,
 * the item keys the writer would encode (keys.c) and the subjects its errors would name
 * (batch.c). Properties that must hold abort, so the fuzzer reports them as crashes: a
 * refusal carries INVALID_ARGUMENT and a field violation, a valid item encodes to a key that
 * decodes to the same ids, and a valid id holds no control character.
 *
 * Replayed from tests/fuzz/corpus/request as an ordinary test; built with clang
 * -fsanitize=fuzzer (with every library instrumented) for fuzzing. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "grpc/health/v1/health.pb-c.h"
#include "keys.h"
#include "rpc_status.h"
#include "stockd/v1/admin.pb-c.h"
#include "stockd/v1/inventory.pb-c.h"
#include "validate.h"
#include "wire.h"

/* The static validation of ListStock and History lives in queries.c (the house way to test
 * file-local helpers: include the .c). Its other functions are linked from here too. */
#include "../../daemon/queries.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An always-on check of a property of the code under test (never of the input). */
#define FUZZ_CHECK(condition)                                                                      \
    do {                                                                                           \
        if (!(condition)) {                                                                        \
            fprintf(stderr, "fuzz_request: %s:%d: check failed: %s\n", __FILE__, __LINE__,         \
                    #condition);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define FUZZ_SUBJECT_BYTES_MAX 1200 /* batch.c's SD_SUBJECT_BYTES_MAX */

typedef enum {
    FUZZ_DECREMENT,
    FUZZ_INCREMENT,
    FUZZ_SET_STOCK,
    FUZZ_GET_STOCK,
    FUZZ_LIST_STOCK,
    FUZZ_HISTORY,
    FUZZ_WATCH,
    FUZZ_CHECKPOINT,
    FUZZ_HEALTH,
    FUZZ_KINDS_COUNT,
} fuzz_kind_t;

static const ProtobufCMessageDescriptor *const fuzz_descriptors[FUZZ_KINDS_COUNT] = {
    [FUZZ_DECREMENT] = &stockd__v1__decrement_request__descriptor,
    [FUZZ_INCREMENT] = &stockd__v1__increment_request__descriptor,
    [FUZZ_SET_STOCK] = &stockd__v1__set_stock_request__descriptor,
    [FUZZ_GET_STOCK] = &stockd__v1__get_stock_request__descriptor,
    [FUZZ_LIST_STOCK] = &stockd__v1__list_stock_request__descriptor,
    [FUZZ_HISTORY] = &stockd__v1__history_request__descriptor,
    [FUZZ_WATCH] = &stockd__v1__watch_request__descriptor,
    [FUZZ_CHECKPOINT] = &stockd__v1__checkpoint_request__descriptor,
    [FUZZ_HEALTH] = &grpc__health__v1__health_check_request__descriptor,
};

static bool fuzz_has_control(const char *text)
{
    for (const unsigned char *c = (const unsigned char *)text; *c != '\0'; c++) {
        if (*c < 0x20 || *c == 0x7F) {
            return true;
        }
    }
    return false;
}

static bool fuzz_bytes_equal(sd_bytes_t view, const char *text)
{
    return view.length == strlen(text) && memcmp(view.data, text, view.length) == 0;
}

/* A validated item: its key round-trips through the storage encoding, its ids are free of
 * control characters, and its error subject is a bounded, terminated string. */
static void fuzz_valid_item(const char *tenant_id, const Stockd__V1__ItemRef *item)
{
    FUZZ_CHECK(item != NULL);
    const char *ids[4] = {item->location_id, item->app_id, item->catalog_item_id, item->variant};
    for (int i = 0; i < 4; i++) {
        FUZZ_CHECK(!fuzz_has_control(ids[i]));
    }
    sd_item_key_t parts = sd_item_key_of(tenant_id, item);
    uint8_t key[SD_ITEM_KEY_BYTES_MAX];
    size_t key_length = sd_key_encode_item(&parts, key, sizeof(key));
    FUZZ_CHECK(key_length > 0 && key_length <= sizeof(key));
    sd_item_key_t decoded;
    FUZZ_CHECK(sd_key_decode_item(key, key_length, &decoded));
    FUZZ_CHECK(fuzz_bytes_equal(decoded.tenant_id, tenant_id));
    for (int i = 0; i < 4; i++) {
        const sd_bytes_t *views[4] = {&decoded.location_id, &decoded.app_id,
                                      &decoded.catalog_item_id, &decoded.variant};
        FUZZ_CHECK(fuzz_bytes_equal(*views[i], ids[i]));
    }
    /* The subject of an INSUFFICIENT_STOCK violation: bounded, and valid UTF-8 on the wire
     * (a proto3 string; clients refuse to decode details that are not). */
    char subject[FUZZ_SUBJECT_BYTES_MAX];
    sd_item_subject(item, subject, sizeof(subject));
    sd_error_t error;
    sd_error_init(&error);
    sd_error_add_precondition(&error, "INSUFFICIENT_STOCK", subject, "requested %d", 1);
    FUZZ_CHECK(error.precondition_violations_count == 1);
    const char *sent = error.precondition_violations[0].second;
    FUZZ_CHECK(sent != NULL && util_utf8_valid(sent, strlen(sent)));
    uint8_t *packed = NULL;
    size_t packed_length = 0;
    FUZZ_CHECK(sd_error_pack_status(&error, &packed, &packed_length));
    free(packed);
    sd_error_free(&error);
}

static void fuzz_valid_lines(const char *tenant_id, Stockd__V1__Line *const *lines, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        fuzz_valid_item(tenant_id, lines[i]->item);
    }
}

/* ListStock: its validation, then the key prefix of its filters and the page token check
 * that sd_query_list_stock makes before it scans. */
static bool fuzz_list_stock(const Stockd__V1__ListStockRequest *request, sd_error_t *error)
{
    size_t page_size = 0;
    if (!sd_list_validate(request, error, &page_size)) {
        return false;
    }
    FUZZ_CHECK(page_size >= 1 && page_size <= SD_PAGE_SIZE_MAX);
    uint8_t prefix[SD_ITEM_KEY_BYTES_MAX];
    size_t prefix_length = sd_list_prefix(request, prefix, sizeof(prefix));
    FUZZ_CHECK(prefix_length > 0 && prefix_length <= sizeof(prefix));
    if (request->page_token[0] != '\0') {
        size_t start_length = 0;
        uint8_t *start =
            util_base64url_decode(request->page_token, strlen(request->page_token), &start_length);
        bool token_of_listing = start != NULL && start_length >= prefix_length &&
                                memcmp(start, prefix, prefix_length) == 0;
        FUZZ_CHECK(!token_of_listing || start_length <= 3 * SD_ITEM_KEY_BYTES_MAX);
        free(start);
    }
    return true;
}

/* Runs the validation the handlers run for one unpacked message; for a valid one, checks
 * its item keys. Returns the validation's verdict. */
static bool fuzz_validate(fuzz_kind_t kind, const ProtobufCMessage *message, sd_error_t *error)
{
    size_t page_size = 0;
    switch (kind) {
    case FUZZ_DECREMENT: {
        const Stockd__V1__DecrementRequest *r = (const Stockd__V1__DecrementRequest *)message;
        bool ok = sd_validate_decrement(r, error);
        if (ok) {
            fuzz_valid_lines(r->tenant_id, r->lines, r->n_lines);
        }
        return ok;
    }
    case FUZZ_INCREMENT: {
        const Stockd__V1__IncrementRequest *r = (const Stockd__V1__IncrementRequest *)message;
        bool ok = sd_validate_increment(r, error);
        if (ok) {
            fuzz_valid_lines(r->tenant_id, r->lines, r->n_lines);
        }
        return ok;
    }
    case FUZZ_SET_STOCK: {
        const Stockd__V1__SetStockRequest *r = (const Stockd__V1__SetStockRequest *)message;
        bool ok = sd_validate_set_stock(r, error);
        for (size_t i = 0; ok && i < r->n_lines; i++) {
            fuzz_valid_item(r->tenant_id, r->lines[i]->item);
        }
        return ok;
    }
    case FUZZ_GET_STOCK: {
        const Stockd__V1__GetStockRequest *r = (const Stockd__V1__GetStockRequest *)message;
        bool ok = sd_validate_get_stock(r, error);
        for (size_t i = 0; ok && i < r->n_items; i++) {
            fuzz_valid_item(r->tenant_id, r->items[i]);
        }
        return ok;
    }
    case FUZZ_LIST_STOCK:
        return fuzz_list_stock((const Stockd__V1__ListStockRequest *)message, error);
    case FUZZ_HISTORY: {
        const Stockd__V1__HistoryRequest *r = (const Stockd__V1__HistoryRequest *)message;
        bool ok = sd_history_validate(r, 0, error, &page_size);
        if (ok && sd_item_filter_set(r->item)) {
            fuzz_valid_item(r->tenant_id, r->item);
        }
        return ok;
    }
    case FUZZ_WATCH: {
        const Stockd__V1__WatchRequest *r = (const Stockd__V1__WatchRequest *)message;
        return sd_validate_tenant(r->tenant_id, "tenant_id", error) &&
               sd_validate_after_seq(r->after_seq, 0, error);
    }
    default:
        return true; /* Checkpoint, Health: unpacked only; their handlers check more */
    }
}

/* A refusal is INVALID_ARGUMENT with at least one field violation, and packs into the
 * google.rpc.Status that travels in grpc-status-details-bin. */
static void fuzz_refusal(const sd_error_t *error)
{
    FUZZ_CHECK(error->status == SD_INVALID_ARGUMENT);
    FUZZ_CHECK(error->field_violations_count > 0);
    uint8_t *packed = NULL;
    size_t packed_length = 0;
    FUZZ_CHECK(sd_error_pack_status(error, &packed, &packed_length));
    free(packed);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) {
        return 0;
    }
    fuzz_kind_t kind = (fuzz_kind_t)(data[0] % FUZZ_KINDS_COUNT);
    const ProtobufCMessageDescriptor *descriptor = fuzz_descriptors[kind];
    data++;
    size--;
    sd_error_t error;
    sd_error_init(&error);
    char field[160];
    if (!sd_wire_strings_clean(descriptor, data, size, field, sizeof(field))) {
        FUZZ_CHECK(memchr(field, '\0', sizeof(field)) != NULL && field[0] != '\0');
        sd_error_add_field(&error, field, "contains a NUL byte");
        fuzz_refusal(&error);
        sd_error_free(&error);
        return 0;
    }
    ProtobufCMessage *message = protobuf_c_message_unpack(descriptor, NULL, size, data);
    if (message == NULL) {
        return 0;
    }
    if (fuzz_validate(kind, message, &error)) {
        FUZZ_CHECK(error.status == SD_OK && error.field_violations_count == 0);
    } else {
        fuzz_refusal(&error);
    }
    sd_error_free(&error);
    protobuf_c_message_free_unpacked(message, NULL);
    return 0;
}
