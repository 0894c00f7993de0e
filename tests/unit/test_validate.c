/* Unit tests for validate.c: every field rule of the contract, each violation naming its
 * field path. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "sd_limits.h"
#include "validate.h"
#include "wire.h"

typedef struct {
    Stockd__V1__ItemRef items[4];
    Stockd__V1__Line lines[4];
    Stockd__V1__Line *line_pointers[4];
    Stockd__V1__DecrementRequest request;
} fixture_t;

static void fixture_init(fixture_t *f, size_t lines_count)
{
    memset(f, 0, sizeof(*f));
    stockd__v1__decrement_request__init(&f->request);
    for (size_t i = 0; i < 4; i++) {
        stockd__v1__item_ref__init(&f->items[i]);
        f->items[i].app_id = "app";
        f->items[i].catalog_item_id = "sku";
        stockd__v1__line__init(&f->lines[i]);
        f->lines[i].item = &f->items[i];
        f->lines[i].quantity = 1;
        f->line_pointers[i] = &f->lines[i];
    }
    f->request.tenant_id = "tenant-1";
    f->request.n_lines = lines_count;
    f->request.lines = f->line_pointers;
}

/* True when error holds a field violation for exactly `field`. */
static bool has_field(const sd_error_t *error, const char *field)
{
    for (size_t i = 0; i < error->field_violations_count; i++) {
        if (strcmp(error->field_violations[i].first, field) == 0) {
            return true;
        }
    }
    return false;
}

static void expect_invalid(fixture_t *f, const char *field)
{
    sd_error_t error;
    sd_error_init(&error);
    assert_false(sd_validate_decrement(&f->request, &error));
    assert_int_equal(error.status, SD_INVALID_ARGUMENT);
    if (!has_field(&error, field)) {
        fail_msg("no violation for %s (message: %s)", field, error.message);
    }
    assert_non_null(strstr(error.message, field));
    sd_error_free(&error);
}

static void test_valid_request_passes(void **state)
{
    (void)state;
    fixture_t f;
    fixture_init(&f, 2);
    sd_error_t error;
    sd_error_init(&error);
    assert_true(sd_validate_decrement(&f.request, &error));
    assert_int_equal(error.status, SD_OK);
    assert_int_equal(error.field_violations_count, 0);
}

static void test_tenant_rules(void **state)
{
    (void)state;
    fixture_t f;
    char long_tenant[SD_TENANT_BYTES_MAX + 2];
    memset(long_tenant, 'a', sizeof(long_tenant));
    long_tenant[SD_TENANT_BYTES_MAX + 1] = '\0';
    const char *bad[] = {"", "has space", "slash/no", "ünï", long_tenant};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        fixture_init(&f, 1);
        f.request.tenant_id = (char *)bad[i];
        expect_invalid(&f, "tenant_id");
    }
    fixture_init(&f, 1);
    f.request.tenant_id = "A-z_0.9:x";
    sd_error_t error;
    sd_error_init(&error);
    assert_true(sd_validate_decrement(&f.request, &error));
    long_tenant[SD_TENANT_BYTES_MAX] = '\0';
    f.request.tenant_id = long_tenant;
    assert_true(sd_validate_decrement(&f.request, &error));
}

static void test_lines_count(void **state)
{
    (void)state;
    fixture_t f;
    fixture_init(&f, 0);
    expect_invalid(&f, "lines");
    fixture_init(&f, 1);
    f.request.n_lines = SD_LINES_MAX + 1; /* the count is checked before any line is read */
    expect_invalid(&f, "lines");
}

static void test_quantity_bounds(void **state)
{
    (void)state;
    fixture_t f;
    const int64_t bad[] = {0, -1, SD_QUANTITY_MAX + 1, INT64_MIN};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        fixture_init(&f, 3);
        f.lines[2].quantity = bad[i];
        expect_invalid(&f, "lines[2].quantity");
    }
    fixture_init(&f, 1);
    f.lines[0].quantity = SD_QUANTITY_MAX;
    sd_error_t error;
    sd_error_init(&error);
    assert_true(sd_validate_decrement(&f.request, &error));
}

static void test_item_rules(void **state)
{
    (void)state;
    fixture_t f;
    char text[SD_CATALOG_ITEM_BYTES_MAX + 2];
    memset(text, 'x', sizeof(text));
    text[SD_CATALOG_ITEM_BYTES_MAX + 1] = '\0';

    fixture_init(&f, 2);
    f.lines[1].item = NULL;
    expect_invalid(&f, "lines[1].item");
    fixture_init(&f, 1);
    f.items[0].app_id = "";
    expect_invalid(&f, "lines[0].item.app_id");
    fixture_init(&f, 1);
    f.items[0].catalog_item_id = "";
    expect_invalid(&f, "lines[0].item.catalog_item_id");
    fixture_init(&f, 1);
    f.items[0].catalog_item_id = text;
    expect_invalid(&f, "lines[0].item.catalog_item_id");
    fixture_init(&f, 1);
    f.items[0].variant = text;
    expect_invalid(&f, "lines[0].item.variant");
    text[SD_LOCATION_BYTES_MAX + 1] = '\0';
    fixture_init(&f, 1);
    f.items[0].location_id = text;
    expect_invalid(&f, "lines[0].item.location_id");
    fixture_init(&f, 1);
    f.items[0].app_id = text;
    expect_invalid(&f, "lines[0].item.app_id");
    fixture_init(&f, 1);
    f.items[0].variant = "\xc3\x28"; /* invalid UTF-8 */
    expect_invalid(&f, "lines[0].item.variant");
}

