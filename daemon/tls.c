/* tls.c — see tls.h. */
#include "tls.h"

#include <arpa/inet.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "net.h"
#include "pem.h"
#include "util.h"

/* Up to three files: certificate, key, client CA. */
#define SD_TLS_FILES 3

/* One listener's view: the generation it was last given. */
typedef struct sd_tls_listener {
    sd_tls_t *tls;
    uint64_t generation;
    struct sd_tls_listener *next;
} sd_tls_listener_t;

struct sd_tls {
    pthread_mutex_t mutex;
    const char *paths[SD_TLS_FILES];        /* cert, key, client CA (NULL: none) */
    util_file_stamp_t loaded[SD_TLS_FILES]; /* the files as they were when last loaded */
    char *pem[SD_TLS_FILES];                /* the contents in force */
    uint64_t generation;                    /* bumped at every load */
    util_file_stamp_t failed[SD_TLS_FILES]; /* the files as they were at the last failed load */
    bool failed_once;
    sd_tls_listener_t *listeners;
};

enum { SD_TLS_CERT, SD_TLS_KEY, SD_TLS_CLIENT_CA };

/* Checks that the key belongs to the certificate and logs what is being served (an expired
 * certificate is served, with a warning, rather than taking the service down). */
static bool sd_tls_check_pair(const char *cert_pem, const char *key_pem, char *error,
                              size_t error_capacity)
{
    X509 *cert = NULL;
    switch (pem_check_pair(cert_pem, strlen(cert_pem), key_pem, strlen(key_pem), &cert)) {
    case PEM_PAIR_OK:
        break;
    case PEM_PAIR_NO_CERTIFICATE:
        snprintf(error, error_capacity, "certificate: not a PEM certificate");
        return false;
    case PEM_PAIR_NO_KEY:
        snprintf(error, error_capacity, "key: not an unencrypted PEM private key");
        return false;
    case PEM_PAIR_MISMATCH:
        snprintf(error, error_capacity, "the key does not belong to the certificate");
        return false;
    }
    char subject[256];
    X509_NAME_oneline(X509_get_subject_name(cert), subject, sizeof(subject));
    bool expired = X509_cmp_current_time(X509_get0_notAfter(cert)) < 0;
    SD_LOG(expired ? LOG_WARN : LOG_INFO, "tls_certificate_loaded", LF_STR("subject", subject),
           LF_BOOL("expired", expired));
    X509_free(cert);
    return true;
}

/* The files as they are now (unused ones, and ones that cannot be stat'ed, as zeros). */
static void sd_tls_stamps(const sd_tls_t *tls, util_file_stamp_t now[SD_TLS_FILES])
{
    for (int i = 0; i < SD_TLS_FILES; i++) {
        memset(&now[i], 0, sizeof(now[i]));
        if (tls->paths[i] != NULL) {
            util_file_stamp(tls->paths[i], &now[i]);
        }
    }
}

static bool sd_tls_stamps_equal(const util_file_stamp_t *a, const util_file_stamp_t *b)
{
    for (int i = 0; i < SD_TLS_FILES; i++) {
        if (!util_file_stamp_equal(&a[i], &b[i])) {
            return false;
        }
    }
    return true;
}

/* Reads every file, stamped `now` just before (a change after the stamp is seen at the next
 * check); on success replaces what is in force. Called with the mutex held. */
static bool sd_tls_load(sd_tls_t *tls, const util_file_stamp_t now[SD_TLS_FILES], char *error,
                        size_t error_capacity)
{
    static const char *const names[SD_TLS_FILES] = {"--tls-cert", "--tls-key", "--tls-client-ca"};
    char *pem[SD_TLS_FILES] = {NULL, NULL, NULL};
    bool ok = true;
    for (int i = 0; i < SD_TLS_FILES && ok; i++) {
        if (tls->paths[i] == NULL) {
            continue;
        }
        char reason[256];
        size_t length = 0;
        pem[i] =
            util_read_file(tls->paths[i], SD_PEM_FILE_BYTES_MAX, &length, reason, sizeof(reason));
        if (pem[i] == NULL) {
            snprintf(error, error_capacity, "%s %s: %s", names[i], tls->paths[i], reason);
            ok = false;
        }
    }
    ok = ok && sd_tls_check_pair(pem[SD_TLS_CERT], pem[SD_TLS_KEY], error, error_capacity);
    if (!ok) {
        for (int i = 0; i < SD_TLS_FILES; i++) {
            free(pem[i]);
        }
        return false;
    }
    for (int i = 0; i < SD_TLS_FILES; i++) {
        free(tls->pem[i]);
        tls->pem[i] = pem[i];
    }
    memcpy(tls->loaded, now, sizeof(tls->loaded));
    tls->generation++;
    return true;
}

