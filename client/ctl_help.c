/* ctl_help.c — see ctl_help.h. The README's "## stockctl" section says the same for readers of
 * the repository; keep the two in step. */
#include "ctl_help.h"

#include <string.h>

/* Each page is a few literals (ISO C only promises 4095 characters per literal). */
typedef struct {
    const char *name;
    const char *usage; /* after "stockctl [options] " */
    const char *text;  /* what it does, its arguments and options, what it prints */
    bool csv;          /* import/export: the CSV columns follow */
    const char *exits; /* its exit codes */
} ctl_help_page_t;

#define CTL_EXITS_STOCKD                                                                           \
    "  2  invalid input: arguments, options, or a value stockd refused (INVALID_ARGUMENT,\n"       \
    "     OUT_OF_RANGE)\n"                                                                         \
    "  3  stockd unreachable, too slow or overloaded (UNAVAILABLE, DEADLINE_EXCEEDED,\n"           \
    "     RESOURCE_EXHAUSTED)\n"                                                                   \
    "  4  anything else\n"

/* After a page's other codes: every command that talks to stockd may meet these. */
#define CTL_EXITS_DENIED                                                                           \
    "  6  credentials missing or refused (UNAUTHENTICATED: see --token, --token-file, --tls-*),\n" \
    "     or the identity may not do this (PERMISSION_DENIED: the policy must grant it)\n"

#define CTL_EXITS_WRITE                                                                            \
    "  0  done (also when the same --request-id was applied before: replayed)\n"                   \
    "  1  refused: insufficient stock (FAILED_PRECONDITION), or the --request-id was used for\n"   \
    "     a different request (ALREADY_EXISTS); nothing changed\n" CTL_EXITS_STOCKD                \
    "When the outcome is unknown (3 or 4 after the call was sent), stockctl prints the\n"          \
    "--request-id to retry with; a retry with it is applied at most once.\n" CTL_EXITS_DENIED

#define CTL_LEVEL_OUTPUT                                                                           \
    "Prints the level after the change as a table (LOCATION APP ITEM VARIANT AVAILABLE\n"          \
    "TRACKED FLOOR VERSION); --json: an array of one level object,\n"                              \
    "[{\"location_id\",\"app_id\",\"catalog_item_id\",\"variant\",\"available\",\"tracked\","      \
    "\"floor\",\n\"version\",\"updated_at_us\",\"exists\"}].\n"

#define CTL_ITEM_ARGUMENTS                                                                         \
    "  APP   app_id, 1..64 bytes\n"                                                                \
    "  ITEM  catalog_item_id, 1..256 bytes\n"                                                      \
    "  --location L   location_id (empty = the tenant's default location)\n"                       \
    "  --variant V    variant (empty = none)\n"

#define CTL_ENTRY_OUTPUT                                                                           \
    "Prints a table, SEQ TIME (UTC, ISO 8601) OP LOCATION APP ITEM VARIANT DELTA AVAILABLE\n"      \
    "(after the change) REASON ORDER ACTOR REQUEST ON BEHALF OF. ACTOR is the identity stockd\n"   \
    "knew the writer by (its policy name; - for a caller without one, as on loopback without\n"    \
    "a policy); ON BEHALF OF is whom that writer said it acted for (the gateway sends\n"           \
    "wix-instance:<instanceId>), shown only when there is one. --json: one object per line\n"      \
    "(JSON lines), {\"seq\",\"time_us\",\"time\",\"op\",\"location_id\",\"app_id\",\n"             \
    "\"catalog_item_id\",\"variant\",\"order_id\",\"delta\",\"available_after\",\"reason\",\n"     \
    "\"request_id\",\"reason_text\",\"actor\",\"on_behalf_of\"} (actor and on_behalf_of \"\" "     \
    "when\n"                                                                                       \
    "there is none).\n"

