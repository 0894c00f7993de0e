/* ctl_cluster.h — stockctl cluster: the replication group (docs/api.md 7), via stockd's admin
 * listener. */
#ifndef STOCKCLIENT_CTL_CLUSTER_H
#define STOCKCLIENT_CTL_CLUSTER_H

#include "ctl.h"
#include "stockclient.h"

/* cluster status | cluster transfer-leader [NODE_ID] */
int ctl_cluster(const ctl_config_t *config, sc_client_t *client, char **args, int count);

#endif
