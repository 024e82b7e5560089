#!/usr/bin/env bash
# Install Slurm (slurmctld, slurmd, client commands) and munge from Debian/Ubuntu packages, if missing.
# Needs root. The packages' postinst tries to start services through systemd; where that is refused
# (containers, no systemd) it is harmless: start-cluster.sh starts the daemons itself.
set -euo pipefail
if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then
  exit 0
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm >/dev/null
slurmctld -V
