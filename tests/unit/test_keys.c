/* Unit tests for keys.c: item key round trip, tenant grouping and sort order, injection
 * safety of the length prefixes, level value round trip and read-back checks. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>

#include "keys.h"

static sd_item_key_t make_key(const char *tenant, const char *location, const char *app,
                              const char *item, const char *variant)
{
    sd_item_key_t key = {sd_bytes_of(tenant), sd_bytes_of(location), sd_bytes_of(app),
                         sd_bytes_of(item), sd_bytes_of(variant)};
    return key;
}

static int compare_encoded(const sd_item_key_t *a, const sd_item_key_t *b)
{
    uint8_t ka[SD_ITEM_KEY_BYTES_MAX], kb[SD_ITEM_KEY_BYTES_MAX];
    size_t la = sd_key_encode_item(a, ka, sizeof(ka));
    size_t lb = sd_key_encode_item(b, kb, sizeof(kb));
    assert_true(la > 0 && lb > 0);
    int c = memcmp(ka, kb, la < lb ? la : lb);
    return c != 0 ? c : (la < lb ? -1 : la > lb ? 1 : 0);
}

static void test_item_key_round_trip(void **state)
{
    (void)state;
    sd_item_key_t key = make_key("tenant-1", "loc", "app", "item-42", "{\"size\":\"L\"}");
    uint8_t bytes[SD_ITEM_KEY_BYTES_MAX];
    size_t length = sd_key_encode_item(&key, bytes, sizeof(bytes));
    assert_int_equal(length, 1 + 8 + 1 + 3 + 1 + 3 + 1 + 7 + 1 + 12); /* marker, NULs */
    sd_item_key_t decoded;
    assert_true(sd_key_decode_item(bytes, length, &decoded));
    assert_int_equal(decoded.catalog_item_id.length, 7);
    assert_memory_equal(decoded.catalog_item_id.data, "item-42", 7);
    assert_memory_equal(decoded.variant.data, "{\"size\":\"L\"}", 12);
    assert_int_equal(decoded.location_id.length, 3);
    /* keys cut before the last part, or padded with a NUL, are rejected (the variant runs to
     * the end of the key, so a key cut inside it reads as a shorter variant: RocksDB keeps
     * keys whole) */
    assert_false(sd_key_decode_item(bytes, length - 12 - 1, &decoded));
    bytes[length] = 0;
    assert_false(sd_key_decode_item(bytes, length + 1, &decoded));
}

static void test_item_key_maximum_lengths(void **state)
{
    (void)state;
    char tenant[SD_TENANT_BYTES_MAX + 2], item[SD_CATALOG_ITEM_BYTES_MAX + 2];
    memset(tenant, 't', sizeof(tenant));
    memset(item, 'i', sizeof(item));
    tenant[SD_TENANT_BYTES_MAX] = '\0';
    item[SD_CATALOG_ITEM_BYTES_MAX] = '\0';
    sd_item_key_t key = make_key(tenant, "", "a", item, "");
    uint8_t bytes[SD_ITEM_KEY_BYTES_MAX];
    assert_true(sd_key_encode_item(&key, bytes, sizeof(bytes)) > 0);
    tenant[SD_TENANT_BYTES_MAX] = 't';
    tenant[SD_TENANT_BYTES_MAX + 1] = '\0';
    key = make_key(tenant, "", "a", item, "");
    assert_int_equal(sd_key_encode_item(&key, bytes, sizeof(bytes)), 0);
}

/* A separator inside a field would confuse ("a", "bc") with ("ab", "c"); ids never hold the
 * NUL separator (refused on the wire, and refused here). */
