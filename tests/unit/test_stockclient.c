/* test_stockclient.c — libstockclient's security options (docs/api.md §6), without a server:
 * bearer token rules, token files (first line, size limit), the TLS files a client reads (size
 * limit, NUL bytes, PEM checks, a key that must match its certificate, no passphrase prompt),
 * the stockd-on-behalf-of rules, and the status names a client meets. Certificates and keys
 * are made here with OpenSSL, in a temporary directory that is removed afterwards. */
#include <grpc/grpc.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "stockclient.h"

typedef struct {
    char dir[64];
    char path[256]; /* scratch: the last path made by tc_path */
} tc_files_t;

static const char *tc_path(tc_files_t *files, const char *name)
{
    snprintf(files->path, sizeof(files->path), "%s/%s", files->dir, name);
    return files->path;
}

/* Writes length bytes of data to dir/name; returns its path (malloc'd: the caller frees it). */
static char *tc_write(tc_files_t *files, const char *name, const void *data, size_t length)
{
    char *path = strdup(tc_path(files, name));
    FILE *file = fopen(path, "wb");
    assert_non_null(file);
    assert_int_equal(fwrite(data, 1, length, file), length);
    assert_int_equal(fclose(file), 0);
    return path;
}

static char *tc_write_text(tc_files_t *files, const char *name, const char *text)
{
    return tc_write(files, name, text, strlen(text));
}

/* A fresh P-256 key and a self-signed certificate for it, written as PEM to dir/<name>.key
 * and dir/<name>.pem; encrypt_key writes the key encrypted under a passphrase. */
static void tc_make_pair(tc_files_t *files, const char *name, bool encrypt_key)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    assert_non_null(key);
    X509 *certificate = X509_new();
    ASN1_INTEGER_set(X509_get_serialNumber(certificate), 1);
    X509_gmtime_adj(X509_getm_notBefore(certificate), 0);
    X509_gmtime_adj(X509_getm_notAfter(certificate), 3600);
    X509_set_pubkey(certificate, key);
    X509_NAME *subject = X509_get_subject_name(certificate);
    X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC, (const unsigned char *)name, -1, -1, 0);
    X509_set_issuer_name(certificate, subject);
    assert_true(X509_sign(certificate, key, EVP_sha256()) > 0);
    char file_name[64];
    snprintf(file_name, sizeof(file_name), "%s.pem", name);
    FILE *out = fopen(tc_path(files, file_name), "w");
    assert_true(out != NULL && PEM_write_X509(out, certificate) == 1);
    fclose(out);
    snprintf(file_name, sizeof(file_name), "%s.key", name);
    out = fopen(tc_path(files, file_name), "w");
    assert_non_null(out);
    assert_int_equal(PEM_write_PrivateKey(out, key, encrypt_key ? EVP_aes_256_cbc() : NULL,
                                          (unsigned char *)"passphrase", encrypt_key ? 10 : 0, NULL,
                                          NULL),
                     1);
    fclose(out);
    X509_free(certificate);
    EVP_PKEY_free(key);
}

static int tc_setup(void **state)
{
    tc_files_t *files = calloc(1, sizeof(*files));
    if (files == NULL) {
        return -1;
    }
    snprintf(files->dir, sizeof(files->dir), "/tmp/stockclient-unit-XXXXXX");
    if (mkdtemp(files->dir) == NULL) {
        free(files);
        return -1;
    }
    tc_make_pair(files, "alpha", false);
    tc_make_pair(files, "beta", false);
    tc_make_pair(files, "locked", true);
    *state = files;
    return 0;
}

static int tc_teardown(void **state)
{
    tc_files_t *files = *state;
    char command[128];
    snprintf(command, sizeof(command), "rm -rf '%s'", files->dir);
    int removed = system(command);
    free(files);
    return removed == 0 ? 0 : -1;
}

