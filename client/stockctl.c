/* stockctl — the operator's command line for stockd.
 *
 *   stockctl [--stockd ADDR] [--json] COMMAND [options] [arguments]
 *
 * This file holds the options table, the item and backup commands and the dispatch (which
 * also sets up TLS and the bearer token); ctl_ledger.c the ledger commands, transfer.c import
 * and export, ctl_output.c the tables and JSON, ctl_help.c the help. Exit codes (ctl.h): 0
 * done; 1 refused (insufficient stock, version or request_id conflict, backup name taken or
 * unknown); 2 invalid input; 3 stockd unreachable or too slow; 4 anything else; 5 get: the
 * item was never set; 6 credentials missing or refused, or not permitted. */
#include <grpc/grpc.h>
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "sd_limits.h"
#include "ctl.h"
#include "ctl_help.h"
#include "ctl_cluster.h"
#include "ctl_ledger.h"
#include "ctl_output.h"
#include "stockclient.h"
#include "transfer.h"
#include "stockd/v1/admin.pb-c.h"
#include "util.h"
#include "wix_sign.h"

static const char *const ctl_algs[] = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", NULL};
static const char *const ctl_booleans[] = {"true", "false", NULL};

#define CTL_OPT(flag, env, type, field, def, lo, hi, choices, help)                                \
    {                                                                                              \
        flag, env, type, offsetof(ctl_config_t, field), def, lo, hi, choices, false, help          \
    }

