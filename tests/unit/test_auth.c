/* Unit tests for auth.c: the policy file's parser (every refusal names its place), token and
 * certificate-subject identification, roles, tenants, and reloading a changed file. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/sha.h>

#include "auth.h"

static char policy_text[4096];

/* A policy with a token identity (hash computed by the test) and a certificate identity. */
static const char *policy_with(const char *token_hex)
{
    snprintf(policy_text, sizeof(policy_text),
             "{\"identities\": ["
             "{\"name\": \"warehouse\", \"token_sha256\": \"%s\", \"tenants\": [\"t2\", \"t1\"],"
             " \"roles\": [\"read\", \"write\"]},"
             "{\"name\": \"gateway\", \"tls_subject\": \"stockd-gateway\", \"tenants\": [\"*\"],"
             " \"roles\": [\"write\"], \"description\": \"the Wix gateway\"}]}",
             token_hex);
    return policy_text;
}

/* The hex SHA-256 of a token, as `printf %s TOKEN | sha256sum` prints it. */
static void sha256_hex(const char *text, char out[65])
{
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)text, strlen(text), digest);
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++) {
        snprintf(out + 2 * i, 3, "%02x", digest[i]);
    }
}

static sd_policy_t *parse(const char *text, char *error, size_t capacity)
{
    return sd_policy_parse(text, strlen(text), error, capacity);
}

static sd_credentials_t token_credentials(const char *token)
{
    sd_credentials_t credentials;
    memset(&credentials, 0, sizeof(credentials));
    credentials.has_authorization = true;
    credentials.token = token;
    credentials.token_length = token ? strlen(token) : 0;
    return credentials;
}

static void test_parse_refusals_name_their_place(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *expected;
    } cases[] = {
        {"{", "not valid JSON"},
        {"[]", "one key, \"identities\""},
        {"{\"identities\": [], \"extra\": 1}", "one key"},
        {"{\"identities\": [{\"name\": \"a\", \"tenants\": [\"*\"]}]}", "identities[0].roles"},
        {"{\"identities\": [{\"name\": \"a\", \"tenants\": [\"*\"], \"roles\": [\"wirte\"],"
         " \"tls_subject\": \"a\"}]}",
         "identities[0].roles[0]"},
        {"{\"identities\": [{\"name\": \"a\", \"tenants\": [\"bad tenant\"], \"roles\": [\"read\"],"
         " \"tls_subject\": \"a\"}]}",
         "identities[0].tenants[0]"},
        {"{\"identities\": [{\"name\": \"a\", \"tenants\": [\"*\"], \"roles\": [\"read\"],"
         " \"token_sha256\": \"ABCDEF\"}]}",
         "identities[0].token_sha256"},
        {"{\"identities\": [{\"name\": \"a\", \"tenants\": [\"*\"], \"roles\": [\"read\"]}]}",
         "needs token_sha256 or tls_subject"},
        {"{\"identities\": [{\"name\": \"a\", \"tenant\": [\"*\"], \"tenants\": [\"*\"],"
         " \"roles\": [\"read\"], \"tls_subject\": \"a\"}]}",
         "tenant: unknown key"},
        {"{\"identities\": [{\"name\": \"a\", \"tenants\": [\"*\"], \"roles\": [\"read\"],"
         " \"tls_subject\": \"a\"}, {\"name\": \"a\", \"tenants\": [\"*\"], \"roles\": [\"read\"],"
         " \"tls_subject\": \"b\"}]}",
         "identities[1].name"},
        {"{\"identities\": [{\"name\": \"a\", \"tenants\": [\"*\"], \"roles\": [\"read\"],"
         " \"tls_subject\": \"same\"}, {\"name\": \"b\", \"tenants\": [\"*\"], \"roles\": "
         "[\"read\"],"
         " \"tls_subject\": \"SAME\"}]}",
         "identities[1].tls_subject"},
        {"{\"identities\": [{\"name\": \"a\", \"name\": \"b\"}]}", "not valid JSON"},
        {"{\"identities\": [{\"name\": \"a\", \"tenants\": [\"*\"], \"roles\": [\"read\"],"
         " \"tls_subject\": \"*.example.com\"}]}",
         "no wildcards"},
        {"{\"identities\": [{\"name\": \"a\", \"tenants\": [\"*\"], \"roles\": [\"read\"],"
         " \"tls_subject\": \" padded\"}]}",
         "identities[0].tls_subject"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char error[512] = "";
        sd_policy_t *policy = parse(cases[i].text, error, sizeof(error));
        if (policy != NULL || strstr(error, cases[i].expected) == NULL) {
            fail_msg("case %zu: expected \"%s\", got \"%s\"", i, cases[i].expected, error);
        }
    }
}

