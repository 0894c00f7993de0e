#!/bin/bash
# stockd-replica: one stockd replica of the StatefulSet (deploy/README.md, section 5).
#
#   stockd-replica start STOCKD-FLAGS...  choose this replica's Raft id, then exec stockd
#   stockd-replica pre-stop STOCKCTL-FLAGS...  hand leadership away if this replica leads
#
# Why a script: a Raft id must never be reused with an empty log (a replica that forgot its
# log and its votes could vote twice in one term). So the id is kept twice on the pod's volume:
# VOLUME/node-id ("ID KIND POD", VOLUME being the parent of --data-dir) and, as a sentinel,
# DATA_DIR/raft/stockd-node-id ("ID"), inside the Raft log's own directory, so that it goes
# wherever the log goes (stockd writes and checks the same file: it refuses a log of another
# id). The Raft library writes its metadata (term, vote) there before it
# votes or holds an entry. Then:
#   - a Raft log (metadata) present: the replica starts under the id in node-id;
#   - no log, but node-id and the sentinel agree: the id was never used (a first start that
#     failed, or a --join replica not yet added): it is kept;
#   - node-id without its sentinel: the log is gone (the data or raft directory deleted):
#     the id must not come back; the replica takes a new one;
#   - while STOCKD_CLUSTER_STATE is "new" (creating the group), an empty volume of one of the
#     first STOCKD_INITIAL_MEMBERS pods starts the group under id ORDINAL+1 (each does the same,
#     with the same --peers);
#   - while STOCKD_CLUSTER_STATE is "restore" (a new group from a backup, deploy/README.md
#     section 6), stockd-0's volume without an id must hold the backup's checkpoint in
#     VOLUME/restore: it becomes DATA_DIR and the replica starts the group alone under id 1
#     with --restore-group (the others join it); without it the start is refused;
#   - any other volume without an id (STOCKD_CLUSTER_STATE "existing": a replacement, a
#     scale-up; or a lost log) gets a new random id and waits with --join until an operator
#     adds it (`stockctl cluster add-member`; the command is logged as waiting_to_be_added).
# Like etcd's initial-cluster-state: set "existing" once the group has formed, or a replica
# whose whole volume is lost later would start again under its old id, with an empty log.
#
# Environment (the StatefulSet sets it): STOCKD_POD_NAME (NAME-ORDINAL), STOCKD_INITIAL_MEMBERS,
# STOCKD_CLUSTER_STATE (new|existing|restore), STOCKD_RAFT_ADDRESS_TEMPLATE and
# STOCKD_GRPC_ADDRESS_TEMPLATE (HOST:PORT with "@" standing for a pod's ordinal), and
# optionally STOCKD_BIN and STOCKCTL_BIN (the binaries).
set -euo pipefail

STOCKD_BIN=${STOCKD_BIN:-/usr/local/bin/stockd}
STOCKCTL_BIN=${STOCKCTL_BIN:-/usr/local/bin/stockctl}
# Raft ids are 1..2^32-1; new ids are drawn above every id the first members could have
ID_MIN_NEW=1000

log() { # EVENT [JSON-FIELDS]: one line in stockd's log format
  printf '{"time":"%s","level":"%s","component":"stockd-replica","event":"%s"%s}\n' \
    "$(date -u +%Y-%m-%dT%H:%M:%S.000000Z)" "${LEVEL:-info}" "$1" "${2:+,$2}" >&2
}

die() {
  LEVEL=error log start_refused "\"error\":\"$1\""
  exit 2
}

address_of() { # TEMPLATE ORDINAL
  printf '%s' "${1//@/$2}"
}

# A Raft log exists once the library has written its metadata (term and vote) or a segment or
# snapshot; a --join replica that was never added has written none.
has_raft_state() { # DATA-DIR
  local file
  for file in "$1"/raft/metadata1 "$1"/raft/metadata2 "$1"/raft/snapshot-* "$1"/raft/open-* \
    "$1"/raft/[0-9]*-[0-9]*; do
    [ -e "$file" ] && return 0
  done
  return 1
}

new_random_id() {
  local id
  id=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
  echo $((ID_MIN_NEW + id % (4294967295 - ID_MIN_NEW)))
}