/* Options without a default (NULL) stay NULL when not given: "keep the current value". */
static const cfg_option_t ctl_options[] = {
    CTL_OPT("stockd", "STOCKD_ADDR", CFG_STRING, stockd, "127.0.0.1:50051", 0, 0, NULL,
            "stockd gRPC address; replicas as A,B,C (calls follow the leader)"),
    CTL_OPT("admin", "STOCKD_ADMIN_ADDR", CFG_STRING, admin, "127.0.0.1:50052", 0, 0, NULL,
            "backup: stockd's admin address (where its --admin-listen serves stockd.v1.Admin)"),
    CTL_OPT("insecure", "STOCKD_INSECURE", CFG_BOOL, insecure, "false", 0, 0, NULL,
            "send --token in plaintext to a non-loopback stockd (without TLS it is refused)"),
    CTL_OPT("tls-ca", "STOCKD_TLS_CA", CFG_STRING, tls_ca, "", 0, 0, NULL,
            "PEM file of the CA(s) that signed stockd's certificate; given: speak TLS"),
    CTL_OPT("tls-cert", "STOCKD_TLS_CERT", CFG_STRING, tls_cert, "", 0, 0, NULL,
            "PEM file of this client's certificate for mTLS (with --tls-key); given: speak TLS"),
    CTL_OPT("tls-key", "STOCKD_TLS_KEY", CFG_STRING, tls_key, "", 0, 0, NULL,
            "PEM file of this client's private key (with --tls-cert)"),
    CTL_OPT("token", "STOCKD_TOKEN", CFG_SECRET, token, "", 0, 0, NULL,
            "bearer token sent with every call (a flag shows in ps: prefer --token-file)"),
    CTL_OPT("token-file", "STOCKD_TOKEN_FILE", CFG_STRING, token_file, "", 0, 0, NULL,
            "file whose first line is the bearer token"),
    CTL_OPT("tenant", "STOCKD_TENANT", CFG_STRING, tenant, "default", 0, 0, NULL, "tenant id"),
    CTL_OPT("location", "STOCKD_LOCATION", CFG_STRING, location, "", 0, 0, NULL,
            "location id (empty = default location; list: every location)"),
    CTL_OPT("default-location", "STOCKD_DEFAULT_LOCATION", CFG_BOOL, default_location, "false", 0,
            0, NULL, "list: only the default location (the items whose location id is empty)"),
    CTL_OPT("variant", "STOCKD_VARIANT", CFG_STRING, variant, "", 0, 0, NULL, "variant"),
    CTL_OPT("deadline-ms", "STOCKD_DEADLINE_MS", CFG_INT, deadline_ms, "10000", 1, 3600000, NULL,
            "deadline of each call"),
    CTL_OPT("json", "STOCKD_JSON", CFG_BOOL, json, "false", 0, 0, NULL, "print JSON"),
    CTL_OPT("restrict", "STOCKD_RESTRICT", CFG_BOOL, restrict_inventory, "false", 0, 0, NULL,
            "decrement: refuse if stock would go below the floor"),
    CTL_OPT("request-id", "STOCKD_REQUEST_ID", CFG_STRING, request_id, "", 0, 0, NULL,
            "idempotency key (wix-sign: metadata.requestId)"),
    CTL_OPT("order-id", "STOCKD_ORDER_ID", CFG_STRING, order_id, "", 0, 0, NULL, "order id"),
    CTL_OPT("app", "STOCKD_APP", CFG_STRING, app, "", 0, 0, NULL, "list: only this app_id"),
    CTL_OPT("tracked", "STOCKD_TRACKED", CFG_CHOICE, tracked, NULL, 0, 0, ctl_booleans,
            "set: true or false (not given = keep the current value)"),
    CTL_OPT("floor", "STOCKD_FLOOR", CFG_STRING, floor_value, NULL, 0, 0, NULL,
            "set: the floor, an integer (not given = keep the current value)"),
    CTL_OPT("page-size", "STOCKD_PAGE_SIZE", CFG_INT, page_size, "1000", 1, SD_PAGE_SIZE_MAX, NULL,
            "list/history: entries per call"),
    CTL_OPT("after-seq", "STOCKD_AFTER_SEQ", CFG_STRING, after_seq, NULL, 0, 0, NULL,
            "history/watch: start after this ledger seq (resume)"),
    CTL_OPT("from-seq", "STOCKD_FROM_SEQ", CFG_STRING, from_seq, NULL, 0, 0, NULL,
            "history/watch: start at this ledger seq"),
    CTL_OPT("from-start", "STOCKD_FROM_START", CFG_BOOL, from_start, "false", 0, 0, NULL,
            "watch: replay the whole ledger, then follow (default: from now)"),
    CTL_OPT("count", "STOCKD_COUNT", CFG_INT, count, "0", 0, INT64_MAX, NULL,
            "history/watch/list: stop after this many entries (0 = no limit)"),
    CTL_OPT("chunk-rows", "STOCKD_CHUNK_ROWS", CFG_INT, chunk_rows, "1000", 1, SD_LINES_MAX, NULL,
            "import: rows per atomic SetStock"),
    CTL_OPT("key", "STOCKD_WIX_PRIVATE_KEY", CFG_STRING, key,
            "./stockd-gateway-dev/wix-private.pem", 0, 0, NULL, "wix-sign: private key (PEM)"),
    CTL_OPT("app-id", "STOCKD_WIX_APP_ID", CFG_STRING, app_id, "", 0, 0, NULL,
            "wix-sign: app id (aud); default: the app-id file beside --key"),
    CTL_OPT("instance-id", "STOCKD_WIX_INSTANCE_ID", CFG_STRING, instance_id, "default", 0, 0, NULL,
            "wix-sign: metadata.instanceId when the input has no metadata"),
    CTL_OPT("alg", "STOCKD_WIX_ALG", CFG_CHOICE, alg, "RS256", 0, 0, ctl_algs, "wix-sign: alg"),
    CTL_OPT("ttl", "STOCKD_WIX_TTL", CFG_DURATION, ttl_s, "300s", 1, 86400, NULL,
            "wix-sign: exp - iat"),
};

/* A single-level answer (get, set, decrement, increment): a listing of its levels. */
static void ctl_print_levels(const ctl_config_t *config, Stockd__V1__StockLevel *const *levels,
                             size_t count)
{
    ctl_listing_t listing;
    ctl_listing_init(&listing, config->json);
    ctl_listing_add(&listing, levels, count);
    ctl_listing_end(&listing);
}

