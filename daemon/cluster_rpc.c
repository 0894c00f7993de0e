/* cluster_rpc.c — stockd.v1.Admin's replication methods (docs/api.md 7): the group as this
 * replica sees it, and handing leadership over. */
#include <raft.h>
#include <stdio.h>
#include <string.h>

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

/* FAILED_PRECONDITION naming the leader: changes to the group are the leader's to make. */
static void sd_cluster_refuse_off_leader(sd_call_t *call, const sd_replication_status_t *status)
{
    char message[512];
    snprintf(message, sizeof(message), "this replica is not the leader; send it to the leader (%s)",
             status->leader_grpc[0] ? status->leader_grpc : "none known now");
    sd_call_reply_status(call, SD_FAILED_PRECONDITION, message);
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
        members[i].role = (char *)status.member_roles[i];
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
    bool voter = request->node_id == 0;
    for (size_t i = 0; i < status.members_count; i++) {
        voter = voter || (status.members[i].id == request->node_id &&
                          strcmp(status.member_roles[i], "voter") == 0);
    }
    char message[512];
    if (!voter || request->node_id == status.node_id) {
        snprintf(message, sizeof(message),
                 "node_id: %llu is not another voting member of the group",
                 (unsigned long long)request->node_id);
        sd_call_reply_status(call, SD_INVALID_ARGUMENT, message);
        return;
    }
    sd_replication_outcome_t outcome = sd_replication_transfer(replication, request->node_id);
    sd_replication_status(replication, &status);
    if (outcome == SD_REPLICATION_NOT_LEADER) {
        sd_cluster_refuse_off_leader(call, &status);
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

/* ---- membership ---- */

/* A catching-up replica may need a snapshot and the whole log after it. */
#define SD_MEMBER_PROMOTE_WAIT_MS 60000
#define SD_MEMBER_CHANGE_WAIT_MS 10000
/* A voter is keeping up while its log is at most this many entries behind the leader's. */
#define SD_MEMBER_KEEPING_UP_ENTRIES 1024

/* HOST:PORT as the other replicas and clients reach it: a printable host without list
 * separators, a port 1..65535. */
static bool sd_cluster_address_valid(const char *address)
{
    size_t length = strlen(address);
    const char *colon = strrchr(address, ':');
    if (length == 0 || length >= SD_REPLICATION_ADDRESS_MAX || colon == NULL || colon == address ||
        colon[1] == '\0' || strlen(colon + 1) > 5) {
        return false;
    }
    for (size_t i = 0; i < length; i++) {
        if (address[i] <= ' ' || address[i] > '~' || address[i] == ',' || address[i] == '=') {
            return false;
        }
    }
    long port = 0;
    for (const char *digit = colon + 1; *digit != '\0'; digit++) {
        if (*digit < '0' || *digit > '9') {
            return false;
        }
        port = port * 10 + (*digit - '0');
    }
    return port >= 1 && port <= 65535;
}

/* The group as this replica sees it, when it leads; false after refusing (membership changes
 * are the leader's to make). */
static bool sd_cluster_status_of_leader(sd_call_t *call, sd_replication_t *replication,
                                        sd_replication_status_t *status)
{
    sd_replication_status(replication, status);
    if (!status->leader) {
        sd_cluster_refuse_off_leader(call, status);
        return false;
    }
    return true;
}

/* INVALID_ARGUMENT naming the field when node_id is out of range (what --peers accepts). */
static bool sd_cluster_check_id(sd_call_t *call, uint64_t node_id)
{
    if (node_id == 0 || node_id > UINT32_MAX) {
        sd_call_reply_status(call, SD_INVALID_ARGUMENT, "node_id: must be 1..4294967295");
        return false;
    }
    return true;
}

/* Answers a change that did not complete (true), or returns false when it did. */
static bool sd_cluster_reply_unfinished(sd_call_t *call, sd_replication_t *replication,
                                        sd_replication_outcome_t outcome, int raft_status,
                                        const char *what)
{
    char message[512];
    if (outcome == SD_REPLICATION_DONE) {
        return false;
    }
    if (outcome == SD_REPLICATION_UNKNOWN && raft_status == RAFT_NOCONNECTION) {
        snprintf(message, sizeof(message),
                 "%s: the replica did not catch up (is it running with --join, and does the "
                 "leader reach its raft_address?); it stays a spare, nothing else changed; ask "
                 "again",
                 what);
        sd_call_reply_status(call, SD_UNAVAILABLE, message);
    } else if (outcome == SD_REPLICATION_UNKNOWN) {
        snprintf(message, sizeof(message),
                 "%s: outcome unknown (leadership changed, or it took longer than this call "
                 "waits%s%s); see `stockctl cluster status` and ask again",
                 what, raft_status ? ": " : "", raft_status ? raft_strerror(raft_status) : "");
        sd_call_reply_status(call, SD_UNAVAILABLE, message);
    } else if (raft_status == 0) {
        sd_replication_status_t status;
        sd_replication_status(replication, &status);
        sd_cluster_refuse_off_leader(call, &status);
    } else if (raft_status == SD_MEMBER_REFUSED_BASE_IN_LOG) {
        snprintf(message, sizeof(message),
                 "%s: this group was restored from a store and has not yet taken the snapshot a "
                 "new member must start from (it follows the next write); nothing changed, ask "
                 "again in a moment",
                 what);
        sd_call_reply_status(call, SD_UNAVAILABLE, message);
    } else if (raft_status == RAFT_CANTCHANGE) {
        snprintf(message, sizeof(message),
                 "%s: another membership change is under way; ask again once it is done", what);
        sd_call_reply_status(call, SD_FAILED_PRECONDITION, message);
    } else {
        snprintf(message, sizeof(message), "%s%s refused: %s; nothing changed",
                 raft_status == RAFT_DUPLICATEID        ? "node_id: "
                 : raft_status == RAFT_DUPLICATEADDRESS ? "raft_address: "
                                                        : "",
                 what, raft_strerror(raft_status));
        sd_call_reply_status(call,
                             raft_status == RAFT_DUPLICATEID || raft_status == RAFT_DUPLICATEADDRESS
                                 ? SD_INVALID_ARGUMENT
                                 : SD_FAILED_PRECONDITION,
                             message);
    }
    return true;
}

/* INVALID_ARGUMENT when another member has the address (false after answering). */
static bool sd_cluster_check_address_free(sd_call_t *call, const sd_replication_status_t *status,
                                          uint64_t node_id, const char *field, const char *address,
                                          bool raft)
{
    for (size_t i = 0; i < status->members_count; i++) {
        const sd_replication_peer_t *member = &status->members[i];
        if (member->id != node_id &&
            strcmp(raft ? member->raft_address : member->grpc_address, address) == 0) {
            char message[512];
            snprintf(message, sizeof(message), "%s: %s is member %llu's", field, address,
                     (unsigned long long)member->id);
            sd_call_reply_status(call, SD_INVALID_ARGUMENT, message);
            return false;
        }
    }
    return true;
}

/* Checks an AddMember against the group as the leader sees it; false after answering. */
static bool sd_cluster_check_new_member(sd_call_t *call, sd_replication_t *replication,
                                        const sd_replication_status_t *status,
                                        const Stockd__V1__AddMemberRequest *request)
{
    char message[512];
    int at = sd_replication_member_index(status, request->node_id);
    if (at >= 0 && strcmp(status->members[at].raft_address, request->raft_address) != 0) {
        snprintf(message, sizeof(message),
                 "node_id: %llu is already a member, at %s (an id is never reused; pick a new "
                 "one)",
                 (unsigned long long)request->node_id, status->members[at].raft_address);
        sd_call_reply_status(call, SD_INVALID_ARGUMENT, message);
        return false;
    }
    if (!sd_cluster_check_address_free(call, status, request->node_id, "raft_address",
                                       request->raft_address, true) ||
        !sd_cluster_check_address_free(call, status, request->node_id, "grpc_address",
                                       request->grpc_address, false)) {
        return false;
    }
    char recorded[SD_REPLICATION_ADDRESS_MAX];
    if (at < 0 && sd_replication_member_record(replication, request->node_id, recorded,
                                               sizeof(recorded)) != SD_NOT_FOUND) {
        snprintf(message, sizeof(message),
                 "node_id: %llu was a member of this group; ids are never reused (a replica "
                 "that lost its volume comes back under a new id)",
                 (unsigned long long)request->node_id);
        sd_call_reply_status(call, SD_INVALID_ARGUMENT, message);
        return false;
    }
    if (at < 0 && status->members_count >= SD_REPLICATION_PEERS_MAX) {
        snprintf(message, sizeof(message), "the group has %zu members, the most supported",
                 status->members_count);
        sd_call_reply_status(call, SD_FAILED_PRECONDITION, message);
        return false;
    }
    return true;
}

/* An AddMember for a member that votes already: OK when it is the same member (asked again
 * after it finished), INVALID_ARGUMENT when the gRPC address differs. */
static void sd_cluster_reply_voter(sd_call_t *call, const sd_replication_peer_t *member,
                                   const Stockd__V1__AddMemberRequest *request)
{
    if (strcmp(member->grpc_address, request->grpc_address) != 0) {
        char message[512];
        snprintf(message, sizeof(message), "grpc_address: member %llu is recorded at %s",
                 (unsigned long long)member->id, member->grpc_address);
        sd_call_reply_status(call, SD_INVALID_ARGUMENT, message);
        return;
    }
    Stockd__V1__AddMemberResponse done = STOCKD__V1__ADD_MEMBER_RESPONSE__INIT;
    sd_call_reply_message(call, &done.base);
}

void sd_handle_add_member(sd_call_t *call, const uint8_t *bytes, size_t length)
{
    Stockd__V1__AddMemberRequest *request = (Stockd__V1__AddMemberRequest *)sd_unpack(
        call, &stockd__v1__add_member_request__descriptor, bytes, length);
    sd_replication_t *replication = request ? sd_cluster_of(call) : NULL;
    if (replication == NULL || !sd_cluster_check_id(call, request->node_id)) {
        return;
    }
    if (!sd_cluster_address_valid(request->raft_address) ||
        !sd_cluster_address_valid(request->grpc_address)) {
        sd_call_reply_status(call, SD_INVALID_ARGUMENT,
                             sd_cluster_address_valid(request->raft_address)
                                 ? "grpc_address: must be HOST:PORT, a port 1..65535"
                                 : "raft_address: must be HOST:PORT, a port 1..65535");
        return;
    }
    sd_replication_status_t status;
    if (!sd_cluster_status_of_leader(call, replication, &status) ||
        !sd_cluster_check_new_member(call, replication, &status, request)) {
        return;
    }
    int at = sd_replication_member_index(&status, request->node_id);
    if (at >= 0 && strcmp(status.member_roles[at], "voter") == 0) {
        sd_cluster_reply_voter(call, &status.members[at], request);
        return;
    }
    int raft_status = 0;
    sd_replication_outcome_t outcome = SD_REPLICATION_DONE;
    if (at < 0) { /* first as a spare: it cannot lead, so its address may follow */
        outcome = sd_replication_change_member(replication, SD_MEMBER_ADD, request->node_id,
                                               request->raft_address, SD_MEMBER_CHANGE_WAIT_MS,
                                               &raft_status);
    }
    if (sd_cluster_reply_unfinished(call, replication, outcome, raft_status, "adding it")) {
        return;
    }
    /* its gRPC address before it may lead, so every replica can name it as the leader */
    outcome = sd_replication_record_member(replication, request->node_id, request->grpc_address);
    if (sd_cluster_reply_unfinished(call, replication, outcome, 0, "recording its address")) {
        return;
    }
    outcome = sd_replication_change_member(replication, SD_MEMBER_PROMOTE, request->node_id, NULL,
                                           SD_MEMBER_PROMOTE_WAIT_MS, &raft_status);
    if (sd_cluster_reply_unfinished(call, replication, outcome, raft_status, "making it a voter")) {
        return;
    }
    Stockd__V1__AddMemberResponse response = STOCKD__V1__ADD_MEMBER_RESPONSE__INIT;
    sd_call_reply_message(call, &response.base);
}

/* Checks a RemoveMember against the group as the leader sees it; false after answering.
 * *member_out: whether node_id is in the configuration (else it was removed before). */
static bool sd_cluster_check_removal(sd_call_t *call, sd_replication_t *replication,
                                     const sd_replication_status_t *status, uint64_t node_id,
                                     bool *member_out)
{
    char message[512];
    int at = sd_replication_member_index(status, node_id);
    *member_out = at >= 0;
    char recorded[SD_REPLICATION_ADDRESS_MAX];
    if (at < 0 &&
        sd_replication_member_record(replication, node_id, recorded, sizeof(recorded)) != SD_OK) {
        snprintf(message, sizeof(message), "node_id: %llu is not a member",
                 (unsigned long long)node_id);
        sd_call_reply_status(call, SD_NOT_FOUND, message);
        return false;
    }
    /* what is left must still be able to commit: a majority of its voters keeping up */
    size_t voters = 0, keeping_up = 0;
    for (size_t i = 0; at >= 0 && i < status->members_count; i++) {
        if ((int)i == at || strcmp(status->member_roles[i], "voter") != 0) {
            continue;
        }
        voters++;
        bool self = status->members[i].id == status->node_id;
        keeping_up +=
            self || status->last_index - status->match_index[i] <= SD_MEMBER_KEEPING_UP_ENTRIES;
    }
    if (at >= 0 && 2 * keeping_up <= voters) {
        snprintf(message, sizeof(message),
                 "node_id: without it the group keeps %zu voters of which only %zu keep up: no "
                 "majority could commit; bring the others back first",
                 voters, keeping_up);
        sd_call_reply_status(call, SD_FAILED_PRECONDITION, message);
        return false;
    }
    return true;
}

void sd_handle_remove_member(sd_call_t *call, const uint8_t *bytes, size_t length)
{
    Stockd__V1__RemoveMemberRequest *request = (Stockd__V1__RemoveMemberRequest *)sd_unpack(
        call, &stockd__v1__remove_member_request__descriptor, bytes, length);
    sd_replication_t *replication = request ? sd_cluster_of(call) : NULL;
    if (replication == NULL || !sd_cluster_check_id(call, request->node_id)) {
        return;
    }
    sd_replication_status_t status;
    if (!sd_cluster_status_of_leader(call, replication, &status)) {
        return;
    }
    if (request->node_id == status.node_id) {
        sd_call_reply_status(call, SD_FAILED_PRECONDITION,
                             "node_id: this replica leads; hand leadership over first "
                             "(stockctl cluster transfer-leader), then remove it at the new "
                             "leader");
        return;
    }
    bool member = false;
    if (!sd_cluster_check_removal(call, replication, &status, request->node_id, &member)) {
        return;
    }
    int raft_status = 0;
    sd_replication_outcome_t outcome = SD_REPLICATION_DONE;
    if (member) {
        outcome = sd_replication_change_member(replication, SD_MEMBER_REMOVE, request->node_id,
                                               NULL, SD_MEMBER_CHANGE_WAIT_MS, &raft_status);
    }
    if (sd_cluster_reply_unfinished(call, replication, outcome, raft_status, "removing it")) {
        return;
    }
    /* its id retired in the replicated directory (an empty address): never added again */
    outcome = sd_replication_record_member(replication, request->node_id, "");
    if (sd_cluster_reply_unfinished(call, replication, outcome, 0,
                                    "removed; recording its id as retired")) {
        return;
    }
    Stockd__V1__RemoveMemberResponse response = STOCKD__V1__REMOVE_MEMBER_RESPONSE__INIT;
    sd_call_reply_message(call, &response.base);
}
