/* config.c — see config.h. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

#define CFG_OPTIONS_MAX 64

static bool cfg_parse_bool(const char *text, bool *value_out)
{
    if (strcmp(text, "true") == 0 || strcmp(text, "1") == 0 || strcmp(text, "yes") == 0) {
        *value_out = true;
        return true;
    }
    if (strcmp(text, "false") == 0 || strcmp(text, "0") == 0 || strcmp(text, "no") == 0) {
        *value_out = false;
        return true;
    }
    return false;
}

static bool cfg_choice_valid(const cfg_option_t *option, const char *text)
{
    for (const char *const *choice = option->choices; *choice != NULL; choice++) {
        if (strcmp(*choice, text) == 0) {
            return true;
        }
    }
    return false;
}

/* Stores `text` into the field of `option`; on error prints why to err. */
static bool cfg_assign(const cfg_option_t *option, void *config, const char *text,
                       const char *source, FILE *err)
{
    char *field = (char *)config + option->offset;
    int64_t number = 0;
    bool flag_value = false;
    switch (option->type) {
    case CFG_STRING:
    case CFG_SECRET:
        memcpy(field, &text, sizeof(text));
        return true;
    case CFG_CHOICE:
        if (!cfg_choice_valid(option, text)) {
            break;
        }
        memcpy(field, &text, sizeof(text));
        return true;
    case CFG_INT:
    case CFG_DURATION: {
        bool parsed = option->type == CFG_INT ? util_parse_int64(text, &number)
                                              : util_parse_duration_s(text, &number);
        if (!parsed || number < option->min || number > option->max) {
            fprintf(err, "invalid value \"%.64s\" for --%s (from %s): expected %s %lld..%lld\n",
                    text, option->flag, source,
                    option->type == CFG_INT ? "an integer" : "a duration in seconds",
                    (long long)option->min, (long long)option->max);
            return false;
        }
        memcpy(field, &number, sizeof(number));
        return true;
    }
    case CFG_BOOL:
        if (!cfg_parse_bool(text, &flag_value)) {
            break;
        }
        memcpy(field, &flag_value, sizeof(flag_value));
        return true;
    }
    fprintf(err, "invalid value \"%.64s\" for --%s (from %s)", text, option->flag, source);
    if (option->type == CFG_CHOICE) {
        fprintf(err, ": expected one of");
        for (const char *const *choice = option->choices; *choice != NULL; choice++) {
            fprintf(err, " %s", *choice);
        }
    }
    fprintf(err, "\n");
    return false;
}

static const cfg_option_t *cfg_find(const cfg_spec_t *spec, const char *name, size_t name_length)
{
    for (size_t i = 0; i < spec->options_count; i++) {
        const char *flag = spec->options[i].flag;
        if (strlen(flag) == name_length && strncmp(flag, name, name_length) == 0) {
            return &spec->options[i];
        }
    }
    return NULL;
}

void cfg_print_help(const cfg_spec_t *spec, FILE *out)
{
    fprintf(out,
            "usage: %s [options]\n%s\n\noptions (each also read from its environment "
            "variable; flags win):\n",
            spec->program, spec->summary);
    for (size_t i = 0; i < spec->options_count; i++) {
        const cfg_option_t *option = &spec->options[i];
        fprintf(out, "  --%-22s %s\n  %-24s (env %s; default %s%s)\n", option->flag, option->help,
                "", option->env, option->default_value ? option->default_value : "none",
                option->required ? "; required" : "");
    }
    fprintf(out, "  --%-22s show this help\n  --%-22s show the version\n", "help", "version");
}

static cfg_parse_result_t cfg_apply_defaults_and_env(const cfg_spec_t *spec, void *config,
                                                     FILE *err)
{
    for (size_t i = 0; i < spec->options_count; i++) {
        const cfg_option_t *option = &spec->options[i];
        if (option->default_value != NULL &&
            !cfg_assign(option, config, option->default_value, "default", err)) {
            return CFG_PARSE_ERROR;
        }
        const char *env_value = option->env ? getenv(option->env) : NULL;
        if (env_value != NULL && !cfg_assign(option, config, env_value, option->env, err)) {
            return CFG_PARSE_ERROR;
        }
    }
    return CFG_PARSE_OK;
}

/* Handles one "--name[=value]" at argv[*index]; advances *index past a separate value. */
static cfg_parse_result_t cfg_parse_flag(const cfg_spec_t *spec, void *config, int argc,
                                         char **argv, int *index, bool *seen, FILE *out, FILE *err)
{
    const char *argument = argv[*index] + 2;
    const char *equals = strchr(argument, '=');
    size_t name_length = equals ? (size_t)(equals - argument) : strlen(argument);
    if (strcmp(argument, "help") == 0) {
        cfg_print_help(spec, out);
        return CFG_PARSE_EXIT_SUCCESS;
    }
    if (strcmp(argument, "version") == 0) {
        fprintf(out, "%s %s\n", spec->program, STOCKD_VERSION);
        return CFG_PARSE_EXIT_SUCCESS;
    }
    const cfg_option_t *option = cfg_find(spec, argument, name_length);
    if (option == NULL) {
        fprintf(err, "unknown option --%.*s (see --help)\n", (int)name_length, argument);
        return CFG_PARSE_ERROR;
    }
    const char *value = equals ? equals + 1 : NULL;
    if (value == NULL && option->type == CFG_BOOL) {
        value = "true";
    } else if (value == NULL) {
        if (*index + 1 >= argc) {
            fprintf(err, "option --%s needs a value\n", option->flag);
            return CFG_PARSE_ERROR;
        }
        value = argv[++*index];
    }
    seen[option - spec->options] = true;
    return cfg_assign(option, config, value, "command line", err) ? CFG_PARSE_OK : CFG_PARSE_ERROR;
}

