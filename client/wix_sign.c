/* wix_sign.c — see wix_sign.h. */
#include "wix_sign.h"

#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

bool sc_wix_app_id(const char *explicit_app_id, const char *key_path, char *out, size_t capacity)
{
    if (explicit_app_id[0] != '\0') {
        snprintf(out, capacity, "%s", explicit_app_id);
        return true;
    }
    char path[1024];
    const char *slash = strrchr(key_path, '/');
    snprintf(path, sizeof(path), "%.*s%sapp-id", slash ? (int)(slash - key_path) : 0, key_path,
             slash ? "/" : "");
    FILE *file = fopen(path, "r");
    bool ok = file != NULL && fgets(out, (int)capacity, file) != NULL;
    if (file != NULL) {
        fclose(file);
    }
    out[ok ? strcspn(out, "\r\n") : 0] = '\0';
    return ok && out[0] != '\0';
}

EVP_PKEY *sc_wix_load_private_key(const char *path)
{
    FILE *file = fopen(path, "r");
    if (file == NULL) {
        return NULL;
    }
    EVP_PKEY *key = PEM_read_PrivateKey(file, NULL, NULL, NULL);
    fclose(file);
    return key;
}

static void sc_random_request_id(char *out, size_t capacity)
{
    unsigned char bytes[8];
    RAND_bytes(bytes, sizeof(bytes));
    uint64_t value = 0;
    memcpy(&value, bytes, sizeof(value));
    snprintf(out, capacity, "stockctl.%llu", (unsigned long long)value);
}

static json_t *sc_default_metadata(const sc_wix_sign_options_t *options)
{
    char request_id[64];
    if (options->request_id == NULL) {
        sc_random_request_id(request_id, sizeof(request_id));
    } else {
        snprintf(request_id, sizeof(request_id), "%s", options->request_id);
    }
    return json_pack("{s:s, s:s, s:s, s:[s], s:{s:s}, s:s}", "requestId", request_id, "instanceId",
                     options->instance_id ? options->instance_id : "default", "currency", "USD",
                     "languages", "en-US", "identity", "identityType", "ANONYMOUS_VISITOR",
                     "appExtensionType", "ECOM_INVENTORY");
}

json_t *sc_wix_claims(const json_t *input, const sc_wix_sign_options_t *options)
{
    const json_t *source = json_object_get(input, "claims");
    if (source == NULL) {
        source = input;
    }
    json_t *claims = NULL;
    if (json_object_get(source, "data") != NULL) {
        claims = json_deep_copy(source);
    } else if (json_object_get(source, "items") != NULL) {
        claims = json_pack("{s:{s:O, s:o}}", "data", "request", source, "metadata",
                           sc_default_metadata(options));
    }
    if (!json_is_object(claims)) {
        json_decref(claims);
        return NULL;
    }
    json_t *metadata = json_object_get(json_object_get(claims, "data"), "metadata");
    if (json_is_object(metadata) && options->request_id != NULL) {
        json_object_set_new(metadata, "requestId", json_string(options->request_id));
    }
    json_object_set_new(claims, "aud", json_string(options->app_id));
    json_object_set_new(claims, "iss", json_string("wix.com"));
    json_object_set_new(claims, "iat", json_integer(options->now_s));
    json_object_set_new(claims, "exp", json_integer(options->now_s + options->ttl_s));
    return claims;
}

static const EVP_MD *sc_digest_of(const char *alg, bool *pss)
{
    *pss = alg[0] == 'P';
    if (strcmp(alg + 1, "S256") == 0) {
        return EVP_sha256();
    }
    if (strcmp(alg + 1, "S384") == 0) {
        return EVP_sha384();
    }
    return strcmp(alg + 1, "S512") == 0 ? EVP_sha512() : NULL;
}

static char *sc_sign_bytes(EVP_PKEY *key, const char *alg, const char *input)
{
    bool pss = false;
    const EVP_MD *digest = sc_digest_of(alg, &pss);
    EVP_MD_CTX *context = EVP_MD_CTX_new();
    EVP_PKEY_CTX *key_context = NULL;
    unsigned char signature[1024];
    size_t signature_length = sizeof(signature);
    bool ok = digest != NULL && (alg[0] == 'R' || alg[0] == 'P') && context != NULL &&
              EVP_DigestSignInit(context, &key_context, digest, NULL, key) == 1;
    if (ok && pss) {
        ok = EVP_PKEY_CTX_set_rsa_padding(key_context, RSA_PKCS1_PSS_PADDING) > 0 &&
             EVP_PKEY_CTX_set_rsa_pss_saltlen(key_context, RSA_PSS_SALTLEN_DIGEST) > 0;
    }
    ok = ok && EVP_DigestSign(context, signature, &signature_length, (const unsigned char *)input,
                              strlen(input)) == 1;
    EVP_MD_CTX_free(context);
    return ok ? util_base64url_encode(signature, signature_length) : NULL;
}

char *sc_wix_sign(EVP_PKEY *private_key, const char *alg, const json_t *claims)
{
    char header[64];
    snprintf(header, sizeof(header), "{\"alg\":\"%s\",\"typ\":\"JWT\"}", alg);
    char *payload = json_dumps(claims, JSON_COMPACT);
    char *header_b64 = util_base64url_encode((const unsigned char *)header, strlen(header));
    char *payload_b64 =
        payload ? util_base64url_encode((const unsigned char *)payload, strlen(payload)) : NULL;
    char *token = NULL;
    if (header_b64 != NULL && payload_b64 != NULL) {
        size_t length = strlen(header_b64) + 1 + strlen(payload_b64);
        char *signing_input = malloc(length + 1);
        if (signing_input != NULL) {
            snprintf(signing_input, length + 1, "%s.%s", header_b64, payload_b64);
            char *signature = sc_sign_bytes(private_key, alg, signing_input);
            if (signature != NULL) {
                token = malloc(length + 1 + strlen(signature) + 1);
                if (token != NULL) {
                    snprintf(token, length + 1 + strlen(signature) + 1, "%s.%s", signing_input,
                             signature);
                }
                free(signature);
            }
            free(signing_input);
        }
    }
    free(payload);
    free(header_b64);
    free(payload_b64);
    return token;
}
