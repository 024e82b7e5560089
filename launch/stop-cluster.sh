#!/usr/bin/env bash
# Stop the cluster that start-cluster.sh started from ROOT: cancel its jobs, then stop each daemon by
# the pid it recorded (TERM, then KILL after 5 s). Processes it did not start are never touched.
#   launch/stop-cluster.sh [ROOT]
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=${1:-$HERE/rt}
export SLURM_CONF=$ROOT/slurm.conf
if [ -s "$ROOT/run/slurmctld.pid" ] && kill -0 "$(cat "$ROOT/run/slurmctld.pid")" 2>/dev/null; then
  scancel --user="$(id -un)" 2>/dev/null || true
fi
for name in slurmd slurmctld munged; do
  f=$ROOT/run/$name.pid
  [ -s "$f" ] || continue
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    echo "stopped $name ($pid)"
  fi
  rm -f "$f"
done
