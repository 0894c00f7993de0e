/* ctl_output.c — see ctl_output.h. */
#include "ctl_output.h"

#include <grpc/grpc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A table column is as wide as the longest value of the first rows, within these bounds. */
#define CTL_COLUMN_WIDTH_MAX 64

static int ctl_width(int current, const char *text)
{
    size_t length = strlen(text);
    int width = length > CTL_COLUMN_WIDTH_MAX ? CTL_COLUMN_WIDTH_MAX : (int)length;
    return width > current ? width : current;
}

void ctl_json_print(json_t *value)
{
    char *text = value != NULL ? json_dumps(value, JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;
    printf("%s\n", text != NULL ? text
                                : "{\"error\":{\"code\":\"INTERNAL\",\"message\":"
                                  "\"out of memory in stockctl\"}}");
    free(text);
    json_decref(value);
}

void ctl_time_iso(int64_t time_us, char out[32])
{
    time_t seconds = (time_t)(time_us / 1000000);
    struct tm utc;
    if (time_us < 0 || gmtime_r(&seconds, &utc) == NULL) {
        snprintf(out, 32, "-");
        return;
    }
    size_t length = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &utc);
    snprintf(out + length, 32 - length, ".%03dZ", (int)(time_us % 1000000 / 1000));
}

void ctl_time_iso_seconds(int64_t seconds, char out[32])
{
    time_t when = (time_t)seconds;
    struct tm utc;
    if (seconds < 0 || gmtime_r(&when, &utc) == NULL ||
        strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &utc) == 0) {
        snprintf(out, 32, "-");
    }
}

/* ---- levels ---- */

static json_t *ctl_level_json(const Stockd__V1__StockLevel *l)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:I,s:b,s:I,s:I,s:I,s:b}", "location_id",
                     l->item->location_id, "app_id", l->item->app_id, "catalog_item_id",
                     l->item->catalog_item_id, "variant", l->item->variant, "available",
                     (json_int_t)l->available, "tracked", l->tracked, "floor", (json_int_t)l->floor,
                     "version", (json_int_t)l->version, "updated_at_us",
                     (json_int_t)l->updated_at_us, "exists", l->version > 0);
}

void ctl_listing_init(ctl_listing_t *listing, bool json)
{
    memset(listing, 0, sizeof(*listing));
    listing->json = json;
    /* at least as wide as the headers LOCATION, APP, ITEM, VARIANT */
    int headers[4] = {8, 3, 4, 7};
    memcpy(listing->widths, headers, sizeof(headers));
}

static void ctl_listing_start(ctl_listing_t *listing)
{
    listing->started = true;
    if (listing->json) {
        fputc('[', stdout);
        return;
    }
    const int *w = listing->widths;
    printf("%-*s  %-*s  %-*s  %-*s  %12s  %7s  %8s  %7s\n", w[0], "LOCATION", w[1], "APP", w[2],
           "ITEM", w[3], "VARIANT", "AVAILABLE", "TRACKED", "FLOOR", "VERSION");
}

static void ctl_level_row(const ctl_listing_t *listing, const Stockd__V1__StockLevel *l)
{
    const int *w = listing->widths;
    printf("%-*s  %-*s  %-*s  %-*s  %12lld  %7s  %8lld  %7llu%s\n", w[0], l->item->location_id,
           w[1], l->item->app_id, w[2], l->item->catalog_item_id, w[3], l->item->variant,
           (long long)l->available, l->tracked ? "yes" : "no", (long long)l->floor,
           (unsigned long long)l->version, l->version == 0 ? "  (never set)" : "");
}

void ctl_listing_add(ctl_listing_t *listing, Stockd__V1__StockLevel *const *levels, size_t count)
{
    if (count == 0) {
        return;
    }
    if (!listing->started) {
        for (size_t i = 0; i < count; i++) {
            const Stockd__V1__ItemRef *item = levels[i]->item;
            const char *texts[4] = {item->location_id, item->app_id, item->catalog_item_id,
                                    item->variant};
            for (int c = 0; c < 4; c++) {
                listing->widths[c] = ctl_width(listing->widths[c], texts[c]);
            }
        }
        ctl_listing_start(listing);
    }
    for (size_t i = 0; i < count; i++) {
        if (listing->json) {
            /* one level per line inside the one array: "[\n{..},\n{..}\n]" */
            fputs(listing->rows + i == 0 ? "\n" : ",\n", stdout);
            json_t *object = ctl_level_json(levels[i]);
            char *text = object != NULL ? json_dumps(object, JSON_COMPACT) : NULL;
            fputs(text != NULL ? text : "null", stdout);
            free(text);
            json_decref(object);
        } else {
            ctl_level_row(listing, levels[i]);
        }
    }
    listing->rows += count;
    fflush(stdout);
}