static void test_item_key_no_injection(void **state)
{
    (void)state;
    sd_item_key_t a = make_key("t", "a", "bc", "x", "");
    sd_item_key_t b = make_key("t", "ab", "c", "x", "");
    assert_int_not_equal(compare_encoded(&a, &b), 0);
    sd_item_key_t c = make_key("t", "", "app", "x\001\003app", "");
    sd_item_key_t d = make_key("t", "", "app", "x", "\003app");
    assert_int_not_equal(compare_encoded(&c, &d), 0);
    uint8_t bytes[SD_ITEM_KEY_BYTES_MAX];
    sd_item_key_t nul = make_key("t", "", "app", "x", "");
    nul.catalog_item_id.length = 3; /* "x\0a": a NUL inside */
    nul.catalog_item_id.data = "x\0a";
    assert_int_equal(sd_key_encode_item(&nul, bytes, sizeof(bytes)), 0);
}

/* ListStock pages in key order, so keys must sort as a person reads the ids: by value, not
 * by length first (v1 keys put "mug-1" before "bulk-00000"). */
static void test_item_keys_sort_in_natural_order(void **state)
{
    (void)state;
    const char *ids[] = {"", "a", "bulk-00000", "bulk-00001", "mug-1", "mug-10", "mug-2", "z"};
    for (size_t i = 0; i + 1 < sizeof(ids) / sizeof(ids[0]); i++) {
        sd_item_key_t a = make_key("t", "", "app", ids[i], "");
        sd_item_key_t b = make_key("t", "", "app", ids[i + 1], "");
        assert_true(compare_encoded(&a, &b) < 0);
        sd_item_key_t va = make_key("t", "", "app", "mug", ids[i]);
        sd_item_key_t vb = make_key("t", "", "app", "mug", ids[i + 1]);
        assert_true(compare_encoded(&va, &vb) < 0);
    }
    /* an item's variants come before the next item, even one its id begins */
    sd_item_key_t variant = make_key("t", "", "app", "mug", "zzzz");
    sd_item_key_t longer = make_key("t", "", "app", "mug-1", "");
    assert_true(compare_encoded(&variant, &longer) < 0);
    /* the default location (empty) first, then locations by name */
    sd_item_key_t home = make_key("t", "", "zzz", "z", "");
    sd_item_key_t berlin = make_key("t", "berlin", "a", "a", "");
    assert_true(compare_encoded(&home, &berlin) < 0);
    /* the ListStock prefixes: of a location, and of an app in it */
    uint8_t key[SD_ITEM_KEY_BYTES_MAX], prefix[SD_ITEM_KEY_BYTES_MAX];
    sd_item_key_t k = make_key("t", "berlin", "app", "mug", "red");
    size_t length = sd_key_encode_item(&k, key, sizeof(key));
    sd_bytes_t location = sd_bytes_of("berlin"), other = sd_bytes_of("berl"),
               app = sd_bytes_of("app");
    size_t p = sd_key_encode_item_prefix(sd_bytes_of("t"), &location, &app, prefix, sizeof(prefix));
    assert_true(p > 0 && p < length);
    assert_memory_equal(key, prefix, p);
    p = sd_key_encode_item_prefix(sd_bytes_of("t"), &other, NULL, prefix, sizeof(prefix));
    assert_memory_not_equal(key, prefix, p); /* "berl" is not a prefix of location "berlin" */
}

/* The start-up migration reads v1 keys (length-prefixed parts) and tells them from v2. */
static void test_v1_item_keys_are_recognised(void **state)
{
    (void)state;
    static const uint8_t v1[] = {1, 't', 0, 3, 'a', 'p', 'p', 0, 3, 'm', 'u', 'g', 0, 0};
    assert_true(sd_key_item_is_v1(v1, sizeof(v1)));
    sd_item_key_t parts;
    assert_true(sd_key_decode_item_v1(v1, sizeof(v1), &parts));
    assert_memory_equal(parts.catalog_item_id.data, "mug", 3);
    uint8_t v2[SD_ITEM_KEY_BYTES_MAX];
    size_t length = sd_key_encode_item(&parts, v2, sizeof(v2));
    assert_false(sd_key_item_is_v1(v2, length));
    assert_false(sd_key_decode_item(v1, sizeof(v1), &parts));
    assert_true(sd_key_decode_item(v2, length, &parts));
}

