/* Unit tests for rpc_status.c: the google.rpc.Status that travels in grpc-status-details-bin
 * decodes with the standard messages and carries every violation. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "google/rpc/error_details.pb-c.h"
#include "google/rpc/status.pb-c.h"
#include "rpc_status.h"

static void test_bad_request_details(void **state)
{
    (void)state;
    sd_error_t error;
    sd_error_init(&error);
    sd_error_add_field(&error, "lines[3].quantity", "%d is outside 1..1000000000", 0);
    sd_error_add_field(&error, "tenant_id", "is required");
    assert_int_equal(error.status, SD_INVALID_ARGUMENT);
    assert_string_equal(error.message, "lines[3].quantity: 0 is outside 1..1000000000");
    uint8_t *bytes;
    size_t length;
    assert_true(sd_error_pack_status(&error, &bytes, &length));
    Google__Rpc__Status *status = google__rpc__status__unpack(NULL, length, bytes);
    assert_non_null(status);
    assert_int_equal(status->code, 3);
    assert_int_equal(status->n_details, 1);
    assert_string_equal(status->details[0]->type_url, "type.googleapis.com/google.rpc.BadRequest");
    Google__Rpc__BadRequest *bad = google__rpc__bad_request__unpack(
        NULL, status->details[0]->value.len, status->details[0]->value.data);
    assert_int_equal(bad->n_field_violations, 2);
    assert_string_equal(bad->field_violations[0]->field, "lines[3].quantity");
    assert_string_equal(bad->field_violations[1]->description, "is required");
    google__rpc__bad_request__free_unpacked(bad, NULL);
    google__rpc__status__free_unpacked(status, NULL);
    free(bytes);
    sd_error_free(&error);
}

static void test_precondition_details(void **state)
{
    (void)state;
    sd_error_t error;
    sd_error_init(&error);
    sd_error_set(&error, SD_FAILED_PRECONDITION, "short");
    sd_error_add_precondition(&error, "INSUFFICIENT_STOCK", "{\"a\":1}", "requested %d", 3);
    uint8_t *bytes;
    size_t length;
    assert_true(sd_error_pack_status(&error, &bytes, &length));
    Google__Rpc__Status *status = google__rpc__status__unpack(NULL, length, bytes);
    assert_int_equal(status->code, 9);
    assert_string_equal(status->message, "short");
    assert_string_equal(status->details[0]->type_url,
                        "type.googleapis.com/google.rpc.PreconditionFailure");
    Google__Rpc__PreconditionFailure *failure = google__rpc__precondition_failure__unpack(
        NULL, status->details[0]->value.len, status->details[0]->value.data);
    assert_int_equal(failure->n_violations, 1);
    assert_string_equal(failure->violations[0]->type, "INSUFFICIENT_STOCK");
    assert_string_equal(failure->violations[0]->subject, "{\"a\":1}");
    assert_string_equal(failure->violations[0]->description, "requested 3");
    google__rpc__precondition_failure__free_unpacked(failure, NULL);
    google__rpc__status__free_unpacked(status, NULL);
    free(bytes);
    sd_error_free(&error);
}

static void test_status_names_and_codes(void **state)
{
    (void)state;
    assert_string_equal(sd_status_name(SD_RESOURCE_EXHAUSTED), "RESOURCE_EXHAUSTED");
    assert_int_equal(sd_status_grpc_code(SD_OUT_OF_RANGE), 11);
    assert_int_equal(sd_status_from_grpc_code(14), SD_UNAVAILABLE);
    assert_int_equal(sd_status_from_grpc_code(99), SD_UNKNOWN);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_request_details),
        cmocka_unit_test(test_precondition_details),
        cmocka_unit_test(test_status_names_and_codes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
