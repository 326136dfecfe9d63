#!/usr/bin/env bash
# Checks terraform/ offline: formatting, validation and a plan against the
# google provider 6.50.0 schema (../shared/tools/tf-offline-validate), then
# the policy tests in terraform/plantest against the plan's JSON. Two plans:
# terraform/ci.tfvars (every optional part switched on) and
# terraform/plantest/testdata/minimal.tfvars (every default).
#
# usage: scripts/ci-terraform.sh
#   TF_OFFLINE_VALIDATE  path of the validator's run script
#                        (default: ../shared/tools/tf-offline-validate/run)
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
validate="${TF_OFFLINE_VALIDATE:-../shared/tools/tf-offline-validate/run}"
[[ -x "$validate" ]] || { echo "ci-terraform.sh: validator not found at $validate (set TF_OFFLINE_VALIDATE)" >&2; exit 1; }

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
