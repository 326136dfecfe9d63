#!/usr/bin/env bash
# Submits 10 dry-run batches of 10 rows × 3 variants (300 images), follows each
# to completion over SSE and checks every image URL returns a PNG. Prints the
# wall time, the submit latency p50/p95, the error rate and each batch's time
# to event: done, and exits non-zero when a gate fails: submit p95 ≥ 2 s or
# failed batches ≥ 5 %.
#
# usage: scripts/test-100-rows.sh [BASE_URL] [loadtest flags]
#   BASE_URL  origin of the submit function (default http://127.0.0.1:8080,
#             the local stack of `make run`)
#   flags     -max-submit-p95 2s, -max-error-rate 0.05, -batches 10,
#             -rows 10, -variants 3, -timeout 5m
#   ASSETGEN_TOKEN  optional bearer token, read from the environment (never
#             pass secrets as arguments)
set -euo pipefail

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi
base="http://127.0.0.1:8080"
if [[ $# -gt 0 && "$1" != -* ]]; then
  base="$1"
  shift
fi
cd "$(dirname "$0")/.."
exec go run ./scripts/loadtest -base "$base" -batches 10 -rows 10 -variants 3 -token-env ASSETGEN_TOKEN "$@"