static const ctl_help_page_t ctl_help_pages[] = {
    {"health", "health",
     "Asks stockd whether it is serving (grpc.health.v1.Health/Check).\n"
     "Prints SERVING or NOT_SERVING; --json: {\"status\":\"SERVING\"}.\n",
     false,
     "  0  SERVING\n  3  NOT_SERVING, or stockd unreachable or too slow\n  4  anything "
     "else\n" CTL_EXITS_DENIED},
    {"get", "get APP ITEM",
     "Reads one level.\n\n" CTL_ITEM_ARGUMENTS "\n"
     "Prints the level as a table (LOCATION APP ITEM VARIANT AVAILABLE TRACKED FLOOR VERSION);\n"
     "an item that was never set shows version 0 and \"(never set)\". --json: an array of one\n"
     "level object, [{\"location_id\",\"app_id\",\"catalog_item_id\",\"variant\",\"available\",\n"
     "\"tracked\",\"floor\",\"version\",\"updated_at_us\",\"exists\"}], exists false for an item\n"
     "that was never set.\n",
     false,
     "  0  done: the item exists\n" CTL_EXITS_STOCKD
     "  5  the item was never set (its level is printed: 0, tracked, floor 0, version "
     "0)\n" CTL_EXITS_DENIED},
    {"set", "set APP ITEM AVAILABLE [--tracked true|false] [--floor N]",
     "Sets a level absolutely (a count), as one SetStock with reason "
     "RECOUNT.\n\n" CTL_ITEM_ARGUMENTS "  AVAILABLE  the new level, an integer within +-10^15\n"
     "  --tracked true|false  whether stock is counted (untracked items never run short);\n"
     "                        not given = keep the current value (new items: true)\n"
     "  --floor N             the lowest level a restricted decrement may leave; not given =\n"
     "                        keep the current value (new items: 0)\n"
     "  --request-id ID       idempotency key (default: a generated one)\n\n" CTL_LEVEL_OUTPUT,
     false, CTL_EXITS_WRITE},
    {"decrement", "decrement APP ITEM QUANTITY",
     "Removes QUANTITY (1..10^9) from a level, reason CORRECTION.\n\n" CTL_ITEM_ARGUMENTS
     "  --restrict        refuse (exit 1) instead of going below the floor\n"
     "  --order-id O      the order this belongs to (shown by history)\n"
     "  --request-id ID   idempotency key (default: a generated one)\n\n" CTL_LEVEL_OUTPUT,
     false, CTL_EXITS_WRITE},
    {"increment", "increment APP ITEM QUANTITY",
     "Adds QUANTITY (1..10^9) to a level, reason RECEIVED.\n\n" CTL_ITEM_ARGUMENTS
     "  --order-id O      the order this belongs to (shown by history)\n"
     "  --request-id ID   idempotency key (default: a generated one)\n\n" CTL_LEVEL_OUTPUT,
     false, CTL_EXITS_WRITE},
    {"list", "list [--location L | --default-location] [--app A] [--count N]",
     "Lists the tenant's levels, every page of ListStock as one listing.\n\n"
     "  --location L    only this location (empty = every location)\n"
     "  --default-location  only the default location (items whose location id is empty)\n"
     "  --app A         only this app_id\n"
     "  --count N       stop after N levels (0 = all)\n"
     "  --page-size N   levels per call, 1..1000\n\n"
     "Prints one table: the header once, columns as wide as the longest id of the first page\n"
     "(at most 64; a longer id later is printed whole). Nothing listed: the header alone.\n"
     "--json: one JSON array of level objects, one per line, [] when nothing is listed:\n"
     "[{\"location_id\",\"app_id\",\"catalog_item_id\",\"variant\",\"available\",\"tracked\","
     "\"floor\",\n\"version\",\"updated_at_us\",\"exists\"}, ...]. If stockd fails part-way, "
     "the array is\nleft open and the error object follows on its own line, so a partial "
     "listing never\nparses as a whole one.\n",
     false, "  0  done\n" CTL_EXITS_STOCKD CTL_EXITS_DENIED},
    {"history", "history [APP ITEM] [--order-id O] [--after-seq N | --from-seq N]",
     "Prints the tenant's ledger, oldest first, every page.\n\n"
     "  APP ITEM        only this item (with --location, --variant)\n"
     "  --order-id O    only this order's entries\n"
     "  --after-seq N   start after seq N (resume after the last seq seen)\n"
     "  --from-seq N    start at seq N\n"
     "  --count N       stop after N entries (0 = all)\n\n" CTL_ENTRY_OUTPUT
     "Nothing found: the header alone (--json: nothing).\n",
     false, "  0  done\n" CTL_EXITS_STOCKD CTL_EXITS_DENIED},
    {"watch", "watch [--from-start | --from-seq N | --after-seq N] [--count N]",
     "Follows the tenant's ledger live, from now: only changes made after it starts.\n"
     "On stderr it says which seq it follows from.\n\n"
     "  --from-start    replay the whole ledger first, then follow\n"
     "  --from-seq N    replay from seq N (N included), then follow\n"
     "  --after-seq N   resume after seq N (the last seq seen), then follow\n"
     "  --count N       stop after N entries (0 = never)\n\n" CTL_ENTRY_OUTPUT
     "A watch that falls too far behind is ended by stockd (RESOURCE_EXHAUSTED, exit 3):\n"
     "catch up with history --after-seq, then watch --after-seq again.\n",
     false,
     "  0  --count entries shown, or stockd ended the stream cleanly\n" CTL_EXITS_STOCKD
         CTL_EXITS_DENIED},
    {"seq", "seq",
     "Prints the tenant's current ledger seq: the seq of its newest entry (0 when it has\n"
     "none), where watch starts by default. --json: {\"tenant_id\",\"ledger_seq\"}.\n",
     false, "  0  done\n" CTL_EXITS_STOCKD CTL_EXITS_DENIED},
    {"import", "import FILE [--chunk-rows N] [--request-id NAME]",
     "Applies a CSV file (- = stdin) with SetStock in atomic chunks of --chunk-rows rows\n"
     "(default 1000), showing progress on a terminal. Bad rows are reported by line number and\n"
     "not applied; the others are. Running the same file again resumes: chunks already\n"
     "applied are recognised by their request ids and not applied twice. --request-id NAME\n"
     "names the run instead of the file, so a new name applies the same file again.\n\n"
     "Prints bad rows and a summary on stderr. --json, on stdout: one {\"line\",\"error\"}\n"
     "object per bad row, then {\"rows_applied\",\"chunks\",\"chunks_already_applied\",\n"
     "\"bad_rows\",\"seconds\"} with \"error\":{\"code\",\"message\"} when a chunk failed.\n",
     true,
     "  0  every row applied\n"
     "  2  some rows were bad (the good ones were applied), or the file or its header is bad\n"
     "  3  stockd unreachable or too slow: stopped; run it again to resume\n"
     "  4  anything else\n" CTL_EXITS_DENIED},
    {"export", "export FILE",
     "Writes every level of the tenant as CSV (- = stdout), all seven columns, ids exactly as\n"
     "stored (open it in a spreadsheet with every column as text). An item stored with a\n"
     "control character in an id (before stockd refused them) is named on stderr and left out.\n"
     "Prints a summary on stderr; --json: {\"rows\",\"rows_not_exported\"} (with \"error\" when\n"
     "stockd failed) on stdout, or on stderr when FILE is -.\n",
     true,
     "  0  done\n"
     "  2  FILE cannot be written\n  3  stockd unreachable or too slow\n"
     "  4  anything else, or some items were left out\n" CTL_EXITS_DENIED},
    {"backup", "backup NAME | backup list | backup remove NAME",
     "Manages RocksDB checkpoints in stockd's --backup-dir. These go to stockd's admin\n"
     "listener, --admin ADDR (STOCKD_ADMIN_ADDR, default 127.0.0.1:50052), which stockd\n"
     "serves only when started with --admin-listen, never on its --listen port; with a policy\n"
     "file the identity needs the admin role.\n\n"
     "  backup NAME         writes a checkpoint to --backup-dir/NAME (NAME: 1..64 bytes of\n"
     "                      [A-Za-z0-9._-], not starting with '.'; \"list\" and \"remove\" are\n"
     "                      reserved words, never taken as a NAME). Prints the path and\n"
     "                      ledger seq; --json: {\"path\",\"ledger_seq\"}.\n"
     "  backup list         the checkpoints, oldest first: a table NAME CREATED (UTC, ISO\n"
     "                      8601) PATH and a last line \"N of MAX checkpoints\" (MAX: stockd's\n"
     "                      --checkpoints-max); --json: {\"checkpoints\":[{\"name\",\"path\",\n"
     "                      "
     "\"created_unix_seconds\",\"created\"}],\"count\",\"checkpoints_max\"}.\n"
     "  backup remove NAME  deletes that checkpoint; --json: {\"name\",\"removed\":true}.\n",
     false,
     "  0  done\n"
     "  1  backup NAME: NAME exists already, or as many checkpoints as allowed exist (remove\n"
     "     old ones); backup remove: no checkpoint of that name\n"
     "  2  invalid input: arguments, options, or a NAME stockd refused (INVALID_ARGUMENT)\n"
     "  3  nothing answers at --admin (is it stockd's --admin-listen?), too slow, or the last\n"
     "     checkpoint was taken too recently (RESOURCE_EXHAUSTED)\n"
     "  4  anything else (UNIMPLEMENTED: --admin is not the admin listener)\n" CTL_EXITS_DENIED},
    {"cluster",
     "cluster status | cluster transfer-leader [NODE_ID] | cluster add-member NODE_ID "
     "RAFT_ADDRESS GRPC_ADDRESS | cluster remove-member NODE_ID",
     "The replication group (README \"Replication\"), through a replica's admin listener,\n"
     "--admin ADDR (its --admin-listen).\n\n"
     "  cluster status            that replica's view: a line \"node N: ROLE, term T, commit C,\n"
     "                            applied A, last L\" and a table NODE ROLE RAFT GRPC MATCH LAG\n"
     "                            (ROLE: leader, voter, standby or spare)\n"
     "                            (MATCH and LAG, how far each member's log has come, only\n"
     "                            from the leader); --json: {\"node_id\",\"role\",\"term\",\n"
     "                            \"leader_id\",\"leader_address\",\"commit_index\",\n"
     "                            \"applied_index\",\"last_index\",\"members\":[{\"node_id\",\n"
     "                            \"raft_address\",\"grpc_address\",\"role\",\"leader\",\n"
     "                            \"match_index\",\n"
     "                            \"lag\"}]}.\n"
     "  cluster transfer-leader [NODE_ID]  asks the leader (--admin must be the leader's) to\n"
     "                            hand leadership to NODE_ID, or to the most up-to-date\n"
     "                            follower; prints the new leader; --json: {\"leader_id\"}.\n"
     "  cluster add-member NODE_ID RAFT_ADDRESS GRPC_ADDRESS  asks the leader to add a replica\n"
     "                            started with --join (a new id, never one used before): it\n"
     "                            catches up by log or snapshot, then votes; --json:\n"
     "                            {\"done\":true}. Asking again finishes an unfinished add.\n"
     "                            Waits up to 90 s (or --deadline-ms when longer).\n"
     "  cluster remove-member NODE_ID  asks the leader to drop a member (not itself: transfer\n"
     "                            leadership first); --json: {\"done\":true}.\n",
     false,
     "  0  done\n"
     "  1  stockd runs as one node; --admin is not the leader; transfer-leader: leadership\n"
     "     did not move within an election timeout (ABORTED); add/remove: another membership\n"
     "     change is under way, or the leader itself was to be removed\n"
     "  2  invalid input (NODE_ID not another member, an id or address in use)\n"
     "  3  nothing answers at --admin, or too slow\n"
     "  4  anything else\n" CTL_EXITS_DENIED},
    {"wix-sign", "wix-sign FILE [--key PEM] [--app-id ID] [--alg ALG] [--ttl T]",
     "Signs a Wix request (or full claims) JSON file as Wix would and prints the token. Needs\n"
     "no stockd. --request-id sets metadata.requestId, --instance-id metadata.instanceId.\n",
     false, "  0  done\n  2  unreadable key or file, or a file with no request in it\n"},
    {"help", "help [COMMAND]",
     "Prints the list of commands, or one command's page (also: stockctl COMMAND --help).\n", false,
     "  0  done\n  2  no such command\n"},
};

