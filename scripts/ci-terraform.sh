#!/usr/bin/env bash
# Checks terraform/ offline: formatting, validation and a plan against the
# google provider 6.50.0 schema (../shared/tools/tf-offline-validate), then
# the policy tests in terraform/plantest against the plan's JSON. Two plans:
# terraform/ci.tfvars (every optional part switched on) and
# terraform/plantest/testdata/minimal.tfvars (every default).
#
# usage: scripts/ci-terraform.sh
#   TF_OFFLINE_VALIDATE  path of the validator's run script (default: the team
#                        kit's shared/tools/tf-offline-validate/run beside this
#                        repository, or beside the repository it was cloned from)
#
# No cloud access, no credentials. The first run builds terraform and the
# provider stand-in (~3 min, cached in ~/.cache/tf-offline-validate).
set -euo pipefail

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
  exit 0
fi
if [[ $# -gt 0 ]]; then
  echo "ci-terraform.sh: takes no arguments (see -h)" >&2
  exit 2
fi

cd "$(dirname "$0")/.."
# The team kit sits beside the repository; a fresh clone in CI may live
# elsewhere, so the kit beside the clone's origin counts too.
candidates=("${TF_OFFLINE_VALIDATE:-}" ../shared/tools/tf-offline-validate/run)
if origin="$(git remote get-url origin 2>/dev/null)" && [[ -d "$origin" ]]; then
  candidates+=("$(cd "$origin/.." && pwd)/shared/tools/tf-offline-validate/run")
fi
validate=""
for c in "${candidates[@]}"; do
  if [[ -n "$c" && -x "$c" ]]; then validate="$c"; break; fi
done
[[ -n "$validate" ]] || { echo "ci-terraform.sh: validator not found (tried: ${candidates[*]}); set TF_OFFLINE_VALIDATE" >&2; exit 1; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

for varfile in terraform/ci.tfvars terraform/plantest/testdata/minimal.tfvars; do
  [[ -f "$varfile" ]] || { echo "ci-terraform.sh: $varfile is missing (terraform/*.tfvars is git-ignored: is it committed?)" >&2; exit 1; }
  name="$(basename "$varfile" .tfvars)"
  echo "--- terraform: offline validate + plan ($varfile)"
  "$validate" terraform --var-file "$varfile" --plan-json "$tmp/$name.json"
  echo "--- terraform: policy tests ($varfile)"
  ASSETGEN_PLAN_JSON="$tmp/$name.json" go test -count=1 ./terraform/plantest/
done
