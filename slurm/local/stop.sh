#!/usr/bin/env bash
# Stop the local test Slurm started by start.sh (munge is left running for other users of it).
set -uo pipefail
STATE=${1:-/tmp/dtl-slurm}
for pidfile in "$STATE/run/slurmd.pid" "$STATE/run/slurmctld.pid"; do
    [ -s "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null
done
sleep 0.5
exit 0