/* Every key of a tenant starts with the tenant prefix, so a tenant is one contiguous range,
 * and within a tenant keys group by location then app. */
static void test_item_key_sort_order(void **state)
{
    (void)state;
    uint8_t prefix[SD_TENANT_PREFIX_BYTES_MAX], key[SD_ITEM_KEY_BYTES_MAX];
    size_t prefix_length = sd_key_encode_tenant(sd_bytes_of("shop"), prefix, sizeof(prefix));
    sd_item_key_t k = make_key("shop", "loc", "app", "item", "v");
    size_t length = sd_key_encode_item(&k, key, sizeof(key));
    assert_true(length > prefix_length);
    assert_memory_equal(key, prefix, prefix_length);
    /* tenant dominates: anything of tenant "a" sorts before anything of tenant "b" */
    sd_item_key_t a_last = make_key("a", "zzzz", "zzzz", "zzzz", "zzzz");
    sd_item_key_t b_first = make_key("b", "", "a", "a", "");
    assert_true(compare_encoded(&a_last, &b_first) < 0);
    /* then location, then app, then item, then variant */
    sd_item_key_t l1 = make_key("t", "l1", "z", "z", "z");
    sd_item_key_t l2 = make_key("t", "l2", "a", "a", "");
    assert_true(compare_encoded(&l1, &l2) < 0);
    sd_item_key_t app1 = make_key("t", "l", "a1", "z", "z");
    sd_item_key_t app2 = make_key("t", "l", "a2", "a", "");
    assert_true(compare_encoded(&app1, &app2) < 0);
    sd_item_key_t v1 = make_key("t", "l", "a", "i", "v1");
    sd_item_key_t v2 = make_key("t", "l", "a", "i", "v2");
    assert_true(compare_encoded(&v1, &v2) < 0);
}

static void test_ledger_key_orders_by_seq(void **state)
{
    (void)state;
    uint8_t k1[SD_LEDGER_KEY_BYTES_MAX], k2[SD_LEDGER_KEY_BYTES_MAX];
    size_t l1 = sd_key_encode_ledger(sd_bytes_of("t"), 255, k1, sizeof(k1));
    size_t l2 = sd_key_encode_ledger(sd_bytes_of("t"), 256, k2, sizeof(k2));
    assert_int_equal(l1, l2);
    assert_true(memcmp(k1, k2, l1) < 0);
    assert_int_equal(sd_be64_get(k2 + l2 - 8), 256);
}

/* The ledger's index keys (keys.h): an item's keys are its item key + 0x00 + seq, in seq
 * order; an order's keys are tenant + marker + length + order_id + seq. No item's or order's
 * prefix begins another's keys, and tenants stay apart. */
static size_t item_index_prefix(const char *tenant, const char *item, const char *variant,
                                uint8_t *out)
{
    sd_item_key_t parts = make_key(tenant, "", "app", item, variant);
    uint8_t item_key[SD_ITEM_KEY_BYTES_MAX];
    size_t item_length = sd_key_encode_item(&parts, item_key, sizeof(item_key));
    return sd_key_encode_item_index_prefix(item_key, item_length, out, SD_ITEM_INDEX_KEY_BYTES_MAX);
}

static bool starts_with(const uint8_t *key, size_t key_length, const uint8_t *prefix,
                        size_t prefix_length)
{
    return key_length >= prefix_length && memcmp(key, prefix, prefix_length) == 0;
}

