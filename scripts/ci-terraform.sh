#!/usr/bin/env bash
# Checks terraform/ offline: formatting, validation and a plan against the
# google provider 6.50.0 schema (tf-offline-validate), then the policy tests
# in terraform/plantest against the plans' JSON. Three plans:
# terraform/ci.tfvars (every optional part on, environment "ag-ci"),
# terraform/plantest/testdata/minimal.tfvars (every default, environment
# "assetgen", same project) and terraform/env/example.tfvars (what an
# operator copies, with the source_object deploy.sh would pass).
#
# usage: scripts/ci-terraform.sh [--if-available]
#   --if-available  when the validator is not found, say that the terraform
#                   plan tests were skipped and why, and succeed (make test)
#
# Without the validator (a clone outside the machine it ships with), the
# script says so and falls back to plain terraform where it is installed:
# fmt -check, init -backend=false (fetches the google provider from the
# registry) and validate. The plan tests need the validator's plans and are
# skipped then; --if-available also forgives a failed init (no registry).
#
# environment:
#   TF_OFFLINE_VALIDATE  path of the validator's run script (default:
#                        shared/tools/tf-offline-validate/run beside this
#                        repository, or beside the repository it was cloned
#                        from)
#
# No cloud access, no credentials. The first run builds terraform and the
# provider stand-in (~3 min, cached in ~/.cache/tf-offline-validate); plans
# are written to a temporary directory, never into the repository.
set -euo pipefail

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

if_available=false
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --if-available) if_available=true; shift ;;
    *) echo "ci-terraform.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done

cd "$(dirname "$0")/.."
# The validator sits beside the repository; a fresh clone in CI may live
# elsewhere, so the one beside the clone's origin counts too.
candidates=("${TF_OFFLINE_VALIDATE:-}" ../shared/tools/tf-offline-validate/run)
if origin="$(git remote get-url origin 2>/dev/null)" && [[ -d "$origin" ]]; then
  candidates+=("$(cd "$origin/.." && pwd)/shared/tools/tf-offline-validate/run")
fi
validate=""
for c in "${candidates[@]}"; do
  if [[ -n "$c" && -x "$c" ]]; then validate="$c"; break; fi
done
if [[ -z "$validate" ]] && command -v terraform >/dev/null 2>&1; then
  tried="${candidates[*]}"
  echo "--- terraform: the offline validator tf-offline-validate was not found (tried: ${tried# }); falling back to plain terraform validate (the plan tests need the validator and are skipped)"
  terraform -chdir=terraform fmt -check -recursive
  data="$(mktemp -d)"
  trap 'rm -rf "$data"' EXIT
  if ! TF_DATA_DIR="$data" terraform -chdir=terraform init -backend=false -input=false >"$data/init.log" 2>&1; then
    cat "$data/init.log" >&2
    if $if_available; then
      echo "--- terraform: validate SKIPPED: terraform init could not fetch the provider (is the registry reachable?)"
      exit 0
    fi
    echo "ci-terraform.sh: terraform init failed" >&2
    exit 1
  fi
  TF_DATA_DIR="$data" terraform -chdir=terraform validate
  exit 0
fi
if [[ -z "$validate" ]]; then
  tried="${candidates[*]}"
  if $if_available; then
    echo "--- terraform: plan tests SKIPPED: the offline validator tf-offline-validate was not found (tried: ${tried# }); set TF_OFFLINE_VALIDATE to its run script to run them"
    exit 0
  fi
  echo "ci-terraform.sh: validator not found (tried: ${tried# }); set TF_OFFLINE_VALIDATE" >&2
  exit 1
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# The example leaves source_object to deploy.sh; give it the same kind of
# value deploy.sh passes.
cp terraform/env/example.tfvars "$tmp/example.tfvars"
printf '\nsource_object = "source/functions-0123456789abcdef0123456789abcdef01234567.zip"\n' >>"$tmp/example.tfvars"

plans=""
for varfile in terraform/ci.tfvars terraform/plantest/testdata/minimal.tfvars "$tmp/example.tfvars"; do
  [[ -f "$varfile" ]] || { echo "ci-terraform.sh: $varfile is missing (terraform/*.tfvars is git-ignored: is it committed?)" >&2; exit 1; }
  name="$(basename "$varfile" .tfvars)"
  echo "--- terraform: offline validate + plan ($name)"
  "$validate" terraform --var-file "$varfile" --plan-json "$tmp/$name.json"
  plans="${plans:+$plans:}$tmp/$name.json"
done

echo "--- terraform: policy tests (ci, minimal, example)"
ASSETGEN_PLAN_JSON="$plans" go test -count=1 ./terraform/plantest/
