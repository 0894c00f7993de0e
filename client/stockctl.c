/* stockctl — the operator's command line for stockd.
 *
 *   stockctl [--stockd ADDR] [--json] COMMAND [options] [arguments]
 *
 * Exit codes: 0 done; 1 refused (insufficient stock, version or request_id conflict);
 * 2 invalid input; 3 stockd unreachable or too slow; 4 anything else. */
#include <grpc/grpc.h>
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "ctl.h"
#include "stockclient.h"
#include "transfer.h"
#include "stockd/v1/admin.pb-c.h"
#include "util.h"
#include "wix_sign.h"

typedef struct {
    const char *stockd;
    const char *tenant;
    const char *location;
    const char *variant;
    int64_t deadline_ms;
    bool json;
    bool restrict_inventory;
    const char *request_id;
    const char *order_id;
    const char *app;
    int64_t page_size;
    int64_t after_seq;
    int64_t count;
    int64_t chunk_rows;
    /* wix-sign */
    const char *key;
    const char *app_id;
    const char *instance_id;
    const char *alg;
    int64_t ttl_s;
} ctl_config_t;

static const char *const ctl_algs[] = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", NULL};

#define CTL_OPT(flag, env, type, field, def, lo, hi, choices, help)                                \
    {                                                                                              \
        flag, env, type, offsetof(ctl_config_t, field), def, lo, hi, choices, false, help          \
    }