static void test_item_index_keys(void **state)
{
    (void)state;
    sd_item_key_t parts = make_key("t", "loc", "app", "mug", "L");
    uint8_t item_key[SD_ITEM_KEY_BYTES_MAX], k1[SD_ITEM_INDEX_KEY_BYTES_MAX],
        k2[SD_ITEM_INDEX_KEY_BYTES_MAX], prefix[SD_ITEM_INDEX_KEY_BYTES_MAX];
    size_t item_length = sd_key_encode_item(&parts, item_key, sizeof(item_key));
    size_t l1 = sd_key_encode_item_index(item_key, item_length, 255, k1, sizeof(k1));
    size_t l2 = sd_key_encode_item_index(item_key, item_length, 256, k2, sizeof(k2));
    assert_int_equal(l1, item_length + 1 + 8);
    assert_memory_equal(k1, item_key, item_length); /* starts with the tenant and item key */
    assert_int_equal(k1[item_length], 0);
    assert_int_equal(l1, l2);
    assert_true(memcmp(k1, k2, l1) < 0); /* seq order */
    uint64_t seq = 0;
    assert_true(sd_key_index_seq(k2, l2, &seq));
    assert_int_equal(seq, 256);
    size_t prefix_length =
        sd_key_encode_item_index_prefix(item_key, item_length, prefix, sizeof(prefix));
    assert_int_equal(prefix_length, item_length + 1);
    assert_true(starts_with(k1, l1, prefix, prefix_length));
    /* too small a buffer, or no item key */
    assert_int_equal(sd_key_encode_item_index(item_key, item_length, 1, k1, item_length + 8), 0);
    assert_int_equal(sd_key_encode_item_index_prefix(item_key, 0, prefix, sizeof(prefix)), 0);
    /* the largest item key fits */
    assert_int_equal(SD_ITEM_INDEX_KEY_BYTES_MAX, SD_ITEM_KEY_BYTES_MAX + 9);
}

static void test_index_prefixes_never_overlap(void **state)
{
    (void)state;
    uint8_t a[SD_ITEM_INDEX_KEY_BYTES_MAX], b[SD_LEDGER_INDEX_KEY_BYTES_MAX];
    /* an item whose variant (or item id) extends another's: not under its prefix */
    const char *pairs[][4] = {{"mug", "", "mug", "L"},
                              {"mug", "L", "mug", "LL"},
                              {"mug", "", "mug-1", ""},
                              {"mug", "", "mu", "g"},
                              {"mug", "\x01", "mug", ""}};
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        size_t pa = item_index_prefix("t", pairs[i][0], pairs[i][1], a);
        uint8_t item_key[SD_ITEM_KEY_BYTES_MAX];
        sd_item_key_t other = make_key("t", "", "app", pairs[i][2], pairs[i][3]);
        size_t ol = sd_key_encode_item(&other, item_key, sizeof(item_key));
        for (uint64_t seq = 0; seq < 3; seq++) {
            uint64_t seqs[] = {0, 0x4C00000000000000ULL, UINT64_MAX};
            size_t kl = sd_key_encode_item_index(item_key, ol, seqs[seq], b, sizeof(b));
            assert_false(starts_with(b, kl, a, pa));
        }
    }
    /* tenants: "t" and "tt" with the same item */
    size_t pa = item_index_prefix("t", "mug", "", a);
    size_t pb = item_index_prefix("tt", "mug", "", b);
    assert_false(starts_with(b, pb, a, pa));
    /* orders: "o" is not a prefix of "o1"'s keys; nor of another tenant's "o" */
    pa = sd_key_encode_order_index_prefix(sd_bytes_of("t"), sd_bytes_of("o"), a, sizeof(a));
    size_t kl = sd_key_encode_order_index(sd_bytes_of("t"), sd_bytes_of("o1"), 7, b, sizeof(b));
    assert_true(pa > 0 && kl > 0);
    assert_false(starts_with(b, kl, a, pa));
    kl = sd_key_encode_order_index(sd_bytes_of("tt"), sd_bytes_of("o"), 7, b, sizeof(b));
    assert_false(starts_with(b, kl, a, pa));
    kl = sd_key_encode_order_index(sd_bytes_of("t"), sd_bytes_of("o"), 7, b, sizeof(b));
    assert_true(starts_with(b, kl, a, pa));
    assert_int_equal(kl, 1 + 1 + 1 + 1 + 1 + 8);
    /* an order key and an item key of one tenant differ at the marker */
    pb = item_index_prefix("t", "mug", "", b);
    assert_int_equal(a[2], SD_ORDER_INDEX_MARKER);
    assert_int_equal(b[2], SD_ITEM_KEY_MARKER);
}