# Written synced and replaced atomically: the id must outlive a crash that comes right after
# the log's first write.
write_synced() { # FILE TEXT
  printf '%s\n' "$2" > "$1.tmp"
  sync "$1.tmp"
  mv -T "$1.tmp" "$1"
  sync "$(dirname "$1")"
}

# STOCKD_CLUSTER_STATE=restore, stockd-0 without an id: the backup's checkpoint, copied to
# VOLUME/restore by the operator (deploy/README.md section 6), becomes the data directory.
take_backup() { # DATA-DIR
  local backup
  backup=$(dirname "$1")/restore
  if [ ! -e "$backup" ] && [ -e "$1/CURRENT" ]; then
    return 0 # moved already (a crash right after), or copied straight to the data directory
  fi
  [ -e "$backup/CURRENT" ] ||
    die "STOCKD_CLUSTER_STATE is restore but $backup holds no backup checkpoint (a RocksDB CURRENT file): copy one there first (deploy/README.md, section 6)"
  [ ! -e "$backup/raft" ] ||
    die "$backup holds a Raft log (raft/): copy a checkpoint (stockctl backup), not a replica's data directory"
  if [ -e "$1" ]; then
    [ -z "$(ls -A "$1")" ] || die "$1 is not empty: a backup is restored onto an empty volume"
    rmdir "$1"
  fi
  mv -T "$backup" "$1"
  sync "$(dirname "$1")"
  log backup_taken "\"data_dir\":\"$1\""
}

