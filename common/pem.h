/* pem.h — checks of PEM text with OpenSSL, shared by stockd (its server certificate) and
 * libstockclient (a client certificate): a wrong file is named at start, not at every
 * handshake. Never prompts for a passphrase: an encrypted key reads as no key. */
#ifndef STOCKD_PEM_H
#define STOCKD_PEM_H

#include <openssl/x509.h>
#include <stddef.h>

typedef enum {
    PEM_PAIR_OK,
    PEM_PAIR_NO_CERTIFICATE, /* cert_pem holds no PEM certificate */
    PEM_PAIR_NO_KEY,         /* key_pem holds no unencrypted PEM private key */
    PEM_PAIR_MISMATCH,       /* the key does not belong to the certificate */
} pem_pair_result_t;

/* Checks that key_pem holds the private key of the (first) certificate in cert_pem. On
 * PEM_PAIR_OK and cert_out != NULL, *cert_out is that certificate (X509_free it). Leaves no
 * error on OpenSSL's queue. */
pem_pair_result_t pem_check_pair(const char *cert_pem, size_t cert_length, const char *key_pem,
                                 size_t key_length, X509 **cert_out);

/* How many PEM certificates text holds, up to the first thing that is not one. */
size_t pem_certificates_count(const char *text, size_t length);

#endif
