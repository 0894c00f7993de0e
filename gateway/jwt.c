/* jwt.c — see jwt.h. */
#include "jwt.h"

#include "util.h"

#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define GW_KEY_FILE_BYTES_MAX (64 * 1024)

const char *gw_jwt_status_name(gw_jwt_status_t status)
{
    switch (status) {
#define GW_JWT_NAME(name, description)                                                             \
    case GW_JWT_##name:                                                                            \
        return #name;
        GW_JWT_STATUS_MAP(GW_JWT_NAME)
#undef GW_JWT_NAME
    case GW_JWT_STATUS_COUNT:
        break;
    }
    return "UNKNOWN";
}

const char *gw_jwt_status_description(gw_jwt_status_t status)
{
    switch (status) {
#define GW_JWT_DESCRIPTION(name, description)                                                      \
    case GW_JWT_##name:                                                                            \
        return description;
        GW_JWT_STATUS_MAP(GW_JWT_DESCRIPTION)
#undef GW_JWT_DESCRIPTION
    case GW_JWT_STATUS_COUNT:
        break;
    }
    return "unknown";
}

/* Decodes one base64url segment as a JSON object into *value_out: GW_JWT_OK, GW_JWT_MALFORMED,
 * or GW_JWT_NO_MEMORY when the parser ran out of memory (an answer to retry, not a bad token).
 * The caller owns *value_out (json_decref). */
static gw_jwt_status_t gw_decode_json_segment(const char *text, size_t length, json_t **value_out)
{
    *value_out = NULL;
    size_t decoded_length = 0;
    unsigned char *decoded = util_base64url_decode(text, length, &decoded_length);
    if (decoded == NULL) {
        return GW_JWT_MALFORMED; /* invalid base64url (or, rarely, no memory: cannot tell) */
    }
    json_error_t error;
    json_t *value =
        json_loadb((const char *)decoded, decoded_length, JSON_REJECT_DUPLICATES, &error);
    free(decoded);
    if (value == NULL) {
        return json_error_code(&error) == json_error_out_of_memory ? GW_JWT_NO_MEMORY
                                                                   : GW_JWT_MALFORMED;
    }
    if (!json_is_object(value)) {
        json_decref(value);
        return GW_JWT_MALFORMED;
    }
    *value_out = value;
    return GW_JWT_OK;
}

typedef struct {
    const char *name;
    const EVP_MD *(*digest)(void);
    bool pss;
} gw_algorithm_t;

static const gw_algorithm_t gw_algorithms[] = {
    {"RS256", EVP_sha256, false}, {"RS384", EVP_sha384, false}, {"RS512", EVP_sha512, false},
    {"PS256", EVP_sha256, true},  {"PS384", EVP_sha384, true},  {"PS512", EVP_sha512, true},
};

static const gw_algorithm_t *gw_find_algorithm(const json_t *header)
{
    const char *alg = json_string_value(json_object_get(header, "alg"));
    for (size_t i = 0; alg != NULL && i < sizeof(gw_algorithms) / sizeof(gw_algorithms[0]); i++) {
        if (strcmp(alg, gw_algorithms[i].name) == 0) {
            return &gw_algorithms[i];
        }
    }
    return NULL;
}

/* A verify context for algorithm with key, ready for EVP_DigestVerify; NULL on failure. */
static EVP_MD_CTX *gw_verify_context_new(EVP_PKEY *key, const gw_algorithm_t *algorithm)
{
    EVP_MD_CTX *context = EVP_MD_CTX_new();
    EVP_PKEY_CTX *key_context = NULL;
    bool ok = context != NULL &&
              EVP_DigestVerifyInit(context, &key_context, algorithm->digest(), NULL, key) == 1;
    if (ok && algorithm->pss) {
        ok = EVP_PKEY_CTX_set_rsa_padding(key_context, RSA_PKCS1_PSS_PADDING) > 0 &&
             EVP_PKEY_CTX_set_rsa_pss_saltlen(key_context, RSA_PSS_SALTLEN_DIGEST) > 0;
    }
    if (!ok) {
        EVP_MD_CTX_free(context);
        return NULL;
    }
    return context;
}

bool gw_jwt_verifier_prepare(gw_jwt_verifier_t *verifier)
{
    _Static_assert(sizeof(gw_algorithms) / sizeof(gw_algorithms[0]) == GW_JWT_ALGORITHMS,
                   "one template per algorithm");
    for (size_t i = 0; i < GW_JWT_ALGORITHMS; i++) {
        verifier->templates[i] = gw_verify_context_new(verifier->public_key, &gw_algorithms[i]);
        if (verifier->templates[i] == NULL) {
            gw_jwt_verifier_release(verifier);
            return false;
        }
    }
    return true;
}

void gw_jwt_verifier_release(gw_jwt_verifier_t *verifier)
{
    for (size_t i = 0; i < GW_JWT_ALGORITHMS; i++) {
        EVP_MD_CTX_free(verifier->templates[i]);
        verifier->templates[i] = NULL;
    }
}