static Stockd__V1__ItemRef ctl_item(const ctl_config_t *config, char **args)
{
    Stockd__V1__ItemRef item = STOCKD__V1__ITEM_REF__INIT;
    item.location_id = (char *)config->location;
    item.app_id = args[0];
    item.catalog_item_id = args[1];
    item.variant = (char *)config->variant;
    return item;
}

static bool ctl_number(const ctl_config_t *config, const char *text, const char *what, int64_t *out)
{
    if (!util_parse_int64(text, out)) {
        ctl_invalid(config->json, "%s must be an integer, got \"%.32s\"", what, text);
        return false;
    }
    return true;
}

static int ctl_health(const ctl_config_t *config, sc_client_t *client, char **args, int count)
{
    (void)args;
    if (count != 0) {
        return ctl_invalid(config->json, "health takes no arguments");
    }
    sc_status_t status;
    bool serving = false;
    int code = sc_health_check(client, "", &serving, config->deadline_ms, &status);
    int exit_code =
        code == 0 ? (serving ? EXIT_DONE : EXIT_UNREACHABLE) : ctl_report_error(config, &status);
    if (code == 0) {
        printf(config->json ? "{\"status\":\"%s\"}\n" : "%s\n",
               serving ? "SERVING" : "NOT_SERVING");
    }
    sc_status_free(&status);
    return exit_code;
}

static int ctl_get(const ctl_config_t *config, sc_client_t *client, char **args, int count)
{
    if (count != 2) {
        return ctl_invalid(config->json, "get takes APP ITEM (see `stockctl help get`)");
    }
    Stockd__V1__ItemRef item = ctl_item(config, args);
    Stockd__V1__ItemRef *items[1] = {&item};
    Stockd__V1__GetStockRequest request = STOCKD__V1__GET_STOCK_REQUEST__INIT;
    request.tenant_id = (char *)config->tenant;
    request.n_items = 1;
    request.items = items;
    Stockd__V1__GetStockResponse *response = NULL;
    sc_status_t status;
    int exit_code = sc_get_stock(client, &request, &response, config->deadline_ms, &status) == 0
                        ? EXIT_DONE
                        : ctl_report_error(config, &status);
    if (response != NULL) {
        ctl_print_levels(config, response->levels, response->n_levels);
        /* a never-written item reads as version 0: shown, and told apart by the exit code */
        if (response->n_levels == 1 && response->levels[0]->version == 0) {
            exit_code = EXIT_NEVER_SET;
        }
        stockd__v1__get_stock_response__free_unpacked(response, NULL);
    }
    sc_status_free(&status);
    return exit_code;
}

/* The line of `set`: AVAILABLE, and --tracked / --floor when given (absent = keep). */
static bool ctl_set_line(const ctl_config_t *config, char **args, Stockd__V1__SetLine *line,
                         Google__Protobuf__BoolValue *tracked, Google__Protobuf__Int64Value *floor)
{
    if (!ctl_number(config, args[2], "AVAILABLE", &line->available)) {
        return false;
    }
    if (config->floor_value != NULL) {
        if (!ctl_number(config, config->floor_value, "--floor", &floor->value)) {
            return false;
        }
        line->floor = floor;
    }
    if (config->tracked != NULL) {
        tracked->value = strcmp(config->tracked, "true") == 0;
        line->tracked = tracked;
    }
    return true;
}