static void test_token_identifies_and_roles_and_tenants_are_checked(void **state)
{
    (void)state;
    char hex[65], error[512], message[320];
    sha256_hex("secret-token", hex);
    sd_policy_t *policy = parse(policy_with(hex), error, sizeof(error));
    assert_non_null(policy);
    assert_int_equal(sd_policy_identities_count(policy), 2);
    const sd_identity_t *identity = NULL;
    sd_credentials_t good = token_credentials("secret-token");
    assert_int_equal(sd_policy_check(policy, &good, SD_ROLE_WRITE, "Decrement", &identity, message,
                                     sizeof(message)),
                     SD_AUTH_OK);
    sd_grant_t grant = {policy, identity, 0};
    assert_string_equal(sd_grant_name(&grant), "warehouse");
    assert_true(sd_grant_allows_tenant(&grant, "t1"));
    assert_true(sd_grant_allows_tenant(&grant, "t2"));
    assert_false(sd_grant_allows_tenant(&grant, "t3"));
    assert_false(sd_grant_allows_tenant(&grant, "t"));
    /* the admin role was not granted: denied, naming identity, method and role */
    assert_int_equal(sd_policy_check(policy, &good, SD_ROLE_ADMIN, "Admin.Checkpoint", &identity,
                                     message, sizeof(message)),
                     SD_AUTH_DENIED);
    assert_non_null(strstr(message, "warehouse"));
    assert_non_null(strstr(message, "Admin.Checkpoint"));
    assert_non_null(strstr(message, "admin"));
    /* a wrong token, an empty one, a malformed header, nothing at all */
    sd_credentials_t wrong = token_credentials("secret-token!");
    assert_int_equal(sd_policy_check(policy, &wrong, SD_ROLE_READ, "GetStock", &identity, message,
                                     sizeof(message)),
                     SD_AUTH_UNAUTHENTICATED);
    assert_null(strstr(message, "secret")); /* never echoed */
    sd_credentials_t malformed = token_credentials(NULL);
    assert_int_equal(sd_policy_check(policy, &malformed, SD_ROLE_READ, "GetStock", &identity,
                                     message, sizeof(message)),
                     SD_AUTH_UNAUTHENTICATED);
    sd_credentials_t none;
    memset(&none, 0, sizeof(none));
    assert_int_equal(sd_policy_check(policy, &none, SD_ROLE_READ, "GetStock", &identity, message,
                                     sizeof(message)),
                     SD_AUTH_UNAUTHENTICATED);
    sd_policy_release(policy);
}

static void test_certificate_subject_identifies(void **state)
{
    (void)state;
    char hex[65], error[512], message[320];
    sha256_hex("secret-token", hex);
    sd_policy_t *policy = parse(policy_with(hex), error, sizeof(error));
    assert_non_null(policy);
    sd_credentials_t credentials;
    memset(&credentials, 0, sizeof(credentials));
    credentials.tls_names[0] = "other.example";
    credentials.tls_names_lengths[0] = strlen("other.example");
    credentials.tls_names[1] = "Stockd-Gateway"; /* DNS names compare without case */
    credentials.tls_names_lengths[1] = strlen("Stockd-Gateway");
    credentials.tls_names_count = 2;
    const sd_identity_t *identity = NULL;
    assert_int_equal(sd_policy_check(policy, &credentials, SD_ROLE_WRITE, "Decrement", &identity,
                                     message, sizeof(message)),
                     SD_AUTH_OK);
    sd_grant_t grant = {policy, identity, 0};
    assert_string_equal(sd_grant_name(&grant), "gateway");
    assert_true(sd_grant_allows_tenant(&grant, "any-tenant"));
    assert_int_equal(sd_policy_check(policy, &credentials, SD_ROLE_READ, "GetStock", &identity,
                                     message, sizeof(message)),
                     SD_AUTH_DENIED);
    credentials.tls_names_count = 1; /* only a name the policy does not know */
    assert_int_equal(sd_policy_check(policy, &credentials, SD_ROLE_WRITE, "Decrement", &identity,
                                     message, sizeof(message)),
                     SD_AUTH_UNAUTHENTICATED);
    assert_non_null(strstr(message, "other.example"));
    sd_policy_release(policy);
}