static void test_text_fields(void **state)
{
    (void)state;
    fixture_t f;
    char text[SD_REASON_TEXT_BYTES_MAX + 2];
    memset(text, 'r', sizeof(text));
    text[SD_REASON_TEXT_BYTES_MAX + 1] = '\0';
    fixture_init(&f, 1);
    f.request.reason_text = text;
    expect_invalid(&f, "reason_text");
    text[SD_ORDER_ID_BYTES_MAX + 1] = '\0';
    fixture_init(&f, 1);
    f.request.order_id = text;
    expect_invalid(&f, "order_id");
    fixture_init(&f, 1);
    f.request.request_id = text;
    expect_invalid(&f, "request_id");
    fixture_init(&f, 1);
    f.request.reason = (Stockd__V1__Reason)99;
    expect_invalid(&f, "reason");
    fixture_init(&f, 1);
    f.request.reason = (Stockd__V1__Reason)-1;
    expect_invalid(&f, "reason");
}

/* All violations are reported at once, so a client can fix everything in one round. */
static void test_reports_every_violation(void **state)
{
    (void)state;
    fixture_t f;
    fixture_init(&f, 3);
    f.request.tenant_id = "";
    f.lines[0].quantity = 0;
    f.items[2].app_id = "";
    sd_error_t error;
    sd_error_init(&error);
    assert_false(sd_validate_decrement(&f.request, &error));
    assert_true(has_field(&error, "tenant_id"));
    assert_true(has_field(&error, "lines[0].quantity"));
    assert_true(has_field(&error, "lines[2].item.app_id"));
    assert_int_equal(error.field_violations_count, 3);
    sd_error_free(&error);
}

static void test_set_stock_and_get_stock(void **state)
{
    (void)state;
    Stockd__V1__ItemRef item = STOCKD__V1__ITEM_REF__INIT;
    item.app_id = "app";
    item.catalog_item_id = "";
    Stockd__V1__SetLine line = STOCKD__V1__SET_LINE__INIT;
    line.item = &item;
    Stockd__V1__SetLine *lines[1] = {&line};
    Stockd__V1__SetStockRequest set = STOCKD__V1__SET_STOCK_REQUEST__INIT;
    set.tenant_id = "t";
    set.n_lines = 1;
    set.lines = lines;
    sd_error_t error;
    sd_error_init(&error);
    assert_false(sd_validate_set_stock(&set, &error));
    assert_true(has_field(&error, "lines[0].item.catalog_item_id"));
    sd_error_free(&error);

    Stockd__V1__ItemRef *items[1] = {&item};
    Stockd__V1__GetStockRequest get = STOCKD__V1__GET_STOCK_REQUEST__INIT;
    get.tenant_id = "t";
    get.n_items = 1;
    get.items = items;
    assert_false(sd_validate_get_stock(&get, &error));
    assert_true(has_field(&error, "items[0].catalog_item_id"));
    sd_error_free(&error);
    get.n_items = 0;
    assert_false(sd_validate_get_stock(&get, &error));
    assert_true(has_field(&error, "items"));
    sd_error_free(&error);
}

/* Item-key ids refuse control characters (C0 and DEL), so every stored id is one line of
 * stockctl's CSV export; each violation names the id's field. Other text (order_id,
 * reason_text) keeps its rules, and printable ids with commas, quotes, '=' or non-ASCII pass. */