static int ctl_set(const ctl_config_t *config, sc_client_t *client, char **args, int count)
{
    if (count != 3) {
        return ctl_invalid(config->json, "set takes APP ITEM AVAILABLE (see `stockctl help set`)");
    }
    Stockd__V1__ItemRef item = ctl_item(config, args);
    Stockd__V1__SetLine line = STOCKD__V1__SET_LINE__INIT;
    Google__Protobuf__BoolValue tracked = GOOGLE__PROTOBUF__BOOL_VALUE__INIT;
    Google__Protobuf__Int64Value floor = GOOGLE__PROTOBUF__INT64_VALUE__INIT;
    line.item = &item;
    if (!ctl_set_line(config, args, &line, &tracked, &floor)) {
        return EXIT_INVALID;
    }
    Stockd__V1__SetLine *lines[1] = {&line};
    Stockd__V1__SetStockRequest request = STOCKD__V1__SET_STOCK_REQUEST__INIT;
    request.tenant_id = (char *)config->tenant;
    request.n_lines = 1;
    request.lines = lines;
    request.reason = STOCKD__V1__REASON__REASON_RECOUNT;
    request.request_id = (char *)config->request_id;
    Stockd__V1__SetStockResponse *response = NULL;
    sc_status_t status;
    int exit_code = sc_set_stock(client, &request, &response, config->deadline_ms, &status) == 0
                        ? EXIT_DONE
                        : ctl_report_error(config, &status);
    if (response != NULL) {
        ctl_print_levels(config, response->levels, response->n_levels);
        stockd__v1__set_stock_response__free_unpacked(response, NULL);
    }
    sc_status_free(&status);
    return exit_code;
}

/* decrement and increment: the same line, two methods. */
static int ctl_move(const ctl_config_t *config, sc_client_t *client, char **args, int count,
                    bool is_decrement)
{
    int64_t quantity = 0;
    if (count != 3) {
        return ctl_invalid(config->json, "%s takes APP ITEM QUANTITY (see `stockctl help %s`)",
                           is_decrement ? "decrement" : "increment",
                           is_decrement ? "decrement" : "increment");
    }
    if (!ctl_number(config, args[2], "QUANTITY", &quantity)) {
        return EXIT_INVALID;
    }
    Stockd__V1__ItemRef item = ctl_item(config, args);
    Stockd__V1__Line line = STOCKD__V1__LINE__INIT;
    line.item = &item;
    line.quantity = quantity;
    Stockd__V1__Line *lines[1] = {&line};
    Stockd__V1__DecrementRequest request = STOCKD__V1__DECREMENT_REQUEST__INIT;
    request.tenant_id = (char *)config->tenant;
    request.n_lines = 1;
    request.lines = lines;
    request.restrict_inventory = config->restrict_inventory;
    request.order_id = (char *)config->order_id;
    request.request_id = (char *)config->request_id;
    request.reason =
        is_decrement ? STOCKD__V1__REASON__REASON_CORRECTION : STOCKD__V1__REASON__REASON_RECEIVED;
    char generated[SC_REQUEST_ID_GENERATED_BYTES];
    if (request.request_id[0] == '\0') { /* every write carries one, so a retry is safe */
        sc_request_id_generate(generated);
        request.request_id = generated;
    }
    /* IncrementRequest is DecrementRequest without restrict_inventory: same field numbers. */
    Stockd__V1__DecrementResponse *response = NULL;
    sc_status_t status;
    int code = sc_call_unary(
        client, is_decrement ? "/stockd.v1.Inventory/Decrement" : "/stockd.v1.Inventory/Increment",
        &request.base, &stockd__v1__decrement_response__descriptor, (ProtobufCMessage **)&response,
        config->deadline_ms, &status);
    snprintf(status.request_id, sizeof(status.request_id), "%s", request.request_id);
    int exit_code = code == 0 ? EXIT_DONE : ctl_report_error(config, &status);
    if (response != NULL) {
        ctl_print_levels(config, response->levels, response->n_levels);
        stockd__v1__decrement_response__free_unpacked(response, NULL);
    }
    sc_status_free(&status);
    return exit_code;
}

static int ctl_decrement(const ctl_config_t *config, sc_client_t *client, char **args, int count)
{
    return ctl_move(config, client, args, count, true);
}

static int ctl_increment(const ctl_config_t *config, sc_client_t *client, char **args, int count)
{
    return ctl_move(config, client, args, count, false);
}

