/* Unit tests for util.c: UTF-8 validation, JSON escaping, strict number and duration
 * parsing, checked addition, synced file replacement. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net.h"
#include "util.h"

static void test_utf8(void **state)
{
    (void)state;
    assert_true(util_utf8_valid("plain", 5));
    assert_true(util_utf8_valid("\xc3\xa9t\xc3\xa9", 5));
    assert_true(util_utf8_valid("\xf0\x9f\x98\x80", 4));
    assert_false(util_utf8_valid("\xc3", 1));             /* truncated */
    assert_false(util_utf8_valid("\xc0\xaf", 2));         /* overlong */
    assert_false(util_utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
    assert_false(util_utf8_valid("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
    assert_false(util_utf8_valid("a\0b", 3));             /* NUL */
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
    /* a byte limit inside a character stops before it: input limit, then output limit */
    util_json_escape("ab\xe2\x82\xac", 4, out, sizeof(out));
    assert_string_equal(out, "ab");
    util_json_escape("ab\xe2\x82\xac", 100, out, 5);
    assert_string_equal(out, "ab");
    util_json_escape("ab\xe2\x82\xac", 100, out, 6);
    assert_string_equal(out, "ab\xe2\x82\xac");
}

/* Regression: "%.64s" of a quoted value could end inside a character, and clients that decode
 * the status strictly (Python grpcio) failed on it. */
static void test_utf8_repair(void **state)
{
    (void)state;
    char cut[32];
    snprintf(cut, sizeof(cut), "id \"%.5s\" short", "\xe2\x82\xac\xe2\x82\xac");
    assert_false(util_utf8_valid(cut, strlen(cut)));
    assert_int_equal(util_utf8_repair(cut), strlen("id \"\xe2\x82\xac\" short"));
    assert_string_equal(cut, "id \"\xe2\x82\xac\" short");
    char broken[] = "a\xff\xc3"
                    "b\xc3\xa9";
    util_utf8_repair(broken);
    assert_string_equal(broken, "ab\xc3\xa9");
    char fine[] = "caf\xc3\xa9";
    assert_int_equal(util_utf8_repair(fine), 5);
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

static void test_identifier_span(void **state)
{
    (void)state;
    assert_int_equal(util_identifier_span("Ab9._:-", "._:-"), 7);
    assert_int_equal(util_identifier_span("ab cd", "._:-"), 2);
    assert_int_equal(util_identifier_span("a:b", "._-"), 1);
    assert_int_equal(util_identifier_span("", "."), 0);
    assert_int_equal(util_identifier_span("\xc3\xa9", "."), 0);
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

static void test_base64url(void **state)
{
    (void)state;
    const char *inputs[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar", "\xff\xfe\xfd"};
    const char *expected[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy", "__79"};
    for (size_t i = 0; i < 8; i++) {
        char *encoded = util_base64url_encode((const unsigned char *)inputs[i], strlen(inputs[i]));
        assert_string_equal(encoded, expected[i]);
        size_t length = 0;
        unsigned char *decoded = util_base64url_decode(encoded, strlen(encoded), &length);
        assert_non_null(decoded);
        assert_int_equal(length, strlen(inputs[i]));
        assert_memory_equal(decoded, inputs[i], length);
        free(decoded);
        free(encoded);
    }
    size_t length;
    assert_null(util_base64url_decode("Zg==", 4, &length)); /* padding */
    assert_null(util_base64url_decode("Z+8", 3, &length));  /* standard alphabet */
    assert_null(util_base64url_decode("Zh", 2, &length));   /* non-zero leftover bits */
    assert_null(util_base64url_decode("Z", 1, &length));    /* impossible length */
}

/* Plaintext (and tokens) are allowed only to addresses that cannot leave the machine. */
static void test_loopback_addresses(void **state)
{
    (void)state;
    const char *loopback[] = {
        "127.0.0.1:50051", "127.9.9.9:1", "localhost:50051", "LOCALHOST:1",
        "[::1]:50051",     "::1",         "unix:/tmp/s",     "dns:///localhost:50051",
        "ipv4:127.0.0.1:5"};
    const char *network[] = {
        "0.0.0.0:50051",          "10.0.0.1:50051",      "[::]:50051",  ":50051",
        "stockd.example:50051",   "dns:///stockd:50051", "128.0.0.1:1", "[::2]:1",
        "localhost.example.com:1"};
    for (size_t i = 0; i < sizeof(loopback) / sizeof(loopback[0]); i++) {
        if (!net_address_is_loopback(loopback[i])) {
            fail_msg("%s should be loopback", loopback[i]);
        }
    }
    for (size_t i = 0; i < sizeof(network) / sizeof(network[0]); i++) {
        if (net_address_is_loopback(network[i])) {
            fail_msg("%s should not be loopback", network[i]);
        }
    }
}

/* util_write_file_synced replaces the whole content, leaves no .tmp behind, and fails on a
 * directory that does not exist (nothing written). */
static void test_write_file_synced(void **state)
{
    (void)state;
    char directory[] = "/tmp/stockd-util-XXXXXX";
    assert_non_null(mkdtemp(directory));
    char path[256], temporary[300], missing[300];
    snprintf(path, sizeof(path), "%s/node-id", directory);
    snprintf(temporary, sizeof(temporary), "%s.tmp", path);
    snprintf(missing, sizeof(missing), "%s/no/such/file", directory);
    char error[128];
    size_t length = 0;
    assert_true(util_write_file_synced(path, "12345\n", 6));
    assert_true(util_write_file_synced(path, "7\n", 2));
    char *text = util_read_file(path, 64, &length, error, sizeof(error));
    assert_non_null(text);
    assert_int_equal(length, 2);
    assert_string_equal(text, "7\n");
    free(text);
    assert_int_not_equal(access(temporary, F_OK), 0);
    assert_false(util_write_file_synced(missing, "1\n", 2));
    assert_int_equal(unlink(path), 0);
    assert_int_equal(rmdir(directory), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loopback_addresses), cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_json_escape),        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_host_port),          cmocka_unit_test(test_base64url),
        cmocka_unit_test(test_identifier_span),    cmocka_unit_test(test_utf8_repair),
        cmocka_unit_test(test_write_file_synced),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
