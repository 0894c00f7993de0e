/* Unit tests for gateway/wix.c and gateway/answer.c: every Wix field rule (with the field
 * named in the reason), the leniencies, the variant derivation, the mapping to a stockd
 * request, the exact answer bodies; quantities far out of range, out of memory at every
 * allocation of a mapping, and UTF-8 kept whole wherever text is truncated. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "answer.h"
#include "util.h"
#include "wix.h"

/* A valid decrement payload; tests then break one thing at a time. */
static json_t *payload(void)
{
    json_error_t error;
    json_t *p = json_loads(
        "{\"data\":{\"request\":{\"items\":[{\"catalogReference\":{\"catalogItemId\":"
        "\"b542eb00-8d3d-4df6-9abd-8254b4469f25\",\"appId\":\"215238eb-22a5-4c36-9e7b-"
        "e7c08025e04e\",\"options\":{\"variantId\":\"v-1\"}},\"quantity\":2,"
        "\"subscriptionItem\":false,\"locationId\":\"loc-1\"}],\"restrictInventoryValue\":true,"
        "\"orderId\":\"o-1\",\"reason\":\"ORDER_PLACED\"},\"metadata\":{\"requestId\":\"r-1\","
        "\"instanceId\":\"inst-1\",\"appExtensionType\":\"ECOM_INVENTORY\"}}}",
        0, &error);
    assert_non_null(p);
    return p;
}

static json_t *request_of(json_t *p)
{
    return json_object_get(json_object_get(p, "data"), "request");
}

static json_t *item_of(json_t *p)
{
    return json_array_get(json_object_get(request_of(p), "items"), 0);
}

static gw_wix_result_t map(json_t *p, gw_wix_method_t method, gw_wix_call_t *call)
{
    gw_wix_result_t result = gw_wix_map(method, p, "default", call);
    json_decref(p);
    return result;
}

static void expect_refused(json_t *p, gw_wix_result_t expected, const char *field)
{
    gw_wix_call_t call;
    assert_int_equal(map(p, GW_WIX_DECREMENT, &call), expected);
    if (strstr(call.reason, field) == NULL) {
        fail_msg("reason \"%s\" does not name %s", call.reason, field);
    }
    gw_wix_call_free(&call);
}

static void test_valid_mapping(void **state)
{
    (void)state;
    gw_wix_call_t call;
    assert_int_equal(map(payload(), GW_WIX_DECREMENT, &call), GW_WIX_OK);
    const Stockd__V1__DecrementRequest *d = &call.decrement;
    assert_string_equal(d->tenant_id, "inst-1");
    assert_string_equal(d->request_id, "wix:r-1");
    assert_string_equal(d->order_id, "o-1");
    assert_int_equal(d->reason, STOCKD__V1__REASON__REASON_ORDER_PLACED);
    assert_true(d->restrict_inventory);
    assert_int_equal(d->n_lines, 1);
    assert_string_equal(d->lines[0]->item->location_id, "loc-1");
    assert_string_equal(d->lines[0]->item->app_id, "215238eb-22a5-4c36-9e7b-e7c08025e04e");
    assert_string_equal(d->lines[0]->item->variant, "v-1");
    assert_int_equal(d->lines[0]->quantity, 2);
    gw_wix_call_free(&call);
}

static void test_leniency(void **state)
{
    (void)state;
    json_t *p = payload();
    json_object_del(item_of(p), "subscriptionItem");
    json_object_set_new(item_of(p), "locationId", json_null());
    json_object_set_new(item_of(p), "somethingNew", json_string("ignored"));
    json_object_set_new(json_object_get(item_of(p), "catalogReference"), "options", json_null());
    json_object_del(json_object_get(json_object_get(p, "data"), "metadata"), "instanceId");
    json_object_set_new(json_object_get(json_object_get(p, "data"), "metadata"), "appExtensionType",
                        json_string("ecom_inventory"));
    json_object_set_new(item_of(p), "quantity", json_real(3.0));
    gw_wix_call_t call;
    assert_int_equal(map(p, GW_WIX_INCREMENT, &call), GW_WIX_OK);
    assert_string_equal(call.increment.tenant_id, "default");
    assert_string_equal(call.increment.lines[0]->item->location_id, "");
    assert_string_equal(call.increment.lines[0]->item->variant, "");
    assert_int_equal(call.increment.lines[0]->quantity, 3);
    assert_false(call.increment.lines[0]->subscription_item);
    gw_wix_call_free(&call);
}

