#!/usr/bin/env bash
# Stop the daemons that start_slurm.sh started (by their PIDs) and remove its configuration.
#
#   tests/slurm/stop_slurm.sh STATE_DIR
set -uo pipefail

state=$(realpath -m "${1:?usage: stop_slurm.sh STATE_DIR}")
marker="Written by tests/slurm/start_slurm.sh"

stop() {  # stop PIDFILE: SIGTERM, then SIGKILL after 20 s
    local pidfile=$1 pid
    [ -s "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 40); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.5
    done
    kill -9 "$pid" 2>/dev/null || true
}

stop "$state/slurmd.pid"
stop "$state/slurmctld.pid"
stop "$state/munged.pid"

if [ -f /etc/slurm/slurm.conf ] && grep -q "$marker" /etc/slurm/slurm.conf; then
    rm -f /etc/slurm/slurm.conf /etc/slurm/gres.conf
fi
