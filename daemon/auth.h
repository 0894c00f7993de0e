/* auth.h — who is calling and what they may do (docs/api.md §6).
 *
 * A policy file names identities: each is known by a bearer token (stored as its SHA-256) or
 * by the subject of a verified client certificate, and holds roles (read, write, admin) over a
 * set of tenants (or every tenant, "*"). The file is re-read when it changes; a file that does
 * not parse is refused at start and, later, logged and ignored (the last good policy stays).
 * Without a policy file every caller is allowed (stockd permits that only on loopback). */
#ifndef STOCKD_AUTH_H
#define STOCKD_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sd_limits.h"

typedef enum {
    SD_ROLE_NONE = 0, /* grpc.health.v1: no identity needed */
    SD_ROLE_READ = 1,
    SD_ROLE_WRITE = 2,
    SD_ROLE_ADMIN = 4,
} sd_role_t;

/* "read", "write", "admin" ("none" for SD_ROLE_NONE). */
const char *sd_role_name(sd_role_t role);

/* Limits of the policy file. */
#define SD_POLICY_FILE_BYTES_MAX (1 << 20)
#define SD_POLICY_IDENTITIES_MAX 1024
#define SD_POLICY_TENANTS_MAX 4096
#define SD_TLS_SUBJECT_BYTES_MAX 253 /* a DNS name */
#define SD_TOKEN_BYTES_MAX 4096
/* Names a client certificate may be matched by (its DNS SANs, or its CN). */
#define SD_TLS_NAMES_MAX 64

typedef struct sd_policy sd_policy_t;
typedef struct sd_identity sd_identity_t;

/* Parses a policy file's text. NULL with the reason, naming the JSON path
 * ("identities[2].roles[0]: ..."), in error. */
sd_policy_t *sd_policy_parse(const char *text, size_t length, char *error, size_t error_capacity);
void sd_policy_release(sd_policy_t *policy);
size_t sd_policy_identities_count(const sd_policy_t *policy);

/* What the caller presented, gathered from the call by the server. */
typedef struct {
    bool has_authorization;      /* an `authorization` metadata entry was sent */
    bool several_authorizations; /* more than one: refused, never guessed between */
    const char *token;           /* the bearer token in it (NULL when not "Bearer <token>") */
    size_t token_length;
    const char *tls_names[SD_TLS_NAMES_MAX]; /* a verified client certificate's names */
    size_t tls_names_lengths[SD_TLS_NAMES_MAX];
    size_t tls_names_count;
} sd_credentials_t;

/* The identity a call was granted, with a reference on the policy it came from, so a reload
 * during the call changes nothing for it. identity is NULL when no policy is in force. */
typedef struct {
    sd_policy_t *policy;
    const sd_identity_t *identity;
    uint64_t generation; /* of the policy: a reload makes a newer one */
} sd_grant_t;

typedef enum {
    SD_AUTH_OK,
    SD_AUTH_UNAUTHENTICATED, /* no credentials, or none the policy knows */
    SD_AUTH_DENIED,          /* a known identity without the role */
} sd_auth_result_t;

typedef struct sd_auth sd_auth_t;

/* Loads the policy at path and starts watching it (checked every reload_interval_ms). With an
 * empty path, every caller is allowed. NULL with the reason in error when the file cannot be
 * read or parsed. */
sd_auth_t *sd_auth_open(const char *path, int64_t reload_interval_ms, char *error,
                        size_t error_capacity);
void sd_auth_free(sd_auth_t *auth);
/* True when a policy is in force (false: everyone is allowed). */
bool sd_auth_enforced(const sd_auth_t *auth);
/* Re-reads the policy file now when it changed (the watcher does this on its own). True when
 * a new policy was installed. */
bool sd_auth_reload_if_changed(sd_auth_t *auth);

/* Identifies the caller and checks that it holds role. On SD_AUTH_OK and SD_AUTH_DENIED
 * *grant holds a reference (release it with sd_grant_release; on DENIED it names who was
 * refused); otherwise message says why (it names the identity and the role for
 * SD_AUTH_DENIED, and never echoes the credentials). */
sd_auth_result_t sd_auth_check(sd_auth_t *auth, const sd_credentials_t *credentials, sd_role_t role,
                               const char *method, sd_grant_t *grant, char *message,
                               size_t message_capacity);
/* Checks a policy directly (sd_auth_check without the file; for tests and the server). */
sd_auth_result_t sd_policy_check(const sd_policy_t *policy, const sd_credentials_t *credentials,
                                 sd_role_t role, const char *method,
                                 const sd_identity_t **identity_out, char *message,
                                 size_t message_capacity);

/* True when the policy was reloaded after the grant was made (long calls, Watch, then check
 * again: a revoked identity must not keep reading). */
bool sd_auth_changed_since(sd_auth_t *auth, const sd_grant_t *grant);

/* True when the grant may touch tenant_id. */
bool sd_grant_allows_tenant(const sd_grant_t *grant, const char *tenant_id);
/* The identity's name; "" when no policy is in force. */
const char *sd_grant_name(const sd_grant_t *grant);
void sd_grant_release(sd_grant_t *grant);

#endif