static int ctl_wix_sign(const ctl_config_t *config, sc_client_t *client, char **args, int count)
{
    (void)client;
    char app_id[128];
    if (count != 1) {
        return ctl_invalid(config->json, "wix-sign takes FILE (see `stockctl help wix-sign`)");
    }
    if (!sc_wix_app_id(config->app_id, config->key, app_id, sizeof(app_id))) {
        return ctl_invalid(config->json, "no --app-id and no app-id file beside %s", config->key);
    }
    EVP_PKEY *key = sc_wix_load_private_key(config->key);
    json_error_t error;
    json_t *input = json_load_file(args[0], JSON_REJECT_DUPLICATES, &error);
    sc_wix_sign_options_t options = {app_id, config->instance_id,
                                     config->request_id[0] ? config->request_id : NULL,
                                     util_now_s(), config->ttl_s};
    json_t *claims = input ? sc_wix_claims(input, &options) : NULL;
    char *token = key && claims ? sc_wix_sign(key, config->alg, claims) : NULL;
    int exit_code = EXIT_DONE;
    if (token != NULL) {
        printf("%s\n", token);
    } else {
        exit_code = ctl_invalid(config->json, "%s",
                                key == NULL     ? "cannot read the private key (--key)"
                                : input == NULL ? error.text
                                                : "the file holds neither claims nor a request "
                                                  "with items");
    }
    free(token);
    json_decref(claims);
    json_decref(input);
    EVP_PKEY_free(key);
    return exit_code;
}

/* backup NAME: Admin/Checkpoint. */
static int ctl_backup_create(const ctl_config_t *config, sc_client_t *client, const char *name)
{
    Stockd__V1__CheckpointRequest request = STOCKD__V1__CHECKPOINT_REQUEST__INIT;
    request.name = (char *)name;
    Stockd__V1__CheckpointResponse *response = NULL;
    sc_status_t status;
    int code = sc_call_unary(client, "/stockd.v1.Admin/Checkpoint", &request.base,
                             &stockd__v1__checkpoint_response__descriptor,
                             (ProtobufCMessage **)&response, config->deadline_ms, &status);
    int exit_code = code == 0 ? EXIT_DONE : ctl_report_error(config, &status);
    if (response != NULL && config->json) {
        ctl_json_print(json_pack("{s:s,s:I}", "path", response->path, "ledger_seq",
                                 (json_int_t)response->ledger_seq));
    } else if (response != NULL) {
        printf("checkpoint written to %s (ledger seq %llu)\n", response->path,
               (unsigned long long)response->ledger_seq);
    }
    if (response != NULL) {
        stockd__v1__checkpoint_response__free_unpacked(response, NULL);
    }
    sc_status_free(&status);
    return exit_code;
}

/* backup list: Admin/ListCheckpoints. */
static int ctl_backup_list(const ctl_config_t *config, sc_client_t *client)
{
    Stockd__V1__ListCheckpointsRequest request = STOCKD__V1__LIST_CHECKPOINTS_REQUEST__INIT;
    Stockd__V1__ListCheckpointsResponse *response = NULL;
    sc_status_t status;
    int code = sc_call_unary(client, "/stockd.v1.Admin/ListCheckpoints", &request.base,
                             &stockd__v1__list_checkpoints_response__descriptor,
                             (ProtobufCMessage **)&response, config->deadline_ms, &status);
    int exit_code = code == 0 ? EXIT_DONE : ctl_report_error(config, &status);
    if (response != NULL) {
        ctl_checkpoints_print(config->json, response);
        stockd__v1__list_checkpoints_response__free_unpacked(response, NULL);
    }
    sc_status_free(&status);
    return exit_code;
}

