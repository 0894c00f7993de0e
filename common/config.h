/* config.h — one declarative table of options per binary.
 *
 * Each option has a flag, an environment variable, a type, where it lands in the binary's
 * config struct, a default, bounds and help. Precedence: default < environment < flag.
 * Everything is validated at start-up; a bad value prints the key, the value and where it
 * came from, and the binary exits non-zero. */
#ifndef STOCKD_CONFIG_H
#define STOCKD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum {
    CFG_STRING,   /* const char * (points into argv/environ/default; not owned) */
    CFG_INT,      /* int64_t within [min, max] */
    CFG_DURATION, /* int64_t seconds within [min, max]; accepts 30, 30s, 5m, 12h, 7d */
    CFG_CHOICE,   /* const char * that must be one of choices (NULL-terminated) */
    CFG_BOOL,     /* bool; flag without value means true; env/flag accept true/false/1/0 */
    CFG_SECRET,   /* as CFG_STRING, but the effective configuration logs only whether it is set */
} cfg_type_t;

/* What the effective configuration shows for a CFG_SECRET that is set. */
#define CFG_SECRET_SHOWN "(set, not logged)"

typedef struct {
    const char *flag; /* without the leading "--" */
    const char *env;  /* environment variable name */
    cfg_type_t type;
    size_t offset;              /* offsetof(config struct, field) */
    const char *default_value;  /* NULL = no default (required when `required`) */
    int64_t min, max;           /* for CFG_INT / CFG_DURATION */
    const char *const *choices; /* for CFG_CHOICE */
    bool required;
    const char *help;
} cfg_option_t;

typedef enum {
    CFG_PARSE_OK = 0,
    CFG_PARSE_EXIT_SUCCESS = 1,
    CFG_PARSE_ERROR = 2
} cfg_parse_result_t;

typedef struct {
    const char *program; /* binary name for --help / --version */
    const char *summary; /* one line for --help */
    const cfg_option_t *options;
    size_t options_count;
} cfg_spec_t;

/* Fills `config` from defaults, the environment and argv[first_arg..argc). Prints --help or
 * --version to `out` (returns CFG_PARSE_EXIT_SUCCESS) and errors to `err` (returns
 * CFG_PARSE_ERROR). Non-option arguments are rejected unless rest_index_out is not NULL, in
 * which case parsing stops at the first one and its index is stored there. */
cfg_parse_result_t cfg_parse(const cfg_spec_t *spec, void *config, int argc, char **argv,
                             int first_arg, int *rest_index_out, FILE *out, FILE *err);

/* Like cfg_parse, but options and positional arguments may be mixed (as in
 * "stockctl --json get APP ITEM --tenant t"); positional arguments are collected in order into
 * positional[0..*positional_count), at most positional_max. "--" ends the options. */
cfg_parse_result_t cfg_parse_mixed(const cfg_spec_t *spec, void *config, int argc, char **argv,
                                   char **positional, int positional_max, int *positional_count,
                                   FILE *out, FILE *err);

/* Writes the --help text. */
void cfg_print_help(const cfg_spec_t *spec, FILE *out);

/* Logs the effective configuration as one JSON line (event "config"). */
void cfg_log_effective(const cfg_spec_t *spec, const void *config);

#endif
