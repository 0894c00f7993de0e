/* Unit tests for gateway/jwt.c: valid tokens (RS256, PS256, aud array, whitespace), and each
 * refusal: expired, iat/nbf in the future, wrong iss/aud, alg none, HS256 signed with the
 * public key as the HMAC secret, ES256, bad signature, tampered payload, truncated and
 * garbage tokens; keys as PEM or base64 of the PEM. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "jwt.h"
#include "wix_sign.h"

#define APP_ID "228540bd-2509-4dfa-90c5-bcc6b493e7d4"
#define NOW 1795754200

static EVP_PKEY *private_key;
static EVP_PKEY *public_key;
static char public_pem_path[] = "/tmp/stockd-jwt-XXXXXX";

static int group_setup(void **state)
{
    (void)state;
    private_key = EVP_RSA_gen(2048);
    int fd = mkstemp(public_pem_path);
    FILE *file = fdopen(fd, "w");
    PEM_write_PUBKEY(file, private_key);
    fclose(file);
    char error[256];
    public_key = gw_jwt_load_public_key(public_pem_path, error, sizeof(error));
    return public_key ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    EVP_PKEY_free(private_key);
    EVP_PKEY_free(public_key);
    unlink(public_pem_path);
    return 0;
}

static json_t *claims_at(int64_t iat, int64_t exp)
{
    return json_pack("{s:{s:{s:[]},s:{s:s}},s:s,s:s,s:I,s:I}", "data", "request", "items",
                     "metadata", "appExtensionType", "ECOM_INVENTORY", "aud", APP_ID, "iss",
                     "wix.com", "iat", (json_int_t)iat, "exp", (json_int_t)exp);
}

static gw_jwt_status_t verify(const char *token)
{
    gw_jwt_verifier_t verifier = {public_key, APP_ID, 60};
    json_t *payload = NULL;
    gw_jwt_status_t status = gw_jwt_verify(&verifier, token, strlen(token), NOW, &payload);
    assert_true((status == GW_JWT_OK) == (payload != NULL));
    json_decref(payload);
    return status;
}

static gw_jwt_status_t verify_claims(json_t *claims, const char *alg)
{
    char *token = sc_wix_sign(private_key, alg, claims);
    assert_non_null(token);
    gw_jwt_status_t status = verify(token);
    free(token);
    json_decref(claims);
    return status;
}

static void test_valid_tokens(void **state)
{
    (void)state;
    assert_int_equal(verify_claims(claims_at(NOW, NOW + 300), "RS256"), GW_JWT_OK);
    assert_int_equal(verify_claims(claims_at(NOW, NOW + 300), "RS512"), GW_JWT_OK);
    assert_int_equal(verify_claims(claims_at(NOW, NOW + 300), "PS256"), GW_JWT_OK);
    json_t *claims = claims_at(NOW, NOW + 300);
    json_object_set_new(claims, "aud", json_pack("[s,s]", "other-app", APP_ID));
    assert_int_equal(verify_claims(claims, "RS256"), GW_JWT_OK);
    /* surrounding whitespace is ignored */
    claims = claims_at(NOW, NOW + 300);
    char *token = sc_wix_sign(private_key, "RS256", claims);
    char padded[8192];
    snprintf(padded, sizeof(padded), " \r\n%s\n\t", token);
    assert_int_equal(verify(padded), GW_JWT_OK);
    free(token);
    json_decref(claims);
}

static void test_time_claims(void **state)
{
    (void)state;
    assert_int_equal(verify_claims(claims_at(NOW - 600, NOW - 61), "RS256"), GW_JWT_EXPIRED);
    assert_int_equal(verify_claims(claims_at(NOW - 600, NOW - 30), "RS256"), GW_JWT_OK); /* skew */
    assert_int_equal(verify_claims(claims_at(NOW + 61, NOW + 300), "RS256"), GW_JWT_NOT_YET_VALID);
    json_t *claims = claims_at(NOW, NOW + 300);
    json_object_set_new(claims, "nbf", json_integer(NOW + 120));
    assert_int_equal(verify_claims(claims, "RS256"), GW_JWT_NOT_YET_VALID);
    claims = claims_at(NOW, NOW + 300);
    json_object_del(claims, "exp");
    assert_int_equal(verify_claims(claims, "RS256"), GW_JWT_EXPIRED);
    claims = claims_at(NOW, NOW + 300);
    json_object_del(claims, "iat");
    assert_int_equal(verify_claims(claims, "RS256"), GW_JWT_NOT_YET_VALID);
    claims = claims_at(NOW, NOW + 300);
    json_object_set_new(claims, "exp", json_string("tomorrow"));
    assert_int_equal(verify_claims(claims, "RS256"), GW_JWT_EXPIRED);
}

