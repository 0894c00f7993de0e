/* auth.c — see auth.h. */
#include "auth.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "log.h"
#include "sd_limits.h"
#include "util.h"

struct sd_identity {
    char name[SD_IDENTITY_NAME_BYTES_MAX + 1];
    bool has_token;
    unsigned char token_sha256[SHA256_DIGEST_LENGTH];
    char tls_subject[SD_TLS_SUBJECT_BYTES_MAX + 1]; /* "" = none */
    unsigned roles;                                 /* sd_role_t bits */
    bool all_tenants;
    char **tenants; /* sorted, for bsearch */
    size_t tenants_count;
};

struct sd_policy {
    _Atomic int refs;
    sd_identity_t *identities;
    size_t count;
};

const char *sd_role_name(sd_role_t role)
{
    switch (role) {
    case SD_ROLE_READ:
        return "read";
    case SD_ROLE_WRITE:
        return "write";
    case SD_ROLE_ADMIN:
        return "admin";
    case SD_ROLE_NONE:
        break;
    }
    return "none";
}

/* ---- the policy file ---- */

static void sd_policy_free(sd_policy_t *policy)
{
    for (size_t i = 0; policy->identities != NULL && i < policy->count; i++) {
        for (size_t t = 0; t < policy->identities[i].tenants_count; t++) {
            free(policy->identities[i].tenants[t]);
        }
        free(policy->identities[i].tenants);
    }
    free(policy->identities);
    free(policy);
}

void sd_policy_release(sd_policy_t *policy)
{
    if (policy != NULL && atomic_fetch_sub(&policy->refs, 1) == 1) {
        sd_policy_free(policy);
    }
}

size_t sd_policy_identities_count(const sd_policy_t *policy)
{
    return policy->count;
}

/* Where a parse error is: "identities[2].roles[0]". */
typedef struct {
    char *error;
    size_t capacity;
    size_t index;
} sd_parse_t;

#define SD_PARSE_FAIL(parse, ...)                                                                  \
    do {                                                                                           \
        int used_ =                                                                                \
            snprintf((parse)->error, (parse)->capacity, "identities[%zu].", (parse)->index);       \
        if (used_ >= 0 && (size_t)used_ < (parse)->capacity) {                                     \
            snprintf((parse)->error + used_, (parse)->capacity - (size_t)used_, __VA_ARGS__);      \
        }                                                                                          \
        return false;                                                                              \
    } while (0)

static bool sd_hex_digest(const char *hex, unsigned char digest[SHA256_DIGEST_LENGTH])
{
    if (strlen(hex) != 2 * SHA256_DIGEST_LENGTH) {
        return false;
    }
    for (size_t i = 0; i < SHA256_DIGEST_LENGTH; i++) {
        unsigned value = 0;
        for (size_t k = 0; k < 2; k++) {
            char c = hex[2 * i + k];
            if (c >= '0' && c <= '9') {
                value = value * 16 + (unsigned)(c - '0');
            } else if (c >= 'a' && c <= 'f') {
                value = value * 16 + (unsigned)(c - 'a' + 10);
            } else {
                return false; /* lowercase only: the form sha256sum prints */
            }
        }
        digest[i] = (unsigned char)value;
    }
    return true;
}

static bool sd_parse_name(sd_parse_t *parse, const json_t *value, sd_identity_t *identity)
{
    const char *name = json_string_value(value);
    size_t length = name ? strlen(name) : 0;
    if (name == NULL || length == 0 || length > SD_IDENTITY_NAME_BYTES_MAX ||
        util_identifier_span(name, "._:@-") != length) {
        SD_PARSE_FAIL(parse, "name: must be 1..%d bytes of [A-Za-z0-9._:@-]",
                      SD_IDENTITY_NAME_BYTES_MAX);
    }
    memcpy(identity->name, name, length + 1);
    return true;
}

