#!/usr/bin/env bash
# Start a one-node SLURM on this machine for the tests: munged, slurmctld and slurmd, run directly
# (no systemd). Installs the Debian packages with apt-get when they are missing.
#
#   tests/slurm/start_slurm.sh STATE_DIR
#
# Writes /etc/slurm/slurm.conf and /etc/slurm/gres.conf (the executor plugin strips SLURM_CONF
# before its inner srun, so the config must sit at the default place) and refuses to replace a
# configuration it did not write. Daemon PIDs go to STATE_DIR/*.pid; stop with stop_slurm.sh.
# Environment: MTT_SLURM_MIN_JOB_AGE (seconds finished jobs stay visible, default 300),
# MTT_SLURMCTLD_PORT / MTT_SLURMD_PORT (default 6817 / 6818).
set -euo pipefail

state=$(realpath -m "${1:?usage: start_slurm.sh STATE_DIR}")
here=$(dirname "$(realpath "$0")")
marker="Written by tests/slurm/start_slurm.sh"
conf=/etc/slurm/slurm.conf
munge_dir=/run/munge
munge_socket=$munge_dir/mtt-test.socket
munge_pid=$munge_dir/mtt-test.pid

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
    || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurm-wlm slurmctld slurmd slurm-client munge
fi

if [ -e "$conf" ] && ! grep -q "$marker" "$conf"; then
    echo "start_slurm.sh: $conf exists and was not written by this script; not replacing it" >&2
    exit 1
fi

mkdir -p "$state/ctld" "$state/slurmd" /etc/slurm "$munge_dir" /var/log/munge /var/lib/munge
chown munge:munge "$munge_dir" /var/log/munge /var/lib/munge
chmod 0755 "$munge_dir"
if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --keyfile=/etc/munge/munge.key
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key

# a private socket, so a munged already running on this machine is left alone
runuser -u munge -- munged --socket="$munge_socket" --pid-file="$munge_pid" \
    --log-file=/var/log/munge/mtt-test.log
cp "$munge_pid" "$state/munged.pid"

host=$(hostname -s)
cpus=$(nproc)
memory_mb=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)
sed -e "s|@HOST@|$host|g" -e "s|@STATE@|$state|g" -e "s|@CPUS@|$cpus|g" \
    -e "s|@MEMORY_MB@|$memory_mb|g" -e "s|@MUNGE_SOCKET@|$munge_socket|g" \
    -e "s|@MIN_JOB_AGE@|${MTT_SLURM_MIN_JOB_AGE:-300}|g" \
    -e "s|@CTLD_PORT@|${MTT_SLURMCTLD_PORT:-6817}|g" -e "s|@SLURMD_PORT@|${MTT_SLURMD_PORT:-6818}|g" \
    "$here/slurm.conf.in" > "$conf"
cp "$here/gres.conf.in" /etc/slurm/gres.conf

slurmctld -i
slurmd

# wait until the node takes jobs
for _ in $(seq 60); do
    if sinfo -h -o %t 2>/dev/null | grep -qx idle; then
        echo "SLURM is up: $(sinfo -h -o '%P %D %t %c CPUs %m MB %G')"
        exit 0
    fi
    sleep 1
done
echo "start_slurm.sh: the node did not become idle; logs in $state" >&2
sinfo >&2 || true
exit 1