static void test_issuer_and_audience(void **state)
{
    (void)state;
    json_t *claims = claims_at(NOW, NOW + 300);
    json_object_set_new(claims, "iss", json_string("evil.com"));
    assert_int_equal(verify_claims(claims, "RS256"), GW_JWT_ISSUER);
    claims = claims_at(NOW, NOW + 300);
    json_object_del(claims, "iss");
    assert_int_equal(verify_claims(claims, "RS256"), GW_JWT_ISSUER);
    claims = claims_at(NOW, NOW + 300);
    json_object_set_new(claims, "aud", json_string("another-app"));
    assert_int_equal(verify_claims(claims, "RS256"), GW_JWT_AUDIENCE);
    claims = claims_at(NOW, NOW + 300);
    json_object_set_new(claims, "aud", json_pack("[s]", "another-app"));
    assert_int_equal(verify_claims(claims, "RS256"), GW_JWT_AUDIENCE);
}

/* Appends text to a buffer of `capacity` bytes (tests only build small tokens). */
static void append(char *buffer, size_t capacity, const char *text)
{
    size_t used = strlen(buffer), length = strlen(text);
    assert_true(used + length < capacity);
    memcpy(buffer + used, text, length + 1);
}

#define TOKEN_CAPACITY 8192

static char *b64url(const char *text, size_t length)
{
    char *out = malloc(length * 2 + 8);
    int n = EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)text, (int)length);
    while (n > 0 && out[n - 1] == '=') {
        n--;
    }
    out[n] = '\0';
    for (int i = 0; i < n; i++) {
        out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    }
    return out;
}

/* Builds header.payload for a hand-made header. */
static char *unsigned_token(const char *header)
{
    json_t *claims = claims_at(NOW, NOW + 300);
    char *payload = json_dumps(claims, JSON_COMPACT);
    char *h = b64url(header, strlen(header));
    char *p = b64url(payload, strlen(payload));
    char *token = malloc(TOKEN_CAPACITY);
    snprintf(token, TOKEN_CAPACITY, "%s.%s", h, p);
    free(h);
    free(p);
    free(payload);
    json_decref(claims);
    return token;
}

static void test_alg_none_refused(void **state)
{
    (void)state;
    char *token = unsigned_token("{\"alg\":\"none\",\"typ\":\"JWT\"}");
    append(token, TOKEN_CAPACITY, "."); /* empty signature */
    assert_int_equal(verify(token), GW_JWT_ALGORITHM);
    free(token);
    token = unsigned_token("{\"typ\":\"JWT\"}");
    append(token, TOKEN_CAPACITY, ".AAAA");
    assert_int_equal(verify(token), GW_JWT_ALGORITHM);
    free(token);
}

/* The classic key-confusion attack: HS256 with the RSA public key PEM as the HMAC secret. */
static void test_hs256_key_confusion_refused(void **state)
{
    (void)state;
    FILE *file = fopen(public_pem_path, "r");
    char pem[4096];
    size_t pem_length = fread(pem, 1, sizeof(pem), file);
    fclose(file);
    char *token = unsigned_token("{\"alg\":\"HS256\",\"typ\":\"JWT\"}");
    unsigned char mac[32];
    unsigned int mac_length = 0;
    HMAC(EVP_sha256(), pem, (int)pem_length, (unsigned char *)token, strlen(token), mac,
         &mac_length);
    char *signature = b64url((const char *)mac, mac_length);
    append(token, TOKEN_CAPACITY, ".");
    append(token, TOKEN_CAPACITY, signature);
    assert_int_equal(verify(token), GW_JWT_ALGORITHM);
    free(signature);
    free(token);
    token = unsigned_token("{\"alg\":\"ES256\"}");
    append(token, TOKEN_CAPACITY, ".AAAA");
    assert_int_equal(verify(token), GW_JWT_ALGORITHM);
    free(token);
}