static bool sd_parse_token(sd_parse_t *parse, const json_t *value, sd_identity_t *identity)
{
    const char *hex = json_string_value(value);
    if (hex == NULL || !sd_hex_digest(hex, identity->token_sha256)) {
        SD_PARSE_FAIL(parse, "token_sha256: must be 64 lowercase hex digits (the SHA-256 of the "
                             "token, as `printf %%s TOKEN | sha256sum` prints it)");
    }
    identity->has_token = true;
    return true;
}

static bool sd_parse_subject(sd_parse_t *parse, const json_t *value, sd_identity_t *identity)
{
    const char *subject = json_string_value(value);
    size_t length = subject ? strlen(subject) : 0;
    /* matched exactly (no wildcards: a "*" would read as one but match only itself); a
     * common name may hold inner spaces ("Warehouse A") */
    if (subject == NULL || length == 0 || length > SD_TLS_SUBJECT_BYTES_MAX ||
        util_identifier_span(subject, "._:@ -") != length || subject[0] == ' ' ||
        subject[length - 1] == ' ') {
        SD_PARSE_FAIL(parse,
                      "tls_subject: must be a DNS name or common name of 1..%d bytes of "
                      "[A-Za-z0-9._:@ -] (no wildcards; no leading or trailing space)",
                      SD_TLS_SUBJECT_BYTES_MAX);
    }
    memcpy(identity->tls_subject, subject, length + 1);
    return true;
}

static bool sd_parse_roles(sd_parse_t *parse, const json_t *value, sd_identity_t *identity)
{
    if (!json_is_array(value) || json_array_size(value) == 0) {
        SD_PARSE_FAIL(parse, "roles: must be a non-empty array of \"read\", \"write\", \"admin\"");
    }
    size_t i;
    const json_t *role;
    json_array_foreach(value, i, role)
    {
        const char *text = json_string_value(role);
        static const sd_role_t roles[] = {SD_ROLE_READ, SD_ROLE_WRITE, SD_ROLE_ADMIN};
        bool known = false;
        for (size_t r = 0; text != NULL && r < sizeof(roles) / sizeof(roles[0]); r++) {
            if (strcmp(text, sd_role_name(roles[r])) == 0) {
                identity->roles |= roles[r];
                known = true;
            }
        }
        if (!known) {
            SD_PARSE_FAIL(parse, "roles[%zu]: must be \"read\", \"write\" or \"admin\"", i);
        }
    }
    return true;
}