static bool gw_verify_signature(const gw_jwt_verifier_t *verifier, const gw_algorithm_t *algorithm,
                                const char *signed_part, size_t signed_length,
                                const unsigned char *signature, size_t signature_length)
{
    const EVP_MD_CTX *template = verifier->templates[algorithm - gw_algorithms];
    EVP_MD_CTX *context = NULL;
    if (template != NULL) {
        context = EVP_MD_CTX_new();
        if (context != NULL && EVP_MD_CTX_copy_ex(context, template) != 1) {
            EVP_MD_CTX_free(context);
            context = NULL;
        }
    } else {
        context = gw_verify_context_new(verifier->public_key, algorithm);
    }
    bool ok =
        context != NULL && EVP_DigestVerify(context, signature, signature_length,
                                            (const unsigned char *)signed_part, signed_length) == 1;
    EVP_MD_CTX_free(context);
    return ok;
}

/* A NumericDate claim: a JSON number (RFC 7519 §2). */
static bool gw_numeric_claim(const json_t *payload, const char *name, double *value_out)
{
    const json_t *claim = json_object_get(payload, name);
    if (claim == NULL || !json_is_number(claim)) {
        return false;
    }
    *value_out = json_number_value(claim);
    return true;
}

static bool gw_audience_matches(const json_t *aud, const char *app_id)
{
    if (json_is_string(aud)) {
        return strcmp(json_string_value(aud), app_id) == 0;
    }
    size_t index;
    const json_t *entry;
    json_array_foreach(aud, index, entry)
    {
        if (json_is_string(entry) && strcmp(json_string_value(entry), app_id) == 0) {
            return true;
        }
    }
    return false;
}

static gw_jwt_status_t gw_check_claims(const gw_jwt_verifier_t *verifier, const json_t *payload,
                                       int64_t now_s)
{
    const char *issuer = json_string_value(json_object_get(payload, "iss"));
    if (issuer == NULL || strcmp(issuer, "wix.com") != 0) {
        return GW_JWT_ISSUER;
    }
    if (!gw_audience_matches(json_object_get(payload, "aud"), verifier->app_id)) {
        return GW_JWT_AUDIENCE;
    }
    double exp, iat, nbf;
    double now = (double)now_s, skew = (double)verifier->skew_s;
    if (!gw_numeric_claim(payload, "exp", &exp) || exp <= now - skew) {
        return GW_JWT_EXPIRED;
    }
    if (!gw_numeric_claim(payload, "iat", &iat) || iat > now + skew) {
        return GW_JWT_NOT_YET_VALID;
    }
    if (json_object_get(payload, "nbf") != NULL &&
        (!gw_numeric_claim(payload, "nbf", &nbf) || nbf > now + skew)) {
        return GW_JWT_NOT_YET_VALID;
    }
    return GW_JWT_OK;
}

/* Skips ASCII whitespace at both ends. */
static void gw_trim(const char **text, size_t *length)
{
    while (*length > 0 && strchr(" \t\r\n\f\v", (*text)[0]) != NULL && (*text)[0] != '\0') {
        (*text)++;
        (*length)--;
    }
    while (*length > 0 && strchr(" \t\r\n\f\v", (*text)[*length - 1]) != NULL &&
           (*text)[*length - 1] != '\0') {
        (*length)--;
    }
}

/* The three segments of a compact JWS, located without decoding anything. */
typedef struct {
    const char *header, *payload, *signature;
    size_t header_length, payload_length, signature_length;
} gw_segments_t;

/* Splits token[0..length) (whitespace trimmed) at its two dots, checking the size caps first:
 * GW_JWT_TOO_LARGE, GW_JWT_MALFORMED or GW_JWT_OK. */
static gw_jwt_status_t gw_split(const char *token, size_t length, gw_segments_t *segments)
{
    if (length > GW_TOKEN_BYTES_MAX) {
        return GW_JWT_TOO_LARGE; /* before even trimming: the cap is on what was sent */
    }
    gw_trim(&token, &length);
    const char *end = token + length;
    const char *first_dot = length ? memchr(token, '.', length) : NULL;
    const char *second_dot =
        first_dot ? memchr(first_dot + 1, '.', (size_t)(end - first_dot - 1)) : NULL;
    if (second_dot == NULL || memchr(second_dot + 1, '.', (size_t)(end - second_dot - 1))) {
        return GW_JWT_MALFORMED;
    }
    *segments = (gw_segments_t){token,
                                first_dot + 1,
                                second_dot + 1,
                                (size_t)(first_dot - token),
                                (size_t)(second_dot - first_dot - 1),
                                (size_t)(end - second_dot - 1)};
    if (segments->header_length > GW_JWT_HEADER_BYTES_MAX ||
        segments->signature_length > GW_JWT_SIGNATURE_BYTES_MAX) {
        return GW_JWT_TOO_LARGE;
    }
    return GW_JWT_OK;
}