/* backup remove NAME: Admin/DeleteCheckpoint. */
static int ctl_backup_remove(const ctl_config_t *config, sc_client_t *client, const char *name)
{
    Stockd__V1__DeleteCheckpointRequest request = STOCKD__V1__DELETE_CHECKPOINT_REQUEST__INIT;
    request.name = (char *)name;
    Stockd__V1__DeleteCheckpointResponse *response = NULL;
    sc_status_t status;
    int code = sc_call_unary(client, "/stockd.v1.Admin/DeleteCheckpoint", &request.base,
                             &stockd__v1__delete_checkpoint_response__descriptor,
                             (ProtobufCMessage **)&response, config->deadline_ms, &status);
    int exit_code = code == 0 ? EXIT_DONE : ctl_report_error(config, &status);
    if (response != NULL && config->json) {
        ctl_json_print(json_pack("{s:s,s:b}", "name", name, "removed", 1));
    } else if (response != NULL) {
        printf("checkpoint %s removed\n", name);
    }
    if (response != NULL) {
        stockd__v1__delete_checkpoint_response__free_unpacked(response, NULL);
    }
    sc_status_free(&status);
    return exit_code;
}

/* backup NAME | backup list | backup remove NAME. "list" and "remove" are reserved: they are
 * never taken as a checkpoint's NAME. */
static int ctl_backup(const ctl_config_t *config, sc_client_t *client, char **args, int count)
{
    if (count >= 1 && strcmp(args[0], "list") == 0) {
        return count == 1 ? ctl_backup_list(config, client)
                          : ctl_invalid(config->json, "backup list takes no arguments");
    }
    if (count >= 1 && strcmp(args[0], "remove") == 0) {
        return count == 2 ? ctl_backup_remove(config, client, args[1])
                          : ctl_invalid(config->json, "backup remove takes NAME (see `stockctl "
                                                      "help backup`)");
    }
    if (count != 1) {
        return ctl_invalid(config->json, "backup takes NAME, list, or remove NAME (see `stockctl "
                                         "help backup`)");
    }
    return ctl_backup_create(config, client, args[0]);
}

typedef struct {
    const ctl_config_t *config;
    ctl_listing_t listing;
} ctl_list_t;

static bool ctl_list_page(void *context, Stockd__V1__StockLevel *const *levels, size_t count)
{
    ctl_list_t *list = context;
    int64_t limit = list->config->count;
    int64_t shown = (int64_t)list->listing.rows;
    if (limit > 0 && shown + (int64_t)count > limit) {
        count = (size_t)(limit - shown);
    }
    ctl_listing_add(&list->listing, levels, count);
    return limit == 0 || (int64_t)list->listing.rows < limit;
}

/* Every page as one listing: one table header, or one JSON array. */
static int ctl_list(const ctl_config_t *config, sc_client_t *client, char **args, int count)
{
    (void)args;
    if (count != 0) {
        return ctl_invalid(config->json, "list takes no arguments (see `stockctl help list`)");
    }
    Stockd__V1__ListStockRequest request = STOCKD__V1__LIST_STOCK_REQUEST__INIT;
    request.tenant_id = (char *)config->tenant;
    request.location_id = (char *)config->location;
    request.default_location_only = config->default_location;
    request.app_id = (char *)config->app;
    request.page_size = (int32_t)config->page_size;
    ctl_list_t list = {config, {0}};
    ctl_listing_init(&list.listing, config->json);
    sc_status_t status;
    int code = sc_list_all(client, &request, ctl_list_page, &list, config->deadline_ms, &status);
    if (code == 0) {
        ctl_listing_end(&list.listing);
    } else {
        ctl_listing_abort(&list.listing);
    }
    int exit_code = code == 0 ? EXIT_DONE : ctl_report_error(config, &status);
    sc_status_free(&status);
    return exit_code;
}

static int ctl_import_command(const ctl_config_t *config, sc_client_t *client, char **args,
                              int count)
{
    if (count != 1) {
        return ctl_invalid(config->json, "import takes FILE (see `stockctl help import`)");
    }
    ctl_transfer_t transfer = {client,
                               config->tenant,
                               config->deadline_ms,
                               config->json,
                               (size_t)config->chunk_rows,
                               config->request_id};
    return ctl_import(&transfer, args[0]);
}

