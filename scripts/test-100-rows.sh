#!/usr/bin/env bash
# Submits 10 dry-run batches of 10 rows × 3 variants (300 images), follows each
# to completion over SSE, checks every image URL returns a PNG, and prints one
# summary line with the wall time. Exits non-zero on any failure.
#
# usage: scripts/test-100-rows.sh [BASE_URL]
#   BASE_URL  origin of the submit function (default http://127.0.0.1:8080,
#             the local stack of `make run`)
#   ASSETGEN_TOKEN  optional bearer token, read from the environment (never
#             pass secrets as arguments)
set -euo pipefail

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi
base="${1:-http://127.0.0.1:8080}"
cd "$(dirname "$0")/.."
exec go run ./scripts/loadtest -base "$base" -batches 10 -rows 10 -variants 3 -token-env ASSETGEN_TOKEN
