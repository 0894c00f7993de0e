/* ctl_cluster.c — see ctl_cluster.h. */
#include "ctl_cluster.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl_output.h"
#include "stockd/v1/admin.pb-c.h"

static json_t *ctl_cluster_json(const Stockd__V1__ClusterStatusResponse *response)
{
    json_t *members = json_array();
    for (size_t i = 0; i < response->n_members; i++) {
        const Stockd__V1__ClusterMember *m = response->members[i];
        json_array_append_new(
            members, json_pack("{s:I,s:s,s:s,s:b,s:I,s:I}", "node_id", (json_int_t)m->node_id,
                               "raft_address", m->raft_address, "grpc_address", m->grpc_address,
                               "leader", m->leader, "match_index", (json_int_t)m->match_index,
                               "lag", (json_int_t)m->lag));
    }
    return json_pack(
        "{s:I,s:s,s:I,s:I,s:s,s:I,s:I,s:I,s:o}", "node_id", (json_int_t)response->node_id, "role",
        response->role, "term", (json_int_t)response->term, "leader_id",
        (json_int_t)response->leader_id, "leader_address", response->leader_address, "commit_index",
        (json_int_t)response->commit_index, "applied_index", (json_int_t)response->applied_index,
        "last_index", (json_int_t)response->last_index, "members", members);
}

static void ctl_cluster_table(const Stockd__V1__ClusterStatusResponse *response)
{
    printf("node %llu: %s, term %llu, commit %llu, applied %llu, last %llu\n",
           (unsigned long long)response->node_id, response->role,
           (unsigned long long)response->term, (unsigned long long)response->commit_index,
           (unsigned long long)response->applied_index, (unsigned long long)response->last_index);
    printf("%-6s %-8s %-24s %-24s %10s %8s\n", "NODE", "ROLE", "RAFT", "GRPC", "MATCH", "LAG");
    bool leader_here = strcmp(response->role, "leader") == 0;
    for (size_t i = 0; i < response->n_members; i++) {
        const Stockd__V1__ClusterMember *m = response->members[i];
        char match[24] = "-", lag[24] = "-"; /* known on the leader only */
        if (leader_here) {
            snprintf(match, sizeof(match), "%llu", (unsigned long long)m->match_index);
            snprintf(lag, sizeof(lag), "%llu", (unsigned long long)m->lag);
        }
        printf("%-6llu %-8s %-24s %-24s %10s %8s\n", (unsigned long long)m->node_id,
               m->leader ? "leader" : "", m->raft_address, m->grpc_address, match, lag);
    }
}

/* cluster status: Admin/ClusterStatus. */
static int ctl_cluster_status(const ctl_config_t *config, sc_client_t *client)
{
    Stockd__V1__ClusterStatusRequest request = STOCKD__V1__CLUSTER_STATUS_REQUEST__INIT;
    Stockd__V1__ClusterStatusResponse *response = NULL;
    sc_status_t status;
    int code = sc_call_unary(client, "/stockd.v1.Admin/ClusterStatus", &request.base,
                             &stockd__v1__cluster_status_response__descriptor,
                             (ProtobufCMessage **)&response, config->deadline_ms, &status);
    int exit_code = code == 0 ? EXIT_DONE : ctl_report_error(config, &status);
    if (response != NULL && config->json) {
        ctl_json_print(ctl_cluster_json(response));
    } else if (response != NULL) {
        ctl_cluster_table(response);
    }
    if (response != NULL) {
        stockd__v1__cluster_status_response__free_unpacked(response, NULL);
    }
    sc_status_free(&status);
    return exit_code;
}

/* cluster transfer-leader [NODE_ID]: Admin/TransferLeadership (to the leader's admin). */
static int ctl_cluster_transfer(const ctl_config_t *config, sc_client_t *client, const char *id)
{
    Stockd__V1__TransferLeadershipRequest request = STOCKD__V1__TRANSFER_LEADERSHIP_REQUEST__INIT;
    if (id != NULL) {
        char *end = NULL;
        errno = 0;
        unsigned long long value = strtoull(id, &end, 10);
        if (errno != 0 || end == id || *end != '\0' || id[0] == '-' || value == 0) {
            return ctl_invalid(config->json, "NODE_ID: a member's id, 1..2^32-1 (got \"%s\")", id);
        }
        request.node_id = value;
    }
    Stockd__V1__TransferLeadershipResponse *response = NULL;
    sc_status_t status;
    int code = sc_call_unary(client, "/stockd.v1.Admin/TransferLeadership", &request.base,
                             &stockd__v1__transfer_leadership_response__descriptor,
                             (ProtobufCMessage **)&response, config->deadline_ms, &status);
    int exit_code = code == 0 ? EXIT_DONE : ctl_report_error(config, &status);
    if (response != NULL && config->json) {
        ctl_json_print(json_pack("{s:I}", "leader_id", (json_int_t)response->leader_id));
    } else if (response != NULL) {
        printf("leadership moved to node %llu\n", (unsigned long long)response->leader_id);
    }
    if (response != NULL) {
        stockd__v1__transfer_leadership_response__free_unpacked(response, NULL);
    }
    sc_status_free(&status);
    return exit_code;
}

int ctl_cluster(const ctl_config_t *config, sc_client_t *client, char **args, int count)
{
    if (count == 1 && strcmp(args[0], "status") == 0) {
        return ctl_cluster_status(config, client);
    }
    if ((count == 1 || count == 2) && strcmp(args[0], "transfer-leader") == 0) {
        return ctl_cluster_transfer(config, client, count == 2 ? args[1] : NULL);
    }
    return ctl_invalid(config->json, "cluster takes status, or transfer-leader [NODE_ID] (see "
                                     "`stockctl help cluster`)");
}
