/* Unit tests for config.c: defaults < environment < flags, bounds, choices, required
 * options, --help and --version. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include "config.h"
#include "log.h"

typedef struct {
    const char *listen;
    int64_t depth;
    int64_t ttl;
    const char *mode;
    bool verbose;
    const char *key;
} conf_t;

static const char *const modes[] = {"always", "never", NULL};
static const cfg_option_t options[] = {
    {"listen", "T_LISTEN", CFG_STRING, offsetof(conf_t, listen), "127.0.0.1:1", 0, 0, NULL, false,
     "address"},
    {"depth", "T_DEPTH", CFG_INT, offsetof(conf_t, depth), "10", 1, 100, NULL, false, "depth"},
    {"ttl", "T_TTL", CFG_DURATION, offsetof(conf_t, ttl), "7d", 60, 86400 * 30, NULL, false, "ttl"},
    {"mode", "T_MODE", CFG_CHOICE, offsetof(conf_t, mode), "always", 0, 0, modes, false, "mode"},
    {"verbose", "T_VERBOSE", CFG_BOOL, offsetof(conf_t, verbose), "false", 0, 0, NULL, false,
     "verbose"},
    {"key", "T_KEY", CFG_STRING, offsetof(conf_t, key), NULL, 0, 0, NULL, true, "key"},
};
static const cfg_spec_t spec = {"t", "test", options, sizeof(options) / sizeof(options[0])};

static char parse_errors[4096]; /* what the last parse wrote to its error stream */
static char parse_output[8192]; /* and to its output stream (--help, --version) */

static cfg_parse_result_t parse(conf_t *conf, int argc, const char **argv)
{
    memset(conf, 0, sizeof(*conf));
    FILE *out = fmemopen(parse_output, sizeof(parse_output), "w");
    FILE *err = fmemopen(parse_errors, sizeof(parse_errors), "w");
    cfg_parse_result_t result = cfg_parse(&spec, conf, argc, (char **)argv, 1, NULL, out, err);
    fclose(out); /* NUL-terminates each buffer */
    fclose(err);
    return result;
}

/* The parse fails, and its message names each of the given fragments (key, value, source). */
static void expect_refused(int argc, const char **argv, const char *first, const char *second)
{
    conf_t conf;
    assert_int_equal(parse(&conf, argc, argv), CFG_PARSE_ERROR);
    if (strstr(parse_errors, first) == NULL || strstr(parse_errors, second) == NULL) {
        fprintf(stderr, "message: %s\n", parse_errors);
    }
    assert_non_null(strstr(parse_errors, first));
    assert_non_null(strstr(parse_errors, second));
}

static int clear_env(void **state)
{
    (void)state;
    const char *names[] = {"T_LISTEN", "T_DEPTH", "T_TTL", "T_MODE", "T_VERBOSE", "T_KEY"};
    for (size_t i = 0; i < 6; i++) {
        unsetenv(names[i]);
    }
    return 0;
}

static void test_defaults(void **state)
{
    (void)state;
    conf_t conf;
    const char *argv[] = {"t", "--key", "k"};
    assert_int_equal(parse(&conf, 3, argv), CFG_PARSE_OK);
    assert_string_equal(conf.listen, "127.0.0.1:1");
    assert_int_equal(conf.depth, 10);
    assert_int_equal(conf.ttl, 7 * 86400);
    assert_string_equal(conf.mode, "always");
    assert_false(conf.verbose);
}

static void test_precedence(void **state)
{
    (void)state;
    conf_t conf;
    setenv("T_DEPTH", "20", 1);
    setenv("T_LISTEN", "env:1", 1);
    setenv("T_KEY", "from-env", 1);
    const char *argv[] = {"t", "--depth=30", "--verbose"};
    assert_int_equal(parse(&conf, 3, argv), CFG_PARSE_OK);
    assert_int_equal(conf.depth, 30);          /* flag beats env */
    assert_string_equal(conf.listen, "env:1"); /* env beats default */
    assert_string_equal(conf.key, "from-env");
    assert_true(conf.verbose);
}