static void test_envelope_rules(void **state)
{
    (void)state;
    json_t *p = payload();
    json_object_set_new(p, "data", json_string("not an object"));
    expect_refused(p, GW_WIX_BAD_ENVELOPE, "data");
    p = payload();
    json_object_del(json_object_get(p, "data"), "metadata");
    expect_refused(p, GW_WIX_BAD_ENVELOPE, "metadata");
    p = payload();
    json_object_set_new(json_object_get(json_object_get(p, "data"), "metadata"), "appExtensionType",
                        json_string("ECOM_PAYMENTS"));
    expect_refused(p, GW_WIX_BAD_EXTENSION, "appExtensionType");
    p = payload();
    json_object_del(json_object_get(p, "data"), "request");
    expect_refused(p, GW_WIX_BAD_REQUEST, "request");
}

static void test_request_rules(void **state)
{
    (void)state;
    json_t *p = payload();
    json_object_set_new(request_of(p), "items", json_array());
    expect_refused(p, GW_WIX_BAD_REQUEST, "request.items");
    p = payload();
    json_t *items = json_object_get(request_of(p), "items");
    for (int i = 0; i < 300; i++) {
        json_array_append(items, json_array_get(items, 0));
    }
    expect_refused(p, GW_WIX_BAD_REQUEST, "request.items");
    const json_t *bad_quantities[] = {json_integer(0), json_integer(100001), json_real(1.5),
                                      json_string("2"), json_null()};
    for (size_t i = 0; i < 5; i++) {
        p = payload();
        json_object_set_new(item_of(p), "quantity", (json_t *)bad_quantities[i]);
        expect_refused(p, GW_WIX_BAD_REQUEST, "request.items[0].quantity");
    }
    p = payload();
    json_object_set_new(json_object_get(item_of(p), "catalogReference"), "catalogItemId",
                        json_string("0123456789012345678901234567890123456")); /* 37 */
    expect_refused(p, GW_WIX_BAD_REQUEST, "catalogItemId");
    p = payload();
    json_object_set_new(json_object_get(item_of(p), "catalogReference"), "catalogItemId",
                        json_string(""));
    expect_refused(p, GW_WIX_BAD_REQUEST, "catalogItemId");
    p = payload();
    json_object_set_new(json_object_get(item_of(p), "catalogReference"), "appId", json_string(""));
    expect_refused(p, GW_WIX_BAD_REQUEST, "appId");
    p = payload();
    json_object_del(item_of(p), "catalogReference");
    expect_refused(p, GW_WIX_BAD_REQUEST, "catalogReference");
    p = payload();
    json_object_set_new(json_object_get(item_of(p), "catalogReference"), "options",
                        json_string("x"));
    expect_refused(p, GW_WIX_BAD_REQUEST, "options");
    p = payload();
    json_object_set_new(item_of(p), "subscriptionItem", json_string("yes"));
    expect_refused(p, GW_WIX_BAD_REQUEST, "subscriptionItem");
    p = payload();
    json_object_set_new(item_of(p), "locationId", json_integer(5));
    expect_refused(p, GW_WIX_BAD_REQUEST, "locationId");
    p = payload();
    json_object_del(request_of(p), "orderId");
    expect_refused(p, GW_WIX_BAD_REQUEST, "request.orderId");
    p = payload();
    json_object_set_new(request_of(p), "reason", json_string("ORDER_LOST"));
    expect_refused(p, GW_WIX_BAD_REQUEST, "request.reason");
    p = payload();
    json_object_del(request_of(p), "restrictInventoryValue");
    expect_refused(p, GW_WIX_BAD_REQUEST, "restrictInventoryValue");
    p = payload();
    json_object_set_new(json_object_get(json_object_get(p, "data"), "metadata"), "instanceId",
                        json_string("has spaces"));
    expect_refused(p, GW_WIX_BAD_REQUEST, "metadata.instanceId");
    /* a NUL inside a string would be cut by C: refused, not truncated */
    p = payload();
    json_object_set_new(json_object_get(item_of(p), "catalogReference"), "catalogItemId",
                        json_stringn("ab\0cd", 5));
    expect_refused(p, GW_WIX_BAD_REQUEST, "catalogItemId");
    p = payload();
    json_object_set_new(request_of(p), "reason", json_stringn("ORDER_PLACED\0x", 14));
    expect_refused(p, GW_WIX_BAD_REQUEST, "request.reason");
    /* increments need no restrictInventoryValue */
    p = payload();
    json_object_del(request_of(p), "restrictInventoryValue");
    gw_wix_call_t call;
    assert_int_equal(map(p, GW_WIX_INCREMENT, &call), GW_WIX_OK);
    gw_wix_call_free(&call);
}

