# The submit and generate functions (Cloud Run functions, gen2). All three
# functions, progress included (progress.tf), build from one source archive:
# Cloud Run functions' Go builder imports the package at the root of the
# uploaded source and runs its init registrations, so scripts/package.sh adds
# a root package that blank-imports github.com/assetgen/assetgen/functions,
# whose init registers Submit, Generate and Progress; entry_point picks one.
#
# Trust boundaries (docs/security.md):
# - generate is private: ingress internal (Cloud Tasks of this project counts
#   as internal) and run.invoker for the tasks account only. Cloud Run checks
#   the task's OIDC token for IAM and hands it on with its signature removed,
#   so generate checks the token's claims (TASKS_OIDC_AUDIENCE,
#   TASKS_SERVICE_ACCOUNT), never its signature.
# - submit and progress are public at IAM (allUsers) and authenticate callers
#   themselves: browsers' CORS preflights carry no credentials, EventSource
#   cannot send headers, and a token Cloud Run verified for IAM would reach
#   the function without its signature.

locals {
  build_service_account = "projects/${var.project}/serviceAccounts/${local.sa_email["build"]}"

  # Settings every function reads (shared/config). Empty values are left out so
  # the code's defaults apply.
  common_env = { for k, v in {
    BUCKET                  = google_storage_bucket.ledger.name
    TASKS_QUEUE             = local.queue_id
    TASKS_DRY_RUN_QUEUE     = local.dry_run_queue_id
    TASKS_MAX_ATTEMPTS      = tostring(var.tasks_max_attempts)
    TASKS_DISPATCH_DEADLINE = local.dispatch_deadline
    SIGNED_URL_TTL          = var.signed_url_ttl
    LOG_LEVEL               = var.log_level
    MODELS_JSON             = var.models_json
    DAILY_BUDGET_USD        = tostring(var.daily_budget_usd)
    # The deployment's cap: submit reserves on it, whoever finishes a batch
    # settles on it (generate, submit on cancel, the housekeeping job).
    DAILY_BUDGET_TOTAL_USD = tostring(var.daily_budget_total_usd)
    # Trace links in the structured logs.
    GOOGLE_CLOUD_PROJECT = var.project
    # Retention: stable image links last as long as the images.
    HISTORY_RETENTION = "${var.retention_days * 24}h"
    # Submit's public origin. Whoever finishes a batch (generate, submit on
    # cancel, the housekeeping job) puts stable image links under it in the
    # webhook and the Sheets rows; submit also uses it for statusUrl.
    PUBLIC_BASE_URL = local.public_base_url
  } : k => v if v != "" }

  # How the public API authenticates callers (submit and progress).
  auth_env = { for k, v in {
    AUTH_MODE      = var.auth_mode
    AUTH_AUDIENCES = join(",", var.auth_audiences)
    AUTH_ISSUERS   = join(",", var.auth_issuers)
    AUTH_ALLOW     = join(",", var.auth_allow)
    # The console is served by the progress service and calls submit from there.
    CORS_ORIGINS = join(",", distinct(concat(var.allowed_origins, [local.progress_base_url])))
  } : k => v if v != "" }

  # Generate's URL, where Cloud Tasks posts row tasks. The OIDC token's
  # audience is this URL's origin, which Cloud Run accepts for its own URLs.
  generate_url      = local.run_urls.generate
  progress_base_url = var.progress_public_base_url != "" ? var.progress_public_base_url : local.run_urls.progress
  public_base_url   = var.public_base_url != "" ? var.public_base_url : local.run_urls.submit
}

