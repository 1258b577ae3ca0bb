#!/usr/bin/env bash
# Real single-node SLURM cluster on localhost (slurmctld + slurmd + munged from
# Debian's packages), for testing the project's SLURM path on one machine / in CI.
#
# usage:
#   eval "$(scripts/local_slurm.sh up)"   # start (idempotent); sets SLURM_CONF
#   scripts/local_slurm.sh status         # exit 0 when all daemons run, 1 otherwise
#   scripts/local_slurm.sh down           # stop what `up` started (safe to repeat)
#
# `up` installs slurmctld slurmd slurm-client munge with apt-get if they are
# missing, writes its config and keeps ALL state (config, keys, logs, pid files,
# spool) in one directory, starts the daemons that are not already running, and
# waits (bounded) until the node is idle and `srun -N1 true` works.  Its LAST
# (and only) stdout line is `export SLURM_CONF=<path>`; everything else goes to
# stderr.  Clients need SLURM_CONF; jobs inherit it.
#
# environment:
#   LOCAL_SLURM_DIR      state directory            (default: <repo>/.slurm)
#   LOCAL_SLURM_WAIT_S   how long to wait for the node to come up  (default: 60)
#   LOCAL_SLURM_CTLD_PORT / LOCAL_SLURM_SLURMD_PORT   (default: 6817 / 6818)
#
# exit codes: 0 ok; 1 failure (log tails are printed); 2 usage;
#             3 prerequisites missing (not root, no apt-get, install failed) --
#               callers such as the test-suite treat 3 as "skip".
#
# Partition `debug` (Default=YES) with the one node `localhost`, whose CPUs and
# RealMemory come from `slurmd -C`.  No cgroups (proctrack/linuxproc, task/none)
# and no accounting (no slurmdbd): `sacct` does not work, so submitit logs
# "Bypassing sacct error" while it polls -- harmless.  Controller state is kept
# across down/up, so job ids keep increasing and never collide with
# `.submitit/<jobid>` folders of earlier sweeps; `down` + `rm -rf <dir>` resets.
set -euo pipefail
umask 022

