/* Unit tests for gateway/jwt.c: valid tokens (RS256, PS256, aud array, whitespace), and each
 * refusal: expired, iat/nbf in the future, wrong iss/aud, alg none, HS256 signed with the
 * public key as the HMAC secret, ES256, bad signature, tampered payload, truncated and
 * garbage tokens; keys as PEM or base64 of the PEM; the size caps checked before decoding, the
 * lifetime bound and the signature digest. And the verification step of gateway/routes.c
 * (gw_handle_wix): bounded concurrent verifications (503 when full), lifetime refusals, and
 * the request_id derived for a call without metadata.requestId. */
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
#include <openssl/sha.h>
#include <time.h>
#include <unistd.h>

#include <grpc/grpc.h>

#include "jwt.h"
#include "stockclient.h"
#include "routes.h"
#include "util.h"
#include "wix_sign.h"

#define APP_ID "228540bd-2509-4dfa-90c5-bcc6b493e7d4"
#define NOW 1795754200

static EVP_PKEY *private_key;
static EVP_PKEY *public_key;
/* the same key with verify-context templates (gw_jwt_verifier_prepare) */
static gw_jwt_verifier_t prepared;
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
    prepared = (gw_jwt_verifier_t){.public_key = public_key, .app_id = APP_ID, .skew_s = 60};
    return public_key && gw_jwt_verifier_prepare(&prepared) ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    gw_jwt_verifier_release(&prepared);
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

/* Verifies with a plain verifier and with the prepared one: both must agree, so every test
 * below checks both ways of setting up the verify context. */
static gw_jwt_status_t verify(const char *token)
{
    gw_jwt_verifier_t verifier = {.public_key = public_key, .app_id = APP_ID, .skew_s = 60};
    json_t *payload = NULL;
    gw_jwt_status_t status = gw_jwt_verify(&verifier, token, strlen(token), NOW, &payload);
    assert_true((status == GW_JWT_OK) == (payload != NULL));
    json_decref(payload);
    payload = NULL;
    assert_int_equal(gw_jwt_verify(&prepared, token, strlen(token), NOW, &payload), status);
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
    /* truncated: 10 of 342 base64url characters of an RS256 signature gone still decodes
     * (332 is a multiple of 4) to a signature that does not verify */
    token[strlen(token) - 10] = '\0';
    assert_int_equal(verify(token), GW_JWT_SIGNATURE);
    *last = '\0';
    assert_int_equal(verify(token), GW_JWT_MALFORMED);
    free(token);
}