/* The header's algorithm, which must be an RSA one, before anything else is trusted. */
static gw_jwt_status_t gw_header_algorithm(const gw_segments_t *segments,
                                           const gw_algorithm_t **algorithm_out)
{
    json_t *header = NULL;
    gw_jwt_status_t status =
        gw_decode_json_segment(segments->header, segments->header_length, &header);
    if (status != GW_JWT_OK) {
        return status;
    }
    *algorithm_out = gw_find_algorithm(header);
    bool critical = json_object_get(header, "crit") != NULL; /* no extensions are understood */
    json_decref(header);
    return *algorithm_out == NULL || critical ? GW_JWT_ALGORITHM : GW_JWT_OK;
}

gw_jwt_status_t gw_jwt_verify(const gw_jwt_verifier_t *verifier, const char *token, size_t length,
                              int64_t now_s, json_t **payload_out)
{
    *payload_out = NULL;
    gw_segments_t segments;
    const gw_algorithm_t *algorithm = NULL;
    gw_jwt_status_t status = gw_split(token, length, &segments);
    if (status == GW_JWT_OK) {
        status = gw_header_algorithm(&segments, &algorithm);
    }
    if (status != GW_JWT_OK) {
        return status;
    }
    size_t signature_length = 0;
    unsigned char *signature =
        util_base64url_decode(segments.signature, segments.signature_length, &signature_length);
    if (signature == NULL) {
        return GW_JWT_MALFORMED;
    }
    bool verified = gw_verify_signature(verifier, algorithm, segments.header,
                                        (size_t)(segments.signature - 1 - segments.header),
                                        signature, signature_length);
    free(signature);
    if (!verified) {
        return GW_JWT_SIGNATURE;
    }
    json_t *payload = NULL;
    status = gw_decode_json_segment(segments.payload, segments.payload_length, &payload);
    if (status == GW_JWT_OK) {
        status = gw_check_claims(verifier, payload, now_s);
    }
    if (status != GW_JWT_OK) {
        json_decref(payload);
        return status;
    }
    *payload_out = payload;
    return GW_JWT_OK;
}

gw_jwt_status_t gw_jwt_check_lifetime(const json_t *claims, int64_t lifetime_max_s)
{
    double exp, iat;
    if (!gw_numeric_claim(claims, "exp", &exp) || !gw_numeric_claim(claims, "iat", &iat)) {
        return GW_JWT_LIFETIME; /* gw_jwt_verify requires both; refuse rather than assume */
    }
    /* doubles: exp may be any JSON number (1e300 included) without overflow */
    return exp - iat > (double)lifetime_max_s ? GW_JWT_LIFETIME : GW_JWT_OK;
}

bool gw_jwt_signature_sha256_hex(const char *token, size_t length, char hex_out[65])
{
    gw_segments_t segments;
    if (gw_split(token, length, &segments) != GW_JWT_OK) {
        return false;
    }
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)segments.signature, segments.signature_length, digest);
    util_hex(digest, sizeof(digest), hex_out);
    return true;
}

/* Decodes standard base64 (whitespace ignored) into a malloc'd NUL-terminated buffer. */
static char *gw_base64_decode_text(const char *text, size_t length)
{
    char *compact = malloc(length + 1);
    size_t used = 0;
    for (size_t i = 0; compact != NULL && i < length; i++) {
        if (strchr(" \t\r\n", text[i]) == NULL) {
            compact[used++] = text[i];
        }
    }
    if (compact == NULL || used == 0 || used % 4 != 0) {
        free(compact);
        return NULL;
    }
    char *decoded = malloc(used / 4 * 3 + 1);
    int decoded_length = decoded ? EVP_DecodeBlock((unsigned char *)decoded,
                                                   (const unsigned char *)compact, (int)used)
                                 : -1;
    free(compact);
    if (decoded_length < 0) {
        free(decoded);
        return NULL;
    }
    decoded[decoded_length] = '\0';
    return decoded;
}

/* Wix publishes the app key as an SPKI PEM ("-----BEGIN PUBLIC KEY-----"). */
static EVP_PKEY *gw_parse_public_pem(const char *pem)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *key = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    return key;
}

EVP_PKEY *gw_jwt_load_public_key(const char *path, char *error, size_t error_capacity)
{
    size_t length = 0;
    char reason[128];
    char *text = util_read_file(path, GW_KEY_FILE_BYTES_MAX, &length, reason, sizeof(reason));
    if (text == NULL) {
        snprintf(error, error_capacity, "cannot read key file %s: %s", path, reason);
        return NULL;
    }
    char *pem = text;
    if (strstr(text, "-----BEGIN") == NULL) {
        pem = gw_base64_decode_text(text, length); /* base64 of the PEM, as Wix shows it */
    }
    EVP_PKEY *key = pem ? gw_parse_public_pem(pem) : NULL;
    if (pem != text) {
        free(pem);
    }
    free(text);
    if (key == NULL || EVP_PKEY_get_base_id(key) != EVP_PKEY_RSA) {
        snprintf(error, error_capacity, "%s holds no RSA public key (PEM, or base64 of the PEM)",
                 path);
        EVP_PKEY_free(key);
        return NULL;
    }
    return key;
}