void ctl_listing_end(ctl_listing_t *listing)
{
    if (!listing->started) {
        ctl_listing_start(listing);
    }
    if (listing->json) {
        fputs(listing->rows > 0 ? "\n]\n" : "]\n", stdout);
    }
    fflush(stdout);
}

void ctl_listing_abort(ctl_listing_t *listing)
{
    if (listing->json && listing->started) {
        fputc('\n', stdout); /* the error object that follows gets a line of its own */
    }
    fflush(stdout);
}

/* ---- ledger entries ---- */

static const char *ctl_op_name(Stockd__V1__Op op)
{
    switch (op) {
    case STOCKD__V1__OP__OP_DECREMENT:
        return "DECREMENT";
    case STOCKD__V1__OP__OP_INCREMENT:
        return "INCREMENT";
    case STOCKD__V1__OP__OP_SET:
        return "SET";
    case STOCKD__V1__OP__OP_UNSPECIFIED:
    case _STOCKD__V1__OP_IS_INT_SIZE:
        break;
    }
    return "?";
}

/* "REASON_RECOUNT" for JSON; tables drop the prefix. */
static const char *ctl_reason_name(int reason)
{
    const ProtobufCEnumValue *value =
        protobuf_c_enum_descriptor_get_value(&stockd__v1__reason__descriptor, reason);
    return value != NULL ? value->name : "?";
}

static json_t *ctl_entry_json(const Stockd__V1__LedgerEntry *e)
{
    char time_iso[32];
    ctl_time_iso(e->time_us, time_iso);
    const Stockd__V1__ItemRef *item = e->item;
    return json_pack("{s:I,s:I,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:s,s:s,s:s,s:s,s:s}", "seq",
                     (json_int_t)e->seq, "time_us", (json_int_t)e->time_us, "time", time_iso, "op",
                     ctl_op_name(e->op), "location_id", item->location_id, "app_id", item->app_id,
                     "catalog_item_id", item->catalog_item_id, "variant", item->variant, "order_id",
                     e->order_id, "delta", (json_int_t)e->delta, "available_after",
                     (json_int_t)e->available_after, "reason", ctl_reason_name(e->reason),
                     "request_id", e->request_id, "reason_text", e->reason_text, "actor", e->actor,
                     "on_behalf_of", e->on_behalf_of);
}

/* The ACTOR cell: the identity's name, "-" for callers stockd knew by no identity. */
static const char *ctl_actor(const Stockd__V1__LedgerEntry *e)
{
    return e->actor[0] != '\0' ? e->actor : "-";
}

void ctl_entries_init(ctl_entries_t *entries, bool json)
{
    memset(entries, 0, sizeof(*entries));
    entries->json = json;
    /* LOCATION, APP, ITEM, VARIANT, ORDER, ACTOR, REQUEST: the headers' widths, a little more
     * for ids */
    int minimum[7] = {8, 8, 12, 7, 8, 5, 7};
    memcpy(entries->widths, minimum, sizeof(minimum));
}

static void ctl_entries_start(ctl_entries_t *entries)
{
    entries->started = true;
    if (entries->json) {
        return;
    }
    const int *w = entries->widths;
    printf("%10s  %-24s  %-9s  %-*s  %-*s  %-*s  %-*s  %9s  %9s  %-14s  %-*s  %-*s  %-*s  %s\n",
           "SEQ", "TIME (UTC)", "OP", w[0], "LOCATION", w[1], "APP", w[2], "ITEM", w[3], "VARIANT",
           "DELTA", "AVAILABLE", "REASON", w[4], "ORDER", w[5], "ACTOR", w[6], "REQUEST",
           "ON BEHALF OF");
}

/* One row. The last column, ON BEHALF OF, is printed only when the entry has one, so rows
 * without it carry no trailing blanks. */
static void ctl_entry_row(const ctl_entries_t *entries, const Stockd__V1__LedgerEntry *e)
{
    char time_iso[32];
    ctl_time_iso(e->time_us, time_iso);
    const char *reason = ctl_reason_name(e->reason);
    if (strncmp(reason, "REASON_", 7) == 0) {
        reason += 7;
    }
    const int *w = entries->widths;
    const Stockd__V1__ItemRef *item = e->item;
    bool on_behalf = e->on_behalf_of[0] != '\0';
    printf("%10llu  %-24s  %-9s  %-*s  %-*s  %-*s  %-*s  %+9lld  %9lld  %-14s  %-*s  %-*s  %-*s%s%s"
           "\n",
           (unsigned long long)e->seq, time_iso, ctl_op_name(e->op), w[0], item->location_id, w[1],
           item->app_id, w[2], item->catalog_item_id, w[3], item->variant, (long long)e->delta,
           (long long)e->available_after, reason, w[4], e->order_id, w[5], ctl_actor(e),
           on_behalf ? w[6] : 0, e->request_id, on_behalf ? "  " : "", e->on_behalf_of);
}