static void test_order_index_keys_and_values(void **state)
{
    (void)state;
    uint8_t key[SD_ORDER_INDEX_KEY_BYTES_MAX];
    char longest[SD_ORDER_ID_BYTES_MAX + 2];
    memset(longest, 'o', sizeof(longest));
    longest[SD_ORDER_ID_BYTES_MAX] = '\0';
    size_t length = sd_key_encode_order_index(sd_bytes_of("tenant"), sd_bytes_of(longest),
                                              UINT64_MAX, key, sizeof(key));
    assert_int_equal(length, 1 + 6 + 1 + 1 + SD_ORDER_ID_BYTES_MAX + 8);
    longest[SD_ORDER_ID_BYTES_MAX] = 'o';
    longest[SD_ORDER_ID_BYTES_MAX + 1] = '\0';
    assert_int_equal(
        sd_key_encode_order_index(sd_bytes_of("t"), sd_bytes_of(longest), 1, key, sizeof(key)), 0);
    assert_int_equal(
        sd_key_encode_order_index_prefix(sd_bytes_of("t"), sd_bytes_of(""), key, sizeof(key)), 0);
    uint8_t value[SD_ORDER_INDEX_VALUE_BYTES];
    uint64_t first = 0;
    sd_order_index_value_encode(3, value);
    assert_true(sd_order_index_value_decode(value, sizeof(value), 12, &first));
    assert_int_equal(first, 10); /* 10, 11, 12 */
    assert_true(sd_order_index_value_decode(value, sizeof(value), 3, &first));
    assert_int_equal(first, 1);
    assert_false(sd_order_index_value_decode(value, sizeof(value), 2, &first)); /* below 1 */
    assert_false(sd_order_index_value_decode(value, sizeof(value) - 1, 12, &first));
    sd_order_index_value_encode(0, value);
    assert_false(sd_order_index_value_decode(value, sizeof(value), 12, &first));
    sd_order_index_value_encode(8192, value);
    assert_true(sd_order_index_value_decode(value, sizeof(value), 8192, &first));
    assert_int_equal(first, 1);
    value[0] = SD_ORDER_INDEX_FORMAT_V1 + 1;
    assert_false(sd_order_index_value_decode(value, sizeof(value), 8192, &first));
    uint64_t seq = 0;
    assert_false(sd_key_index_seq(key, 9, &seq));
}

static void test_level_round_trip(void **state)
{
    (void)state;
    sd_level_t level = {.available = -12345,
                        .tracked = false,
                        .floor = -7,
                        .version = UINT64_C(1) << 40,
                        .updated_at_us = 1795761554287110};
    uint8_t bytes[SD_LEVEL_VALUE_BYTES];
    sd_level_encode(&level, bytes);
    assert_int_equal(bytes[0], SD_LEVEL_FORMAT_V1);
    sd_level_t decoded;
    assert_true(sd_level_decode(bytes, sizeof(bytes), &decoded));
    assert_int_equal(decoded.available, -12345);
    assert_false(decoded.tracked);
    assert_int_equal(decoded.floor, -7);
    assert_int_equal(decoded.version, UINT64_C(1) << 40);
    assert_int_equal(decoded.updated_at_us, 1795761554287110);
}