static int ctl_export_command(const ctl_config_t *config, sc_client_t *client, char **args,
                              int count)
{
    if (count != 1) {
        return ctl_invalid(config->json, "export takes FILE (see `stockctl help export`)");
    }
    ctl_transfer_t transfer = {
        client, config->tenant, config->deadline_ms, config->json, (size_t)config->chunk_rows, ""};
    return ctl_export(&transfer, args[0]);
}

static const cfg_spec_t ctl_spec = {"stockctl", ctl_help_summary, ctl_options,
                                    sizeof(ctl_options) / sizeof(ctl_options[0])};

static int ctl_help(const ctl_config_t *config, sc_client_t *client, char **args, int count);

/* What a command talks to: nothing, stockd's main address (--stockd) or its admin listener
 * (--admin), which alone serves stockd.v1.Admin. */
typedef enum { CTL_LOCAL, CTL_STOCKD, CTL_ADMIN } ctl_target_t;

static const struct {
    const char *name;
    ctl_command_fn *run;
    ctl_target_t target;
} ctl_commands[] = {
    {"health", ctl_health, CTL_STOCKD},
    {"get", ctl_get, CTL_STOCKD},
    {"set", ctl_set, CTL_STOCKD},
    {"decrement", ctl_decrement, CTL_STOCKD},
    {"increment", ctl_increment, CTL_STOCKD},
    {"wix-sign", ctl_wix_sign, CTL_LOCAL},
    {"backup", ctl_backup, CTL_ADMIN},
    {"cluster", ctl_cluster, CTL_ADMIN},
    {"list", ctl_list, CTL_STOCKD},
    {"history", ctl_history, CTL_STOCKD},
    {"watch", ctl_watch, CTL_STOCKD},
    {"seq", ctl_seq, CTL_STOCKD},
    {"import", ctl_import_command, CTL_STOCKD},
    {"export", ctl_export_command, CTL_STOCKD},
    {"help", ctl_help, CTL_LOCAL},
};

#define CTL_COMMANDS_COUNT (sizeof(ctl_commands) / sizeof(ctl_commands[0]))

/* help [COMMAND]: the command list and options, or one command's page. */
static int ctl_help(const ctl_config_t *config, sc_client_t *client, char **args, int count)
{
    (void)client;
    if (count == 0) {
        cfg_print_help(&ctl_spec, stdout);
        return EXIT_DONE;
    }
    if (count == 1 && ctl_help_command(stdout, args[0])) {
        return EXIT_DONE;
    }
    return ctl_invalid(config->json, "no command \"%.32s\" (stockctl --help lists them)",
                       count == 1 ? args[0] : "");
}

/* Takes "--help" / "-h" out of argv (up to a "--"), so that "stockctl CMD --help" can show
 * CMD's page once the rest is parsed. Returns whether it was there. */
static bool ctl_take_help_flag(int *argc, char **argv)
{
    bool found = false;
    int kept = 1;
    bool options_ended = false;
    for (int i = 1; i < *argc; i++) {
        bool help =
            !options_ended && (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0);
        options_ended = options_ended || strcmp(argv[i], "--") == 0;
        found = found || help;
        if (!help) {
            argv[kept++] = argv[i];
        }
    }
    *argc = kept;
    argv[kept] = NULL;
    return found;
}

/* The bearer token: --token, or the first line of --token-file (read into token_buffer), not
 * both. Returns EXIT_DONE with config->token set ("" = none), or EXIT_INVALID after saying
 * why (never quoting the token). */
