#!/usr/bin/env bash
# Start a single-node Slurm cluster on 127.0.0.1 as root without systemd: munged, slurmctld, slurmd.
#
#   launch/start-cluster.sh [ROOT]        (ROOT defaults to launch/rt; everything the cluster writes goes there)
#   source ROOT/env.sh                    (SLURM_CONF, and the sacct stand-in first on PATH)
#   launch/stop-cluster.sh [ROOT]         (stops exactly the daemons this script started)
#
# The pid of every daemon this script starts is kept under ROOT/run/; a munged that was already running
# is used as it is and left alone by stop-cluster.sh.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(mkdir -p "${1:-$HERE/rt}" && cd "${1:-$HERE/rt}" && pwd)
HOST=$(hostname -s)
CPUS=$(nproc)
MEM=$(( $(awk '/MemTotal/{print $2}' /proc/meminfo) / 1024 - 512 ))
export SLURM_CONF=$ROOT/slurm.conf

for f in "$ROOT/run/slurmctld.pid" "$ROOT/run/slurmd.pid"; do
  if [ -s "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null; then
    echo "a cluster is already running from $ROOT ($(basename "$f" .pid) pid $(cat "$f")); stop it with $HERE/stop-cluster.sh $ROOT" >&2
    exit 1
  fi
done
for tool in munged slurmctld slurmd sinfo; do
  command -v "$tool" >/dev/null || { echo "$tool not found: run $HERE/install-slurm.sh first" >&2; exit 1; }
done

t0=$(date +%s%N)
mkdir -p "$ROOT"/{state,spool,run,log}
sed -e "s#@ROOT@#$ROOT#g" -e "s#@HOST@#$HOST#g" -e "s#@CPUS@#$CPUS#g" -e "s#@MEM@#$MEM#g" \
    "$HERE/slurm.conf.in" > "$SLURM_CONF"

# --- munge (authentication between the Slurm commands and daemons) ---
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  [ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
  chown munge:munge /etc/munge/munge.key
  chmod 0400 /etc/munge/munge.key
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  chmod 0755 /run/munge
  runuser -u munge -- /usr/sbin/munged          # daemonizes; writes /run/munge/munged.pid
  for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
  cp /run/munge/munged.pid "$ROOT/run/munged.pid"
fi
munge -n | unmunge >/dev/null || { echo "munged is not answering" >&2; exit 1; }

# --- slurmctld + slurmd (both daemonize and write their pid files under ROOT/run) ---
slurmctld -f "$SLURM_CONF" -c -i                 # -c: fresh state (job ids restart at 1), -i: ignore state errors
for _ in $(seq 100); do scontrol ping 2>/dev/null | grep -q UP && break; sleep 0.1; done
scontrol ping | grep -q UP || { echo "slurmctld failed to start:" >&2; tail "$ROOT/log/slurmctld.log" >&2; exit 1; }
slurmd -f "$SLURM_CONF"
for _ in $(seq 200); do [ "$(sinfo -h -N -o %t 2>/dev/null | head -1)" = idle ] && break; sleep 0.1; done
[ "$(sinfo -h -N -o %t | head -1)" = idle ] || { echo "slurmd failed to start:" >&2; tail "$ROOT/log/slurmd.log" >&2; exit 1; }

cat > "$ROOT/env.sh" <<ENV
# source this file to use the cluster started from $ROOT
export SLURM_CONF=$SLURM_CONF
export PATH=$HERE/shim:\$PATH
ENV
t1=$(date +%s%N)
echo "slurm cluster up in $(( (t1 - t0) / 1000000 )) ms: node $HOST, $CPUS CPUs, ${MEM} MiB, partition debug"
for f in "$ROOT"/run/*.pid; do echo "  $(basename "$f" .pid) pid $(cat "$f")"; done
echo "use it with: source $ROOT/env.sh"
