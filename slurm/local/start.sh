#!/usr/bin/env bash
# Start a real single-node Slurm (slurmctld + slurmd + munge) for the tests, as root.
# Usage: slurm/local/start.sh [STATE_DIR] [FAKE_GPUS]   -> prints `export SLURM_CONF=...` for the caller.
# Needs the Debian packages slurm-wlm and munge (sysdeps/debian.toml; make test installs them).
set -euo pipefail
STATE=${1:-/tmp/dtl-slurm}
GPUS=${2:-2}
for bin in slurmctld slurmd munged sinfo; do
    command -v "$bin" >/dev/null || { echo "start.sh: $bin is not installed (not on PATH): apt-get install slurm-wlm munge, or run make test, which installs them" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "start.sh: must run as root (slurmd manages jobs of any user)" >&2; exit 1; }
mkdir -p "$STATE"/{spool/ctld,spool/d,log,run} /run/munge /etc/munge /var/log/munge /var/lib/munge
CPUS=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)  # nproc obeys OMP_NUM_THREADS, which a test worker may set
MEM_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))

# munge: one key, its daemon
if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
fi
chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
chmod 0700 /etc/munge; chmod 0400 /etc/munge/munge.key
pgrep -x munged >/dev/null || munged --force

# fake GPU device files for --gres=gpu:N
GRES_LINES=""
for i in $(seq 0 $((GPUS - 1))); do
    [ -e "$STATE/nvidia$i" ] || mknod "$STATE/nvidia$i" c 195 "$i"
    GRES_LINES+="Name=gpu File=$STATE/nvidia$i"$'\n'
done

# Ports of this Slurm's own: another local Slurm on the machine (another checkout's tests) must not answer its
# commands. A restart over the same STATE keeps the ports its running daemons listen on.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
CTLD_PORT=$(sed -n 's/^SlurmctldPort=//p' "$STATE/slurm.conf" 2>/dev/null || true)
SLURMD_PORT=$(sed -n 's/^SlurmdPort=//p' "$STATE/slurm.conf" 2>/dev/null || true)
CTLD_PORT=${CTLD_PORT:-$(free_port)}
SLURMD_PORT=${SLURMD_PORT:-$(free_port)}

cat > "$STATE/slurm.conf" <<CONF
ClusterName=dtl-local
SlurmctldHost=localhost
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
GresTypes=gpu
ReturnToService=2
MpiDefault=none
SchedulerType=sched/backfill
JobRequeue=1
KillWait=5
# a requeued job may start again after the credential lifetime (default 120 s): short for the tests
AuthInfo=cred_expire=10
MinJobAge=300
NodeName=localhost CPUs=$CPUS RealMemory=$MEM_MB Gres=gpu:$GPUS State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
printf '%s' "$GRES_LINES" > "$STATE/gres.conf"
export SLURM_CONF="$STATE/slurm.conf"

running() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
running "$STATE/run/slurmctld.pid" || slurmctld -f "$SLURM_CONF"
running "$STATE/run/slurmd.pid" || slurmd -f "$SLURM_CONF" -N localhost
for _ in $(seq 1 50); do
    if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
        echo "export SLURM_CONF=$SLURM_CONF"
        exit 0
    fi
    sleep 0.2
done
scontrol update nodename=localhost state=resume >/dev/null 2>&1 || true
sleep 1
if sinfo -h -o %T | grep -qE '^(idle|mixed|allocated)'; then
    echo "export SLURM_CONF=$SLURM_CONF"
    exit 0
fi
echo "start.sh: the node did not come up; see $STATE/log/slurmctld.log and slurmd.log" >&2
sinfo >&2 || true
exit 1