/* Called with the mutex held. A failed reload keeps what is in force, and is not tried (or
 * logged) again until a file changes once more: every handshake, anyone's, calls this. */
static bool sd_tls_refresh(sd_tls_t *tls)
{
    util_file_stamp_t now[SD_TLS_FILES];
    sd_tls_stamps(tls, now);
    if (sd_tls_stamps_equal(now, tls->loaded) ||
        (tls->failed_once && sd_tls_stamps_equal(now, tls->failed))) {
        return false;
    }
    char error[512];
    if (!sd_tls_load(tls, now, error, sizeof(error))) {
        memcpy(tls->failed, now, sizeof(now));
        tls->failed_once = true;
        SD_LOG(LOG_WARN, "tls_reload_failed", LF_STR("error", error),
               LF_STR("action", "serving the previous certificate until the files change "
                                "again"));
        return false;
    }
    tls->failed_once = false;
    SD_LOG(LOG_INFO, "tls_reloaded", LF_UINT("generation", tls->generation));
    return true;
}

bool sd_tls_reload_if_changed(sd_tls_t *tls)
{
    pthread_mutex_lock(&tls->mutex);
    bool changed = sd_tls_refresh(tls);
    pthread_mutex_unlock(&tls->mutex);
    return changed;
}

/* The gRPC core's config fetcher: runs at server start and before every handshake. */
static grpc_ssl_certificate_config_reload_status
sd_tls_fetch(void *user_data, grpc_ssl_server_certificate_config **config)
{
    sd_tls_listener_t *listener = user_data;
    sd_tls_t *tls = listener->tls;
    pthread_mutex_lock(&tls->mutex);
    sd_tls_refresh(tls);
    grpc_ssl_certificate_config_reload_status status = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED;
    if (listener->generation != tls->generation) {
        grpc_ssl_pem_key_cert_pair pair = {tls->pem[SD_TLS_KEY], tls->pem[SD_TLS_CERT]};
        /* The core (1.51) asserts that a fetched config has root certificates, even when no
         * client certificate is requested; then they are never used, so without a client CA
         * the server's own certificate stands in. The core copies the strings. */
        const char *roots =
            tls->pem[SD_TLS_CLIENT_CA] != NULL ? tls->pem[SD_TLS_CLIENT_CA] : tls->pem[SD_TLS_CERT];
        *config = grpc_ssl_server_certificate_config_create(roots, &pair, 1);
        listener->generation = tls->generation;
        status = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_NEW;
    }
    pthread_mutex_unlock(&tls->mutex);
    return status;
}

sd_tls_t *sd_tls_open(const char *cert_path, const char *key_path, const char *client_ca_path,
                      char *error, size_t error_capacity)
{
    sd_tls_t *tls = calloc(1, sizeof(*tls));
    if (tls == NULL) {
        snprintf(error, error_capacity, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&tls->mutex, NULL);
    tls->paths[SD_TLS_CERT] = cert_path;
    tls->paths[SD_TLS_KEY] = key_path;
    tls->paths[SD_TLS_CLIENT_CA] =
        client_ca_path != NULL && client_ca_path[0] != '\0' ? client_ca_path : NULL;
    util_file_stamp_t now[SD_TLS_FILES];
    sd_tls_stamps(tls, now);
    if (!sd_tls_load(tls, now, error, error_capacity)) {
        sd_tls_free(tls);
        return NULL;
    }
    return tls;
}

void sd_tls_free(sd_tls_t *tls)
{
    if (tls == NULL) {
        return;
    }
    while (tls->listeners != NULL) {
        sd_tls_listener_t *next = tls->listeners->next;
        free(tls->listeners);
        tls->listeners = next;
    }
    for (int i = 0; i < SD_TLS_FILES; i++) {
        free(tls->pem[i]);
    }
    pthread_mutex_destroy(&tls->mutex);
    free(tls);
}

grpc_server_credentials *sd_tls_server_credentials(sd_tls_t *tls)
{
    sd_tls_listener_t *listener = calloc(1, sizeof(*listener));
    if (listener == NULL) {
        return NULL;
    }
    pthread_mutex_lock(&tls->mutex);
    listener->tls = tls;
    listener->next = tls->listeners; /* freed with tls: the core may call it until then */
    tls->listeners = listener;
    bool client_ca = tls->paths[SD_TLS_CLIENT_CA] != NULL;
    pthread_mutex_unlock(&tls->mutex);
    grpc_ssl_server_credentials_options *options =
        grpc_ssl_server_credentials_create_options_using_config_fetcher(
            client_ca ? GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY
                      : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
            sd_tls_fetch, listener);
    return options ? grpc_ssl_server_credentials_create_with_options(options) : NULL;
}
