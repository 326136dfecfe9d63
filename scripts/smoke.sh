#!/usr/bin/env bash
# Smoke test of a deployment (or of `make run`): liveness and readiness of
# submit and progress, then one dry-run batch of 2 rows × 1 variant followed
# over SSE to done, with every image fetched through its signed URL and
# checked to be a PNG (scripts/loadtest). Dry runs cost nothing.
#
# usage: scripts/smoke.sh BASE_URL [PROGRESS_BASE]
#   BASE_URL        origin of the submit function (terraform output submit_url)
#   PROGRESS_BASE   origin of the progress function (terraform output
#                   progress_url); default BASE_URL, as with `make run`
#
# environment:
#   ASSETGEN_TOKEN  optional bearer token for submit (e.g. when public_submit is
#                   false: `export ASSETGEN_TOKEN=$(gcloud auth print-identity-token)`);
#                   read from the environment, never from arguments
#   GENERATE_URL    optional: also check that generate refuses a request
#                   without an identity token (401/403/404)
set -euo pipefail

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  "") usage >&2; exit 2 ;;
esac
[[ $# -le 2 ]] || { usage >&2; exit 2; }
base="${1%/}"
progress="${2:-$base}"
progress="${progress%/}"
cd "$(dirname "$0")/.."

# curl with the token (if any) passed through a config on stdin, not argv.
fetch() {
  local url=$1
  if [[ -n "${ASSETGEN_TOKEN:-}" ]]; then
    printf 'header = "Authorization: Bearer %s"\n' "$ASSETGEN_TOKEN" |
      curl --silent --show-error --max-time 30 --output /dev/null --write-out '%{http_code}' --config - "$url"
  else
    curl --silent --show-error --max-time 30 --output /dev/null --write-out '%{http_code}' "$url"
  fi
}

check() {
  local name=$1 url=$2 code
  code="$(fetch "$url" || true)"
  if [[ "$code" != 200 ]]; then
    echo "smoke: FAIL $name $url answered ${code:-nothing}" >&2
    exit 1
  fi
  echo "smoke: ok   $name $url"
}

check "submit healthz  " "$base/healthz"
check "submit readyz   " "$base/readyz"
if [[ "$progress" != "$base" ]]; then
  check "progress healthz" "$progress/healthz"
  check "progress readyz " "$progress/readyz"
fi

if [[ -n "${GENERATE_URL:-}" ]]; then
  code="$(curl --silent --max-time 30 --output /dev/null --write-out '%{http_code}' -X POST \
    -H 'Content-Type: application/json' -d '{}' "${GENERATE_URL%/}/" || true)"
  case "$code" in
    401 | 403 | 404) echo "smoke: ok   generate refuses unauthenticated requests ($code)" ;;
    *) echo "smoke: FAIL generate answered $code to a request without an identity token" >&2; exit 1 ;;
  esac
fi

token_args=()
[[ -z "${ASSETGEN_TOKEN:-}" ]] || token_args=(-token-env ASSETGEN_TOKEN)
go run ./scripts/loadtest -base "$base" -batches 1 -rows 2 -variants 1 -timeout 5m "${token_args[@]}"
echo "smoke: ok   dry-run batch of 2 rows done, images verified"