/* Each malformed token has one exact outcome: the check that refuses it. */
static void test_garbage(void **state)
{
    (void)state;
    static const struct {
        const char *token;
        gw_jwt_status_t expected;
    } cases[] = {
        {"", GW_JWT_MALFORMED},
        {"   ", GW_JWT_MALFORMED},
        {"abc", GW_JWT_MALFORMED},
        {"a.b", GW_JWT_MALFORMED},
        {"a.b.c.d", GW_JWT_MALFORMED},
        {"!!!.???.***", GW_JWT_MALFORMED},
        {"e30.e30.", GW_JWT_ALGORITHM},     /* header {}: no alg, refused before the signature */
        {"W10.e30.AAAA", GW_JWT_MALFORMED}, /* header [] */
        {"e30.e30.AAAA", GW_JWT_ALGORITHM}, /* no alg */
        {"eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.AAAA", GW_JWT_SIGNATURE}, /* payload not json */
        /* {"alg":"RS256","crit":["exp"]}: an extension it does not understand */
        {"eyJhbGciOiJSUzI1NiIsImNyaXQiOlsiZXhwIl19.e30.AAAA", GW_JWT_ALGORITHM},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        gw_jwt_status_t status = verify(cases[i].token);
        assert_int_equal(status, cases[i].expected);
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

/* Signs header_json.claims with RS256 as a JWS, whatever the header holds. */
static char *sign_with_header(const char *header_json, json_t *claims)
{
    char *payload_json = json_dumps(claims, JSON_COMPACT);
    char *header = b64url(header_json, strlen(header_json));
    char *payload = b64url(payload_json, strlen(payload_json));
    size_t signed_length = strlen(header) + 1 + strlen(payload);
    char *token = malloc(signed_length + 1024);
    snprintf(token, signed_length + 1, "%s.%s", header, payload);
    EVP_MD_CTX *context = EVP_MD_CTX_new();
    unsigned char signature[512];
    size_t signature_length = sizeof(signature);
    assert_int_equal(EVP_DigestSignInit(context, NULL, EVP_sha256(), NULL, private_key), 1);
    assert_int_equal(EVP_DigestSign(context, signature, &signature_length, (unsigned char *)token,
                                    signed_length),
                     1);
    EVP_MD_CTX_free(context);
    char *encoded = b64url((const char *)signature, signature_length);
    snprintf(token + signed_length, 1024, ".%s", encoded);
    free(encoded);
    free(header);
    free(payload);
    free(payload_json);
    return token;
}

/* A header {"alg":"RS256","kid":"kkk…"} whose base64url form is header_bytes long (± 3). */
static char *header_of_size(size_t header_bytes)
{
    size_t json_bytes = header_bytes * 3 / 4, kid_bytes = json_bytes - 27;
    char *header = malloc(json_bytes + 1);
    snprintf(header, json_bytes + 1, "{\"alg\":\"RS256\",\"kid\":\"%0*d\"}", (int)kid_bytes, 0);
    return header;
}

/* The caps hold before anything is decoded, whether or not the signature is valid. */
static void test_size_caps(void **state)
{
    (void)state;
    char *junk = malloc(GW_TOKEN_BYTES_MAX + 2);
    memset(junk, 'e', GW_TOKEN_BYTES_MAX + 1);
    junk[GW_TOKEN_BYTES_MAX + 1] = '\0';
    assert_int_equal(verify(junk), GW_JWT_TOO_LARGE);
    free(junk);
    json_t *claims = claims_at(NOW, NOW + 300);
    char *header = header_of_size(GW_JWT_HEADER_BYTES_MAX - 8);
    char *token = sign_with_header(header, claims);
    assert_true(strchr(token, '.') - token <= GW_JWT_HEADER_BYTES_MAX);
    assert_int_equal(verify(token), GW_JWT_OK);
    free(header);
    free(token);
    header = header_of_size(GW_JWT_HEADER_BYTES_MAX + 8);
    token = sign_with_header(header, claims);
    assert_true(strchr(token, '.') - token > GW_JWT_HEADER_BYTES_MAX);
    assert_int_equal(verify(token), GW_JWT_TOO_LARGE);
    free(header);
    free(token);
    /* a signature segment longer than any RSA signature */
    token = sign_with_header("{\"alg\":\"RS256\"}", claims);
    char *long_signature = malloc(strlen(token) + GW_JWT_SIGNATURE_BYTES_MAX + 8);
    int n = snprintf(long_signature, strlen(token) + GW_JWT_SIGNATURE_BYTES_MAX + 8, "%s%0*d",
                     token, GW_JWT_SIGNATURE_BYTES_MAX, 0);
    assert_true(n > 0);
    assert_int_equal(verify(long_signature), GW_JWT_TOO_LARGE);
    free(long_signature);
    free(token);
    json_decref(claims);
}

static void test_lifetime(void **state)
{
    (void)state;
    json_t *claims = claims_at(NOW, NOW + 3600);
    assert_int_equal(gw_jwt_check_lifetime(claims, 3600), GW_JWT_OK);
    json_object_set_new(claims, "exp", json_integer(NOW + 3601));
    assert_int_equal(gw_jwt_check_lifetime(claims, 3600), GW_JWT_LIFETIME);
    assert_int_equal(gw_jwt_check_lifetime(claims, 7200), GW_JWT_OK);
    json_object_set_new(claims, "exp", json_integer(4102444800)); /* 2100-01-01 */
    assert_int_equal(gw_jwt_check_lifetime(claims, GW_JWT_LIFETIME_MAX_S), GW_JWT_LIFETIME);
    json_object_set_new(claims, "exp", json_real(1e300));
    assert_int_equal(gw_jwt_check_lifetime(claims, GW_JWT_LIFETIME_MAX_S), GW_JWT_LIFETIME);
    json_object_del(claims, "iat");
    assert_int_equal(gw_jwt_check_lifetime(claims, 3600), GW_JWT_LIFETIME);
    json_decref(claims);
}

static void test_signature_digest(void **state)
{
    (void)state;
    json_t *claims = claims_at(NOW, NOW + 300);
    char *token = sc_wix_sign(private_key, "RS256", claims);
    const char *signature = strrchr(token, '.') + 1;
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)signature, strlen(signature), digest);
    char expected[65], hex[65];
    util_hex(digest, sizeof(digest), expected);
    assert_true(gw_jwt_signature_sha256_hex(token, strlen(token), hex));
    assert_string_equal(hex, expected);
    char padded[8192];
    snprintf(padded, sizeof(padded), "\n %s \r\n", token);
    assert_true(gw_jwt_signature_sha256_hex(padded, strlen(padded), hex));
    assert_string_equal(hex, expected);
    assert_false(gw_jwt_signature_sha256_hex("a.b", 3, hex));
    free(token);
    json_decref(claims);
}

/* A complete Wix decrement call at the current time (gw_handle_wix reads the clock). */
static char *wix_token(const char *request_id, int64_t lifetime_s)
{
    int64_t now = (int64_t)time(NULL);
    json_t *claims = json_pack(
        "{s:{s:{s:[{s:{s:s,s:s},s:i}],s:s,s:s,s:b},s:{s:s}},s:s,s:s,s:I,s:I}", "data", "request",
        "items", "catalogReference", "catalogItemId", "sku-1", "appId", "app-1", "quantity", 1,
        "orderId", "o-1", "reason", "ORDER_PLACED", "restrictInventoryValue", 1, "metadata",
        "appExtensionType", "ECOM_INVENTORY", "aud", APP_ID, "iss", "wix.com", "iat",
        (json_int_t)now, "exp", (json_int_t)(now + lifetime_s));
    if (request_id != NULL) {
        json_object_set_new(json_object_get(json_object_get(claims, "data"), "metadata"),
                            "requestId", json_string(request_id));
    }
    char *token = sc_wix_sign(private_key, "RS256", claims);
    json_decref(claims);
    return token;
}