start() {
  local data_dir="" arg
  for arg in "$@"; do
    case $arg in --data-dir=*) data_dir=${arg#--data-dir=} ;; esac
  done
  [ -n "$data_dir" ] || die "start needs --data-dir=DIR"
  local name=${STOCKD_POD_NAME:?STOCKD_POD_NAME (the pod name) is not set}
  local ordinal=${name##*-}
  [[ $ordinal =~ ^[0-9]{1,4}$ ]] || die "pod name $name does not end in -ORDINAL"
  ordinal=$((10#$ordinal))
  [[ ${STOCKD_INITIAL_MEMBERS:-} =~ ^[1-9]$ ]] || die "STOCKD_INITIAL_MEMBERS must be 1..9"
  local raft_template=${STOCKD_RAFT_ADDRESS_TEMPLATE:-} grpc_template=${STOCKD_GRPC_ADDRESS_TEMPLATE:-}
  [[ $raft_template == *@* && $raft_template == *:* && $grpc_template == *@* && $grpc_template == *:* ]] ||
    die "STOCKD_RAFT_ADDRESS_TEMPLATE and STOCKD_GRPC_ADDRESS_TEMPLATE must be HOST:PORT with @ for the ordinal"
  local state=${STOCKD_CLUSTER_STATE:-new}
  [[ $state == new || $state == existing || $state == restore ]] ||
    die "STOCKD_CLUSTER_STATE must be new, existing or restore"

  local id_file sentinel="$data_dir/raft/stockd-node-id"
  id_file=$(dirname "$data_dir")/node-id
  local id="" kind="" pod="" sentinel_id="" lost=""
  if [ -e "$id_file" ]; then
    [ -f "$id_file" ] || die "$id_file is not a file"
    read -r id kind pod < "$id_file" || true
    [[ $id =~ ^[1-9][0-9]{0,9}$ && ($kind == bootstrap || $kind == join) && -n $pod ]] ||
      die "$id_file is damaged; it must hold 'ID bootstrap|join POD'"
    # a volume restored to another pod would run two replicas under one id
    [ "$pod" = "$name" ] || die "$id_file belongs to pod $pod, not $name"
  fi
  if [ -f "$sentinel" ]; then
    read -r sentinel_id < "$sentinel" || true
  fi
  if has_raft_state "$data_dir"; then
    [ -n "$id" ] || die "$data_dir/raft holds a Raft log but $id_file is missing: restore it"
    [ "$sentinel_id" = "$id" ] || die "$data_dir/raft holds a Raft log that is not replica $id's"
    if [ "$state" = new ]; then
      LEVEL=warn log cluster_state_still_new '"hint":"once the group has formed, set STOCKD_CLUSTER_STATE to existing: under new, a replica whose volume is lost starts again under its old id"'
    fi
  elif [ -n "$id" ] && [ "$sentinel_id" != "$id" ]; then
    # the directory this id kept its log in is gone: the id must not come back
    LEVEL=warn log raft_log_lost "\"node_id\":$id,\"action\":\"a new id\""
    id="" kind="" lost=yes
  fi
  if [ -z "$id" ]; then
    if [ "$state" = new ] && [ -z "$lost" ] && [ "$ordinal" -lt "$STOCKD_INITIAL_MEMBERS" ]; then
      id=$((ordinal + 1)) kind=bootstrap
    elif [ "$state" = restore ] && [ -z "$lost" ] && [ "$ordinal" -eq 0 ]; then
      take_backup "$data_dir"
      id=1 kind=bootstrap
    else
      id=$(new_random_id) kind=join
    fi
    # the sentinel first: a crash between the two leaves them disagreeing, which means "new id"
    mkdir -p "$data_dir/raft"
    write_synced "$sentinel" "$id"
    write_synced "$id_file" "$id $kind $name"
  fi

  if [ -e "$(dirname "$data_dir")/restore" ]; then # not taken by take_backup
    LEVEL=warn log restore_ignored "\"node_id\":$id,\"reason\":\"a backup is restored only onto an empty volume of stockd-0 under STOCKD_CLUSTER_STATE=restore (deploy/README.md, section 6)\""
  fi

  # The first members (ids 1..N), then this replica when it joined under an id of its own.
  local peers="" i
  for ((i = 0; i < STOCKD_INITIAL_MEMBERS; i++)); do
    peers+="${peers:+,}$((i + 1))=$(address_of "$raft_template" "$i")=$(address_of "$grpc_template" "$i")"
  done
  local raft_address grpc_address
  raft_address=$(address_of "$raft_template" "$ordinal")
  grpc_address=$(address_of "$grpc_template" "$ordinal")
  local flags=(--node-id="$id" --peers="$peers")
  if [ "$state" = restore ] && [ "$kind" = bootstrap ] && ! has_raft_state "$data_dir"; then
    flags+=(--restore-group) # again after a crash before the log was started: stockd allows it
  fi
  if [ "$kind" = join ]; then
    flags[1]="--peers=$peers,$id=$raft_address=$grpc_address"
    flags+=(--join)
    if ! has_raft_state "$data_dir"; then
      log waiting_to_be_added "\"node_id\":$id,\"command\":\"stockctl --admin LEADER_ADMIN cluster add-member $id $raft_address $grpc_address\""
    fi
  fi
  log starting "\"node_id\":$id,\"kind\":\"$kind\",\"pod\":\"$name\""
  exec "$STOCKD_BIN" "$@" "${flags[@]}"
}

# preStop: the kubelet runs this before it sends SIGTERM. stockd hands leadership over on
# SIGTERM by itself; doing it here first means the new leader is elected while this replica
# still answers (with a leader hint) instead of while it shuts down. Needs an admin identity
# (--token-file); without one, or on any error, it does nothing: the pod stops regardless.
pre_stop() {
  local arg token=""
  for arg in "$@"; do
    case $arg in --token-file=*) token=${arg#--token-file=} ;; esac
  done
  if [ -z "$token" ] || [ ! -s "$token" ]; then
    log pre_stop_skipped '"reason":"no admin token mounted"'
    return 0
  fi
  local status
  status=$("$STOCKCTL_BIN" "$@" --json --deadline-ms=3000 cluster status 2>/dev/null) || {
    LEVEL=warn log pre_stop_skipped '"reason":"cluster status failed"'
    return 0
  }
  if [[ $status == *'"role":"leader"'* ]]; then
    "$STOCKCTL_BIN" "$@" --json --deadline-ms=10000 cluster transfer-leader >&2 ||
      LEVEL=warn log pre_stop_transfer_failed
  fi
  return 0
}

case ${1:-} in
  start) shift && start "$@" ;;
  pre-stop) shift && pre_stop "$@" ;;
  *) echo "usage: stockd-replica start STOCKD-FLAGS... | pre-stop STOCKCTL-FLAGS..." >&2 && exit 2 ;;
esac
