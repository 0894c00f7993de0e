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
            members, json_pack("{s:I,s:s,s:s,s:s,s:b,s:I,s:I}", "node_id", (json_int_t)m->node_id,
                               "raft_address", m->raft_address, "grpc_address", m->grpc_address,
                               "role", m->role, "leader", m->leader, "match_index",
                               (json_int_t)m->match_index, "lag", (json_int_t)m->lag));
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
               m->leader ? "leader" : m->role, m->raft_address, m->grpc_address, match, lag);
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

#define CTL_ADD_MEMBER_DEADLINE_MS 90000

/* NODE_ID as a number (false after reporting it invalid). */
static bool ctl_cluster_node_id(const ctl_config_t *config, const char *id, uint64_t *id_out,
                                int *exit_code_out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long value = strtoull(id, &end, 10);
    if (errno != 0 || end == id || *end != '\0' || id[0] == '-' || value == 0 ||
        value > UINT32_MAX) {
        *exit_code_out =
            ctl_invalid(config->json, "NODE_ID: a member's id, 1..2^32-1 (got \"%s\")", id);
        return false;
    }
    *id_out = value;
    return true;
}

/* cluster transfer-leader [NODE_ID]: Admin/TransferLeadership (to the leader's admin). */
static int ctl_cluster_transfer(const ctl_config_t *config, sc_client_t *client, const char *id)
{
    Stockd__V1__TransferLeadershipRequest request = STOCKD__V1__TRANSFER_LEADERSHIP_REQUEST__INIT;
    int invalid = 0;
    if (id != NULL && !ctl_cluster_node_id(config, id, &request.node_id, &invalid)) {
        return invalid;
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

/* An AddMember or RemoveMember call, which answers nothing but its status. */
static int ctl_cluster_change(const ctl_config_t *config, sc_client_t *client, const char *method,
                              const ProtobufCMessage *request,
                              const ProtobufCMessageDescriptor *response_descriptor,
                              const char *done_text)
{
    ProtobufCMessage *response = NULL;
    sc_status_t status;
    int code = sc_call_unary(client, method, request, response_descriptor, &response,
                             config->deadline_ms, &status);
    int exit_code = code == 0 ? EXIT_DONE : ctl_report_error(config, &status);
    if (code == 0 && config->json) {
        ctl_json_print(json_pack("{s:b}", "done", 1));
    } else if (code == 0) {
        printf("%s\n", done_text);
    }
    if (response != NULL) {
        protobuf_c_message_free_unpacked(response, NULL);
    }
    sc_status_free(&status);
    return exit_code;
}

/* cluster add-member NODE_ID RAFT_ADDRESS GRPC_ADDRESS: Admin/AddMember (the leader's admin). */
static int ctl_cluster_add(const ctl_config_t *config, sc_client_t *client, char **args)
{
    Stockd__V1__AddMemberRequest request = STOCKD__V1__ADD_MEMBER_REQUEST__INIT;
    int invalid = 0;
    if (!ctl_cluster_node_id(config, args[0], &request.node_id, &invalid)) {
        return invalid;
    }
    request.raft_address = args[1];
    request.grpc_address = args[2];
    /* stockd waits for the new replica to catch up (up to a minute) before it answers */
    ctl_config_t patient = *config;
    patient.deadline_ms = config->deadline_ms > CTL_ADD_MEMBER_DEADLINE_MS
                              ? config->deadline_ms
                              : CTL_ADD_MEMBER_DEADLINE_MS;
    return ctl_cluster_change(&patient, client, "/stockd.v1.Admin/AddMember", &request.base,
                              &stockd__v1__add_member_response__descriptor,
                              "added: the member votes");
}

/* cluster remove-member NODE_ID: Admin/RemoveMember (the leader's admin). */
static int ctl_cluster_remove(const ctl_config_t *config, sc_client_t *client, const char *id)
{
    Stockd__V1__RemoveMemberRequest request = STOCKD__V1__REMOVE_MEMBER_REQUEST__INIT;
    int invalid = 0;
    if (!ctl_cluster_node_id(config, id, &request.node_id, &invalid)) {
        return invalid;
    }
    return ctl_cluster_change(config, client, "/stockd.v1.Admin/RemoveMember", &request.base,
                              &stockd__v1__remove_member_response__descriptor,
                              "removed: the member is no longer in the group");
}

int ctl_cluster(const ctl_config_t *config, sc_client_t *client, char **args, int count)
{
    if (count == 1 && strcmp(args[0], "status") == 0) {
        return ctl_cluster_status(config, client);
    }
    if ((count == 1 || count == 2) && strcmp(args[0], "transfer-leader") == 0) {
        return ctl_cluster_transfer(config, client, count == 2 ? args[1] : NULL);
    }
    if (count == 4 && strcmp(args[0], "add-member") == 0) {
        return ctl_cluster_add(config, client, args + 1);
    }
    if (count == 2 && strcmp(args[0], "remove-member") == 0) {
        return ctl_cluster_remove(config, client, args[1]);
    }
    return ctl_invalid(config->json,
                       "cluster takes status, transfer-leader [NODE_ID], add-member NODE_ID "
                       "RAFT_ADDRESS GRPC_ADDRESS, or remove-member NODE_ID (see `stockctl help "
                       "cluster`)");
}
