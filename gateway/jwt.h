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
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Size caps, checked before any byte of a token is decoded, so what an unauthenticated caller
 * can make the gateway parse is bounded: a Wix token is a few KB; its header segment (alg, typ,
 * kid) is under 200 bytes; an RSA signature is as long as the key (16384-bit keys at most). */
#define GW_TOKEN_BYTES_MAX (64 * 1024)
#define GW_JWT_HEADER_BYTES_MAX (4 * 1024)
#define GW_JWT_SIGNATURE_BYTES_MAX ((16384 / 8 * 4 + 2) / 3) /* base64url of 2048 bytes */
_Static_assert(GW_JWT_HEADER_BYTES_MAX + GW_JWT_SIGNATURE_BYTES_MAX < GW_TOKEN_BYTES_MAX,
               "a token holds its header and signature segments");

/* Default and largest accepted token lifetime (exp − iat): Wix tokens live minutes. The
 * largest must stay below stockd's --idempotency-ttl (days), because a call without
 * metadata.requestId is kept from being applied twice by an idempotency record that has to
 * outlive the token (see gw_jwt_signature_sha256_hex). */
#define GW_JWT_LIFETIME_DEFAULT_S 3600
#define GW_JWT_LIFETIME_MAX_S (24 * 3600)

/* X(name, description) — one refusal reason each; names are metric labels. */
#define GW_JWT_STATUS_MAP(X)                                                                       \
    X(OK, "valid")                                                                                 \
    X(MALFORMED, "not a compact JWS (three base64url parts of JSON)")                              \
    X(TOO_LARGE, "token too large (over 64 KiB, or its header over 4 KiB)")                        \
    X(ALGORITHM, "alg is not an RSA signature algorithm")                                          \
    X(SIGNATURE, "signature does not verify with the app public key")                              \
    X(ISSUER, "iss is not wix.com")                                                                \
    X(AUDIENCE, "aud does not name this app")                                                      \
    X(EXPIRED, "exp is missing or in the past")                                                    \
    X(NOT_YET_VALID, "iat or nbf is missing, malformed or in the future")                          \
    X(EXTENSION_TYPE, "data.metadata.appExtensionType is not ECOM_INVENTORY")                      \
    X(LIFETIME, "token lifetime (exp - iat) is longer than allowed")                               \
    X(NO_MEMORY, "out of memory while verifying")

typedef enum {
#define GW_JWT_ENUM(name, description) GW_JWT_##name,
    GW_JWT_STATUS_MAP(GW_JWT_ENUM)
#undef GW_JWT_ENUM
        GW_JWT_STATUS_COUNT
} gw_jwt_status_t;

const char *gw_jwt_status_name(gw_jwt_status_t status);
const char *gw_jwt_status_description(gw_jwt_status_t status);

#define GW_JWT_ALGORITHMS 6 /* RS256/384/512, PS256/384/512 */

typedef struct {
    EVP_PKEY *public_key; /* RSA; not owned */
    const char *app_id;   /* expected aud */
    int64_t skew_s;       /* allowed clock skew */
    /* Optional (gw_jwt_verifier_prepare): per algorithm, a verify context already set up with
     * the key, copied for each token instead of set up again — which in OpenSSL 3 fetches
     * the digest and the key's provider operation each time. Read-only once prepared, so
     * shared by every thread. */
    EVP_MD_CTX *templates[GW_JWT_ALGORITHMS];
} gw_jwt_verifier_t;

/* Sets up verifier->templates (false, none kept, when OpenSSL cannot); release with
 * gw_jwt_verifier_release. A verifier without them verifies the same, only slower. */
bool gw_jwt_verifier_prepare(gw_jwt_verifier_t *verifier);
void gw_jwt_verifier_release(gw_jwt_verifier_t *verifier);

/* Verifies token[0..length) (surrounding ASCII whitespace ignored) at time now_s. The sizes are
 * checked first (GW_JWT_TOO_LARGE), then the header's alg, the signature, and only then is the
 * payload decoded. On GW_JWT_OK *payload_out is the decoded claims object (caller releases with
 * json_decref). GW_JWT_NO_MEMORY when the JSON parser ran out of memory. */
gw_jwt_status_t gw_jwt_verify(const gw_jwt_verifier_t *verifier, const char *token, size_t length,
                              int64_t now_s, json_t **payload_out);

/* Refuses verified claims whose lifetime exp − iat is longer than lifetime_max_s
 * (GW_JWT_LIFETIME): a validly signed token must not stay usable for years. A separate step from
 * gw_jwt_verify so that the verifier stays a plain {key, app id, skew} triple. */
gw_jwt_status_t gw_jwt_check_lifetime(const json_t *claims, int64_t lifetime_max_s);

/* Writes the lower-case hex SHA-256 of the signature segment of token[0..length) (whitespace
 * ignored, as by gw_jwt_verify) into hex_out. The signature is unique to the signed content:
 * the same token always gives the same digest, and no one without Wix's key can make another
 * token with it. False when the token has no signature segment. */
bool gw_jwt_signature_sha256_hex(const char *token, size_t length, char hex_out[65]);

/* Loads an RSA public key from a file holding PEM (SPKI or PKCS#1) or base64 of that PEM.
 * Returns NULL with a reason in error when the file is unreadable or not an RSA key. The
 * caller owns the key (EVP_PKEY_free). */
EVP_PKEY *gw_jwt_load_public_key(const char *path, char *error, size_t error_capacity);

#endif
