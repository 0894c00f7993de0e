/* cluster_rpc.c — stockd.v1.Admin's replication methods (docs/api.md 7): the group as this
 * replica sees it, and handing leadership over. */
#include <stdio.h>

#include "handlers.h"
#include "replication.h"
#include "stockd/v1/admin.pb-c.h"

/* The replication of the call's stockd, or NULL after answering FAILED_PRECONDITION. */
static sd_replication_t *sd_cluster_of(sd_call_t *call)
{
    sd_replication_t *replication = sd_call_services(call)->replication;
    if (replication == NULL) {
        sd_call_reply_status(call, SD_FAILED_PRECONDITION,
                             "this stockd runs as one node (no --node-id): it has no cluster");
    }
    return replication;
}

void sd_handle_cluster_status(sd_call_t *call, const uint8_t *bytes, size_t length)
{
    if (sd_unpack(call, &stockd__v1__cluster_status_request__descriptor, bytes, length) == NULL) {
        return;
    }
    sd_replication_t *replication = sd_cluster_of(call);
    if (replication == NULL) {
        return;
    }
    sd_replication_status_t status;
    sd_replication_status(replication, &status);
    Stockd__V1__ClusterMember members[SD_REPLICATION_PEERS_MAX];
    Stockd__V1__ClusterMember *pointers[SD_REPLICATION_PEERS_MAX];
    for (size_t i = 0; i < status.members_count; i++) {
        const sd_replication_peer_t *peer = &status.members[i];
        stockd__v1__cluster_member__init(&members[i]);
        members[i].node_id = peer->id;
        members[i].raft_address = (char *)peer->raft_address;
        members[i].grpc_address = (char *)peer->grpc_address;
        members[i].leader = peer->id == status.leader_id;
        members[i].match_index = status.match_index[i];
        members[i].lag = status.leader && status.last_index > status.match_index[i]
                             ? status.last_index - status.match_index[i]
                             : 0;
        pointers[i] = &members[i];
    }
    Stockd__V1__ClusterStatusResponse response = STOCKD__V1__CLUSTER_STATUS_RESPONSE__INIT;
    response.node_id = status.node_id;
    response.role = (char *)(status.role ? status.role : "unavailable");
    response.term = status.term;
    response.leader_id = status.leader_id;
    response.leader_address = status.leader_grpc;
    response.commit_index = status.commit_index;
    response.applied_index = status.applied_index;
    response.last_index = status.last_index;
    response.n_members = status.members_count;
    response.members = pointers;
    sd_call_reply_message(call, &response.base);
}

void sd_handle_transfer_leadership(sd_call_t *call, const uint8_t *bytes, size_t length)
{
    Stockd__V1__TransferLeadershipRequest *request =
        (Stockd__V1__TransferLeadershipRequest *)sd_unpack(
            call, &stockd__v1__transfer_leadership_request__descriptor, bytes, length);
    sd_replication_t *replication = request ? sd_cluster_of(call) : NULL;
    if (replication == NULL) {
        return;
    }
    sd_replication_status_t status;
    sd_replication_status(replication, &status);
    bool member = request->node_id == 0;
    for (size_t i = 0; i < status.members_count; i++) {
        member = member || status.members[i].id == request->node_id;
    }
    char message[512];
    if (!member || request->node_id == status.node_id) {
        snprintf(message, sizeof(message), "node_id: %llu is not another member of the group",
                 (unsigned long long)request->node_id);
        sd_call_reply_status(call, SD_INVALID_ARGUMENT, message);
        return;
    }
    sd_replication_outcome_t outcome = sd_replication_transfer(replication, request->node_id);
    sd_replication_status(replication, &status);
    if (outcome == SD_REPLICATION_NOT_LEADER) {
        snprintf(message, sizeof(message),
                 "this replica is not the leader; send it to the leader (%s)",
                 status.leader_grpc[0] ? status.leader_grpc : "none known now");
        sd_call_reply_status(call, SD_FAILED_PRECONDITION, message);
        return;
    }
    if (outcome != SD_REPLICATION_DONE) {
        sd_call_reply_status(call, SD_ABORTED,
                             "leadership did not move within an election timeout; retry");
        return;
    }
    Stockd__V1__TransferLeadershipResponse response =
        STOCKD__V1__TRANSFER_LEADERSHIP_RESPONSE__INIT;
    response.leader_id = status.leader_id;
    sd_call_reply_message(call, &response.base);
}