static void write_file(const char *path, const char *text)
{
    char temporary[256];
    snprintf(temporary, sizeof(temporary), "%s.new", path);
    FILE *file = fopen(temporary, "w");
    assert_non_null(file);
    fputs(text, file);
    fclose(file);
    assert_int_equal(rename(temporary, path), 0);
}

static void test_reload_installs_good_files_and_keeps_the_last_good_one(void **state)
{
    (void)state;
    char directory[] = "/tmp/stockd-auth-XXXXXX";
    assert_non_null(mkdtemp(directory));
    char path[256], hex[65], other[65], error[512] = "", message[320];
    snprintf(path, sizeof(path), "%s/policy.json", directory);
    sha256_hex("secret-token", hex);
    sha256_hex("other-token", other);
    write_file(path, policy_with(hex));
    sd_auth_t *auth = sd_auth_open(path, 3600 * 1000, error, sizeof(error)); /* reload by hand */
    assert_non_null(auth);
    assert_true(sd_auth_enforced(auth));
    sd_credentials_t first = token_credentials("secret-token");
    sd_credentials_t second = token_credentials("other-token");
    sd_grant_t grant;
    assert_int_equal(
        sd_auth_check(auth, &first, SD_ROLE_READ, "GetStock", &grant, message, sizeof(message)),
        SD_AUTH_OK);
    sd_grant_t held = grant; /* a call in flight keeps its policy through a reload */
    write_file(path, policy_with(other));
    assert_true(sd_auth_reload_if_changed(auth));
    assert_int_equal(
        sd_auth_check(auth, &first, SD_ROLE_READ, "GetStock", &grant, message, sizeof(message)),
        SD_AUTH_UNAUTHENTICATED);
    assert_int_equal(
        sd_auth_check(auth, &second, SD_ROLE_READ, "GetStock", &grant, message, sizeof(message)),
        SD_AUTH_OK);
    sd_grant_release(&grant);
    assert_string_equal(sd_grant_name(&held), "warehouse");
    sd_grant_release(&held);
    write_file(path, "{\"identities\": [");
    assert_false(sd_auth_reload_if_changed(auth)); /* refused: the good one stays */
    assert_int_equal(
        sd_auth_check(auth, &second, SD_ROLE_READ, "GetStock", &grant, message, sizeof(message)),
        SD_AUTH_OK);
    sd_grant_release(&grant);
    sd_auth_free(auth);
    /* without a policy everyone is allowed, with no name */
    auth = sd_auth_open("", 1000, error, sizeof(error));
    sd_credentials_t none;
    memset(&none, 0, sizeof(none));
    assert_int_equal(sd_auth_check(auth, &none, SD_ROLE_ADMIN, "Admin.Checkpoint", &grant, message,
                                   sizeof(message)),
                     SD_AUTH_OK);
    assert_string_equal(sd_grant_name(&grant), "");
    assert_true(sd_grant_allows_tenant(&grant, "t"));
    sd_auth_free(auth);
    unlink(path);
    rmdir(directory);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_refusals_name_their_place),
        cmocka_unit_test(test_token_identifies_and_roles_and_tenants_are_checked),
        cmocka_unit_test(test_certificate_subject_identifies),
        cmocka_unit_test(test_reload_installs_good_files_and_keeps_the_last_good_one),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
