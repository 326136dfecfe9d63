#!/usr/bin/env bash
# Deploys assetgen to Google Cloud: packages the function source, uploads it,
# and applies terraform/. Re-running it is safe; an unchanged source is not
# uploaded or rebuilt again.
#
# usage: PROJECT=my-project REGION=europe-west1 scripts/deploy.sh [--yes] [--plan]
#   --yes    apply without asking (CI); default: terraform shows the plan and asks
#   --plan   only show `terraform plan` (creates and uploads nothing)
#
# environment:
#   PROJECT, REGION   required: Google Cloud project id and region
#   TF_VAR_<name>     any other terraform variable (terraform/variables.tf), e.g.
#                     TF_VAR_housekeeping_image, TF_VAR_flags_live_runs=10%;
#                     terraform/terraform.tfvars is read too (see its .example)
#   SOURCE_OBJECT     deploy this already uploaded archive instead of packaging
#                     (a rollback: see docs/deploy.md)
#   PACKAGE_ARGS      arguments for scripts/package.sh (e.g. --head)
#
# Needs gcloud (logged in: `gcloud auth login` and
# `gcloud auth application-default login`), terraform >= 1.5 and git.
# No secret is passed on a command line: the Gemini API key, if used, lives in
# Secret Manager (docs/deploy.md).
set -euo pipefail

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

auto_approve=()
plan_only=false
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --yes) auto_approve=(-auto-approve); shift ;;
    --plan) plan_only=true; shift ;;
    *) echo "deploy.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done

: "${PROJECT:?set PROJECT to the Google Cloud project id (see -h)}"
: "${REGION:?set REGION, e.g. europe-west1 (see -h)}"
for tool in gcloud terraform git; do
  command -v "$tool" >/dev/null || { echo "deploy.sh: $tool is not installed" >&2; exit 1; }
done

cd "$(dirname "$0")/.."
tf() { terraform -chdir=terraform "$@"; }
say() { echo "deploy.sh: $*" >&2; }

# 1. The source archive (content-addressed: same content, same name).
if [[ -n "${SOURCE_OBJECT:-}" ]]; then
  object="$SOURCE_OBJECT"
  archive=""
  say "deploying the existing archive $object"
else
  # shellcheck disable=SC2086 # PACKAGE_ARGS is a list of flags
  archive="$(scripts/package.sh ${PACKAGE_ARGS:-})"
  object="source/$(basename "$archive")"
fi
vars=(-var "project=$PROJECT" -var "region=$REGION" -var "source_object=$object")

# 2. APIs terraform needs before it can plan anything (data.google_project,
#    google_project_service); terraform enables the rest.
say "enabling the Service Usage and Resource Manager APIs (idempotent)"
gcloud services enable serviceusage.googleapis.com cloudresourcemanager.googleapis.com --project "$PROJECT" >/dev/null

# 3. terraform init (a backend.tf, if you made one from backend.tf.example, is used).
tf init -input=false >/dev/null

if $plan_only; then
  tf plan -input=false "${vars[@]}"
  exit 0
fi

# 4. The source bucket must exist before the archive can be uploaded; on the
#    first run create just it (and the APIs it depends on).
bucket="$(tf console "${vars[@]}" <<<'local.source_bucket_name' | tr -d '"')"
managed="$(tf console "${vars[@]}" <<<'var.manage_source_bucket')"
if ! gcloud storage buckets describe "gs://$bucket" --project "$PROJECT" >/dev/null 2>&1; then
  if [[ "$managed" != true ]]; then
    say "source bucket gs://$bucket does not exist and manage_source_bucket is false"
    exit 1
  fi
  say "first deployment: creating the source bucket gs://$bucket"
  tf apply -input=false "${vars[@]}" -target='google_storage_bucket.source' "${auto_approve[@]}"
fi

# 5. Upload (skipped when that content is already there).
if [[ -n "$archive" ]]; then
  if gcloud storage objects describe "gs://$bucket/$object" --project "$PROJECT" >/dev/null 2>&1; then
    say "gs://$bucket/$object is already uploaded"
  else
    gcloud storage cp "$archive" "gs://$bucket/$object" --project "$PROJECT"
  fi
elif ! gcloud storage objects describe "gs://$bucket/$object" --project "$PROJECT" >/dev/null 2>&1; then
  say "gs://$bucket/$object does not exist (list them with: gcloud storage ls gs://$bucket/source/)"
  exit 1
fi

# 6. Everything else. Remember what ran before, for the rollback hint.
previous="$(tf output -raw source_object 2>/dev/null || true)"
# On a first deployment Cloud Monitoring may not know the log-based metrics yet
# when the alert policies are created ("Cannot find metric(s) ... could take up
# to 10 minutes", hashicorp/terraform-provider-google#11102): wait and apply
# again; everything else is already in place by then.
applylog="$(mktemp)"
trap 'rm -f "$applylog"' EXIT
for attempt in 1 2 3 4 5 6; do
  if tf apply -input=false "${vars[@]}" "${auto_approve[@]}" 2>&1 | tee "$applylog"; then
    break
  fi
  if [[ $attempt -lt 6 ]] && grep -q 'Cannot find metric' "$applylog"; then
    say "the new log-based metrics are not visible to Cloud Monitoring yet; applying again in 2 minutes"
    sleep 120
    continue
  fi
  exit 1
done

# 7. Where it lives.
submit="$(tf output -raw submit_url)"
progress="$(tf output -raw progress_url)"
cat <<OUT

assetgen is deployed from gs://$bucket/$object
  submit    $submit
  progress  $progress
  generate  $(tf output -raw generate_url)  (invokable only by Cloud Tasks)
  bucket    $(tf output -raw bucket)
  queue     $(tf output -raw queue)

Smoke test (a dry-run batch of 2 rows, free):
  scripts/smoke.sh $submit $progress
OUT
if [[ -n "$previous" && "$previous" != "$object" && "$previous" != *"No outputs"* ]]; then
  echo "Roll back to the previous release (docs/deploy.md):"
  echo "  SOURCE_OBJECT=$previous PROJECT=$PROJECT REGION=$REGION scripts/deploy.sh"
fi