static int sd_compare_strings(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool sd_parse_tenants(sd_parse_t *parse, const json_t *value, sd_identity_t *identity)
{
    size_t count = json_array_size(value);
    if (!json_is_array(value) || count == 0 || count > SD_POLICY_TENANTS_MAX) {
        SD_PARSE_FAIL(parse, "tenants: must be an array of 1..%d tenant ids, or [\"*\"]",
                      SD_POLICY_TENANTS_MAX);
    }
    identity->tenants = calloc(count, sizeof(*identity->tenants));
    if (identity->tenants == NULL) {
        SD_PARSE_FAIL(parse, "tenants: out of memory");
    }
    size_t i;
    const json_t *tenant;
    json_array_foreach(value, i, tenant)
    {
        const char *text = json_string_value(tenant);
        if (text != NULL && strcmp(text, "*") == 0) {
            identity->all_tenants = true;
            continue;
        }
        if (text == NULL || !sd_tenant_valid(text, NULL)) {
            SD_PARSE_FAIL(parse,
                          "tenants[%zu]: must be \"*\" or a tenant id of 1..%d bytes of "
                          "[A-Za-z0-9._:-]",
                          i, SD_TENANT_BYTES_MAX);
        }
        identity->tenants[identity->tenants_count] = strdup(text);
        if (identity->tenants[identity->tenants_count++] == NULL) {
            SD_PARSE_FAIL(parse, "tenants: out of memory");
        }
    }
    qsort(identity->tenants, identity->tenants_count, sizeof(*identity->tenants),
          sd_compare_strings);
    return true;
}

typedef struct {
    const char *key;
    bool (*parse)(sd_parse_t *parse, const json_t *value, sd_identity_t *identity);
} sd_key_parser_t;

static const sd_key_parser_t sd_key_parsers[] = {
    {"name", sd_parse_name},           {"token_sha256", sd_parse_token},
    {"tls_subject", sd_parse_subject}, {"roles", sd_parse_roles},
    {"tenants", sd_parse_tenants},     {"description", NULL}, /* free text for operators */
};

static const sd_key_parser_t *sd_key_parser_find(const char *key)
{
    for (size_t i = 0; i < sizeof(sd_key_parsers) / sizeof(sd_key_parsers[0]); i++) {
        if (strcmp(sd_key_parsers[i].key, key) == 0) {
            return &sd_key_parsers[i];
        }
    }
    return NULL;
}

static bool sd_parse_identity(sd_parse_t *parse, const json_t *object, sd_identity_t *identity)
{
    if (!json_is_object(object)) {
        SD_PARSE_FAIL(parse, "must be an object");
    }
    static const char *const required[] = {"name", "tenants", "roles"};
    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
        if (json_object_get(object, required[i]) == NULL) {
            SD_PARSE_FAIL(parse, "%s: is required", required[i]);
        }
    }
    const char *key;
    const json_t *value;
    json_object_foreach((json_t *)object, key, value)
    {
        const sd_key_parser_t *parser = sd_key_parser_find(key);
        if (parser == NULL) {
            SD_PARSE_FAIL(parse,
                          "%s: unknown key (known: name, token_sha256, tls_subject, tenants, "
                          "roles, description)",
                          key);
        }
        if (parser->parse != NULL && !parser->parse(parse, value, identity)) {
            return false;
        }
    }
    if (!identity->has_token && identity->tls_subject[0] == '\0') {
        SD_PARSE_FAIL(parse, "needs token_sha256 or tls_subject (how the identity is known)");
    }
    return true;
}

/* Two identities known by the same token or subject would make the answer depend on order. */
static bool sd_parse_unique(sd_parse_t *parse, const sd_policy_t *policy, size_t index)
{
    const sd_identity_t *identity = &policy->identities[index];
    for (size_t j = 0; j < index; j++) {
        const sd_identity_t *earlier = &policy->identities[j];
        if (strcmp(earlier->name, identity->name) == 0) {
            SD_PARSE_FAIL(parse, "name: \"%s\" is used by identities[%zu] too", identity->name, j);
        }
        if (identity->has_token && earlier->has_token &&
            memcmp(earlier->token_sha256, identity->token_sha256, SHA256_DIGEST_LENGTH) == 0) {
            SD_PARSE_FAIL(parse, "token_sha256: the same token as identities[%zu]", j);
        }
        if (identity->tls_subject[0] != '\0' &&
            strcasecmp(earlier->tls_subject, identity->tls_subject) == 0) {
            SD_PARSE_FAIL(parse, "tls_subject: the same subject as identities[%zu]", j);
        }
    }
    return true;
}

static sd_policy_t *sd_policy_from_json(const json_t *root, char *error, size_t error_capacity)
{
    const json_t *identities = json_object_get(root, "identities");
    size_t count = json_array_size(identities);
    if (!json_is_object(root) || !json_is_array(identities) || json_object_size(root) != 1) {
        snprintf(error, error_capacity,
                 "the policy must be an object with one key, \"identities\", an array");
        return NULL;
    }
    if (count > SD_POLICY_IDENTITIES_MAX) {
        snprintf(error, error_capacity, "identities: at most %d", SD_POLICY_IDENTITIES_MAX);
        return NULL;
    }
    sd_policy_t *policy = calloc(1, sizeof(*policy));
    if (policy == NULL || (policy->identities = calloc(count + 1, sizeof(sd_identity_t))) == NULL) {
        free(policy);
        snprintf(error, error_capacity, "out of memory");
        return NULL;
    }
    atomic_init(&policy->refs, 1);
    sd_parse_t parse = {error, error_capacity, 0};
    error[0] = '\0';
    for (parse.index = 0; parse.index < count; parse.index++) {
        policy->count = parse.index + 1; /* so a failure frees what was parsed */
        if (!sd_parse_identity(&parse, json_array_get(identities, parse.index),
                               &policy->identities[parse.index]) ||
            !sd_parse_unique(&parse, policy, parse.index)) {
            sd_policy_free(policy);
            return NULL;
        }
    }
    policy->count = count;
    return policy;
}