static int ctl_resolve_token(ctl_config_t *config, char token_buffer[SC_TOKEN_BYTES_MAX + 1])
{
    char error[SC_ERROR_BYTES];
    bool from_file = config->token_file[0] != '\0';
    switch (sc_token_resolve(config->token, config->token_file, token_buffer, &config->token, error,
                             sizeof(error))) {
    case SC_TOKEN_SOURCE_BOTH:
        return ctl_invalid(config->json, "give one of --token (STOCKD_TOKEN) and --token-file "
                                         "(STOCKD_TOKEN_FILE), not both");
    case SC_TOKEN_SOURCE_FILE_BAD:
        return ctl_invalid(config->json, "--token-file (STOCKD_TOKEN_FILE): %s", error);
    case SC_TOKEN_SOURCE_OK:
        break;
    }
    if (!from_file && config->token[0] != '\0' &&
        !sc_token_valid(config->token, error, sizeof(error))) {
        return ctl_invalid(config->json, "--token (STOCKD_TOKEN): %s", error);
    }
    return EXIT_DONE;
}

/* Makes the client of a command that talks to stockd (its TLS files and token checked first)
 * and notes in config where it goes. Returns EXIT_DONE, or EXIT_INVALID after saying why. */
static int ctl_connect(ctl_config_t *config, ctl_target_t target,
                       char token_buffer[SC_TOKEN_BYTES_MAX + 1], sc_client_t **client_out)
{
    *client_out = NULL;
    if (target == CTL_LOCAL) {
        return EXIT_DONE;
    }
    config->target_admin = target == CTL_ADMIN;
    config->target = config->target_admin ? config->admin : config->stockd;
    if (ctl_resolve_token(config, token_buffer) != EXIT_DONE) {
        return EXIT_INVALID;
    }
    sc_client_options_t options = {.tls_ca = config->tls_ca,
                                   .tls_cert = config->tls_cert,
                                   .tls_key = config->tls_key,
                                   .token = config->token,
                                   .allow_plaintext_token = config->insecure};
    char error[SC_ERROR_BYTES];
    *client_out = sc_client_new_with(config->target, &options, error, sizeof(error));
    if (*client_out == NULL) {
        return ctl_invalid(config->json,
                           "%s (TLS files: --tls-ca, --tls-cert, --tls-key or STOCKD_TLS_CA, "
                           "STOCKD_TLS_CERT, STOCKD_TLS_KEY)",
                           error);
    }
    return EXIT_DONE;
}

static int ctl_run(const ctl_config_t *options, char **arguments, int count)
{
    for (size_t c = 0; c < CTL_COMMANDS_COUNT; c++) {
        if (strcmp(ctl_commands[c].name, arguments[0]) != 0) {
            continue;
        }
        ctl_config_t config = *options;
        char token_buffer[SC_TOKEN_BYTES_MAX + 1];
        sc_client_t *client = NULL;
        grpc_init();
        int exit_code = ctl_connect(&config, ctl_commands[c].target, token_buffer, &client);
        if (exit_code == EXIT_DONE) {
            exit_code = ctl_commands[c].run(&config, client, arguments + 1, count - 1);
        }
        sc_client_free(client);
        sc_thread_release();
        grpc_shutdown();
        return exit_code;
    }
    return ctl_invalid(options->json, "unknown command \"%.32s\" (stockctl --help lists them)",
                       arguments[0]);
}

int main(int argc, char **argv)
{
    ctl_config_t config;
    memset(&config, 0, sizeof(config));
    bool help = ctl_take_help_flag(&argc, argv);
    char *arguments[8];
    int count = 0;
    cfg_parse_result_t parsed =
        cfg_parse_mixed(&ctl_spec, &config, argc, argv, arguments, 8, &count, stdout, stderr);
    if (parsed != CFG_PARSE_OK) {
        return parsed == CFG_PARSE_EXIT_SUCCESS ? EXIT_DONE : EXIT_INVALID;
    }
    if (help && count > 0) {
        /* "stockctl CMD --help" is "stockctl help CMD" */
        return ctl_help(&config, NULL, arguments, 1);
    }
    if (help || count == 0) {
        cfg_print_help(&ctl_spec, help ? stdout : stderr);
        return help ? EXIT_DONE : EXIT_INVALID;
    }
    return ctl_run(&config, arguments, count);
}
