#!/usr/bin/env bash
# Replays the reference-flood attack against the local stack: 30 concurrent
# dry-run submits, each with 66 distinct 10 MiB references served from a
# loopback host, plus one submit whose 5 references never answer. Prints the
# stack process's peak RSS (VmHWM) and how every request was answered; exits
# non-zero if a request got no answer or the peak is over 512 MiB.
#
# usage: scripts/ref-flood.sh [flags]
#   (no flags)         build and start a fresh local stack for the run
#   -base URL -pid N   target a running stack (started with REFS_ALLOW_LOOPBACK=true)
#   -submits N -size 10MiB -hanging N -max-rss 512MiB   change the attack
set -euo pipefail

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi
cd "$(dirname "$0")/.."
exec go run ./scripts/refflood "$@"
