/* fuzz_gateway.c — libFuzzer target for the gateway's request path.
 *
 * The first input byte picks the stage: even → the rest is a token for gw_jwt_verify (the
 * parser of untrusted bytes, reached before any signature is trusted); odd → the rest is a
 * claims document for gw_wix_map and gw_wix_variant (reached only after a valid signature,
 * so a fuzzer could not get there through the token stage). Built with clang
 * -fsanitize=fuzzer for fuzzing, and with replay_main.c as an ordinary test that replays the
 * checked-in corpus. */
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jwt.h"
#include "wix.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static EVP_PKEY *fuzz_key(void)
{
    static EVP_PKEY *key;
    if (key == NULL) {
        key = EVP_RSA_gen(1024); /* any RSA key: no input will carry a valid signature */
    }
    return key;
}

static void fuzz_claims(const uint8_t *data, size_t size)
{
    json_error_t error;
    json_t *claims = json_loadb((const char *)data, size, 0, &error);
    if (claims == NULL) {
        return;
    }
    for (int method = 0; method < 2; method++) {
        gw_wix_call_t call;
        gw_wix_map((gw_wix_method_t)method, claims, "default", &call);
        gw_wix_call_free(&call);
    }
    const json_t *items =
        json_object_get(json_object_get(json_object_get(claims, "data"), "request"), "items");
    size_t index;
    const json_t *item;
    json_array_foreach(items, index, item)
    {
        free(gw_wix_variant(json_object_get(json_object_get(item, "catalogReference"), "options")));
    }
    json_decref(claims);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) {
        return 0;
    }
    if ((data[0] & 1) == 0) {
        gw_jwt_verifier_t verifier = {.public_key = fuzz_key(), .app_id = "app", .skew_s = 60};
        json_t *payload = NULL;
        gw_jwt_verify(&verifier, (const char *)data + 1, size - 1, 1795754200, &payload);
        json_decref(payload);
    } else {
        fuzz_claims(data + 1, size - 1);
    }
    return 0;
}