static void test_token_rules(void **state)
{
    (void)state;
    char error[SC_ERROR_BYTES];
    assert_true(sc_token_valid("a", error, sizeof(error)));
    assert_true(sc_token_valid("eyJhbGciOi.J9-_~+/=", error, sizeof(error)));
    assert_false(sc_token_valid("", error, sizeof(error)));
    assert_non_null(strstr(error, "empty"));
    assert_false(sc_token_valid("two words", error, sizeof(error)));
    assert_non_null(strstr(error, "character 4 is a space"));
    assert_null(strstr(error, "words")); /* never quotes the token */
    assert_false(sc_token_valid("tab\there", error, sizeof(error)));
    assert_false(sc_token_valid("caf\xc3\xa9", error, sizeof(error)));
    assert_false(sc_token_valid("del\x7f", error, sizeof(error)));
    assert_false(sc_token_valid("x y", NULL, 0)); /* no room for a reason is fine */
    char longest[SC_TOKEN_BYTES_MAX + 2];
    memset(longest, 'k', SC_TOKEN_BYTES_MAX);
    longest[SC_TOKEN_BYTES_MAX] = '\0';
    assert_true(sc_token_valid(longest, error, sizeof(error)));
    longest[SC_TOKEN_BYTES_MAX] = 'k';
    longest[SC_TOKEN_BYTES_MAX + 1] = '\0';
    assert_false(sc_token_valid(longest, error, sizeof(error)));
    assert_non_null(strstr(error, "longer than 4096 bytes"));
}

/* Reads path as a token file: true, or false with the reason in error. */
static bool tc_read_token(const char *path, char token[SC_TOKEN_BYTES_MAX + 1],
                          char error[SC_ERROR_BYTES])
{
    return sc_token_read_file(path, token, SC_TOKEN_BYTES_MAX + 1, error, SC_ERROR_BYTES);
}

/* --token or --token-file, never both; the file's token goes into the buffer. */
static void test_token_source(void **state)
{
    tc_files_t *files = *state;
    char buffer[SC_TOKEN_BYTES_MAX + 1], error[SC_ERROR_BYTES];
    const char *token = NULL;
    char *path = tc_write_text(files, "tok-source", "from-file\n");
    assert_int_equal(sc_token_resolve("", "", buffer, &token, error, sizeof(error)),
                     SC_TOKEN_SOURCE_OK);
    assert_string_equal(token, "");
    assert_int_equal(sc_token_resolve("flag", "", buffer, &token, error, sizeof(error)),
                     SC_TOKEN_SOURCE_OK);
    assert_string_equal(token, "flag");
    assert_int_equal(sc_token_resolve("", path, buffer, &token, error, sizeof(error)),
                     SC_TOKEN_SOURCE_OK);
    assert_string_equal(token, "from-file");
    assert_ptr_equal(token, buffer);
    assert_int_equal(sc_token_resolve("flag", path, buffer, &token, error, sizeof(error)),
                     SC_TOKEN_SOURCE_BOTH);
    free(path);
    path = tc_write_text(files, "tok-source-bad", "a b\n");
    assert_int_equal(sc_token_resolve(NULL, path, buffer, &token, error, sizeof(error)),
                     SC_TOKEN_SOURCE_FILE_BAD);
    assert_non_null(strstr(error, "a space"));
    free(path);
}

