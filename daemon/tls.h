/* tls.h — stockd's TLS server credentials (docs/api.md §6).
 *
 * The certificate, key and client CA bundle are PEM files, re-read when they change: the gRPC
 * core asks for the certificate configuration at every handshake (its config fetcher), and a
 * changed file is loaded then, once its key is checked against its certificate. Connections
 * already made keep their keys, so no call in flight is dropped. A half-written or mismatched
 * pair is logged and ignored until it is whole; the last good one keeps serving. */
#ifndef STOCKD_TLS_H
#define STOCKD_TLS_H

#include <grpc/grpc_security.h>
#include <stdbool.h>
#include <stddef.h>

#define SD_PEM_FILE_BYTES_MAX (1 << 20)

typedef struct sd_tls sd_tls_t;

/* Loads and checks the files (client_ca may be NULL or "": no client certificates are
 * requested). NULL with the reason in error. */
sd_tls_t *sd_tls_open(const char *cert_path, const char *key_path, const char *client_ca_path,
                      char *error, size_t error_capacity);
void sd_tls_free(sd_tls_t *tls);

/* New server credentials that follow the files (one per listener; tls must outlive them).
 * With a client CA, client certificates are requested and verified when sent, not required:
 * callers may identify with a bearer token instead. */
grpc_server_credentials *sd_tls_server_credentials(sd_tls_t *tls);

/* Loads changed files now, as a handshake would (for tests). True when something changed. */
bool sd_tls_reload_if_changed(sd_tls_t *tls);

#endif
