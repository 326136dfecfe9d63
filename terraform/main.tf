# Names and values shared by the other files.
#
# Values that cross resources are derived so that they are known at plan time:
# the policy tests in terraform/plantest compare them across resources before
# anything exists, and the provider turns a whole map (such as a function's
# environment) unknown when one value in it is.
# - Service account e-mails follow from their account ids (the format Google
#   uses for user-managed accounts); resources that use one depend on
#   google_service_account.sa explicitly.
# - Function URLs are the deterministic Cloud Run URLs
#   https://<service>-<project number>.<region>.run.app, which every Cloud Run
#   service (so every gen2 function) answers on besides its hashed URL.

data "google_project" "this" {
  project_id = var.project
}

locals {
  labels = merge({ app = "assetgen", managed-by = "terraform" }, var.labels)

  bucket_name        = var.bucket_name != "" ? var.bucket_name : "${var.project}-${var.name_prefix}-ledger"
  bucket_location    = upper(var.bucket_location != "" ? var.bucket_location : var.region)
  source_bucket_name = var.source_bucket != "" ? var.source_bucket : "${var.project}-${var.name_prefix}-source"

  # Every name derives from name_prefix, so environments share a project
  # without sharing anything else.
  queue_name = var.queue_name != "" ? var.queue_name : "${var.name_prefix}-generate"
  # Full queue name, as the functions expect it in TASKS_QUEUE.
  queue_id = "projects/${var.project}/locations/${var.region}/queues/${local.queue_name}"

  # Secret Manager secret ids. scripts/deploy.sh creates the first two, each
  # with a first version, before terraform runs (it reads these names with
  # terraform console); terraform only grants access to them.
  secret_ids = {
    progress_token_keys  = var.progress_token_keys_secret != "" ? var.progress_token_keys_secret : "${var.name_prefix}-progress-token-keys"
    webhook_signing_keys = var.webhook_signing_keys_secret != "" ? var.webhook_signing_keys_secret : "${var.name_prefix}-webhook-signing-keys"
    gemini_api_key       = var.gemini_api_key_secret != "" ? var.gemini_api_key_secret : "${var.name_prefix}-gemini-api-key"
  }

  # Custom role ids allow letters, digits, underscores and dots only.
  role_prefix = replace(var.name_prefix, "-", "_")

  # The environment's Artifact Registry repository: the function images (the
  # functions' docker_repository) and the housekeeping image.
  repository_id   = "${var.name_prefix}-images"
  repository_name = "projects/${var.project}/locations/${var.region}/repositories/${local.repository_id}"
  image_base      = "${var.region}-docker.pkg.dev/${var.project}/${local.repository_id}"

  function_names = {
    submit   = "${var.name_prefix}-submit"
    generate = "${var.name_prefix}-generate"
    progress = "${var.name_prefix}-progress"
  }
  run_urls = { for k, n in local.function_names : k => "https://${n}-${data.google_project.this.number}.${var.region}.run.app" }

  # One service account per workload; see iam.tf for what each may do.
  service_accounts = {
    submit        = "Submit function: validates batches, writes the ledger, enqueues row tasks"
    generate      = "Generate function: makes one row's images per Cloud Task"
    progress      = "Progress function: tails the ledger and streams SSE"
    tasks-invoker = "Identity of the OIDC token Cloud Tasks attaches to row tasks; may only invoke generate"
    housekeeping  = "Housekeeping Cloud Run job: recovers stuck rows, prunes, settles"
    scheduler     = "Cloud Scheduler: may only run the housekeeping job"
    build         = "Cloud Build: builds the function images and the housekeeping image into this environment's repository"
  }

  sa_email  = { for k, _ in local.service_accounts : k => "${var.name_prefix}-${k}@${var.project}.iam.gserviceaccount.com" }
  sa_member = { for k, v in local.sa_email : k => "serviceAccount:${v}" }

  dispatch_deadline = "${var.tasks_dispatch_deadline_seconds}s"

  # The generate function must outlive one delivery, so that an attempt can
  # record its outcome before Cloud Tasks stops waiting (ROW_LEASE is also
  # deadline + 30s).
  generate_timeout = var.tasks_dispatch_deadline_seconds + 30

  housekeeping_enabled = var.housekeeping_image != ""
  scheduler_region     = var.scheduler_region != "" ? var.scheduler_region : var.region

  gemini_secret_enabled = var.genai_backend == "gemini_api"
  # A revision cannot start on a secret without versions: a secret created in
  # this apply is mounted only once the operator says a version exists.
  gemini_key_mounted = local.gemini_secret_enabled && (!var.create_gemini_api_key_secret || var.gemini_api_key_added)

  # LIVE_BACKEND of submit and generate: empty (dry runs only) while the
  # Gemini API key is not mounted yet.
  live_backend = {
    vertex     = "vertex"
    gemini_api = local.gemini_key_mounted ? "gemini" : ""
    none       = ""
  }[var.genai_backend]

  budget_enabled = var.billing_account != ""
}