static gw_context_t route_context(void)
{
    static const char *const names[] = {"decrement"};
    /* No stockd listens on port 1: a call that passes verification and mapping is answered
     * 503 (stockd unreachable), which tells it apart from every refusal (401/400/428). */
    gw_context_t context = {.verifier = {public_key, APP_ID, 60},
                            .client = sc_client_new("127.0.0.1:1", NULL),
                            .default_tenant = "default",
                            .deadline_ms = 1000,
                            .metrics = gw_metrics_new(names, 1)};
    assert_non_null(context.metrics);
    assert_non_null(context.client);
    return context;
}

static void route_context_free(gw_context_t *context)
{
    gw_metrics_free(context->metrics);
    sc_client_free(context->client);
}

#define PASSED_TO_STOCKD 503 /* see route_context */

static gw_response_t handle(gw_context_t *context, const char *token)
{
    gw_response_t response;
    memset(&response, 0, sizeof(response));
    gw_handle_wix(context, GW_WIX_DECREMENT, token, strlen(token), &response);
    return response;
}

/* When every verification slot is taken, a call waits GW_VERIFY_SLOT_WAIT_MS at most and is
 * answered 503 with Retry-After instead of queueing; once a slot is free it is verified. */
static void test_verifications_bounded(void **state)
{
    (void)state;
    gw_context_t context = route_context();
    assert_true(gw_slots_init(&context.verify_slots, 1));
    char *token = wix_token("r-1", 300);
    assert_true(gw_slots_acquire(&context.verify_slots, 0)); /* another call holds the slot */
    double started_ms = util_monotonic_ms();
    gw_response_t response = handle(&context, token);
    double waited_ms = util_monotonic_ms() - started_ms;
    assert_int_equal(response.status, 503);
    assert_int_equal(response.retry_after_s, 1);
    assert_true(waited_ms >= GW_VERIFY_SLOT_WAIT_MS - 5 && waited_ms < 5000);
    gw_slots_release(&context.verify_slots);
    response = handle(&context, token);
    assert_int_equal(response.status, PASSED_TO_STOCKD);
    assert_true(gw_slots_acquire(&context.verify_slots, 0)); /* the call gave its slot back */
    gw_slots_release(&context.verify_slots);
    gw_slots_destroy(&context.verify_slots);
    free(token);
    route_context_free(&context);
}

static void test_handle_lifetime_and_sizes(void **state)
{
    (void)state;
    gw_context_t context = route_context();
    char *token = wix_token("r-1", 3600);
    assert_int_equal(handle(&context, token).status, PASSED_TO_STOCKD); /* default max: 1 h */
    context.jwt_lifetime_max_s = 600;
    gw_response_t response = handle(&context, token);
    assert_int_equal(response.status, 401);
    assert_non_null(strstr(response.reason, "lifetime"));
    free(token);
    /* a body longer than the route keeps is refused unread */
    gw_request_t request = {"POST", "/v1/decrement", "", 0, true};
    memset(&response, 0, sizeof(response));
    gw_routes[0].handler(&context, &request, &response);
    assert_int_equal(response.status, 401);
    assert_non_null(strstr(response.reason, "too large"));
    route_context_free(&context);
}

/* A call without metadata.requestId gets "wix-jwt:" + SHA-256 of its signature as request_id:
 * the same token, the same id (stockd applies it once); Wix's own requestId is kept. */
static void test_token_request_id(void **state)
{
    (void)state;
    gw_context_t context = route_context();
    char *token = wix_token(NULL, 300);
    gw_response_t response = handle(&context, token);
    assert_int_equal(response.status, PASSED_TO_STOCKD);
    char hex[65], expected[129];
    assert_true(gw_jwt_signature_sha256_hex(token, strlen(token), hex));
    snprintf(expected, sizeof(expected), "wix-jwt:%s", hex);
    assert_string_equal(response.request_id, expected);
    assert_string_equal(handle(&context, token).request_id, expected);
    free(token);
    token = wix_token("r-7", 300);
    assert_string_equal(handle(&context, token).request_id, "wix:r-7");
    free(token);
    route_context_free(&context);
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
        cmocka_unit_test(test_size_caps),
        cmocka_unit_test(test_lifetime),
        cmocka_unit_test(test_signature_digest),
        cmocka_unit_test(test_verifications_bounded),
        cmocka_unit_test(test_handle_lifetime_and_sizes),
        cmocka_unit_test(test_token_request_id),
    };
    grpc_init();
    int failed = cmocka_run_group_tests(tests, group_setup, group_teardown);
    sc_thread_release();
    grpc_shutdown();
    return failed;
}
