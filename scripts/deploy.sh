#!/usr/bin/env bash
# Deploys one assetgen environment to Google Cloud: creates its secrets,
# packages the last commit, builds the housekeeping image, and applies a saved
# terraform plan. Re-running it is safe; unchanged parts are not rebuilt.
#
# usage: ASSETGEN_ENV=<env> scripts/deploy.sh [--plan] [--yes] [--source-object OBJECT]
#        ASSETGEN_ENV=<env> scripts/deploy.sh --rollback [--yes]
#   --plan                  only show the plan (creates, uploads and builds nothing)
#   --yes                   apply (or roll back) without asking (CI)
#   --source-object OBJECT  deploy an archive uploaded earlier (source/functions-<tree>.zip)
#                           instead of packaging the last commit
#   --rollback              shift all traffic of the three functions to their previous
#                           revisions (seconds: no build, no terraform)
#
# environment:
#   ASSETGEN_ENV    required: the environment; its settings are in
#                   terraform/env/$ASSETGEN_ENV.tfvars (copy terraform/env/example.tfvars)
#   TF_VAR_<name>   any other terraform variable (terraform/variables.tf)
#
# State: with terraform/backend.tf (see terraform/backend.tf.example) each
# environment keeps its own state under the prefix assetgen/<env>; without it
# the local state holds one environment, and deploy.sh refuses a second.
# Needs gcloud (logged in: `gcloud auth login` and
# `gcloud auth application-default login`), terraform >= 1.5 and git.
# Secret values are generated here and piped to gcloud: never printed, never
# on a command line, never in terraform state.
set -euo pipefail

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
say() { echo "deploy.sh: $*" >&2; }
die() { say "$*"; exit 1; }

mode=deploy
assume_yes=false
source_object=""
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --plan) mode=plan; shift ;;
    --rollback) mode=rollback; shift ;;
    --yes) assume_yes=true; shift ;;
    --source-object)
      [ $# -ge 2 ] || { say "--source-object needs an object name"; exit 2; }
      source_object=$2; shift 2 ;;
    --source-object=*) source_object=${1#*=}; shift ;;
    *) say "unknown argument: $1"; usage >&2; exit 2 ;;
  esac
done
if [ "$mode" = rollback ] && [ -n "$source_object" ]; then
  say "--rollback shifts traffic between existing revisions; it takes no --source-object"
  exit 2
fi

env_name="${ASSETGEN_ENV:-}"
[ -n "$env_name" ] || die "set ASSETGEN_ENV to the environment to deploy, e.g. ASSETGEN_ENV=staging (see -h)"
case "$env_name" in
  *[!a-z0-9-]* | -*) die "ASSETGEN_ENV must be lowercase letters, digits and hyphens, got '$env_name'" ;;
esac
cd "$(dirname "$0")/.."
varfile="env/$env_name.tfvars" # relative to terraform/
[ -f "terraform/$varfile" ] ||
  die "terraform/$varfile does not exist: copy terraform/env/example.tfvars to it and set project, region and name_prefix"
[ ! -f terraform/terraform.tfvars ] ||
  die "terraform/terraform.tfvars would apply to every environment: move its settings into terraform/$varfile"
for tool in gcloud terraform git; do
  command -v "$tool" >/dev/null || die "$tool is not installed"
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
tf() { terraform -chdir=terraform "$@"; }

# Errors Google Cloud documents as transient right after a change: enabling an
# API and IAM grants (new accounts, roles, bindings) take minutes to
# propagate, concurrent IAM policy edits answer 409, new log-based metrics
# take minutes to reach Cloud Monitoring, control planes answer 429/503 under
# load.
cat >"$work/transient" <<'EOF'
has not been used in project
SERVICE_DISABLED
Error 409.*[Cc]oncurrent
concurrent policy changes
Error 429
RESOURCE_EXHAUSTED
Error 503
Cannot find metric
missing permission on the build service account
Permission denied on secret
[Ss]ervice account .* does not exist
does not exist in the resource's hierarchy
uploadArtifacts.* denied
does not have storage.objects.get access
EOF
attempts=6

# transient LOG: the failure logged in LOG is one worth another attempt.
transient() { grep -Eq -f "$work/transient" "$1"; }