static const char ctl_help_csv[] =
    "CSV columns (line 1 must be this header; tracked and floor may be left out):\n"
    "  location_id      0..64 bytes; empty = the tenant's default location\n"
    "  app_id           1..64 bytes\n"
    "  catalog_item_id  1..256 bytes\n"
    "  variant          0..256 bytes; empty = no variant\n"
    "  available        the level to set, an integer within +-10^15\n"
    "  tracked          true or false (also TRUE, FALSE, 1, 0); empty = keep the current value\n"
    "                   (new items are tracked)\n"
    "  floor            an integer within +-10^15; empty = keep the current value (new: 0)\n"
    "Ids are UTF-8 without control characters. Files as spreadsheets save them are read: a\n"
    "UTF-8 byte order mark, CRLF line ends, quoted fields (\"a,b\", \"say \"\"hi\"\"\") and rows\n"
    "of empty fields (skipped). A field may not hold a line break: one record is one line.\n";

const char ctl_help_summary[] =
    "stockctl — stockd from the command line. Options may come before or after the "
    "command.\n\ncommands:\n"
    "  health                    is stockd serving?\n"
    "  get APP ITEM              read a level\n"
    "  set APP ITEM AVAILABLE    set a level (--tracked true|false, --floor N)\n"
    "  decrement APP ITEM QTY    remove stock (--restrict to refuse when short)\n"
    "  increment APP ITEM QTY    add stock\n"
    "  list                      the tenant's levels (--location, --app)\n"
    "  history [APP ITEM]        the ledger (--order-id, --after-seq, --from-seq)\n"
    "  watch                     follow the ledger from now (--from-start, --from-seq)\n"
    "  seq                       the tenant's current ledger seq\n"
    "  import FILE               apply a CSV file in atomic chunks (resumable)\n"
    "  export FILE               write every level as CSV (- = stdout)\n"
    "  backup NAME               RocksDB checkpoint in stockd's --backup-dir/NAME (via --admin)\n"
    "  backup list               the checkpoints (N of MAX)\n"
    "  backup remove NAME        delete a checkpoint\n"
    "  cluster status            the replication group as a replica sees it (via --admin)\n"
    "  cluster transfer-leader [ID]  hand leadership to member ID (default: any) (via --admin)\n"
    "  cluster add-member ID RAFT GRPC  add a replica started with --join (via --admin)\n"
    "  cluster remove-member ID  drop a member from the group (via --admin)\n"
    "  wix-sign FILE             sign a Wix request/claims JSON file as Wix would\n"
    "  help [COMMAND]            this list, or one command's arguments, output and exit\n"
    "                            codes (also: stockctl COMMAND --help)\n\n"
    "TLS and identity (docs/api.md 6): --tls-ca FILE verifies stockd's certificate (TLS on),\n"
    "--tls-cert FILE --tls-key FILE present a client certificate (mTLS), --token T or\n"
    "--token-file FILE (its first line; keeps the token out of ps) send a bearer token.\n\n"
    "exit codes: 0 done; 1 refused (insufficient stock, version or request-id conflict,\n"
    "backup name taken or unknown); 2 invalid input; 3 stockd unreachable or too slow;\n"
    "4 anything else; 5 get: the item was never set; 6 credentials missing or refused, or\n"
    "not permitted. --json prints errors as {\"error\":{\"code\",\"message\"}} on stdout.";