sd_policy_t *sd_policy_parse(const char *text, size_t length, char *error, size_t error_capacity)
{
    json_error_t json_error;
    json_t *root = json_loadb(text, length, JSON_REJECT_DUPLICATES, &json_error);
    if (root == NULL) {
        snprintf(error, error_capacity, "not valid JSON at line %d, column %d: %s", json_error.line,
                 json_error.column, json_error.text);
        return NULL;
    }
    sd_policy_t *policy = sd_policy_from_json(root, error, error_capacity);
    json_decref(root);
    return policy;
}

/* ---- checking a caller ---- */

/* Every identity's digest is compared, match or not, so the time taken does not tell which
 * (or whether an) identity matched. */
static const sd_identity_t *sd_policy_find_token(const sd_policy_t *policy, const char *token,
                                                 size_t token_length)
{
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)token, token_length, digest);
    const sd_identity_t *found = NULL;
    for (size_t i = 0; i < policy->count; i++) {
        const sd_identity_t *identity = &policy->identities[i];
        bool equal = identity->has_token &&
                     CRYPTO_memcmp(identity->token_sha256, digest, sizeof(digest)) == 0;
        found = equal ? identity : found;
    }
    OPENSSL_cleanse(digest, sizeof(digest));
    return found;
}

static const sd_identity_t *sd_policy_find_subject(const sd_policy_t *policy,
                                                   const sd_credentials_t *credentials)
{
    for (size_t n = 0; n < credentials->tls_names_count; n++) {
        for (size_t i = 0; i < policy->count; i++) {
            const sd_identity_t *identity = &policy->identities[i];
            size_t length = strlen(identity->tls_subject);
            if (length > 0 && length == credentials->tls_names_lengths[n] &&
                strncasecmp(identity->tls_subject, credentials->tls_names[n], length) == 0) {
                return identity; /* DNS names are case-insensitive */
            }
        }
    }
    return NULL;
}

sd_auth_result_t sd_policy_check(const sd_policy_t *policy, const sd_credentials_t *credentials,
                                 sd_role_t role, const char *method,
                                 const sd_identity_t **identity_out, char *message,
                                 size_t message_capacity)
{
    const sd_identity_t *identity = NULL;
    if (credentials->has_authorization) {
        if (credentials->several_authorizations) {
            snprintf(message, message_capacity,
                     "send one authorization metadata entry, not several");
            return SD_AUTH_UNAUTHENTICATED;
        }
        if (credentials->token == NULL || credentials->token_length == 0) {
            snprintf(message, message_capacity,
                     "the authorization metadata must be \"Bearer <token>\"");
            return SD_AUTH_UNAUTHENTICATED;
        }
        if (credentials->token_length > SD_TOKEN_BYTES_MAX) {
            snprintf(message, message_capacity, "the bearer token is longer than %d bytes",
                     SD_TOKEN_BYTES_MAX);
            return SD_AUTH_UNAUTHENTICATED;
        }
        identity = sd_policy_find_token(policy, credentials->token, credentials->token_length);
        if (identity == NULL) {
            snprintf(message, message_capacity, "the bearer token is not known to stockd");
            return SD_AUTH_UNAUTHENTICATED;
        }
    } else if (credentials->tls_names_count > 0) {
        identity = sd_policy_find_subject(policy, credentials);
        if (identity == NULL) {
            snprintf(message, message_capacity,
                     "the client certificate (subject \"%.*s\") names no identity of the policy",
                     (int)credentials->tls_names_lengths[0], credentials->tls_names[0]);
            return SD_AUTH_UNAUTHENTICATED;
        }
    } else {
        snprintf(message, message_capacity,
                 "no credentials: send \"authorization: Bearer <token>\" metadata or a client "
                 "certificate");
        return SD_AUTH_UNAUTHENTICATED;
    }
    *identity_out = identity;
    if ((identity->roles & (unsigned)role) == 0) {
        snprintf(message, message_capacity, "identity \"%s\" may not call %s: it lacks the %s role",
                 identity->name, method, sd_role_name(role));
        return SD_AUTH_DENIED;
    }
    return SD_AUTH_OK;
}