void ctl_entries_add(ctl_entries_t *entries, Stockd__V1__LedgerEntry *const *page, size_t count)
{
    if (count == 0) {
        return;
    }
    if (!entries->started) {
        for (size_t i = 0; i < count; i++) {
            const Stockd__V1__ItemRef *item = page[i]->item;
            const char *texts[7] = {item->location_id,  item->app_id,      item->catalog_item_id,
                                    item->variant,      page[i]->order_id, ctl_actor(page[i]),
                                    page[i]->request_id};
            for (int c = 0; c < 7; c++) {
                entries->widths[c] = ctl_width(entries->widths[c], texts[c]);
            }
        }
        ctl_entries_start(entries);
    }
    for (size_t i = 0; i < count; i++) {
        if (entries->json) {
            ctl_json_print(ctl_entry_json(page[i]));
        } else {
            ctl_entry_row(entries, page[i]);
        }
    }
    entries->rows += count;
    fflush(stdout);
}

void ctl_entries_end(ctl_entries_t *entries)
{
    if (!entries->started) {
        ctl_entries_start(entries);
    }
    fflush(stdout);
}

/* ---- checkpoints ---- */

static json_t *ctl_checkpoint_json(const Stockd__V1__CheckpointInfo *checkpoint)
{
    char created[32];
    ctl_time_iso_seconds(checkpoint->created_unix_seconds, created);
    return json_pack("{s:s,s:s,s:I,s:s}", "name", checkpoint->name, "path", checkpoint->path,
                     "created_unix_seconds", (json_int_t)checkpoint->created_unix_seconds,
                     "created", created);
}

static void ctl_checkpoints_json(const Stockd__V1__ListCheckpointsResponse *response)
{
    json_t *list = json_array();
    for (size_t i = 0; list != NULL && i < response->n_checkpoints; i++) {
        json_t *item = ctl_checkpoint_json(response->checkpoints[i]);
        if (item == NULL || json_array_append_new(list, item) != 0) {
            json_decref(list); /* ctl_json_print reports the lack of memory */
            list = NULL;
        }
    }
    ctl_json_print(list == NULL ? NULL
                                : json_pack("{s:o,s:I,s:I}", "checkpoints", list, "count",
                                            (json_int_t)response->n_checkpoints, "checkpoints_max",
                                            (json_int_t)response->checkpoints_max));
}

void ctl_checkpoints_print(bool json, const Stockd__V1__ListCheckpointsResponse *response)
{
    if (json) {
        ctl_checkpoints_json(response);
        return;
    }
    int width = 4; /* "NAME" */
    for (size_t i = 0; i < response->n_checkpoints; i++) {
        width = ctl_width(width, response->checkpoints[i]->name);
    }
    printf("%-*s  %-20s  %s\n", width, "NAME", "CREATED (UTC)", "PATH");
    for (size_t i = 0; i < response->n_checkpoints; i++) {
        const Stockd__V1__CheckpointInfo *checkpoint = response->checkpoints[i];
        char created[32];
        ctl_time_iso_seconds(checkpoint->created_unix_seconds, created);
        printf("%-*s  %-20s  %s\n", width, checkpoint->name, created, checkpoint->path);
    }
    printf("%zu of %d checkpoints\n", response->n_checkpoints, (int)response->checkpoints_max);
    fflush(stdout);
}

/* ---- errors ---- */

void ctl_error_print(bool json, const char *code, const char *message, const char *request_id)
{
    if (!json) {
        fprintf(stderr, "stockctl: %s: %s\n", code, message);
        return;
    }
    json_t *error = json_pack("{s:s,s:s}", "code", code, "message", message);
    if (error != NULL && request_id != NULL && request_id[0] != '\0') {
        json_object_set_new(error, "request_id", json_string(request_id));
    }
    ctl_json_print(error != NULL ? json_pack("{s:o}", "error", error) : NULL);
    fflush(stdout);
}

int ctl_invalid(bool json, const char *format, ...)
{
    char message[512];
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(message, sizeof(message), format, arguments);
    va_end(arguments);
    if (json) {
        ctl_error_print(true, "INVALID_ARGUMENT", message, NULL);
    } else {
        fprintf(stderr, "stockctl: %s\n", message);
    }
    return EXIT_INVALID;
}