# backoff ATTEMPT: waits 10, 20, 40, 80, 160 s after attempts 1 to 5.
backoff() {
  local delay=$((10 * (1 << ($1 - 1))))
  say "transient error (attempt $1 of $attempts); trying again in ${delay}s"
  sleep "$delay"
}

# retry CMD...: runs CMD, again while it fails with a transient error, at
# most $attempts times. Output is shown as it comes.
retry() {
  local attempt=1
  while :; do
    if "$@" 2>&1 | tee "$work/last.log"; then return 0; fi
    if [ "$attempt" -ge "$attempts" ] || ! transient "$work/last.log"; then return 1; fi
    backoff "$attempt"
    attempt=$((attempt + 1))
  done
}

# confirm QUESTION: goes on when the operator says yes (or --yes was given).
confirm() {
  if $assume_yes; then return 0; fi
  [ -t 0 ] || die "$1 Not asking without a terminal: pass --yes."
  printf '%s [y/N] ' "$1" >&2
  local answer=""
  read -r answer || true
  case "$answer" in
    y | Y | yes) return 0 ;;
  esac
  die "stopped; nothing more was changed"
}

# plan_and_apply NAME ARGS...: plans into a saved plan, asks (unless --yes),
# and applies exactly that plan. After a transient error it plans again (a
# saved plan is stale once part of it was applied) and applies the rest, at
# most $attempts times.
plan_and_apply() {
  local name=$1 attempt=1 rc asked=false
  shift
  local planfile="$work/$name.tfplan"
  while :; do
    rc=0
    tf plan -input=false -detailed-exitcode -out="$planfile" "$@" 2>&1 | tee "$work/last.log" || rc=$?
    case "$rc" in
      0) say "$name: nothing to change"; return 0 ;;
      2)
        if ! $asked; then confirm "Apply this plan ($name, environment $env_name)?"; asked=true; fi
        if tf apply -input=false "$planfile" 2>&1 | tee "$work/last.log"; then return 0; fi
        ;;
    esac
    if [ "$attempt" -ge "$attempts" ] || ! transient "$work/last.log"; then
      die "$name: terraform failed (see above)"
    fi
    backoff "$attempt"
    attempt=$((attempt + 1))
  done
}

# new_secret_value KIND: a key id (k1), a colon and 32 random bytes in
# base64, no newline. For token-keys the bytes are an HMAC key; for
# webhook-keys they are an Ed25519 private key seed (RFC 8032: any 32 random
# bytes are one), whose public half the functions publish.
new_secret_value() {
  printf 'k1:'
  head -c 32 /dev/urandom | base64 | tr -d '\n'
}

add_secret_version() { new_secret_value "$2" | gcloud secrets versions add "$1" --data-file=- --project "$project"; }

# ensure_secret ID KIND: the secret exists with an enabled version, so the
# first revision that reads it can start.
ensure_secret() {
  if ! gcloud secrets describe "$1" --project "$project" >/dev/null 2>&1; then
    say "creating secret $1"
    retry gcloud secrets create "$1" --replication-policy=automatic --project "$project" ||
      grep -q 'already exists' "$work/last.log" || die "could not create secret $1"
  fi
  if [ -z "$(gcloud secrets versions list "$1" --project "$project" --filter=state:ENABLED --limit=1 --format='value(name)')" ]; then
    say "adding a first version to secret $1 (generated here, not shown)"
    retry add_secret_version "$1" "$2"
  fi
}