# Keep the caller's stdout for the final `export` line only.
exec 3>&1 1>&2

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
D="${LOCAL_SLURM_DIR:-$REPO/.slurm}"
case "$D" in /*) ;; *) D="$PWD/$D" ;; esac
D="$(realpath -m "$D")"
CONF="$D/etc/slurm.conf"
MSOCK="$D/munge/munge.socket.2"
WAIT_S="${LOCAL_SLURM_WAIT_S:-60}"
CTLD_PORT="${LOCAL_SLURM_CTLD_PORT:-6817}"
SLURMD_PORT="${LOCAL_SLURM_SLURMD_PORT:-6818}"
LOGS=(munged.log slurmctld.log slurmd.log munged.stdout slurmctld.stdout slurmd.stdout)

log() { echo "[local_slurm] $*"; }
tails() {
  local f
  for f in "${LOGS[@]}"; do
    [ -s "$D/log/$f" ] && { echo "----- tail -n 30 $D/log/$f"; tail -n 30 "$D/log/$f"; }
  done
  return 0
}
STARTED=()   # daemons this `up` started: stopped again if `up` fails
die() {
  log "ERROR: $*"
  tails
  if [ "${#STARTED[@]}" -gt 0 ]; then
    log "stopping what this run started: ${STARTED[*]}"
    stop_daemons "${STARTED[@]}"
  fi
  exit 1
}
prereq() { log "CANNOT RUN: $*"; exit 3; }
elapsed() { awk -v t0="$T0" -v t1="$(date +%s.%N)" 'BEGIN{printf "%.1f", t1 - t0}'; }

# pid_of NAME: print the pid in $D/run/NAME.pid if that process is alive, not a
# zombie, and has our state dir on its command line (guards against pid reuse
# and against daemons of another cluster).
pid_of() {
  local pf="$D/run/$1.pid" pid
  [ -s "$pf" ] || return 1
  pid="$(tr -dc '0-9' < "$pf")"
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null && return 1
  tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF -- "$D/" || return 1
  echo "$pid"
}
alive() { pid_of "$1" >/dev/null; }
gone() { [ ! -e "/proc/$1" ] || grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }

have_packages() {
  command -v slurmctld && command -v slurmd && command -v sbatch \
    && command -v srun && command -v sinfo && command -v munged && command -v munge
} >/dev/null 2>&1

install_packages() {
  have_packages && return 0
  [ "$(id -u)" = 0 ] || prereq "slurm/munge are not installed and installing them needs root"
  command -v apt-get >/dev/null || prereq "slurm/munge are not installed and there is no apt-get"
  log "installing slurmctld slurmd slurm-client munge (apt-get, log: $D/log/apt.log)"
  mkdir -p "$D/log"
  # keep the maintainer scripts from starting system-wide daemons
  local added_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    added_policy=1
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  local apt=(apt-get -q -y -o DPkg::Lock::Timeout=300)
  local pkgs=(slurmctld slurmd slurm-client munge)
  export DEBIAN_FRONTEND=noninteractive
  if ! "${apt[@]}" install --no-install-recommends "${pkgs[@]}" >"$D/log/apt.log" 2>&1; then
    # package lists missing or stale: refresh once and retry
    if ! { "${apt[@]}" update && "${apt[@]}" install --no-install-recommends "${pkgs[@]}"; } \
        >>"$D/log/apt.log" 2>&1; then
      tail -n 20 "$D/log/apt.log"
      prereq "apt-get could not install ${pkgs[*]}"
    fi
  fi
  if [ "$added_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; trap - EXIT; fi
  have_packages || prereq "packages installed but slurm/munge commands are still missing"
}

write_config() {
  local hw
  # e.g. "CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24105"
  hw="$(slurmd -C 2>/dev/null | head -n1 | sed -e 's/^NodeName=[^ ]* //')"
  case "$hw" in *CPUs=*RealMemory=*) ;; *) die "unexpected 'slurmd -C' output: '$hw'" ;; esac
  local new
  new="$(cat <<EOF
# generated by scripts/local_slurm.sh -- single node, no cgroups, no accounting
ClusterName=localci
SlurmctldHost=localhost
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MSOCK
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
StateSaveLocation=$D/spool/ctld
SlurmdSpoolDir=$D/spool/d
SlurmctldPidFile=$D/run/slurmctld.pid
SlurmdPidFile=$D/run/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
KillWait=5
NodeName=localhost NodeAddr=127.0.0.1 NodeHostname=localhost $hw State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
)"
  if [ ! -f "$CONF" ] || [ "$(cat "$CONF")" != "$new" ]; then
    if alive slurmctld || alive slurmd; then
      log "config changed while the daemons run: restarting them"
      stop_daemons
    fi
    printf '%s\n' "$new" > "$CONF"
  fi
  printf 'export SLURM_CONF=%s\n' "$CONF" > "$D/env.sh"
}

start_munge() {
  if [ ! -s "$D/munge/munge.key" ]; then
    if command -v mungekey >/dev/null; then
      mungekey -c -k "$D/munge/munge.key" </dev/null >/dev/null 3>&- || die "mungekey failed"
    else   # munge < 0.5.14 has no mungekey
      dd if=/dev/urandom of="$D/munge/munge.key" bs=1024 count=1 status=none || die "no munge key"
    fi
  fi
  chmod 600 "$D/munge/munge.key"
  if ! alive munged; then
    log "starting munged"
    rm -f "$MSOCK" "$MSOCK.lock"
    munged -S "$MSOCK" --key-file="$D/munge/munge.key" --pid-file="$D/run/munged.pid" \
      --log-file="$D/log/munged.log" --seed-file="$D/munge/munged.seed" \
      </dev/null >>"$D/log/munged.stdout" 2>&1 3>&- || die "munged failed to start"
    STARTED+=(munged)
  fi
  local _
  for _ in $(seq 50); do
    munge -S "$MSOCK" -n </dev/null 2>/dev/null | unmunge -S "$MSOCK" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  die "munge credential round-trip failed"
}

# port_free PORT VAR: fail early when something already listens on PORT
port_free() {
  if (exec 4<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
    die "port $1 is already in use (another SLURM? stop it or set $2)"
  fi
}

start_slurm() {
  if ! alive slurmctld; then
    log "starting slurmctld"
    port_free "$CTLD_PORT" LOCAL_SLURM_CTLD_PORT
    STARTED+=(slurmctld)
    slurmctld -f "$CONF" </dev/null >>"$D/log/slurmctld.stdout" 2>&1 3>&- \
      || die "slurmctld failed to start"
  fi
  if ! alive slurmd; then
    log "starting slurmd"
    port_free "$SLURMD_PORT" LOCAL_SLURM_SLURMD_PORT
    STARTED+=(slurmd)
    slurmd -N localhost -f "$CONF" </dev/null >>"$D/log/slurmd.stdout" 2>&1 3>&- \
      || die "slurmd failed to start"
  fi
}

node_state() { timeout 10 sinfo -h -N -n localhost -o '%T' 2>/dev/null </dev/null 3>&- | head -n1 || true; }

# wait_node REGEX: until the node state matches REGEX (bounded by WAIT_S)
wait_node() {
  local deadline=$(( $(date +%s) + WAIT_S )) state
  while :; do
    state="$(node_state)"
    [[ "$state" =~ ^($1)$ ]] && return 0
    if [ "$(date +%s)" -ge "$deadline" ]; then
      timeout 10 sinfo -R </dev/null 3>&- || true
      die "node not ready after ${WAIT_S}s (state='$state', wanted '$1')"
    fi
    # a daemon that died while we wait will never make the node ready
    local n; for n in munged slurmctld slurmd; do alive "$n" || die "$n is not running"; done
    sleep 0.25
  done
}

# stop_daemons [NAME...]: stop the named daemons (default: all three), by pid file
stop_daemons() {
  local names=("$@")
  [ "${#names[@]}" -gt 0 ] || names=(slurmd slurmctld munged)
  # cancel this cluster's jobs first, so that no slurmstepd outlives slurmd
  if [[ " ${names[*]} " == *" slurmd "* ]] && alive slurmctld && [ -f "$CONF" ]; then
    local jobs _
    jobs="$(SLURM_CONF="$CONF" timeout 10 squeue -h -o '%A' </dev/null 2>/dev/null 3>&- | sort -u | tr '\n' ' ' || true)"
    if [ -n "${jobs// }" ]; then
      log "cancelling jobs: $jobs"
      # shellcheck disable=SC2086
      SLURM_CONF="$CONF" timeout 10 scancel $jobs </dev/null 3>&- || true
      for _ in $(seq 60); do
        [ -z "$(SLURM_CONF="$CONF" timeout 5 squeue -h -o '%A' </dev/null 2>/dev/null 3>&- || true)" ] && break
        sleep 0.5
      done
    fi
  fi
  local name pid _
  for name in slurmd slurmctld munged; do
    [[ " ${names[*]} " == *" $name "* ]] || continue
    if ! pid="$(pid_of "$name")"; then
      rm -f "$D/run/$name.pid"
      continue
    fi
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do gone "$pid" && break; sleep 0.1; done
    if ! gone "$pid"; then
      log "$name ignored SIGTERM for 10s: sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      for _ in $(seq 20); do gone "$pid" && break; sleep 0.1; done
    fi
    rm -f "$D/run/$name.pid"
  done
}

cmd_up() {
  T0="$(date +%s.%N)"
  if [ "$(id -u)" != 0 ]; then
    prereq "slurmd/slurmctld must run as root here (SlurmUser=root); run as root"
  fi
  mkdir -p "$D/etc" "$D/munge" "$D/run" "$D/log" "$D/spool/ctld" "$D/spool/d"
  chmod 755 "$D" "$D/munge"   # munged: the socket directory must be world-executable
  # self-ignoring, like .pytest_cache: machine state never belongs in git
  [ -e "$D/.gitignore" ] || printf '# created by scripts/local_slurm.sh\n*\n' > "$D/.gitignore"
  # munged refuses a socket whose parent directories are not all world-executable
  local p="$D"
  while p="$(dirname "$p")"; [ "$p" != / ]; do
    [ "$(( 0$(stat -c %a "$p") & 01 ))" != 0 ] \
      || die "munged needs every parent of $D to be world-executable: chmod o+x $p, or pick another LOCAL_SLURM_DIR"
  done
  [ "${#MSOCK}" -le 100 ] || die "state dir path too long for a unix socket: $MSOCK (set LOCAL_SLURM_DIR)"
  install_packages
  export SLURM_CONF="$CONF"
  write_config

  if alive munged && alive slurmctld && alive slurmd; then
    # already up: only check that the node answers (it may be running jobs)
    wait_node 'idle|mixed|allocated|completing|mixed\+completing|allocated\+completing'
    log "already up (node: $(node_state))"
  else
    start_munge
    start_slurm
    wait_node idle
    timeout 60 srun -N1 -t 1 --quiet true </dev/null 3>&- || die "srun smoke test failed"
    wait_node idle   # let the smoke-test job leave COMPLETING
    log "cluster up in $(elapsed)s: partition debug, node localhost $(grep -o 'CPUs=[0-9]*' "$CONF") $(grep -o 'RealMemory=[0-9]*' "$CONF")"
  fi
  echo "export SLURM_CONF=$CONF" >&3
}

cmd_down() {
  if [ ! -d "$D/run" ]; then
    log "nothing to stop ($D/run does not exist)"
    return 0
  fi
  stop_daemons
  log "stopped"
}

cmd_status() {
  exec 1>&3   # status reports on stdout
  local rc=0 name pid
  for name in munged slurmctld slurmd; do
    if pid="$(pid_of "$name")"; then
      log "$name: running (pid $pid)"
    else
      log "$name: not running"
      rc=1
    fi
  done
  if [ "$rc" = 0 ]; then
    SLURM_CONF="$CONF" timeout 10 sinfo -N -o '%N %P %T %c %m' </dev/null 3>&- || rc=1
    log "export SLURM_CONF=$CONF"
  fi
  return "$rc"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *) echo "usage: $0 up|down|status   (state dir: \${LOCAL_SLURM_DIR:-<repo>/.slurm})"; exit 2 ;;
esac
