/* ctl_ledger.c — see ctl_ledger.h. */
#include "ctl_ledger.h"

#include <grpc/grpc.h>
#include <stdio.h>
#include <string.h>

#include "ctl_output.h"
#include "util.h"

/* ---- the ledger's end ---- */

/* Sets *more_out when the tenant's ledger holds an entry after seq `after`. A seq that ledger
 * retention pruned (OUT_OF_RANGE) counts as "more": the end lies above it. Returns 0 or the
 * gRPC code of the failed call (status holds it). */
static int ctl_ledger_more(sc_client_t *client, const char *tenant, uint64_t after,
                           int64_t deadline_ms, bool *more_out, sc_status_t *status)
{
    Stockd__V1__HistoryRequest request = STOCKD__V1__HISTORY_REQUEST__INIT;
    request.tenant_id = (char *)tenant;
    request.after_seq = after;
    request.page_size = 1;
    Stockd__V1__HistoryResponse *response = NULL;
    sc_status_free(status);
    int code = sc_history(client, &request, &response, deadline_ms, status);
    *more_out = code == GRPC_STATUS_OUT_OF_RANGE || (response != NULL && response->n_entries > 0);
    if (response != NULL) {
        stockd__v1__history_response__free_unpacked(response, NULL);
    }
    if (code == GRPC_STATUS_OUT_OF_RANGE) {
        sc_status_free(status);
        code = 0;
    }
    return code;
}

/* stockd has no call that answers "the current seq" cheaply: Admin/Checkpoint reports one but
 * writes a checkpoint, a write's answer carries one but is a write, and paging History to the
 * end reads the whole ledger. History(after_seq = x, page_size = 1) does answer "is there an
 * entry after x?" with one seek, and that answer only changes from yes to no as x grows, so
 * galloping (x = 1, 2, 4, ...) and then bisecting finds the tenant's newest seq in about
 * 2 * log2(seq) small calls (about 60 for a billion entries). Entries committed during the
 * search may land on either side of the answer; what the caller prints is exact: every entry
 * after the seq it reports is shown. */
int ctl_ledger_last_seq(sc_client_t *client, const char *tenant, int64_t deadline_ms,
                        uint64_t *seq_out, sc_status_t *status)
{
    sc_status_init(status);
    *seq_out = 0;
    bool more = false;
    int code = ctl_ledger_more(client, tenant, 0, deadline_ms, &more, status);
    if (code != 0 || !more) {
        return code; /* an empty ledger: seq 0 */
    }
    /* invariant: an entry lies after `low`; once `more` is false, none lies after `high`
     * (seqs stay far below 2^63, where the galloping stops) */
    uint64_t low = 0, high = 1;
    for (int doublings = 0; doublings < 63; doublings++) {
        code = ctl_ledger_more(client, tenant, high, deadline_ms, &more, status);
        if (code != 0 || !more) {
            break;
        }
        low = high;
        high *= 2;
    }
    while (code == 0 && high - low > 1) {
        uint64_t middle = low + (high - low) / 2;
        code = ctl_ledger_more(client, tenant, middle, deadline_ms, &more, status);
        if (more) {
            low = middle;
        } else {
            high = middle;
        }
    }
    *seq_out = code == 0 ? high : 0; /* an entry after high - 1, none after high: high's */
    return code;
}

/* ---- where to start ---- */

/* Reads --after-seq, --from-seq and --from-start (at most one may be given) into *after_out,
 * the seq after which entries are shown; *given_out is false when none was given. Returns
 * EXIT_DONE, or EXIT_INVALID after reporting why. */
static int ctl_start(const ctl_config_t *config, bool *given_out, uint64_t *after_out)
{
    int given = (config->after_seq != NULL) + (config->from_seq != NULL) + config->from_start;
    if (given > 1) {
        return ctl_invalid(config->json, "give one of --after-seq, --from-seq and --from-start");
    }
    const char *flag = config->after_seq != NULL ? "--after-seq" : "--from-seq";
    const char *text = config->after_seq != NULL ? config->after_seq : config->from_seq;
    int64_t value = 0;
    if (text != NULL && (!util_parse_int64(text, &value) || value < 0)) {
        return ctl_invalid(config->json, "%s must be a ledger seq (an integer >= 0), got \"%.32s\"",
                           flag, text);
    }
    *given_out = given == 1;
    /* --from-seq N shows N itself: it starts after N - 1 */
    *after_out = config->from_seq != NULL && value > 0 ? (uint64_t)value - 1 : (uint64_t)value;
    return EXIT_DONE;
}

/* ---- history ---- */

static Stockd__V1__ItemRef ctl_history_item(const ctl_config_t *config, char **args, int count)
{
    Stockd__V1__ItemRef item = STOCKD__V1__ITEM_REF__INIT;
    if (count == 2) {
        item.location_id = (char *)config->location;
        item.app_id = args[0];
        item.catalog_item_id = args[1];
        item.variant = (char *)config->variant;
    }
    return item;
}