static char *variant_of(const char *options_json)
{
    json_error_t error;
    json_t *options = options_json ? json_loads(options_json, JSON_DECODE_ANY, &error) : NULL;
    char *variant = gw_wix_variant(options);
    json_decref(options);
    return variant;
}

static void expect_variant(const char *options_json, const char *expected)
{
    char *variant = variant_of(options_json);
    assert_string_equal(variant, expected);
    free(variant);
}

static void test_variant_derivation(void **state)
{
    (void)state;
    expect_variant(NULL, "");
    expect_variant("null", "");
    expect_variant("{}", "");
    expect_variant("{\"variantId\":\"abc\",\"customTextFields\":{\"x\":\"y\"}}", "abc");
    expect_variant("{\"variantId\":\"abc\",\"subscriptionOptionId\":\"s\"}", "abc");
    expect_variant("{\"Size\":\"L\",\"Color\":\"Red\"}", "{\"Color\":\"Red\",\"Size\":\"L\"}");
    expect_variant("{\"b\":{\"z\":1,\"a\":[1,2]},\"a\":true,\"customTextFields\":{\"n\":\"x\"}}",
                   "{\"a\":true,\"b\":{\"a\":[1,2],\"z\":1}}");
    expect_variant("{\"customTextFields\":{\"n\":\"x\"}}", "");
    /* long option sets become a stable hash instead of failing a checkout */
    char big[600];
    snprintf(big, sizeof(big), "{\"note\":\"%0500d\"}", 7);
    char *hashed = variant_of(big);
    assert_int_equal(strlen(hashed), 7 + 64);
    assert_memory_equal(hashed, "sha256:", 7);
    char *again = variant_of(big);
    assert_string_equal(hashed, again);
    free(hashed);
    free(again);
}

