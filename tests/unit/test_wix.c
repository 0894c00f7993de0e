/* Unit tests for gateway/wix.c and gateway/answer.c: every Wix field rule (with the field
 * named in the reason), the leniencies, the variant derivation, the mapping to a stockd
 * request, and the exact answer bodies. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "answer.h"
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_mapping),      cmocka_unit_test(test_leniency),
        cmocka_unit_test(test_envelope_rules),     cmocka_unit_test(test_request_rules),
        cmocka_unit_test(test_variant_derivation), cmocka_unit_test(test_answer_bodies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