/* Prints one page of history within --count; returns false when --count is reached. */
static bool ctl_history_page(const ctl_config_t *config, ctl_entries_t *entries,
                             const Stockd__V1__HistoryResponse *response)
{
    size_t count = response->n_entries;
    if (config->count > 0 && (int64_t)(entries->rows + count) > config->count) {
        count = (size_t)(config->count - (int64_t)entries->rows);
    }
    ctl_entries_add(entries, response->entries, count);
    return config->count == 0 || (int64_t)entries->rows < config->count;
}

int ctl_history(const ctl_config_t *config, sc_client_t *client, char **args, int count)
{
    bool given = false;
    uint64_t after = 0;
    if (count != 0 && count != 2) {
        return ctl_invalid(config->json, "history takes no arguments, or APP ITEM (see "
                                         "`stockctl help history`)");
    }
    if (ctl_start(config, &given, &after) != EXIT_DONE) {
        return EXIT_INVALID;
    }
    Stockd__V1__ItemRef item = ctl_history_item(config, args, count);
    ctl_entries_t entries;
    ctl_entries_init(&entries, config->json);
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
            int exit_code = ctl_report_error(config, &status);
            sc_status_free(&status);
            return exit_code;
        }
        sc_status_free(&status);
        bool more = ctl_history_page(config, &entries, response);
        after = response->next_after_seq;
        stockd__v1__history_response__free_unpacked(response, NULL);
        if (after == 0 || !more) {
            break;
        }
    }
    ctl_entries_end(&entries);
    return EXIT_DONE;
}

/* ---- watch ---- */

typedef struct {
    const ctl_config_t *config;
    ctl_entries_t entries;
} ctl_watch_t;

static bool ctl_on_entry(void *context, ProtobufCMessage *message)
{
    ctl_watch_t *watch = context;
    Stockd__V1__LedgerEntry *entry = (Stockd__V1__LedgerEntry *)message;
    ctl_entries_add(&watch->entries, &entry, 1);
    protobuf_c_message_free_unpacked(message, NULL);
    return watch->config->count == 0 || (int64_t)watch->entries.rows < watch->config->count;
}

/* Where a watch starts: as given, else now (the tenant's current seq). */
static int ctl_watch_start(const ctl_config_t *config, sc_client_t *client, uint64_t *after_out)
{
    bool given = false;
    if (ctl_start(config, &given, after_out) != EXIT_DONE) {
        return EXIT_INVALID;
    }
    if (!given) {
        sc_status_t status;
        int exit_code = ctl_ledger_last_seq(client, config->tenant, config->deadline_ms, after_out,
                                            &status) == 0
                            ? EXIT_DONE
                            : ctl_report_error(config, &status);
        sc_status_free(&status);
        if (exit_code != EXIT_DONE) {
            return exit_code;
        }
    }
    fprintf(stderr, "stockctl: watching tenant %s after ledger seq %llu%s\n", config->tenant,
            (unsigned long long)*after_out,
            given ? "" : " (now; --from-start or --from-seq N replays the ledger)");
    return EXIT_DONE;
}

int ctl_watch(const ctl_config_t *config, sc_client_t *client, char **args, int count)
{
    (void)args;
    uint64_t after = 0;
    if (count != 0) {
        return ctl_invalid(config->json, "watch takes no arguments (see `stockctl help watch`)");
    }
    int exit_code = ctl_watch_start(config, client, &after);
    if (exit_code != EXIT_DONE) {
        return exit_code;
    }
    Stockd__V1__WatchRequest request = STOCKD__V1__WATCH_REQUEST__INIT;
    request.tenant_id = (char *)config->tenant;
    request.after_seq = after;
    ctl_watch_t watch = {config, {0}};
    ctl_entries_init(&watch.entries, config->json);
    sc_status_t status;
    int code =
        sc_call_stream(client, "/stockd.v1.Inventory/Watch", &request.base,
                       &stockd__v1__ledger_entry__descriptor, ctl_on_entry, &watch, 0, &status);
    /* stopping after --count entries cancels the stream: that is success */
    bool done = code == 0 || (code == GRPC_STATUS_CANCELLED && config->count > 0 &&
                              (int64_t)watch.entries.rows >= config->count);
    if (done) {
        ctl_entries_end(&watch.entries);
    }
    exit_code = done ? EXIT_DONE : ctl_report_error(config, &status);
    sc_status_free(&status);
    return exit_code;
}

/* ---- seq ---- */

int ctl_seq(const ctl_config_t *config, sc_client_t *client, char **args, int count)
{
    (void)args;
    if (count != 0) {
        return ctl_invalid(config->json, "seq takes no arguments (see `stockctl help seq`)");
    }
    uint64_t seq = 0;
    sc_status_t status;
    int code = ctl_ledger_last_seq(client, config->tenant, config->deadline_ms, &seq, &status);
    int exit_code = code == 0 ? EXIT_DONE : ctl_report_error(config, &status);
    sc_status_free(&status);
    if (code == 0 && config->json) {
        ctl_json_print(
            json_pack("{s:s,s:I}", "tenant_id", config->tenant, "ledger_seq", (json_int_t)seq));
    } else if (code == 0) {
        printf("%llu\n", (unsigned long long)seq);
    }
    return exit_code;
}