resource "google_cloudfunctions2_function" "submit" {
  name        = local.function_names.submit
  location    = var.region
  description = "assetgen submit: POST /batch/images, GET /batch/{id}"

  build_config {
    runtime           = var.function_runtime
    entry_point       = "Submit"
    service_account   = local.build_service_account
    docker_repository = local.repository_name
    source {
      storage_source {
        bucket = local.source_bucket
        object = var.source_object
      }
    }
  }

  service_config {
    service_account_email            = local.sa_email["submit"]
    available_memory                 = var.submit.memory
    available_cpu                    = var.submit.cpu
    max_instance_request_concurrency = var.submit.concurrency
    min_instance_count               = var.submit.min_instances
    max_instance_count               = var.submit.max_instances
    timeout_seconds                  = var.submit.timeout
    # Public: submit authenticates its users itself (allUsers holds the
    # invoker role, functions_iam below).
    ingress_settings               = "ALLOW_ALL"
    all_traffic_on_latest_revision = true

    environment_variables = merge(local.common_env, local.auth_env, { for k, v in {
      GENERATE_URL = local.generate_url
      # The account whose OIDC token every row task carries: the only one
      # allowed to invoke generate.
      TASKS_SERVICE_ACCOUNT   = local.sa_email["tasks-invoker"]
      PROGRESS_BASE_URL       = local.progress_base_url
      SIGNING_SERVICE_ACCOUNT = local.sa_email["submit"]
      # Canary flags (docs/deploy.md); config/flags.json in the bucket
      # overrides them at run time.
      HYBRID_V1_ENABLED = var.flags_hybrid_v1
      LIVE_RUNS         = var.flags_live_runs
      # Submit offers live runs when a backend exists; only generate holds
      # the key. Empty while a Gemini API key secret has no version yet.
      LIVE_BACKEND = local.live_backend
      REF_BUCKETS  = join(",", var.ref_buckets)
    } : k => v if v != "" }, lookup(var.extra_env, "submit", {}))

    # From Secret Manager (version latest, read when an instance starts): the
    # HMAC keys of progress tokens and image links (id:base64,…), and the
    # Ed25519 keys that sign completion webhooks (published at /webhooks/keys).
    secret_environment_variables {
      key        = "PROGRESS_TOKEN_KEYS"
      project_id = var.project
      secret     = local.secret_ids.progress_token_keys
      version    = "latest"
    }
    secret_environment_variables {
      key        = "WEBHOOK_SIGNING_KEYS"
      project_id = var.project
      secret     = local.secret_ids.webhook_signing_keys
      version    = "latest"
    }
  }

  lifecycle {
    precondition {
      condition     = var.auth_mode != "google" || length(var.auth_audiences) > 0
      error_message = "auth_mode = \"google\" needs auth_audiences: the OAuth client ids or the Identity Platform project id your frontend's tokens are issued for."
    }
    precondition {
      condition     = var.auth_mode != "google" || length(var.auth_allow) > 0
      error_message = "auth_mode = \"google\" needs auth_allow: the e-mail addresses or \"*@domain\" entries that may call (a Google signature alone admits any Google identity, any project's service accounts included)."
    }
  }

  # The build's grants, and the runtime grants, so that the first requests
  # after a deployment do not race them.
  depends_on = [
    google_service_account.sa,
    google_project_iam_member.build_logs,
    google_project_iam_member.build_gcf_buckets,
    google_artifact_registry_repository_iam_member.build_writer,
    google_storage_bucket_iam_member.build_source_viewer,
    google_storage_bucket_iam_member.ledger_object_admin,
    google_cloud_tasks_queue_iam_member.enqueuer,
    google_cloud_tasks_queue_iam_member.viewer,
    google_cloud_tasks_queue_iam_member.dry_run_enqueuer,
    google_cloud_tasks_queue_iam_member.dry_run_viewer,
    google_service_account_iam_member.act_as_tasks_invoker,
    google_service_account_iam_member.self_url_signer,
    google_secret_manager_secret_iam_member.progress_token_keys,
    google_secret_manager_secret_iam_member.webhook_signing_keys,
  ]
}