static const cfg_option_t ctl_options[] = {
    CTL_OPT("stockd", "STOCKD_ADDR", CFG_STRING, stockd, "127.0.0.1:50051", 0, 0, NULL,
            "stockd gRPC address"),
    CTL_OPT("tenant", "STOCKD_TENANT", CFG_STRING, tenant, "default", 0, 0, NULL, "tenant id"),
    CTL_OPT("location", "STOCKD_LOCATION", CFG_STRING, location, "", 0, 0, NULL,
            "location id (empty = default location)"),
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
    CTL_OPT("page-size", "STOCKD_PAGE_SIZE", CFG_INT, page_size, "1000", 1, 1000, NULL,
            "list/history: entries per call"),
    CTL_OPT("after-seq", "STOCKD_AFTER_SEQ", CFG_INT, after_seq, "0", 0, INT64_MAX, NULL,
            "history/watch: start after this ledger seq"),
    CTL_OPT("count", "STOCKD_COUNT", CFG_INT, count, "0", 0, INT64_MAX, NULL,
            "history/watch/list: stop after this many entries (0 = no limit)"),
    CTL_OPT("chunk-rows", "STOCKD_CHUNK_ROWS", CFG_INT, chunk_rows, "1000", 1, 8192, NULL,
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

static const cfg_spec_t ctl_spec = {
    "stockctl",
    "stockctl — stockd from the command line.\n\ncommands:\n"
    "  health                              Health/Check of stockd\n"
    "  get APP ITEM                        read a level\n"
    "  set APP ITEM AVAILABLE              set a level absolutely\n"
    "  decrement APP ITEM QUANTITY         remove stock (--restrict to refuse when short)\n"
    "  increment APP ITEM QUANTITY         add stock\n"
    "  list                                the tenant's levels (--location, --app filter)\n"
    "  history [APP ITEM]                  the ledger (--order-id, --after-seq, --count)\n"
    "  watch                               follow the ledger live (--after-seq, --count)\n"
    "  import FILE                         apply a CSV file in atomic chunks (resumable)\n"
    "  export FILE                         write every level as CSV (- = stdout)\n"
    "  wix-sign FILE                       sign a Wix request/claims JSON file as Wix would\n"
    "  backup NAME                         RocksDB checkpoint in stockd's --backup-dir/NAME",
    ctl_options, sizeof(ctl_options) / sizeof(ctl_options[0])};

/* No connection could be made: the call was never sent (so nothing was applied either). */
static bool ctl_unreachable(const sc_status_t *status)
{
    return status->code == GRPC_STATUS_UNAVAILABLE &&
           strstr(status->message, "failed to connect") != NULL;
}

static int ctl_report_error(const ctl_config_t *config, const sc_status_t *status)
{
    if (config->json) {
        json_t *error = json_pack("{s:{s:s,s:s}}", "error", "code", sc_code_name(status->code),
                                  "message", status->message);
        char *text = json_dumps(error, JSON_COMPACT);
        printf("%s\n", text ? text : "{}");
        free(text);
        json_decref(error);
    } else if (ctl_unreachable(status)) {
        fprintf(stderr,
                "stockctl: cannot reach stockd at %s: is it running? (`make run` starts one; "
                "--stockd or STOCKD_ADDR points elsewhere)\n  detail: %s\n",
                config->stockd, status->message);
    } else {
        fprintf(stderr, "stockctl: %s: %s\n", sc_code_name(status->code), status->message);
    }
    if (status->request_id[0] != '\0' && sc_outcome_unknown(status->code) &&
        !ctl_unreachable(status)) {
        /* stderr in both modes: --json keeps one document on stdout */
        fprintf(stderr,
                "stockctl: the write may or may not have been applied; retrying it is safe "
                "with: --request-id %s\n",
                status->request_id);
    }
    return ctl_exit_for(status->code);
}

static void ctl_print_levels(const ctl_config_t *config, Stockd__V1__StockLevel *const *levels,
                             size_t count)
{
    if (config->json) {
        json_t *array = json_array();
        for (size_t i = 0; i < count; i++) {
            const Stockd__V1__StockLevel *l = levels[i];
            json_array_append_new(
                array, json_pack("{s:s,s:s,s:s,s:s,s:I,s:b,s:I,s:I,s:I}", "location_id",
                                 l->item->location_id, "app_id", l->item->app_id, "catalog_item_id",
                                 l->item->catalog_item_id, "variant", l->item->variant, "available",
                                 (json_int_t)l->available, "tracked", l->tracked, "floor",
                                 (json_int_t)l->floor, "version", (json_int_t)l->version,
                                 "updated_at_us", (json_int_t)l->updated_at_us));
        }
        char *text = json_dumps(array, JSON_COMPACT);
        printf("%s\n", text ? text : "[]");
        free(text);
        json_decref(array);
        return;
    }
    /* columns as wide as their longest value on this page */
    int widths[4] = {8, 3, 4, 7}; /* LOCATION, APP, ITEM, VARIANT headers */
    for (size_t i = 0; i < count; i++) {
        const char *texts[4] = {levels[i]->item->location_id, levels[i]->item->app_id,
                                levels[i]->item->catalog_item_id, levels[i]->item->variant};
        for (int c = 0; c < 4; c++) {
            int length = (int)strlen(texts[c]);
            widths[c] = length > widths[c] ? (length < 64 ? length : 64) : widths[c];
        }
    }
    printf("%-*s  %-*s  %-*s  %-*s  %12s  %7s  %8s  %7s\n", widths[0], "LOCATION", widths[1], "APP",
           widths[2], "ITEM", widths[3], "VARIANT", "AVAILABLE", "TRACKED", "FLOOR", "VERSION");
    for (size_t i = 0; i < count; i++) {
        const Stockd__V1__StockLevel *l = levels[i];
        printf("%-*s  %-*s  %-*s  %-*s  %12lld  %7s  %8lld  %7llu\n", widths[0],
               l->item->location_id, widths[1], l->item->app_id, widths[2],
               l->item->catalog_item_id, widths[3], l->item->variant, (long long)l->available,
               l->tracked ? "yes" : "no", (long long)l->floor, (unsigned long long)l->version);
    }
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

static bool ctl_number(const char *text, const char *what, int64_t *out)
{
    if (!util_parse_int64(text, out)) {
        fprintf(stderr, "stockctl: %s must be an integer, got \"%.32s\"\n", what, text);
        return false;
    }
    return true;
}

static int ctl_health(const ctl_config_t *config, sc_client_t *client, char **args, int count)
{
    (void)args, (void)count;
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
        fprintf(stderr, "usage: stockctl get APP ITEM\n");
        return EXIT_INVALID;
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
        stockd__v1__get_stock_response__free_unpacked(response, NULL);
    }
    sc_status_free(&status);
    return exit_code;
}

static int ctl_set(const ctl_config_t *config, sc_client_t *client, char **args, int count)
{
    int64_t available = 0;
    if (count != 3) {
        fprintf(stderr, "usage: stockctl set APP ITEM AVAILABLE\n");
        return EXIT_INVALID;
    }
    if (!ctl_number(args[2], "AVAILABLE", &available)) {
        return EXIT_INVALID;
    }
    Stockd__V1__ItemRef item = ctl_item(config, args);
    Stockd__V1__SetLine line = STOCKD__V1__SET_LINE__INIT;
    line.item = &item;
    line.available = available;
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
        fprintf(stderr, "usage: stockctl %s APP ITEM QUANTITY\n",
                is_decrement ? "decrement" : "increment");
        return EXIT_INVALID;
    }
    if (!ctl_number(args[2], "QUANTITY", &quantity)) {
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
        fprintf(stderr, "usage: stockctl wix-sign [--key PEM] [--app-id ID] FILE\n");
        return EXIT_INVALID;
    }
    if (!sc_wix_app_id(config->app_id, config->key, app_id, sizeof(app_id))) {
        fprintf(stderr, "stockctl: no --app-id and no app-id file beside %s\n", config->key);
        return EXIT_INVALID;
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
        fprintf(stderr, "stockctl: %s\n",
                key == NULL     ? "cannot read the private key (--key)"
                : input == NULL ? error.text
                                : "the file holds neither claims nor a request with items");
        exit_code = EXIT_INVALID;
    }
    free(token);
    json_decref(claims);
    json_decref(input);
    EVP_PKEY_free(key);
    return exit_code;
}

static int ctl_backup(const ctl_config_t *config, sc_client_t *client, char **args, int count)
{
    if (count != 1) {
        fprintf(stderr, "usage: stockctl backup NAME\n");
        return EXIT_INVALID;
    }
    Stockd__V1__CheckpointRequest request = STOCKD__V1__CHECKPOINT_REQUEST__INIT;
    request.name = args[0];
    Stockd__V1__CheckpointResponse *response = NULL;
    sc_status_t status;
    int code = sc_call_unary(client, "/stockd.v1.Admin/Checkpoint", &request.base,
                             &stockd__v1__checkpoint_response__descriptor,
                             (ProtobufCMessage **)&response, config->deadline_ms, &status);
    int exit_code = code == 0 ? EXIT_DONE : ctl_report_error(config, &status);
    if (response != NULL) {
        printf(config->json ? "{\"path\":\"%s\",\"ledger_seq\":%llu}\n"
                            : "checkpoint written to %s (ledger seq %llu)\n",
               response->path, (unsigned long long)response->ledger_seq);
        stockd__v1__checkpoint_response__free_unpacked(response, NULL);
    }
    sc_status_free(&status);
    return exit_code;
}

static void ctl_print_entry(const ctl_config_t *config, const Stockd__V1__LedgerEntry *e)
{
    static const char *const ops[] = {"?", "DECREMENT", "INCREMENT", "SET"};
    const char *op = e->op >= 0 && e->op <= 3 ? ops[e->op] : "?";
    const char *reason =
        protobuf_c_enum_descriptor_get_value(&stockd__v1__reason__descriptor, e->reason)
            ? protobuf_c_enum_descriptor_get_value(&stockd__v1__reason__descriptor, e->reason)->name
            : "?";
    if (config->json) {
        json_t *object = json_pack(
            "{s:I,s:I,s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:s,s:s,s:s}", "seq", (json_int_t)e->seq,
            "time_us", (json_int_t)e->time_us, "op", op, "location_id", e->item->location_id,
            "app_id", e->item->app_id, "catalog_item_id", e->item->catalog_item_id, "variant",
            e->item->variant, "order_id", e->order_id, "delta", (json_int_t)e->delta,
            "available_after", (json_int_t)e->available_after, "reason", reason, "request_id",
            e->request_id, "reason_text", e->reason_text);
        char *text = json_dumps(object, JSON_COMPACT);
        printf("%s\n", text ? text : "{}");
        free(text);
        json_decref(object);
    } else {
        printf("%10llu %-9s %-24s %-24s %-12s %+8lld -> %-8lld %s %s\n", (unsigned long long)e->seq,
               op, e->item->app_id, e->item->catalog_item_id, e->item->variant, (long long)e->delta,
               (long long)e->available_after, reason, e->order_id);
    }
    fflush(stdout);
}

typedef struct {
    const ctl_config_t *config;
    int64_t shown;
} ctl_list_t;

static bool ctl_list_page(void *context, Stockd__V1__StockLevel *const *levels, size_t count)
{
    ctl_list_t *list = context;
    int64_t limit = list->config->count;
    if (limit > 0 && list->shown + (int64_t)count > limit) {
        count = (size_t)(limit - list->shown);
    }
    ctl_print_levels(list->config, levels, count);
    list->shown += (int64_t)count;
    return limit == 0 || list->shown < limit;
}

static int ctl_list(const ctl_config_t *config, sc_client_t *client, char **args, int count)
{
    (void)args;
    if (count != 0) {
        fprintf(stderr, "usage: stockctl list [--location L] [--app A]\n");
        return EXIT_INVALID;
    }
    Stockd__V1__ListStockRequest request = STOCKD__V1__LIST_STOCK_REQUEST__INIT;
    request.tenant_id = (char *)config->tenant;
    request.location_id = (char *)config->location;
    request.app_id = (char *)config->app;
    request.page_size = (int32_t)config->page_size;
    ctl_list_t list = {config, 0};
    sc_status_t status;
    int code = sc_list_all(client, &request, ctl_list_page, &list, config->deadline_ms, &status);
    int exit_code = code == 0 ? EXIT_DONE : ctl_report_error(config, &status);
    sc_status_free(&status);
    return exit_code;
}

static int ctl_history(const ctl_config_t *config, sc_client_t *client, char **args, int count)
{
    if (count != 0 && count != 2) {
        fprintf(stderr, "usage: stockctl history [APP ITEM] [--order-id O] [--after-seq N]\n");
        return EXIT_INVALID;
    }
    Stockd__V1__ItemRef item =
        count == 2 ? ctl_item(config, args) : (Stockd__V1__ItemRef)STOCKD__V1__ITEM_REF__INIT;
    uint64_t after = (uint64_t)config->after_seq;
    int exit_code = EXIT_DONE;
    int64_t shown = 0;
    for (;;) {
        Stockd__V1__HistoryRequest request = STOCKD__V1__HISTORY_REQUEST__INIT;
        request.tenant_id = (char *)config->tenant;
        request.item = count == 2 ? &item : NULL;
        request.order_id = (char *)config->order_id;
        request.after_seq = after;
        request.page_size = (int32_t)config->page_size;
        Stockd__V1__HistoryResponse *response = NULL;
        sc_status_t status;
        if (sc_history(client, &request, &response, config->deadline_ms, &status) != 0) {
            exit_code = ctl_report_error(config, &status);
        }
        sc_status_free(&status);
        if (response == NULL) {
            break;
        }
        for (size_t i = 0; i < response->n_entries; i++) {
            if (config->count == 0 || shown < config->count) {
                ctl_print_entry(config, response->entries[i]);
                shown++;
            }
        }
        after = response->next_after_seq;
        stockd__v1__history_response__free_unpacked(response, NULL);
        if (after == 0 || (config->count > 0 && shown >= config->count)) {
            break;
        }
    }
    return exit_code;
}

typedef struct {
    const ctl_config_t *config;
    int64_t seen;
} ctl_watch_t;

static bool ctl_on_entry(void *context, ProtobufCMessage *message)
{
    ctl_watch_t *watch = context;
    ctl_print_entry(watch->config, (Stockd__V1__LedgerEntry *)message);
    protobuf_c_message_free_unpacked(message, NULL);
    watch->seen++;
    return watch->config->count == 0 || watch->seen < watch->config->count;
}

static int ctl_watch(const ctl_config_t *config, sc_client_t *client, char **args, int count)
{
    (void)args;
    if (count != 0) {
        fprintf(stderr, "usage: stockctl watch [--after-seq N] [--count N]\n");
        return EXIT_INVALID;
    }
    Stockd__V1__WatchRequest request = STOCKD__V1__WATCH_REQUEST__INIT;
    request.tenant_id = (char *)config->tenant;
    request.after_seq = (uint64_t)config->after_seq;
    ctl_watch_t watch = {config, 0};
    sc_status_t status;
    int code =
        sc_call_stream(client, "/stockd.v1.Inventory/Watch", &request.base,
                       &stockd__v1__ledger_entry__descriptor, ctl_on_entry, &watch, 0, &status);
    /* stopping after --count entries cancels the stream: that is success */
    bool done = code == 0 || (code == 1 && config->count > 0 && watch.seen >= config->count);
    int exit_code = done ? EXIT_DONE : ctl_report_error(config, &status);
    sc_status_free(&status);
    return exit_code;
}

static int ctl_import_command(const ctl_config_t *config, sc_client_t *client, char **args,
                              int count)
{
    if (count != 1) {
        fprintf(stderr, "usage: stockctl import FILE\n");
        return EXIT_INVALID;
    }
    ctl_transfer_t transfer = {client, config->tenant, config->deadline_ms, config->json,
                               (size_t)config->chunk_rows};
    return ctl_import(&transfer, args[0]);
}

static int ctl_export_command(const ctl_config_t *config, sc_client_t *client, char **args,
                              int count)
{
    if (count != 1) {
        fprintf(stderr, "usage: stockctl export FILE\n");
        return EXIT_INVALID;
    }
    ctl_transfer_t transfer = {client, config->tenant, config->deadline_ms, config->json,
                               (size_t)config->chunk_rows};
    return ctl_export(&transfer, args[0]);
}

typedef int ctl_command_fn(const ctl_config_t *config, sc_client_t *client, char **args, int count);

static const struct {
    const char *name;
    ctl_command_fn *run;
    bool needs_stockd;
} ctl_commands[] = {
    {"health", ctl_health, true},
    {"get", ctl_get, true},
    {"set", ctl_set, true},
    {"decrement", ctl_decrement, true},
    {"increment", ctl_increment, true},
    {"wix-sign", ctl_wix_sign, false},
    {"backup", ctl_backup, true},
    {"list", ctl_list, true},
    {"history", ctl_history, true},
    {"watch", ctl_watch, true},
    {"import", ctl_import_command, true},
    {"export", ctl_export_command, true},
};

int main(int argc, char **argv)
{
    ctl_config_t config;
    memset(&config, 0, sizeof(config));
    char *arguments[8];
    int count = 0;
    cfg_parse_result_t parsed =
        cfg_parse_mixed(&ctl_spec, &config, argc, argv, arguments, 8, &count, stdout, stderr);
    if (parsed != CFG_PARSE_OK) {
        return parsed == CFG_PARSE_EXIT_SUCCESS ? EXIT_DONE : EXIT_INVALID;
    }
    if (count == 0) {
        cfg_print_help(&ctl_spec, stderr);
        return EXIT_INVALID;
    }
    for (size_t c = 0; c < sizeof(ctl_commands) / sizeof(ctl_commands[0]); c++) {
        if (strcmp(ctl_commands[c].name, arguments[0]) != 0) {
            continue;
        }
        grpc_init();
        sc_client_t *client =
            ctl_commands[c].needs_stockd ? sc_client_new(config.stockd, NULL) : NULL;
        int exit_code = ctl_commands[c].run(&config, client, arguments + 1, count - 1);
        sc_client_free(client);
        sc_thread_release();
        grpc_shutdown();
        return exit_code;
    }
    fprintf(stderr, "stockctl: unknown command \"%.32s\" (see --help)\n", arguments[0]);
    return EXIT_INVALID;
}