bool sd_grant_allows_tenant(const sd_grant_t *grant, const char *tenant_id)
{
    const sd_identity_t *identity = grant->identity;
    if (grant->policy == NULL || identity->all_tenants) {
        return true;
    }
    return bsearch(&tenant_id, identity->tenants, identity->tenants_count,
                   sizeof(*identity->tenants), sd_compare_strings) != NULL;
}

const char *sd_grant_name(const sd_grant_t *grant)
{
    return grant->identity != NULL ? grant->identity->name : "";
}

void sd_grant_release(sd_grant_t *grant)
{
    sd_policy_release(grant->policy);
    grant->policy = NULL;
    grant->identity = NULL;
    grant->generation = 0;
}

/* ---- the policy file, watched ---- */

struct sd_auth {
    char *path; /* NULL: no policy, everyone allowed */
    int64_t reload_interval_ms;
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    sd_policy_t *policy; /* under mutex */
    util_file_stamp_t stamp;
    _Atomic uint64_t generation; /* bumped under mutex by every install; read without it */
    bool stopping;
    bool watching;
    pthread_t watcher;
};

static sd_policy_t *sd_policy_load(const char *path, char *error, size_t error_capacity)
{
    size_t length = 0;
    char reason[256];
    char *text = util_read_file(path, SD_POLICY_FILE_BYTES_MAX, &length, reason, sizeof(reason));
    if (text == NULL) {
        snprintf(error, error_capacity, "%s: %s", path, reason);
        return NULL;
    }
    char parse_error[512];
    sd_policy_t *policy = sd_policy_parse(text, length, parse_error, sizeof(parse_error));
    free(text);
    if (policy == NULL) {
        snprintf(error, error_capacity, "%s: %s", path, parse_error);
    }
    return policy;
}

bool sd_auth_reload_if_changed(sd_auth_t *auth)
{
    util_file_stamp_t stamp;
    if (auth->path == NULL || !util_file_stamp(auth->path, &stamp)) {
        return false; /* gone for a moment (being replaced): keep the last good policy */
    }
    pthread_mutex_lock(&auth->mutex);
    bool changed = !util_file_stamp_equal(&stamp, &auth->stamp);
    auth->stamp = stamp; /* a bad file is reported once, not every interval */
    pthread_mutex_unlock(&auth->mutex);
    if (!changed) {
        return false;
    }
    char error[768];
    sd_policy_t *policy = sd_policy_load(auth->path, error, sizeof(error));
    if (policy == NULL) {
        SD_LOG(LOG_ERROR, "auth_policy_reload_failed", LF_STR("error", error),
               LF_STR("action", "keeping the policy in force; fix the file"));
        return false;
    }
    pthread_mutex_lock(&auth->mutex);
    sd_policy_t *old = auth->policy;
    auth->policy = policy;
    auth->generation++;
    pthread_mutex_unlock(&auth->mutex);
    sd_policy_release(old); /* calls still holding it keep it until they end */
    SD_LOG(LOG_INFO, "auth_policy_loaded", LF_STR("path", auth->path),
           LF_UINT("identities", sd_policy_identities_count(policy)));
    return true;
}