static void test_item_ids_refuse_control_characters(void **state)
{
    (void)state;
    const char *bad[] = {"a\nb", "\r", "tab\there", "\x01", "\x1f", "del\x7f", "end\n"};
    static const char *const fields[] = {"lines[0].item.location_id", "lines[0].item.app_id",
                                         "lines[0].item.catalog_item_id", "lines[0].item.variant"};
    fixture_t f;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        for (size_t part = 0; part < 4; part++) {
            fixture_init(&f, 1);
            char **text = part == 0   ? &f.items[0].location_id
                          : part == 1 ? &f.items[0].app_id
                          : part == 2 ? &f.items[0].catalog_item_id
                                      : &f.items[0].variant;
            *text = (char *)bad[i];
            expect_invalid(&f, fields[part]);
        }
    }
    sd_error_t error;
    sd_error_init(&error);
    fixture_init(&f, 1);
    f.items[0].catalog_item_id = "a\nb";
    assert_false(sd_validate_decrement(&f.request, &error));
    assert_non_null(strstr(error.message, "control character 0x0a at byte 1"));
    sd_error_free(&error);

    fixture_init(&f, 1);
    f.items[0].location_id = "=SUM(A1),\"x\"";
    f.items[0].catalog_item_id = "+1 @home \xc3\xa9\xe2\x82\xac \xf0\x9f\x93\xa6 ~";
    f.items[0].variant = "-{\"size\":\"L\"}";
    f.request.order_id = "order\twith tab";
    sd_error_init(&error);
    assert_true(sd_validate_decrement(&f.request, &error));
    assert_int_equal(error.field_violations_count, 0);

    /* the same rule for SetStock lines and GetStock items */
    Stockd__V1__ItemRef item = STOCKD__V1__ITEM_REF__INIT;
    item.app_id = "app";
    item.catalog_item_id = "sku";
    item.variant = "L\n";
    Stockd__V1__SetLine line = STOCKD__V1__SET_LINE__INIT;
    line.item = &item;
    Stockd__V1__SetLine *lines[1] = {&line};
    Stockd__V1__SetStockRequest set = STOCKD__V1__SET_STOCK_REQUEST__INIT;
    set.tenant_id = "t";
    set.n_lines = 1;
    set.lines = lines;
    assert_false(sd_validate_set_stock(&set, &error));
    assert_int_equal(error.status, SD_INVALID_ARGUMENT);
    assert_true(has_field(&error, "lines[0].item.variant"));
    sd_error_free(&error);
    Stockd__V1__ItemRef *items[1] = {&item};
    Stockd__V1__GetStockRequest get = STOCKD__V1__GET_STOCK_REQUEST__INIT;
    get.tenant_id = "t";
    get.n_items = 1;
    get.items = items;
    sd_error_init(&error);
    assert_false(sd_validate_get_stock(&get, &error));
    assert_true(has_field(&error, "items[0].variant"));
    sd_error_free(&error);
}

/* Strings with an embedded NUL would be cut short by protobuf-c: the wire check finds them
 * and names the field, at any depth and index. */
static void test_wire_nul_in_strings(void **state)
{
    (void)state;
    /* DecrementRequest{tenant_id:"t", lines:[Line{item:{app_id:"a"}}, Line{item:{
     * catalog_item_id:"a\0b"}}]} */
    const uint8_t message[] = {
        0x0a, 0x01, 't',                                    /* tenant_id */
        0x12, 0x05, 0x0a, 0x03, 0x12, 0x01, 'a',            /* lines[0].item.app_id */
        0x12, 0x07, 0x0a, 0x05, 0x1a, 0x03, 'a', 0x00, 'b', /* lines[1].item.catalog_item_id */
    };
    char field[160] = "";
    assert_false(sd_wire_strings_clean(&stockd__v1__decrement_request__descriptor, message,
                                       sizeof(message), field, sizeof(field)));
    assert_string_equal(field, "lines[1].item.catalog_item_id");
    const uint8_t clean[] = {0x0a, 0x01, 't', 0x12, 0x05, 0x0a, 0x03, 0x12, 0x01, 'a'};
    assert_true(sd_wire_strings_clean(&stockd__v1__decrement_request__descriptor, clean,
                                      sizeof(clean), field, sizeof(field)));
    const uint8_t tenant[] = {0x0a, 0x03, 'a', 0x00, 'b'};
    assert_false(sd_wire_strings_clean(&stockd__v1__decrement_request__descriptor, tenant,
                                       sizeof(tenant), field, sizeof(field)));
    assert_string_equal(field, "tenant_id");
    /* zero bytes outside strings (an empty sub-message) take the full walk, and pass */
    const uint8_t zero_clean[] = {0x0a, 0x01, 't', 0x12, 0x02, 0x0a, 0x00};
    assert_true(sd_wire_strings_clean(&stockd__v1__decrement_request__descriptor, zero_clean,
                                      sizeof(zero_clean), field, sizeof(field)));
    /* bytes fields and malformed input are left to protobuf-c */
    const uint8_t truncated[] = {0x0a, 0x09, 'a'};
    assert_true(sd_wire_strings_clean(&stockd__v1__decrement_request__descriptor, truncated,
                                      sizeof(truncated), field, sizeof(field)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_request_passes),
        cmocka_unit_test(test_tenant_rules),
        cmocka_unit_test(test_lines_count),
        cmocka_unit_test(test_quantity_bounds),
        cmocka_unit_test(test_item_rules),
        cmocka_unit_test(test_text_fields),
        cmocka_unit_test(test_reports_every_violation),
        cmocka_unit_test(test_set_stock_and_get_stock),
        cmocka_unit_test(test_item_ids_refuse_control_characters),
        cmocka_unit_test(test_wire_nul_in_strings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
