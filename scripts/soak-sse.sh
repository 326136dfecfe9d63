#!/usr/bin/env bash
# Holds progress streams open against a stack or deployment for a while (50
# streams for 10 minutes by default) over a rolling series of dry-run batches,
# refreshing the progress token as a long-open page must, and reports drops,
# reconnects, refusals, duplicates, regressions and gaps by event id. Exits
# non-zero on any duplicate, regression or gap, or a stream that gave up.
#
# usage: scripts/soak-sse.sh [BASE_URL] [ssesoak flags]
#   BASE_URL  origin of the submit function (default http://127.0.0.1:8080)
#   flags     -streams 50, -batches 5 (running at once), -duration 10m,
#             -refresh 5m, -rows 10, -variants 3, -token-file FILE (re-read
#             at every refresh, for ID tokens that expire)
#   ASSETGEN_TOKEN  optional bearer token, read from the environment
#
# Against the local stack, slow the batches down and cut streams short so
# resumes happen: DRY_RUN_DELAY=5s SSE_MAX_DURATION=45s make run
set -euo pipefail

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi
base="http://127.0.0.1:8080"
if [[ $# -gt 0 && "$1" != -* ]]; then
  base="$1"
  shift
fi
cd "$(dirname "$0")/.."
exec go run ./scripts/ssesoak -base "$base" -token-env ASSETGEN_TOKEN "$@"
