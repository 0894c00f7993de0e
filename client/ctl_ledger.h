/* ctl_ledger.h — stockctl's ledger commands: history, watch and seq. */
#ifndef STOCKCLIENT_CTL_LEDGER_H
#define STOCKCLIENT_CTL_LEDGER_H

#include <stdint.h>

#include "ctl.h"
#include "stockclient.h"

/* Finds the seq of the tenant's newest ledger entry (0 when it has none) with History calls
 * alone (see ctl_ledger.c for how and why). When ledger retention pruned past that entry, the
 * answer is the seq retention pruned through: the first seq History and Watch still accept.
 * Returns 0 or the gRPC code of a failed call (details in status; the caller releases it with
 * sc_status_free). */
int ctl_ledger_last_seq(sc_client_t *client, const char *tenant, int64_t deadline_ms,
                        uint64_t *seq_out, sc_status_t *status);

/* history [APP ITEM]: the ledger from the start (or --after-seq / --from-seq), all pages. */
int ctl_history(const ctl_config_t *config, sc_client_t *client, char **args, int count);

/* watch: follows the ledger from now (or --after-seq / --from-seq / --from-start). */
int ctl_watch(const ctl_config_t *config, sc_client_t *client, char **args, int count);

/* seq: prints the tenant's current ledger seq (where watch starts by default). */
int ctl_seq(const ctl_config_t *config, sc_client_t *client, char **args, int count);

#endif
