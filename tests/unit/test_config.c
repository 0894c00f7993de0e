/* Unit tests for config.c: defaults < environment < flags, bounds, choices, required
 * options, --help and --version. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

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

static cfg_parse_result_t parse(conf_t *conf, int argc, const char **argv)
{
    memset(conf, 0, sizeof(*conf));
    FILE *sink = fopen("/dev/null", "w");
    cfg_parse_result_t result = cfg_parse(&spec, conf, argc, (char **)argv, 1, NULL, sink, sink);
    fclose(sink);
    return result;
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

static void test_rejects_bad_values(void **state)
{
    (void)state;
    conf_t conf;
    const char *bad_int[] = {"t", "--key", "k", "--depth", "101"};
    assert_int_equal(parse(&conf, 5, bad_int), CFG_PARSE_ERROR);
    const char *junk_int[] = {"t", "--key", "k", "--depth", "12x"};
    assert_int_equal(parse(&conf, 5, junk_int), CFG_PARSE_ERROR);
    const char *bad_choice[] = {"t", "--key", "k", "--mode", "sometimes"};
    assert_int_equal(parse(&conf, 5, bad_choice), CFG_PARSE_ERROR);
    const char *bad_duration[] = {"t", "--key", "k", "--ttl", "5s"};
    assert_int_equal(parse(&conf, 5, bad_duration), CFG_PARSE_ERROR);
    const char *unknown[] = {"t", "--key", "k", "--nope"};
    assert_int_equal(parse(&conf, 4, unknown), CFG_PARSE_ERROR);
    const char *missing_value[] = {"t", "--key"};
    assert_int_equal(parse(&conf, 2, missing_value), CFG_PARSE_ERROR);
    const char *missing_required[] = {"t"};
    assert_int_equal(parse(&conf, 1, missing_required), CFG_PARSE_ERROR);
    setenv("T_DEPTH", "0", 1);
    const char *env_bad[] = {"t", "--key", "k"};
    assert_int_equal(parse(&conf, 3, env_bad), CFG_PARSE_ERROR);
}

static void test_help_and_version(void **state)
{
    (void)state;
    conf_t conf;
    const char *help[] = {"t", "--help"};
    assert_int_equal(parse(&conf, 2, help), CFG_PARSE_EXIT_SUCCESS);
    const char *version[] = {"t", "--version"};
    assert_int_equal(parse(&conf, 2, version), CFG_PARSE_EXIT_SUCCESS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_defaults, clear_env),
        cmocka_unit_test_setup(test_precedence, clear_env),
        cmocka_unit_test_setup(test_rejects_bad_values, clear_env),
        cmocka_unit_test_setup(test_help_and_version, clear_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