/* Every refusal names the key and the bad value, and says where it came from. */
static void test_rejects_bad_values(void **state)
{
    (void)state;
    const char *bad_int[] = {"t", "--key", "k", "--depth", "101"};
    expect_refused(5, bad_int, "--depth", "101");
    const char *junk_int[] = {"t", "--key", "k", "--depth", "12x"};
    expect_refused(5, junk_int, "--depth", "12x");
    const char *bad_choice[] = {"t", "--key", "k", "--mode", "sometimes"};
    expect_refused(5, bad_choice, "--mode", "sometimes");
    const char *bad_duration[] = {"t", "--key", "k", "--ttl", "5s"};
    expect_refused(5, bad_duration, "--ttl", "5s");
    const char *unknown[] = {"t", "--key", "k", "--nope"};
    expect_refused(4, unknown, "unknown option", "--nope");
    const char *missing_value[] = {"t", "--key"};
    expect_refused(2, missing_value, "--key", "value");
    const char *missing_required[] = {"t"};
    expect_refused(1, missing_required, "--key", "T_KEY");
    setenv("T_DEPTH", "0", 1);
    const char *env_bad[] = {"t", "--key", "k"};
    expect_refused(3, env_bad, "T_DEPTH", "0");
}

static void test_help_and_version(void **state)
{
    (void)state;
    conf_t conf;
    const char *help[] = {"t", "--help"};
    assert_int_equal(parse(&conf, 2, help), CFG_PARSE_EXIT_SUCCESS);
    assert_non_null(strstr(parse_output, "--depth"));
    assert_non_null(strstr(parse_output, "T_DEPTH"));
    const char *version[] = {"t", "--version"};
    assert_int_equal(parse(&conf, 2, version), CFG_PARSE_EXIT_SUCCESS);
    assert_non_null(strstr(parse_output, "t "));
}

/* The effective configuration as logged: cfg_log_effective's line on stderr, captured. */
static void logged_line(const cfg_spec_t *log_spec, const void *config, char *out, size_t capacity)
{
    fflush(stderr);
    FILE *capture = tmpfile();
    assert_non_null(capture);
    int saved = dup(STDERR_FILENO);
    dup2(fileno(capture), STDERR_FILENO);
    cfg_log_effective(log_spec, config);
    dup2(saved, STDERR_FILENO);
    close(saved);
    rewind(capture);
    size_t length = fread(out, 1, capacity - 1, capture);
    out[length] = '\0';
    fclose(capture);
}

/* A CFG_SECRET is parsed as a string but the effective configuration shows only whether it is
 * set, so a bearer token given by flag or environment never reaches the logs. */
static void test_secret_is_never_logged(void **state)
{
    (void)state;
    typedef struct {
        const char *name;
        const char *token;
    } secret_conf_t;
    static const cfg_option_t secret_options[] = {
        {"name", "T_NAME", CFG_STRING, offsetof(secret_conf_t, name), "n", 0, 0, NULL, false,
         "a name"},
        {"token", "T_TOKEN", CFG_SECRET, offsetof(secret_conf_t, token), "", 0, 0, NULL, false,
         "a token"},
    };
    static const cfg_spec_t secret_spec = {"t", "test", secret_options, 2};
    secret_conf_t conf;
    const char *argv[] = {"t", "--token", "sekrit-0123456789", "--name", "visible"};
    FILE *quiet = fopen("/dev/null", "w");
    assert_int_equal(cfg_parse(&secret_spec, &conf, 5, (char **)argv, 1, NULL, quiet, quiet),
                     CFG_PARSE_OK);
    fclose(quiet);
    assert_string_equal(conf.token, "sekrit-0123456789"); /* the program gets the real value */
    log_init("t", LOG_INFO);
    char line[2048];
    logged_line(&secret_spec, &conf, line, sizeof(line));
    assert_non_null(strstr(line, "\"name\":\"visible\""));
    assert_non_null(strstr(line, "\"token\":\"" CFG_SECRET_SHOWN "\""));
    assert_null(strstr(line, "sekrit"));
    conf.token = "";
    logged_line(&secret_spec, &conf, line, sizeof(line));
    assert_non_null(strstr(line, "\"token\":\"\""));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_defaults, clear_env),
        cmocka_unit_test_setup(test_precedence, clear_env),
        cmocka_unit_test_setup(test_rejects_bad_values, clear_env),
        cmocka_unit_test_setup(test_help_and_version, clear_env),
        cmocka_unit_test(test_secret_is_never_logged),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
