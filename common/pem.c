/* pem.c — see pem.h. */
#include "pem.h"

#include <limits.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>

/* OpenSSL would otherwise prompt on the terminal for an encrypted key's passphrase (and a
 * daemon without a terminal would hang or fail obscurely). */
static int pem_no_passphrase(char *buffer, int size, int rwflag, void *context)
{
    (void)buffer, (void)size, (void)rwflag, (void)context;
    return 0;
}

static BIO *pem_bio(const char *text, size_t length)
{
    return length <= INT_MAX ? BIO_new_mem_buf(text, (int)length) : NULL;
}

pem_pair_result_t pem_check_pair(const char *cert_pem, size_t cert_length, const char *key_pem,
                                 size_t key_length, X509 **cert_out)
{
    BIO *cert_bio = pem_bio(cert_pem, cert_length);
    BIO *key_bio = pem_bio(key_pem, key_length);
    X509 *cert = cert_bio ? PEM_read_bio_X509(cert_bio, NULL, pem_no_passphrase, NULL) : NULL;
    EVP_PKEY *key =
        key_bio ? PEM_read_bio_PrivateKey(key_bio, NULL, pem_no_passphrase, NULL) : NULL;
    pem_pair_result_t result = cert == NULL                             ? PEM_PAIR_NO_CERTIFICATE
                               : key == NULL                            ? PEM_PAIR_NO_KEY
                               : X509_check_private_key(cert, key) != 1 ? PEM_PAIR_MISMATCH
                                                                        : PEM_PAIR_OK;
    ERR_clear_error();
    if (result == PEM_PAIR_OK && cert_out != NULL) {
        *cert_out = cert;
        cert = NULL;
    }
    X509_free(cert);
    EVP_PKEY_free(key);
    BIO_free(cert_bio);
    BIO_free(key_bio);
    return result;
}

size_t pem_certificates_count(const char *text, size_t length)
{
    BIO *bio = pem_bio(text, length);
    size_t count = 0;
    X509 *certificate = NULL;
    while (bio != NULL && (certificate = PEM_read_bio_X509(bio, NULL, pem_no_passphrase, NULL))) {
        X509_free(certificate);
        count++;
    }
    BIO_free(bio);
    ERR_clear_error(); /* the read that ended the loop left its error behind */
    return count;
}
