/* Unit tests for util.c: UTF-8 validation, JSON escaping, strict number and duration
 * parsing, checked addition. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>

#include "net.h"
#include "util.h"

static void test_utf8(void **state)
{
    (void)state;
    assert_true(util_utf8_valid("plain", 5));
    assert_true(util_utf8_valid("\xc3\xa9t\xc3\xa9", 5));
    assert_true(util_utf8_valid("\xf0\x9f\x98\x80", 4));
    assert_false(util_utf8_valid("\xc3", 1));              /* truncated */
    assert_false(util_utf8_valid("\xc0\xaf", 2));          /* overlong */
    assert_false(util_utf8_valid("\xed\xa0\x80", 3));      /* surrogate */
    assert_false(util_utf8_valid("\xf4\x90\x80\x80", 4));  /* > U+10FFFF */
    assert_false(util_utf8_valid("a\0b", 3));              /* NUL */
}

static void test_json_escape(void **state)
{
    (void)state;
    char out[64];
    util_json_escape("a\"b\\c\n\x01", 100, out, sizeof(out));
    assert_string_equal(out, "a\\\"b\\\\c\\u000a\\u0001");
    util_json_escape("abcdef", 3, out, sizeof(out));
    assert_string_equal(out, "abc");
    util_json_escape("abcdef", 100, out, 4);
    assert_string_equal(out, "abc");
}

static void test_numbers(void **state)
{
    (void)state;
    int64_t value;
    assert_true(util_parse_int64("-42", &value));
    assert_int_equal(value, -42);
    assert_false(util_parse_int64("", &value));
    assert_false(util_parse_int64("4x", &value));
    assert_false(util_parse_int64("99999999999999999999", &value));
    assert_true(util_parse_duration_s("7d", &value));
    assert_int_equal(value, 7 * 86400);
    assert_true(util_parse_duration_s("90", &value));
    assert_int_equal(value, 90);
    assert_true(util_parse_duration_s("15m", &value));
    assert_int_equal(value, 900);
    assert_false(util_parse_duration_s("-1s", &value));
    assert_false(util_parse_duration_s("d", &value));
    assert_false(util_parse_duration_s("9999999999999999999d", &value));
    assert_true(util_add_int64(INT64_MAX - 1, 1, &value));
    assert_false(util_add_int64(INT64_MAX, 1, &value));
}

static void test_host_port(void **state)
{
    (void)state;
    struct sockaddr_in address;
    assert_true(net_parse_ipv4_host_port("127.0.0.1:8080", &address));
    assert_int_equal(ntohs(address.sin_port), 8080);
    assert_true(net_parse_ipv4_host_port("localhost:0", &address));
    assert_false(net_parse_ipv4_host_port("127.0.0.1", &address));
    assert_false(net_parse_ipv4_host_port("127.0.0.1:70000", &address));
    assert_false(net_parse_ipv4_host_port("not-an-ip:80", &address));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_json_escape),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_host_port),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