cfg_parse_result_t cfg_parse(const cfg_spec_t *spec, void *config, int argc, char **argv,
                             int first_arg, int *rest_index_out, FILE *out, FILE *err)
{
    bool seen[CFG_OPTIONS_MAX] = {false};
    if (spec->options_count > CFG_OPTIONS_MAX) {
        fprintf(err, "internal: too many options\n");
        return CFG_PARSE_ERROR;
    }
    cfg_parse_result_t result = cfg_apply_defaults_and_env(spec, config, err);
    if (rest_index_out != NULL) {
        *rest_index_out = argc;
    }
    for (int index = first_arg; result == CFG_PARSE_OK && index < argc; index++) {
        if (strncmp(argv[index], "--", 2) != 0 || argv[index][2] == '\0') {
            if (rest_index_out != NULL) {
                *rest_index_out = index;
                break;
            }
            fprintf(err, "unexpected argument \"%.64s\" (see --help)\n", argv[index]);
            return CFG_PARSE_ERROR;
        }
        result = cfg_parse_flag(spec, config, argc, argv, &index, seen, out, err);
    }
    for (size_t i = 0; result == CFG_PARSE_OK && i < spec->options_count; i++) {
        const cfg_option_t *option = &spec->options[i];
        const char *value = NULL;
        bool text = option->type == CFG_STRING || option->type == CFG_SECRET;
        if (text) {
            memcpy(&value, (char *)config + option->offset, sizeof(value));
        }
        if (option->required && text && (value == NULL || *value == '\0')) {
            fprintf(err, "missing required option --%s (or env %s)\n", option->flag, option->env);
            return CFG_PARSE_ERROR;
        }
    }
    return result;
}

cfg_parse_result_t cfg_parse_mixed(const cfg_spec_t *spec, void *config, int argc, char **argv,
                                   char **positional, int positional_max, int *positional_count,
                                   FILE *out, FILE *err)
{
    bool seen[CFG_OPTIONS_MAX] = {false};
    bool options_ended = false;
    *positional_count = 0;
    if (spec->options_count > CFG_OPTIONS_MAX) {
        return CFG_PARSE_ERROR;
    }
    cfg_parse_result_t result = cfg_apply_defaults_and_env(spec, config, err);
    for (int index = 1; result == CFG_PARSE_OK && index < argc; index++) {
        if (!options_ended && strcmp(argv[index], "--") == 0) {
            options_ended = true;
        } else if (!options_ended && strncmp(argv[index], "--", 2) == 0) {
            result = cfg_parse_flag(spec, config, argc, argv, &index, seen, out, err);
        } else if (*positional_count < positional_max) {
            positional[(*positional_count)++] = argv[index];
        } else {
            fprintf(err, "too many arguments (see --help)\n");
            return CFG_PARSE_ERROR;
        }
    }
    return result;
}

void cfg_log_effective(const cfg_spec_t *spec, const void *config)
{
    log_field_t fields[CFG_OPTIONS_MAX + 1];
    size_t count = 0;
    for (size_t i = 0; i < spec->options_count && count < CFG_OPTIONS_MAX; i++) {
        const cfg_option_t *option = &spec->options[i];
        const char *field = (const char *)config + option->offset;
        const char *text = NULL;
        int64_t number = 0;
        bool flag_value = false;
        switch (option->type) {
        case CFG_STRING:
        case CFG_CHOICE:
            memcpy(&text, field, sizeof(text));
            fields[count++] = LF_STR(option->flag, text ? text : "");
            break;
        case CFG_SECRET: /* a token must not reach the logs: only whether it is set */
            memcpy(&text, field, sizeof(text));
            fields[count++] = LF_STR(option->flag, text && *text ? CFG_SECRET_SHOWN : "");
            break;
        case CFG_INT:
        case CFG_DURATION:
            memcpy(&number, field, sizeof(number));
            fields[count++] = LF_INT(option->flag, number);
            break;
        case CFG_BOOL:
            memcpy(&flag_value, field, sizeof(flag_value));
            fields[count++] = LF_BOOL(option->flag, flag_value);
            break;
        }
    }
    fields[count] = LF_END;
    if (log_enabled(LOG_INFO)) {
        log_emit(LOG_INFO, "config", fields);
    }
}
