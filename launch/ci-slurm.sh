#!/usr/bin/env bash
# CI: install Slurm if missing, start a private single-node cluster, run the Slurm tests, stop it.
#   launch/ci-slurm.sh [PYTHON] [extra pytest args...]
# Needs root (the daemons run as root) and the Slurm ports 6817/6818 free. The cluster lives in a
# fresh temporary directory and is stopped by the pids it started, also when the tests fail.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
PY=${1:-python3}
shift || true
"$HERE/install-slurm.sh"
ROOT=$(mktemp -d /tmp/golf-slurm-ci.XXXXXX)
trap '"$HERE/stop-cluster.sh" "$ROOT"; rm -rf "$ROOT"' EXIT
"$HERE/start-cluster.sh" "$ROOT"
# shellcheck disable=SC1091
source "$ROOT/env.sh"
export WANDB_MODE=offline WANDB_SILENT=true
cd "$HERE/.."
"$PY" -m pytest -q -p no:cacheprovider -m slurm tests/slurm "$@"