/* No connection could be made: the call was never sent (so nothing was applied either). */
static bool ctl_unreachable(const sc_status_t *status)
{
    return status->code == GRPC_STATUS_UNAVAILABLE &&
           strstr(status->message, "failed to connect") != NULL;
}

static bool ctl_tls_given(const ctl_config_t *config)
{
    return config->tls_ca[0] != '\0' || config->tls_cert[0] != '\0';
}

/* No connection: where the command went, and what to check. */
static void ctl_hint_unreachable(const ctl_config_t *config, const sc_status_t *status)
{
    if (config->target_admin) {
        fprintf(stderr,
                "stockctl: cannot reach stockd's admin listener at %s: is stockd running with "
                "--admin-listen %s? (--admin or STOCKD_ADMIN_ADDR points elsewhere)\n",
                config->target, config->target);
    } else {
        fprintf(stderr,
                "stockctl: cannot reach stockd at %s: is it running? (`make run` starts one; "
                "--stockd or STOCKD_ADDR points elsewhere)\n",
                config->target);
    }
    if (ctl_tls_given(config)) {
        /* a failed TLS handshake is reported by gRPC as a connection that failed */
        fprintf(stderr,
                "stockctl: TLS is on (--tls-ca/--tls-cert): a failed handshake looks the same. "
                "Check that stockd serves TLS (its --tls-cert, --tls-key), that --tls-ca "
                "(STOCKD_TLS_CA) holds the CA that signed its certificate, that the certificate "
                "names the host you gave, and that a client certificate (--tls-cert, --tls-key) "
                "is given when stockd asks for one\n");
    } else {
        fprintf(stderr, "stockctl: if stockd serves TLS, give its CA with --tls-ca (or "
                        "STOCKD_TLS_CA)\n");
    }
    fprintf(stderr, "  detail: %s\n", status->message);
}

/* What to do about a refusal, after the error line itself. */
static void ctl_hint(const ctl_config_t *config, const sc_status_t *status)
{
    bool token = config->token[0] != '\0';
    bool certificate = config->tls_cert[0] != '\0';
    if (status->code == GRPC_STATUS_UNAUTHENTICATED) {
        fprintf(stderr,
                "stockctl: %s. Give a token with --token-file FILE or --token TOKEN "
                "(STOCKD_TOKEN_FILE, STOCKD_TOKEN), or a client certificate with --tls-cert and "
                "--tls-key (STOCKD_TLS_CERT, STOCKD_TLS_KEY) over TLS (--tls-ca, STOCKD_TLS_CA)\n",
                token || certificate
                    ? "stockd refused the credentials sent (the token or client certificate is "
                      "not in its policy)"
                    : "no credentials were sent, and stockd wants them");
    } else if (status->code == GRPC_STATUS_PERMISSION_DENIED) {
        fprintf(stderr, "stockctl: stockd knows this identity, but its policy does not allow "
                        "this (stockd's message above names the identity, the method and the "
                        "tenant or role); ask stockd's operator to grant it in the policy file "
                        "(stockd --auth-policy)\n");
    } else if (status->code == GRPC_STATUS_UNIMPLEMENTED && config->target_admin) {
        fprintf(stderr,
                "stockctl: %s does not serve stockd.v1.Admin: --admin (STOCKD_ADMIN_ADDR) must "
                "be stockd's --admin-listen address, not its --listen one\n",
                config->target);
    } else if (status->code == GRPC_STATUS_UNAVAILABLE && ctl_tls_given(config)) {
        fprintf(stderr, "stockctl: TLS is on: if the connection failed, check --tls-ca "
                        "(STOCKD_TLS_CA) and that stockd serves TLS\n");
    }
}

int ctl_report_error(const ctl_config_t *config, const sc_status_t *status)
{
    /* stockd says "not applied" when it knows (stopping, not the leader): not unknown */
    bool unknown = status->request_id[0] != '\0' && sc_outcome_unknown(status->code) &&
                   !ctl_unreachable(status) && strstr(status->message, "not applied") == NULL;
    if (config->json) {
        /* the request_id is there whenever retrying with it is what to do */
        ctl_error_print(true, sc_code_name(status->code), status->message,
                        unknown ? status->request_id : NULL);
    } else if (ctl_unreachable(status)) {
        ctl_hint_unreachable(config, status);
    } else {
        ctl_error_print(false, sc_code_name(status->code), status->message, NULL);
        ctl_hint(config, status);
    }
    if (unknown) {
        /* stderr in both modes: --json keeps one document on stdout */
        fprintf(stderr,
                "stockctl: the write may or may not have been applied; retrying it is safe "
                "with: --request-id %s\n",
                status->request_id);
    }
    return ctl_exit_for(status->code);
}