static void test_bad_signatures_and_tampering(void **state)
{
    (void)state;
    json_t *claims = claims_at(NOW, NOW + 300);
    char *token = sc_wix_sign(private_key, "RS256", claims);
    json_decref(claims);
    char *last = strrchr(token, '.');
    char saved = last[5];
    last[5] = last[5] == 'A' ? 'B' : 'A'; /* flip a signature character */
    assert_int_equal(verify(token), GW_JWT_SIGNATURE);
    last[5] = saved;
    /* swap in a different payload under the same signature */
    char *first = strchr(token, '.');
    json_t *other = claims_at(NOW, NOW + 9999);
    char *other_json = json_dumps(other, JSON_COMPACT);
    char *other_b64 = b64url(other_json, strlen(other_json));
    char tampered[8192];
    snprintf(tampered, sizeof(tampered), "%.*s.%s%s", (int)(first - token), token, other_b64, last);
    assert_int_equal(verify(tampered), GW_JWT_SIGNATURE);
    /* a token signed by another key */
    EVP_PKEY *stranger = EVP_RSA_gen(2048);
    char *foreign = sc_wix_sign(stranger, "RS256", other);
    assert_int_equal(verify(foreign), GW_JWT_SIGNATURE);
    EVP_PKEY_free(stranger);
    free(foreign);
    free(other_json);
    free(other_b64);
    json_decref(other);
    /* truncated */
    token[strlen(token) - 10] = '\0';
    assert_true(verify(token) == GW_JWT_SIGNATURE || verify(token) == GW_JWT_MALFORMED);
    *last = '\0';
    assert_int_equal(verify(token), GW_JWT_MALFORMED);
    free(token);
}

static void test_garbage(void **state)
{
    (void)state;
    const char *garbage[] = {"",
                             "   ",
                             "abc",
                             "a.b",
                             "a.b.c.d",
                             "!!!.???.***",
                             "e30.e30.",
                             "W10.e30.AAAA" /* header [] */,
                             "e30.e30.AAAA" /* no alg */,
                             "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.AAAA" /* payload not json */};
    for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
        gw_jwt_status_t status = verify(garbage[i]);
        assert_true(status == GW_JWT_MALFORMED || status == GW_JWT_ALGORITHM ||
                    status == GW_JWT_SIGNATURE);
    }
}

static void test_key_as_base64_of_pem(void **state)
{
    (void)state;
    FILE *file = fopen(public_pem_path, "r");
    char pem[4096];
    size_t pem_length = fread(pem, 1, sizeof(pem), file);
    fclose(file);
    char encoded[8192];
    int n = EVP_EncodeBlock((unsigned char *)encoded, (unsigned char *)pem, (int)pem_length);
    char path[] = "/tmp/stockd-jwt-b64-XXXXXX";
    int fd = mkstemp(path);
    assert_int_equal(write(fd, encoded, (size_t)n), n);
    assert_int_equal(write(fd, "\n", 1), 1);
    close(fd);
    char error[256];
    EVP_PKEY *key = gw_jwt_load_public_key(path, error, sizeof(error));
    assert_non_null(key);
    assert_int_equal(EVP_PKEY_eq(key, public_key), 1);
    EVP_PKEY_free(key);
    /* not a key at all */
    fd = open(path, O_WRONLY | O_TRUNC);
    assert_int_equal(write(fd, "hello", 5), 5);
    close(fd);
    assert_null(gw_jwt_load_public_key(path, error, sizeof(error)));
    assert_non_null(strstr(error, "no RSA public key"));
    unlink(path);
    assert_null(gw_jwt_load_public_key("/nonexistent/key.pem", error, sizeof(error)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_tokens),
        cmocka_unit_test(test_time_claims),
        cmocka_unit_test(test_issuer_and_audience),
        cmocka_unit_test(test_alg_none_refused),
        cmocka_unit_test(test_hs256_key_confusion_refused),
        cmocka_unit_test(test_bad_signatures_and_tampering),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_key_as_base64_of_pem),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