bool ctl_help_command(FILE *out, const char *command)
{
    for (size_t i = 0; i < sizeof(ctl_help_pages) / sizeof(ctl_help_pages[0]); i++) {
        const ctl_help_page_t *page = &ctl_help_pages[i];
        if (strcmp(page->name, command) != 0) {
            continue;
        }
        fprintf(out, "usage: stockctl [options] %s\n\n%s\n", page->usage, page->text);
        if (page->csv) {
            fprintf(out, "%s\n", ctl_help_csv);
        }
        fprintf(out,
                "Options every command takes: --stockd ADDR (STOCKD_ADDR), --tenant T, --json,\n"
                "--deadline-ms MS, and for TLS and identity --tls-ca, --tls-cert, --tls-key,\n"
                "--token, --token-file (STOCKD_TLS_CA, STOCKD_TLS_CERT, STOCKD_TLS_KEY,\n"
                "STOCKD_TOKEN, STOCKD_TOKEN_FILE); `stockctl --help` lists them all.\n"
                "With --json, an error is {\"error\":{\"code\",\"message\"}} on stdout (code: a\n"
                "gRPC status name; \"request_id\" too when the outcome of a write is unknown).\n\n"
                "exit codes:\n%s",
                page->exits);
        return true;
    }
    return false;
}