static void test_level_rejects_corruption(void **state)
{
    (void)state;
    sd_level_t level = sd_level_default();
    uint8_t bytes[SD_LEVEL_VALUE_BYTES];
    sd_level_t decoded;
    sd_level_encode(&level, bytes);
    assert_false(sd_level_decode(bytes, sizeof(bytes) - 1, &decoded)); /* short */
    bytes[0] = 99;
    assert_false(sd_level_decode(bytes, sizeof(bytes), &decoded)); /* unknown format */
    level.available = SD_LEVEL_ABS_MAX + 1;
    sd_level_encode(&level, bytes);
    assert_false(sd_level_decode(bytes, sizeof(bytes), &decoded)); /* out of range */
    sd_level_encode(&(sd_level_t){.tracked = true}, bytes);
    bytes[9] = 7;
    assert_false(sd_level_decode(bytes, sizeof(bytes), &decoded)); /* bad bool */
}

/* The idempotency record and the ledger entry round-trip through their codecs, and a value of
 * another format or too short is refused (never guessed at). */
static void test_value_codecs_check_their_format(void **state)
{
    (void)state;
    uint8_t fingerprint[SD_FINGERPRINT_BYTES];
    memset(fingerprint, 0xab, sizeof(fingerprint));
    const uint8_t response[] = {1, 2, 3};
    uint8_t value[SD_IDEMPOTENCY_HEADER_BYTES + sizeof(response)];
    sd_idempotency_value_encode(-5, fingerprint, response, sizeof(response), value);
    sd_idempotency_value_t record;
    assert_true(sd_idempotency_value_decode(value, sizeof(value), &record));
    assert_int_equal(record.created_us, -5);
    assert_memory_equal(record.fingerprint, fingerprint, SD_FINGERPRINT_BYTES);
    assert_int_equal(record.response_length, sizeof(response));
    assert_memory_equal(record.response, response, sizeof(response));
    assert_false(sd_idempotency_value_decode(value, SD_IDEMPOTENCY_HEADER_BYTES - 1, &record));
    value[0] = SD_IDEMPOTENCY_FORMAT_V1 + 1;
    assert_false(sd_idempotency_value_decode(value, sizeof(value), &record));

    Stockd__V1__LedgerEntry entry = STOCKD__V1__LEDGER_ENTRY__INIT;
    entry.seq = 42;
    entry.tenant_id = "t";
    entry.delta = -3;
    uint8_t ledger[256];
    size_t length = sd_ledger_value_encode(&entry, ledger, sizeof(ledger));
    assert_true(length > 1);
    assert_int_equal(sd_ledger_value_encode(&entry, ledger, 2), 0); /* does not fit */
    Stockd__V1__LedgerEntry *decoded = sd_ledger_value_decode(ledger, length);
    assert_non_null(decoded);
    assert_int_equal(decoded->seq, 42);
    assert_int_equal(decoded->delta, -3);
    stockd__v1__ledger_entry__free_unpacked(decoded, NULL);
    ledger[0] = SD_LEDGER_FORMAT_V1 + 1; /* Watch and History refuse it */
    const uint8_t *payload = NULL;
    size_t payload_length = 0;
    assert_false(sd_ledger_value_payload(ledger, length, &payload, &payload_length));
    assert_null(sd_ledger_value_decode(ledger, length));
    assert_null(sd_ledger_value_decode(ledger, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_value_codecs_check_their_format),
        cmocka_unit_test(test_item_key_round_trip),
        cmocka_unit_test(test_item_key_maximum_lengths),
        cmocka_unit_test(test_item_key_no_injection),
        cmocka_unit_test(test_item_key_sort_order),
        cmocka_unit_test(test_item_keys_sort_in_natural_order),
        cmocka_unit_test(test_v1_item_keys_are_recognised),
        cmocka_unit_test(test_ledger_key_orders_by_seq),
        cmocka_unit_test(test_item_index_keys),
        cmocka_unit_test(test_index_prefixes_never_overlap),
        cmocka_unit_test(test_order_index_keys_and_values),
        cmocka_unit_test(test_level_round_trip),
        cmocka_unit_test(test_level_rejects_corruption),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
