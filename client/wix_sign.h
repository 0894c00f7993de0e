/* wix_sign.h — signs Wix-shaped service-plugin calls the way Wix does (compact RS256 JWS
 * whose claims are {data: {request, metadata}, aud, iss: "wix.com", iat, exp}), for
 * `stockctl wix-sign`, `stockbench --mode wix` and the tests. */
#ifndef STOCKCLIENT_WIX_SIGN_H
#define STOCKCLIENT_WIX_SIGN_H

#include <jansson.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *app_id;      /* aud */
    const char *instance_id; /* metadata.instanceId when the input has no metadata */
    const char *request_id;  /* metadata.requestId when the input has none; NULL = random */
    int64_t now_s;           /* iat */
    int64_t ttl_s;           /* exp = iat + ttl */
} sc_wix_sign_options_t;

/* The app id to sign for: `explicit_app_id` when not empty, else the contents of the
 * "app-id" file beside key_path (as the gateway's development mode writes it). False when
 * neither gives one. */
bool sc_wix_app_id(const char *explicit_app_id, const char *key_path, char *out, size_t capacity);

/* Loads a PEM private key (caller frees with EVP_PKEY_free); NULL when unreadable. */
EVP_PKEY *sc_wix_load_private_key(const char *path);

/* Builds the claims from `input`, which is one of: an example file object holding
 * "claims"; a claims object holding "data"; or a bare request object (holding "items").
 * Fresh iat/exp and aud always come from options. Returns a new reference or NULL. */
json_t *sc_wix_claims(const json_t *input, const sc_wix_sign_options_t *options);

/* Signs claims with alg ("RS256", …, "PS512"); returns a malloc'd token or NULL. */
char *sc_wix_sign(EVP_PKEY *private_key, const char *alg, const json_t *claims);

#endif