static void test_answer_bodies(void **state)
{
    (void)state;
    char body[256];
    gw_answer_t ok = gw_answer_for_grpc(0);
    assert_int_equal(ok.http_status, 200);
    gw_answer_body(&ok, GW_WIX_DECREMENT, NULL, body, sizeof(body));
    assert_string_equal(body, "{}");
    const int refused_codes[] = {9, 3, 11, 6};
    for (size_t i = 0; i < 4; i++) {
        gw_answer_t refused = gw_answer_for_grpc(refused_codes[i]);
        assert_int_equal(refused.http_status, 428);
        gw_answer_body(&refused, GW_WIX_DECREMENT, "x", body, sizeof(body));
        assert_string_equal(body, "{\"applicationError\":{\"code\":\"DECREMENT_NOT_POSSIBLE\"}}");
        gw_answer_body(&refused, GW_WIX_INCREMENT, "x", body, sizeof(body));
        assert_string_equal(body, "{\"applicationError\":{\"code\":\"INCREMENT_NOT_POSSIBLE\"}}");
    }
    assert_int_equal(gw_answer_for_grpc(14).http_status, 503);
    assert_int_equal(gw_answer_for_grpc(14).retry_after_s, 1);
    assert_int_equal(gw_answer_for_grpc(8).http_status, 503);
    assert_int_equal(gw_answer_for_grpc(4).http_status, 504);
    assert_int_equal(gw_answer_for_grpc(13).http_status, 500);
    assert_int_equal(gw_answer_for_grpc(10).http_status, 500);
    gw_answer_t internal = gw_answer_for_grpc(13);
    gw_answer_body(&internal, GW_WIX_DECREMENT, "internal \"error\"", body, sizeof(body));
    assert_string_equal(body, "{\"error\":{\"code\":\"INTERNAL\",\"message\":\"internal "
                              "\\\"error\\\"\"}}");
    char header[16];
    gw_header_safe("a\r\nb\xc3\xa9", header, sizeof(header));
    assert_string_equal(header, "a??b??");
}

/* Quantities far outside int64 are refused, not converted (a double → int64 conversion of
 * 1e300 is undefined behaviour, which UBSan reports). */
static void test_quantity_range(void **state)
{
    (void)state;
    const double bad[] = {1e300, -1e300, 9.3e18, -9.3e18, 1e16, 100000.5, 1e-300};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *p = payload();
        json_object_set_new(item_of(p), "quantity", json_real(bad[i]));
        expect_refused(p, GW_WIX_BAD_REQUEST, "request.items[0].quantity");
    }
    json_t *p = payload();
    json_object_set_new(item_of(p), "quantity", json_real(100000.0));
    gw_wix_call_t call;
    assert_int_equal(map(p, GW_WIX_DECREMENT, &call), GW_WIX_OK);
    assert_int_equal(call.decrement.lines[0]->quantity, 100000);
    gw_wix_call_free(&call);
}

/* jansson's allocator, made to fail after a budget of allocations. The mapping allocates
 * through it, so this reaches every allocation of gw_wix_map. */
static size_t allocations_left;

static void *limited_malloc(size_t size)
{
    if (allocations_left == 0) {
        return NULL;
    }
    allocations_left--;
    return malloc(size);
}

/* Fails the 1st, 2nd, … allocation of a mapping until it succeeds: each failure is reported as
 * out of memory (answered 503), never as a bad request (428 would tell Wix the order is
 * invalid), and nothing leaks (ASan, valgrind). */
static void test_out_of_memory(void **state)
{
    (void)state;
    size_t budget = 0;
    for (;; budget++) {
        json_t *p = payload();
        json_t *options = json_pack("{s:s,s:{s:s}}", "Size", "L", "customTextFields", "n", "x");
        json_object_set_new(json_object_get(item_of(p), "catalogReference"), "options", options);
        json_array_append(json_object_get(request_of(p), "items"), item_of(p));
        allocations_left = budget;
        json_set_alloc_funcs(limited_malloc, free);
        gw_wix_call_t call;
        gw_wix_result_t result = gw_wix_map(GW_WIX_DECREMENT, p, "default", &call);
        json_set_alloc_funcs(malloc, free);
        if (result == GW_WIX_OK) {
            assert_string_equal(call.decrement.lines[1]->item->variant, "{\"Size\":\"L\"}");
        } else {
            assert_int_equal(result, GW_WIX_NO_MEMORY);
        }
        gw_wix_call_free(&call);
        json_decref(p);
        if (result == GW_WIX_OK) {
            break;
        }
        assert_true(budget < 1000);
    }
    assert_true(budget > 4); /* the loop did reach several allocations */
}