# ---------------------------------------------------------------- state ---
if grep -Eqs '^[[:space:]]*backend[[:space:]]+"gcs"' terraform/*.tf; then
  backend_args="-backend-config=prefix=assetgen/$env_name"
  say "state: Cloud Storage, prefix assetgen/$env_name"
else
  backend_args=""
  marker=terraform/terraform.tfstate.env
  if [ -s terraform/terraform.tfstate ]; then
    [ -f "$marker" ] ||
      die "terraform/terraform.tfstate does not say which environment it holds; if it is $env_name's: echo $env_name > $marker"
    owner="$(cat "$marker")"
    [ "$owner" = "$env_name" ] ||
      die "the local state holds environment $owner; a second environment ($env_name) needs remote state: see terraform/backend.tf.example"
  fi
  say "state: local (terraform/terraform.tfstate, environment $env_name only)"
fi
if ! tf init -input=false -reconfigure $backend_args >"$work/init.log" 2>&1; then
  cat "$work/init.log" >&2
  die "terraform init failed"
fi

# The environment's names, from its settings (the same expressions terraform
# uses): project region prefix source-bucket ... as one line.
settings="$(echo 'join(" ", [var.project, var.region, var.name_prefix, local.source_bucket_name, tostring(var.manage_source_bucket), local.secret_ids.progress_token_keys, local.secret_ids.webhook_signing_keys, local.image_base, local.sa_email["build"], local.function_names.submit, local.function_names.generate, local.function_names.progress])' |
  tf console -var-file="$varfile" -var=source_object=source/pending.zip)"
settings="${settings#\"}"
settings="${settings%\"}"
read -r project region prefix source_bucket manage_source_bucket token_secret webhook_keys image_base build_account \
  submit_service generate_service progress_service <<EOF
$settings
EOF
[ -n "$progress_service" ] || die "could not read the environment's settings from terraform/$varfile"
say "environment $env_name: project $project, region $region, names $prefix-*"

# ------------------------------------------------------------- rollback ---
if [ "$mode" = rollback ]; then
  targets=""
  for svc in "$submit_service" "$generate_service" "$progress_service"; do
    serving="$(gcloud run services describe "$svc" --region "$region" --project "$project" --format='value(status.traffic[0].revisionName)')"
    previous="$(gcloud run revisions list --service "$svc" --region "$region" --project "$project" \
      --sort-by='~metadata.creationTimestamp' --format='value(metadata.name)' |
      awk -v s="$serving" 'found { print; exit } $0 == s { found = 1 }')"
    [ -n "$previous" ] || die "$svc: no revision older than $serving to roll back to"
    say "$svc: $serving -> $previous"
    targets="$targets $svc=$previous"
  done
  confirm "Send all traffic of the three functions to these revisions?"
  for target in $targets; do
    retry gcloud run services update-traffic "${target%%=*}" --to-revisions="${target#*=}=100" \
      --region "$region" --project "$project"
  done
  cat <<OUT

Rolled back environment $env_name: each function serves its previous revision.
The next deploy sends traffic to the newest revisions again; to stay on the
earlier release, redeploy its source archive:
  ASSETGEN_ENV=$env_name scripts/deploy.sh --source-object source/functions-<tree>.zip
OUT
  exit 0
fi

# ------------------------------------------------------------- secrets ---
# Before any plan: the functions' first revisions read them at start.
if [ "$mode" = deploy ]; then
  retry gcloud services enable serviceusage.googleapis.com cloudresourcemanager.googleapis.com \
    secretmanager.googleapis.com --project "$project"
  ensure_secret "$token_secret" token-keys
  ensure_secret "$webhook_keys" webhook-keys
  if [ -z "$backend_args" ]; then echo "$env_name" >terraform/terraform.tfstate.env; fi
fi

# ------------------------------------------------------- source archive ---
if [ -n "$source_object" ]; then
  object="$source_object"
  archive=""
  say "deploying the uploaded archive $object"
else
  if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
    say "note: uncommitted changes are not deployed; deploy.sh deploys the last commit"
  fi
  archive="$(scripts/package.sh --head --out "$work")"
  object="source/$(basename "$archive")"
fi
vars=(-var-file="$varfile" -var "source_object=$object")

# ------------------------------------------------------------ bootstrap ---
# What the upload and the image build need first: the source bucket, the
# image repository, and the build account with its grants.
if [ "$mode" = deploy ]; then
  plan_and_apply bootstrap "${vars[@]}" \
    -target=google_storage_bucket.source \
    -target=google_artifact_registry_repository.images \
    -target=google_artifact_registry_repository_iam_member.build_writer \
    -target=google_project_iam_member.build_logs \
    -target=google_storage_bucket_iam_member.build_source_viewer

  if [ "$manage_source_bucket" != true ] && ! gcloud storage buckets describe "gs://$source_bucket" --project "$project" >/dev/null 2>&1; then
    die "the source bucket gs://$source_bucket does not exist, and manage_source_bucket = false leaves it to you"
  fi
  if [ -n "$archive" ]; then
    if gcloud storage objects describe "gs://$source_bucket/$object" --project "$project" >/dev/null 2>&1; then
      say "gs://$source_bucket/$object is already uploaded"
    else
      retry gcloud storage cp "$archive" "gs://$source_bucket/$object" --project "$project"
    fi
  elif ! gcloud storage objects describe "gs://$source_bucket/$object" --project "$project" >/dev/null 2>&1; then
    die "gs://$source_bucket/$object does not exist (list them: gcloud storage ls gs://$source_bucket/source/)"
  fi
fi

# ------------------------------------------------------ housekeeping image ---
# Built from the last commit by the build account into the environment's
# repository, tagged with the commit's tree, and deployed by digest.
digest_of() {
  gcloud artifacts docker images describe "$1" --project "$project" --format='value(image_summary.digest)' 2>/dev/null || true
}
build_housekeeping() {
  mkdir -p "$work/src"
  git archive --format=tar HEAD | tar -x -C "$work/src"
  cat >"$work/cloudbuild.yaml" <<EOF
steps:
  - name: gcr.io/k8s-skaffold/pack
    entrypoint: pack
    args: ['build', '$1', '--builder', 'gcr.io/buildpacks/builder', '--network', 'cloudbuild', '--env', 'GOOGLE_BUILDABLE=./jobs/housekeeping']
images: ['$1']
serviceAccount: 'projects/$project/serviceAccounts/$build_account'
options:
  logging: CLOUD_LOGGING_ONLY
EOF
  say "building $1 as $build_account"
  retry gcloud builds submit "$work/src" --config "$work/cloudbuild.yaml" --project "$project" --region "$region" \
    --gcs-source-staging-dir "gs://$source_bucket/housekeeping-build"
}

image=""
if [ -n "$source_object" ]; then
  image="$(tf output -raw housekeeping_image 2>/dev/null || true)"
else
  tree="$(git rev-parse 'HEAD^{tree}')"
  ref="$image_base/housekeeping:tree-${tree:0:20}"
  digest="$(digest_of "$ref")"
  if [ -z "$digest" ] && [ "$mode" = deploy ]; then
    build_housekeeping "$ref"
    digest="$(digest_of "$ref")"
    [ -n "$digest" ] || die "the housekeeping image $ref was built but has no digest"
  fi
  if [ -n "$digest" ]; then
    image="$image_base/housekeeping@$digest"
  else
    image="$(tf output -raw housekeeping_image 2>/dev/null || true)"
    say "the housekeeping image of this commit is not built yet; the plan keeps the deployed one"
  fi
fi
case "$image" in
  *@sha256:*) vars+=(-var "housekeeping_image=$image") ;;
esac

# ------------------------------------------------------------ everything ---
if [ "$mode" = plan ]; then
  tf plan -input=false "${vars[@]}"
  exit 0
fi
previous_object="$(tf output -raw source_object 2>/dev/null || true)"
plan_and_apply deploy "${vars[@]}"

submit_url="$(tf output -raw submit_url)"
progress_url="$(tf output -raw progress_url)"
cat <<OUT

assetgen environment $env_name is deployed from gs://$source_bucket/$object
  submit    $submit_url
  progress  $progress_url
  generate  $(tf output -raw generate_url)  (private: only the queue's tasks reach it)
  bucket    $(tf output -raw bucket)
  queue     $(tf output -raw queue)

Smoke test (a free dry-run batch; docs/deploy.md shows how to mint the token):
  scripts/smoke.sh --token-file FILE $submit_url $progress_url
Roll back the functions to their previous revisions (seconds):
  ASSETGEN_ENV=$env_name scripts/deploy.sh --rollback
OUT
case "$previous_object" in
  source/*.zip)
    if [ "$previous_object" != "$object" ]; then
      echo "Redeploy the previous release's source:"
      echo "  ASSETGEN_ENV=$env_name scripts/deploy.sh --source-object $previous_object"
    fi
    ;;
esac