static void *sd_auth_watch(void *argument)
{
    sd_auth_t *auth = argument;
    pthread_mutex_lock(&auth->mutex);
    while (!auth->stopping) {
        struct timespec until =
            util_time_after_us(CLOCK_REALTIME, (int64_t)auth->reload_interval_ms * 1000);
        pthread_cond_timedwait(&auth->wake, &auth->mutex, &until);
        if (auth->stopping) {
            break;
        }
        pthread_mutex_unlock(&auth->mutex);
        sd_auth_reload_if_changed(auth);
        pthread_mutex_lock(&auth->mutex);
    }
    pthread_mutex_unlock(&auth->mutex);
    return NULL;
}

sd_auth_t *sd_auth_open(const char *path, int64_t reload_interval_ms, char *error,
                        size_t error_capacity)
{
    sd_auth_t *auth = calloc(1, sizeof(*auth));
    if (auth == NULL) {
        snprintf(error, error_capacity, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&auth->mutex, NULL);
    pthread_cond_init(&auth->wake, NULL);
    auth->reload_interval_ms = reload_interval_ms > 0 ? reload_interval_ms : 1000;
    if (path == NULL || path[0] == '\0') {
        return auth;
    }
    auth->path = strdup(path);
    if (auth->path == NULL || !util_file_stamp(path, &auth->stamp) ||
        (auth->policy = sd_policy_load(path, error, error_capacity)) == NULL) {
        if (auth->path != NULL && auth->policy == NULL && error[0] == '\0') {
            snprintf(error, error_capacity, "%s: cannot open: %s", path, strerror(errno));
        }
        sd_auth_free(auth);
        return NULL;
    }
    SD_LOG(LOG_INFO, "auth_policy_loaded", LF_STR("path", path),
           LF_UINT("identities", sd_policy_identities_count(auth->policy)));
    auth->watching = pthread_create(&auth->watcher, NULL, sd_auth_watch, auth) == 0;
    if (!auth->watching) {
        snprintf(error, error_capacity, "cannot start the policy watcher");
        sd_auth_free(auth);
        return NULL;
    }
    return auth;
}

void sd_auth_free(sd_auth_t *auth)
{
    if (auth == NULL) {
        return;
    }
    if (auth->watching) {
        pthread_mutex_lock(&auth->mutex);
        auth->stopping = true;
        pthread_cond_signal(&auth->wake);
        pthread_mutex_unlock(&auth->mutex);
        pthread_join(auth->watcher, NULL);
    }
    sd_policy_release(auth->policy);
    free(auth->path);
    pthread_mutex_destroy(&auth->mutex);
    pthread_cond_destroy(&auth->wake);
    free(auth);
}

bool sd_auth_enforced(const sd_auth_t *auth)
{
    return auth->path != NULL;
}

sd_auth_result_t sd_auth_check(sd_auth_t *auth, const sd_credentials_t *credentials, sd_role_t role,
                               const char *method, sd_grant_t *grant, char *message,
                               size_t message_capacity)
{
    *grant = (sd_grant_t){NULL, NULL, 0};
    if (auth->path == NULL) {
        return SD_AUTH_OK; /* no policy: loopback only, everyone allowed */
    }
    pthread_mutex_lock(&auth->mutex);
    sd_policy_t *policy = auth->policy;
    uint64_t generation = auth->generation;
    atomic_fetch_add(&policy->refs, 1);
    pthread_mutex_unlock(&auth->mutex);
    const sd_identity_t *identity = NULL;
    sd_auth_result_t result =
        sd_policy_check(policy, credentials, role, method, &identity, message, message_capacity);
    if (result == SD_AUTH_UNAUTHENTICATED) {
        sd_policy_release(policy);
        return result;
    }
    *grant = (sd_grant_t){policy, identity, generation};
    return result;
}

bool sd_auth_changed_since(sd_auth_t *auth, const sd_grant_t *grant)
{
    if (auth->path == NULL) {
        return false;
    }
    /* a Watch asks before every entry it sends: no lock on that path */
    return atomic_load(&auth->generation) != grant->generation;
}