/* An error body keeps whole UTF-8 characters however its message is cut, and stays JSON. */
static void test_error_bodies_stay_utf8(void **state)
{
    (void)state;
    char message[1 + 2 * 500 + 1] = "a"; /* then 500 × é (2 bytes): cuts fall mid-character */
    for (size_t i = 0; i < 500; i++) {
        memcpy(message + 1 + 2 * i, "\xc3\xa9", 3);
    }
    gw_answer_t internal = gw_answer_for_grpc(13);
    /* down to the body with an empty message: {"error":{"code":"INTERNAL","message":""}} */
    const size_t capacities[] = {1024, 300, 64, 44};
    for (size_t i = 0; i < sizeof(capacities) / sizeof(capacities[0]); i++) {
        char body[1024];
        size_t length = gw_answer_body(&internal, GW_WIX_DECREMENT, message, body, capacities[i]);
        assert_int_equal(length, strlen(body));
        assert_true(util_utf8_valid(body, length));
        json_error_t error;
        json_t *parsed = json_loads(body, 0, &error);
        if (parsed == NULL) {
            fail_msg("body is not JSON at capacity %zu: %s", capacities[i], body);
        }
        const char *text =
            json_string_value(json_object_get(json_object_get(parsed, "error"), "message"));
        assert_non_null(text);
        assert_memory_equal(text, message, strlen(text));
        json_decref(parsed);
    }
    /* bytes that are not UTF-8 never reach a body */
    char body[256];
    size_t length =
        gw_answer_body(&internal, GW_WIX_DECREMENT, "bad \xff\xc3 bytes", body, sizeof(body));
    assert_true(util_utf8_valid(body, length));
}

/* A reason quotes the bad value, cut to GW_QUOTED_VALUE_BYTES_MAX bytes on a character
 * boundary: the reason stays valid UTF-8, and its header form printable ASCII. */
static void test_reason_quotes_value_whole_characters(void **state)
{
    (void)state;
    char value[1 + 2 * 40 + 1] = "a"; /* 41 characters: too long; é straddles byte 64 */
    for (size_t i = 0; i < 40; i++) {
        memcpy(value + 1 + 2 * i, "\xc3\xa9", 3);
    }
    json_t *p = payload();
    json_object_set_new(json_object_get(item_of(p), "catalogReference"), "catalogItemId",
                        json_string(value));
    gw_wix_call_t call;
    assert_int_equal(map(p, GW_WIX_DECREMENT, &call), GW_WIX_BAD_REQUEST);
    assert_true(util_utf8_valid(call.reason, strlen(call.reason)));
    const char *quoted = strstr(call.reason, "got \"a\xc3\xa9");
    assert_non_null(quoted);
    size_t quoted_bytes = strlen(quoted) - strlen("got \"\"");
    assert_true(quoted_bytes <= GW_QUOTED_VALUE_BYTES_MAX && quoted_bytes >= 61);
    assert_memory_equal(quoted + 5, value, quoted_bytes);
    assert_int_equal(call.reason[strlen(call.reason) - 1], '"');
    char header[GW_REASON_HEADER_BYTES_MAX];
    gw_header_safe(call.reason, header, sizeof(header));
    for (const char *c = header; *c != '\0'; c++) {
        assert_true(*c >= 0x20 && *c < 0x7F);
    }
    gw_wix_call_free(&call);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_mapping),
        cmocka_unit_test(test_leniency),
        cmocka_unit_test(test_envelope_rules),
        cmocka_unit_test(test_request_rules),
        cmocka_unit_test(test_variant_derivation),
        cmocka_unit_test(test_answer_bodies),
        cmocka_unit_test(test_quantity_range),
        cmocka_unit_test(test_out_of_memory),
        cmocka_unit_test(test_error_bodies_stay_utf8),
        cmocka_unit_test(test_reason_quotes_value_whole_characters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
