#!/usr/bin/env bash
# Smoke test of a deployment (or of `make run`): submit and progress are
# ready (GET /ready: their bucket and queue checks pass), then one dry-run
# batch of 2 rows x 1 variant is followed over SSE to done, with every image
# fetched through its signed URL and checked to be a PNG (scripts/loadtest).
# Dry runs cost nothing. No path ending in z is used: Cloud Run's front end
# reserves some of them (/healthz among them).
#
# usage: scripts/smoke.sh [--token-file FILE] SUBMIT_URL [PROGRESS_URL]
#   --token-file FILE  the caller's credential for submit and progress: an ID
#                      token (auth_mode = google) or an API key (apikey), read
#                      from FILE so it never appears on a command line
#   SUBMIT_URL         origin of the submit function (terraform output submit_url)
#   PROGRESS_URL       origin of the progress function (terraform output
#                      progress_url); default SUBMIT_URL, as with `make run`
#
# environment:
#   ASSETGEN_TOKEN  the credential, when no --token-file is given
#   GENERATE_URL    optional: also check that generate refuses a request from
#                   outside the queue (401, 403 or 404)
set -euo pipefail

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

token_file=""
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --token-file)
      [ $# -ge 2 ] || { echo "smoke.sh: --token-file needs a file" >&2; exit 2; }
      token_file=$2; shift 2 ;;
    --token-file=*) token_file=${1#*=}; shift ;;
    -*) echo "smoke.sh: unknown option: $1" >&2; usage >&2; exit 2 ;;
    *) break ;;
  esac
done
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  usage >&2
  exit 2
fi
base="${1%/}"
progress="${2:-$base}"
progress="${progress%/}"
if [ -n "$token_file" ]; then
  [ -r "$token_file" ] || { echo "smoke.sh: cannot read $token_file" >&2; exit 2; }
  ASSETGEN_TOKEN="$(tr -d '\r\n' <"$token_file")"
  [ -n "$ASSETGEN_TOKEN" ] || { echo "smoke.sh: $token_file is empty" >&2; exit 2; }
fi
export ASSETGEN_TOKEN="${ASSETGEN_TOKEN:-}"
cd "$(dirname "$0")/.."

# fetch URL: the status code; the credential (if any) goes to curl through a
# config on stdin, not argv.
fetch() {
  if [ -n "$ASSETGEN_TOKEN" ]; then
    printf 'header = "Authorization: Bearer %s"\n' "$ASSETGEN_TOKEN" |
      curl --silent --show-error --max-time 30 --output /dev/null --write-out '%{http_code}' --config - "$1"
  else
    curl --silent --show-error --max-time 30 --output /dev/null --write-out '%{http_code}' "$1"
  fi
}

check() {
  local name=$1 url=$2 code
  code="$(fetch "$url" || true)"
  if [ "$code" != 200 ]; then
    echo "smoke: FAIL $name: $url answered ${code:-nothing} (503 NOT_READY: the function could not start or a dependency fails; the answer's checks and the function's logs say which)" >&2
    exit 1
  fi
  echo "smoke: ok   $name: $url"
}

check "submit ready  " "$base/ready"
if [ "$progress" != "$base" ]; then
  check "progress ready" "$progress/ready"
fi

if [ -n "${GENERATE_URL:-}" ]; then
  code="$(curl --silent --max-time 30 --output /dev/null --write-out '%{http_code}' -X POST \
    -H 'Content-Type: application/json' -d '{}' "${GENERATE_URL%/}/" || true)"
  case "$code" in
    401 | 403 | 404) echo "smoke: ok   generate refuses a request from outside the queue ($code)" ;;
    *) echo "smoke: FAIL generate answered ${code:-nothing} to a request from outside the queue" >&2; exit 1 ;;
  esac
fi

if [ -n "$ASSETGEN_TOKEN" ]; then
  go run ./scripts/loadtest -base "$base" -batches 1 -rows 2 -variants 1 -timeout 5m -token-env ASSETGEN_TOKEN
else
  go run ./scripts/loadtest -base "$base" -batches 1 -rows 2 -variants 1 -timeout 5m
fi
echo "smoke: ok   dry-run batch of 2 rows done, images verified"