resource "google_cloudfunctions2_function" "generate" {
  name        = local.function_names.generate
  location    = var.region
  description = "assetgen generate: one row per Cloud Task; invoked only by the tasks-invoker account"

  build_config {
    runtime           = var.function_runtime
    entry_point       = "Generate"
    service_account   = local.build_service_account
    docker_repository = local.repository_name
    source {
      storage_source {
        bucket = local.source_bucket
        object = var.source_object
      }
    }
  }

  service_config {
    service_account_email            = local.sa_email["generate"]
    available_memory                 = var.generate.memory
    available_cpu                    = var.generate.cpu
    max_instance_request_concurrency = var.generate.concurrency
    min_instance_count               = var.generate.min_instances
    max_instance_count               = var.generate.max_instances
    # Longer than one task delivery (the dispatch deadline), so an attempt can
    # record its outcome before Cloud Tasks gives up on it.
    timeout_seconds = local.generate_timeout
    # Internal by default (Cloud Tasks of this project is internal), and not
    # invokable by anyone but tasks-invoker (functions_iam below).
    ingress_settings               = var.generate_ingress
    all_traffic_on_latest_revision = true

    environment_variables = merge(local.common_env, { for k, v in {
      DRY_RUN_DELAY = var.dry_run_delay
      # Live runs: Vertex AI in this project with the function's own identity,
      # or the Gemini API with the key below.
      LIVE_BACKEND    = local.live_backend
      VERTEX_LOCATION = local.live_backend == "vertex" ? var.vertex_location : ""
      MODEL_TIMEOUT   = var.model_timeout
      # Second lock after IAM: the claims of each task's OIDC token (Cloud
      # Run removed its signature after verifying it) must name this URL as
      # audience and the queue's service account as verified e-mail.
      TASKS_OIDC_AUDIENCE   = local.generate_url
      TASKS_SERVICE_ACCOUNT = local.sa_email["tasks-invoker"]
    } : k => v if v != "" }, lookup(var.extra_env, "generate", {}))

    # Generate finishes batches (the last row's task): it mints image-link
    # tokens and signs the completion webhook.
    secret_environment_variables {
      key        = "PROGRESS_TOKEN_KEYS"
      project_id = var.project
      secret     = local.secret_ids.progress_token_keys
      version    = "latest"
    }
    secret_environment_variables {
      key        = "WEBHOOK_SIGNING_KEYS"
      project_id = var.project
      secret     = local.secret_ids.webhook_signing_keys
      version    = "latest"
    }

    # The Gemini API key, read from Secret Manager when an instance starts; the
    # value never passes through terraform. Mounted once a version exists.
    dynamic "secret_environment_variables" {
      for_each = local.gemini_key_mounted ? [local.secret_ids.gemini_api_key] : []
      content {
        key        = "GEMINI_API_KEY"
        project_id = var.project
        secret     = secret_environment_variables.value
        version    = "latest"
      }
    }
  }

  lifecycle {
    precondition {
      condition     = var.generate.concurrency * var.generate.max_instances >= var.tasks_max_concurrent_dispatches + var.tasks_dry_run_max_concurrent_dispatches
      error_message = "generate.concurrency x generate.max_instances must be at least tasks_max_concurrent_dispatches + tasks_dry_run_max_concurrent_dispatches (both queues dispatch to it), or dispatched tasks are turned away with 429s."
    }
  }

  depends_on = [
    google_service_account.sa,
    google_project_iam_member.build_logs,
    google_project_iam_member.build_gcf_buckets,
    google_artifact_registry_repository_iam_member.build_writer,
    google_storage_bucket_iam_member.build_source_viewer,
    google_storage_bucket_iam_member.ledger_object_admin,
    google_project_iam_member.generate_vertex,
    google_secret_manager_secret_iam_member.generate_gemini_key,
    google_secret_manager_secret_iam_member.progress_token_keys,
    google_secret_manager_secret_iam_member.webhook_signing_keys,
  ]
}

# ----------------------------------------------------------- functions_iam ---
# Invoking a gen2 function is run.invoker on its Cloud Run service
# (service_config[0].service); roles/cloudfunctions.invoker is not used.

# Only the account whose OIDC token Cloud Tasks attaches may invoke generate.
resource "google_cloud_run_v2_service_iam_member" "generate_tasks_invoker" {
  project  = var.project
  location = var.region
  name     = google_cloudfunctions2_function.generate.service_config[0].service
  role     = "roles/run.invoker"
  member   = local.sa_member["tasks-invoker"]

  depends_on = [google_service_account.sa]
}

# Public at IAM: submit authenticates its callers itself (AUTH_MODE). A
# private submit cannot serve browsers: CORS preflights carry no credentials,
# and Cloud Run would hand the user's token on without its signature.
resource "google_cloud_run_v2_service_iam_member" "submit_public" {
  project  = var.project
  location = var.region
  name     = google_cloudfunctions2_function.submit.service_config[0].service
  role     = "roles/run.invoker"
  member   = "allUsers"
}