static void test_token_file_first_line(void **state)
{
    tc_files_t *files = *state;
    char token[SC_TOKEN_BYTES_MAX + 1], error[SC_ERROR_BYTES];
    const char *cases[][2] = {
        {"tok-lf", "abc\n"},           {"tok-crlf", "abc\r\nignored second line\n"},
        {"tok-bare", "abc"},           {"tok-cr-end", "abc\r"},
        {"tok-more", "abc\n# note\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *path = tc_write_text(files, cases[i][0], cases[i][1]);
        assert_true(tc_read_token(path, token, error));
        assert_string_equal(token, "abc");
        free(path);
    }
    const char *refused[][3] = {
        {"tok-empty", "", "empty"},
        {"tok-blank-line", "\nabc\n", "empty"},
        {"tok-space", "a b\n", "a space"},
        {"tok-lone-cr", "abc\rdef\n", "carriage return"},
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        char *path = tc_write_text(files, refused[i][0], refused[i][1]);
        assert_false(tc_read_token(path, token, error));
        assert_non_null(strstr(error, refused[i][2]));
        assert_non_null(strstr(error, path)); /* the file is named */
        assert_string_equal(token, "");
        free(path);
    }
    assert_false(tc_read_token(tc_path(files, "missing"), token, error));
    assert_non_null(strstr(error, "No such file"));
}

static void test_token_file_limits(void **state)
{
    tc_files_t *files = *state;
    char token[SC_TOKEN_BYTES_MAX + 1], error[SC_ERROR_BYTES];
    char *text = calloc(SC_TOKEN_FILE_BYTES_MAX + 2, 1);
    memset(text, 't', SC_TOKEN_BYTES_MAX);
    text[SC_TOKEN_BYTES_MAX] = '\n';
    memset(text + SC_TOKEN_BYTES_MAX + 1, '#', SC_TOKEN_FILE_BYTES_MAX - SC_TOKEN_BYTES_MAX);
    /* exactly the file limit, the longest token on its first line: read */
    char *path = tc_write(files, "tok-max", text, SC_TOKEN_FILE_BYTES_MAX);
    assert_true(tc_read_token(path, token, error));
    assert_int_equal(strlen(token), SC_TOKEN_BYTES_MAX);
    free(path);
    /* one byte over the file limit: refused whole */
    path = tc_write(files, "tok-big", text, SC_TOKEN_FILE_BYTES_MAX + 1);
    assert_false(tc_read_token(path, token, error));
    assert_non_null(strstr(error, "larger than 65536 bytes"));
    free(path);
    /* a first line one byte longer than a token */
    text[SC_TOKEN_BYTES_MAX] = 't';
    text[SC_TOKEN_BYTES_MAX + 1] = '\n';
    path = tc_write(files, "tok-long", text, SC_TOKEN_BYTES_MAX + 2);
    assert_false(tc_read_token(path, token, error));
    assert_non_null(strstr(error, "longer than 4096 bytes"));
    free(path);
    /* a NUL (a UTF-16 file, say) would cut the token short: refused */
    path = tc_write(files, "tok-nul", "a\0b\0\n\0", 6);
    assert_false(tc_read_token(path, token, error));
    assert_non_null(strstr(error, "NUL"));
    free(path);
    free(text);
}

/* sc_client_new_with with these options: the client (freed here) made, or its reason. */
static bool tc_client(const sc_client_options_t *options, char error[SC_ERROR_BYTES])
{
    sc_client_t *client = sc_client_new_with("127.0.0.1:1", options, error, SC_ERROR_BYTES);
    sc_client_free(client);
    return client != NULL;
}

static void test_tls_files(void **state)
{
    tc_files_t *files = *state;
    char error[SC_ERROR_BYTES];
    char *ca = strdup(tc_path(files, "alpha.pem"));
    char *cert = strdup(tc_path(files, "beta.pem"));
    char *key = strdup(tc_path(files, "beta.key"));
    char *other_key = strdup(tc_path(files, "alpha.key"));
    char *locked_cert = strdup(tc_path(files, "locked.pem"));
    char *locked_key = strdup(tc_path(files, "locked.key"));
    assert_true(tc_client(&(sc_client_options_t){.tls_ca = ca}, error));
    assert_true(
        tc_client(&(sc_client_options_t){.tls_ca = ca, .tls_cert = cert, .tls_key = key}, error));
    assert_false(tc_client(&(sc_client_options_t){.tls_ca = ca, .tls_cert = cert}, error));
    assert_non_null(strstr(error, "needs its private key"));
    assert_false(tc_client(&(sc_client_options_t){.tls_key = key}, error));
    assert_non_null(strstr(error, "needs its certificate"));
    assert_false(tc_client(&(sc_client_options_t){.tls_cert = cert, .tls_key = other_key}, error));
    assert_non_null(strstr(error, "does not match the certificate"));
    /* an encrypted key is refused, never prompted for */
    assert_false(
        tc_client(&(sc_client_options_t){.tls_cert = locked_cert, .tls_key = locked_key}, error));
    assert_non_null(strstr(error, "no unencrypted PEM private key"));
    /* a key where the certificate belongs */
    assert_false(tc_client(&(sc_client_options_t){.tls_cert = key, .tls_key = key}, error));
    assert_non_null(strstr(error, "holds no PEM certificate"));
    assert_false(tc_client(&(sc_client_options_t){.tls_ca = tc_path(files, "none.pem")}, error));
    assert_non_null(strstr(error, "TLS CA file"));
    assert_non_null(strstr(error, "No such file"));
    char *not_pem = tc_write_text(files, "not.pem", "hello\n");
    assert_false(tc_client(&(sc_client_options_t){.tls_ca = not_pem}, error));
    assert_non_null(strstr(error, "holds no PEM certificate"));
    free(not_pem);
    free(locked_key);
    free(locked_cert);
    free(other_key);
    free(key);
    free(cert);
    free(ca);
}

static void test_tls_file_limits(void **state)
{
    tc_files_t *files = *state;
    char error[SC_ERROR_BYTES];
    /* a CA bundle padded past 1 MiB with comment lines PEM allows between blocks */
    size_t length = 0;
    FILE *source = fopen(tc_path(files, "alpha.pem"), "rb");
    assert_non_null(source);
    char *text = calloc(SC_PEM_FILE_BYTES_MAX + 2, 1);
    length = fread(text, 1, SC_PEM_FILE_BYTES_MAX, source);
    fclose(source);
    memset(text + length, '\n', SC_PEM_FILE_BYTES_MAX + 1 - length);
    char *path = tc_write(files, "big.pem", text, SC_PEM_FILE_BYTES_MAX);
    assert_true(tc_client(&(sc_client_options_t){.tls_ca = path}, error)); /* at the limit */
    free(path);
    path = tc_write(files, "bigger.pem", text, SC_PEM_FILE_BYTES_MAX + 1);
    assert_false(tc_client(&(sc_client_options_t){.tls_ca = path}, error));
    assert_non_null(strstr(error, "larger than 1048576 bytes"));
    free(path);
    /* a NUL would cut the PEM text gRPC sees */
    text[length] = '\0';
    path = tc_write(files, "nul.pem", text, length + 1);
    assert_false(tc_client(&(sc_client_options_t){.tls_ca = path}, error));
    assert_non_null(strstr(error, "NUL"));
    free(path);
    free(text);
}

static void test_token_option(void **state)
{
    (void)state;
    char error[SC_ERROR_BYTES];
    assert_true(tc_client(&(sc_client_options_t){.token = "t0ken"}, error));
    assert_true(tc_client(&(sc_client_options_t){.token = ""}, error)); /* "" = none */
    assert_false(tc_client(&(sc_client_options_t){.token = "bad token"}, error));
    assert_non_null(strstr(error, "a space"));
    assert_true(sc_client_new("127.0.0.1:1", &(sc_client_options_t){.token = "bad token"}) == NULL);
    /* the metadata stockbench sends on its own calls */
    sc_client_t *client = sc_client_new_with(
        "127.0.0.1:1", &(sc_client_options_t){.token = "t0ken"}, error, sizeof(error));
    grpc_metadata metadata[SC_METADATA_MAX];
    assert_int_equal(sc_client_metadata(client, metadata), 1);
    assert_int_equal(grpc_slice_str_cmp(metadata[0].key, "authorization"), 0);
    assert_int_equal(grpc_slice_str_cmp(metadata[0].value, "Bearer t0ken"), 0);
    sc_client_free(client);
    client = sc_client_new("127.0.0.1:1", NULL);
    assert_int_equal(sc_client_metadata(client, metadata), 0);
    sc_client_free(client);
}

/* A write with on_behalf_of to an address where nothing listens: code as the call ended. */
static int tc_write_on_behalf_of(sc_client_t *client, const char *on_behalf_of, sc_status_t *status)
{
    Stockd__V1__IncrementRequest request = STOCKD__V1__INCREMENT_REQUEST__INIT;
    request.tenant_id = "t";
    Stockd__V1__IncrementResponse *response = NULL;
    sc_call_options_t options = {.deadline_ms = 2000, .on_behalf_of = on_behalf_of};
    int code = sc_increment_with(client, &request, &response, &options, status);
    assert_null(response);
    return code;
}

static void test_on_behalf_of_rules(void **state)
{
    (void)state;
    sc_client_t *client = sc_client_new("127.0.0.1:1", &(sc_client_options_t){.token = "t0ken"});
    sc_status_t status;
    char longest[SD_ON_BEHALF_OF_BYTES_MAX + 2];
    memset(longest, 'w', sizeof(longest) - 1);
    longest[SD_ON_BEHALF_OF_BYTES_MAX] = '\0';
    /* sendable: the call is made with legal metadata and finds nothing listening (or, slowed
     * down under valgrind, runs out of time trying) */
    const char *sendable[] = {NULL, "", "wix-instance:site-1", "a b", longest};
    for (size_t i = 0; i < sizeof(sendable) / sizeof(sendable[0]); i++) {
        int code = tc_write_on_behalf_of(client, sendable[i], &status);
        assert_true(code == GRPC_STATUS_UNAVAILABLE || code == GRPC_STATUS_DEADLINE_EXCEEDED);
        assert_string_not_equal(status.request_id, "");
        sc_status_free(&status);
    }
    /* refused before anything is sent */
    longest[SD_ON_BEHALF_OF_BYTES_MAX] = 'w';
    const char *refused[] = {"line\nbreak", "caf\xc3\xa9", longest};
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        assert_int_equal(tc_write_on_behalf_of(client, refused[i], &status),
                         GRPC_STATUS_INVALID_ARGUMENT);
        assert_non_null(strstr(status.message, "on_behalf_of"));
        sc_status_free(&status);
    }
    sc_client_free(client);
}

static void test_code_names(void **state)
{
    (void)state;
    assert_string_equal(sc_code_name(GRPC_STATUS_UNAUTHENTICATED), "UNAUTHENTICATED");
    assert_string_equal(sc_code_name(GRPC_STATUS_PERMISSION_DENIED), "PERMISSION_DENIED");
    assert_string_equal(sc_code_name(GRPC_STATUS_DATA_LOSS), "DATA_LOSS");
    assert_string_equal(sc_code_name(GRPC_STATUS_OK), "OK");
    assert_string_equal(sc_code_name(99), "UNRECOGNISED");
    assert_string_equal(sc_code_name(-1), "UNRECOGNISED");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token_rules),
        cmocka_unit_test(test_token_source),
        cmocka_unit_test(test_token_file_first_line),
        cmocka_unit_test(test_token_file_limits),
        cmocka_unit_test(test_tls_files),
        cmocka_unit_test(test_tls_file_limits),
        cmocka_unit_test(test_token_option),
        cmocka_unit_test(test_on_behalf_of_rules),
        cmocka_unit_test(test_code_names),
    };
    grpc_init();
    int failed = cmocka_run_group_tests(tests, tc_setup, tc_teardown);
    sc_thread_release();
    grpc_shutdown();
    return failed;
}
