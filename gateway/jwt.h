/* jwt.h — verification of the compact JWS tokens Wix sends as the body of a service-plugin
 * call (RFC 7515/7519), with OpenSSL (signatures, base64) and jansson (JSON).
 *
 * Only RSA algorithms are accepted (RS256/384/512, PS256/384/512), and the header's `alg` is
 * checked before anything else in the token is trusted: `none`, HS* (the public key used as
 * an HMAC secret) and ES* are refused. Then iss = "wix.com", aud = the app id (string or an
 * array holding it), exp in the future, iat and nbf (if present) not in the future, each with
 * a skew allowance. */
#ifndef STOCKD_GW_JWT_H
#define STOCKD_GW_JWT_H

#include <jansson.h>
#include <openssl/evp.h>
#include <stddef.h>
#include <stdint.h>

#define GW_TOKEN_BYTES_MAX (1024 * 1024)

/* X(name, description) — one refusal reason each; names are metric labels. */
#define GW_JWT_STATUS_MAP(X)                                                                       \
    X(OK, "valid")                                                                                 \
    X(MALFORMED, "not a compact JWS (three base64url parts of JSON)")                              \
    X(ALGORITHM, "alg is not an RSA signature algorithm")                                          \
    X(SIGNATURE, "signature does not verify with the app public key")                              \
    X(ISSUER, "iss is not wix.com")                                                                \
    X(AUDIENCE, "aud does not name this app")                                                      \
    X(EXPIRED, "exp is missing or in the past")                                                    \
    X(NOT_YET_VALID, "iat or nbf is missing, malformed or in the future")                          \
    X(EXTENSION_TYPE, "data.metadata.appExtensionType is not ECOM_INVENTORY")

typedef enum {
#define GW_JWT_ENUM(name, description) GW_JWT_##name,
    GW_JWT_STATUS_MAP(GW_JWT_ENUM)
#undef GW_JWT_ENUM
        GW_JWT_STATUS_COUNT
} gw_jwt_status_t;

const char *gw_jwt_status_name(gw_jwt_status_t status);
const char *gw_jwt_status_description(gw_jwt_status_t status);

typedef struct {
    EVP_PKEY *public_key; /* RSA; not owned */
    const char *app_id;   /* expected aud */
    int64_t skew_s;       /* allowed clock skew */
} gw_jwt_verifier_t;

/* Verifies token[0..length) (surrounding ASCII whitespace ignored) at time now_s. On GW_JWT_OK
 * *payload_out is the decoded claims object (caller releases with json_decref). */
gw_jwt_status_t gw_jwt_verify(const gw_jwt_verifier_t *verifier, const char *token, size_t length,
                              int64_t now_s, json_t **payload_out);

/* Loads an RSA public key from a file holding PEM (SPKI or PKCS#1) or base64 of that PEM.
 * Returns NULL with a reason in error when the file is unreadable or not an RSA key. The
 * caller owns the key (EVP_PKEY_free). */
EVP_PKEY *gw_jwt_load_public_key(const char *path, char *error, size_t error_capacity);

#endif
