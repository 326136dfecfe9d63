# Service accounts and least-privilege grants. Every grant is on the narrowest
# resource that works (bucket, queue, service account, Cloud Run service, job);
# the only project-level grants are Vertex AI use for generate and what the
# build account needs to write logs and images. No account gets owner/editor.
#
#   account         may                                            where
#   submit          write ledger objects, sign URLs as itself,      bucket, itself,
#                   create tasks + read the queue (readiness),      queue,
#                   attach tasks-invoker's OIDC token to tasks,     tasks-invoker,
#                   read gs:// references,                          ref_buckets,
#                   read the token keys and webhook secret           the two secrets
#   generate        read/write ledger objects and images,           bucket,
#                   call Vertex AI, read the Gemini key (if used),   project, secret,
#                   read the token keys and webhook secret           the two secrets
#   progress        read ledger objects, sign URLs as itself,        bucket, itself,
#                   read the token keys and webhook secret           the two secrets
#   tasks-invoker   invoke the generate function                     generate's service
#   housekeeping    read/write ledger objects, re-enqueue tasks     bucket, queue,
#                   with tasks-invoker's OIDC token,                 tasks-invoker,
#                   read the token keys and webhook secret           the two secrets
#   scheduler       run the housekeeping job                         the job
#   build           build the function images                        see below

resource "google_service_account" "sa" {
  for_each = local.service_accounts

  account_id   = "${var.name_prefix}-${each.key}"
  display_name = "${var.name_prefix} ${each.key}"
  description  = each.value

  depends_on = [google_project_service.apis]
}

# ---------------------------------------------------------------- ledger ---

resource "google_storage_bucket_iam_member" "ledger_object_admin" {
  for_each = toset(concat(["submit", "generate"], local.housekeeping_enabled ? ["housekeeping"] : []))

  bucket = google_storage_bucket.ledger.name
  role   = "roles/storage.objectAdmin"
  member = local.sa_member[each.key]

  depends_on = [google_service_account.sa]
}

resource "google_storage_bucket_iam_member" "ledger_object_viewer" {
  for_each = toset(["progress"])

  bucket = google_storage_bucket.ledger.name
  role   = "roles/storage.objectViewer"
  member = local.sa_member[each.key]

  depends_on = [google_service_account.sa]
}

# ----------------------------------------------------------- signed URLs ---

# Signed URLs are signed through IAM signBlob as the function's own account
# (SIGNING_SERVICE_ACCOUNT): token creator on itself, not on the project.
resource "google_service_account_iam_member" "self_token_creator" {
  for_each = toset(["submit", "progress"])

  service_account_id = google_service_account.sa[each.key].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.sa_member[each.key]
}

# ----------------------------------------------------------------- queue ---

resource "google_cloud_tasks_queue_iam_member" "enqueuer" {
  for_each = toset(concat(["submit"], local.housekeeping_enabled ? ["housekeeping"] : []))

  name     = google_cloud_tasks_queue.generate.name
  location = google_cloud_tasks_queue.generate.location
  role     = "roles/cloudtasks.enqueuer"
  member   = local.sa_member[each.key]

  depends_on = [google_service_account.sa]
}

# submit's /readyz calls GetQueue (cloudtasks.queues.get), which the enqueuer
# role lacks; the viewer role on this one queue is the smallest predefined role
# that has it.
resource "google_cloud_tasks_queue_iam_member" "viewer" {
  for_each = toset(["submit"])

  name     = google_cloud_tasks_queue.generate.name
  location = google_cloud_tasks_queue.generate.location
  role     = "roles/cloudtasks.viewer"
  member   = local.sa_member[each.key]

  depends_on = [google_service_account.sa]
}

# Creating a task that carries an OIDC token of tasks-invoker requires actAs
# (iam.serviceAccounts.actAs) on tasks-invoker.
resource "google_service_account_iam_member" "act_as_tasks_invoker" {
  for_each = toset(concat(["submit"], local.housekeeping_enabled ? ["housekeeping"] : []))

  service_account_id = google_service_account.sa["tasks-invoker"].name
  role               = "roles/iam.serviceAccountUser"
  member             = local.sa_member[each.key]
}

# ---------------------------------------------------------- image models ---

# Submit fetches gs:// reference images from the buckets REF_BUCKETS names.
resource "google_storage_bucket_iam_member" "ref_buckets_viewer" {
  for_each = toset(var.ref_buckets)

  bucket = each.value
  role   = "roles/storage.objectViewer"
  member = local.sa_member["submit"]

  depends_on = [google_service_account.sa]
}

# Vertex AI has no per-model IAM: aiplatform.user on the project is the
# narrowest grant that allows generateContent.
resource "google_project_iam_member" "generate_vertex" {
  count = var.genai_backend == "vertex" ? 1 : 0

  project = var.project
  role    = "roles/aiplatform.user"
  member  = local.sa_member["generate"]

  depends_on = [google_service_account.sa]
}

# The Gemini API key lives in Secret Manager. Terraform either creates the
# empty secret (no version: the key is added with gcloud from stdin and never
# enters terraform state) or references an existing one by id.
resource "google_secret_manager_secret" "gemini_api_key" {
  count = local.gemini_secret_enabled && var.create_gemini_api_key_secret ? 1 : 0

  secret_id = var.gemini_api_key_secret

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}

locals {
  gemini_secret_id = local.gemini_secret_enabled ? (
    var.create_gemini_api_key_secret ? google_secret_manager_secret.gemini_api_key[0].secret_id : var.gemini_api_key_secret
  ) : ""
}

# The secrets every workload reads at start, granted on each secret (never on
# the project). Submit mints progress tokens and progress verifies them;
# whoever finishes a batch (generate's last row, submit on cancel, the
# housekeeping job) mints image-link tokens with the same keys and signs the
# completion webhook. Progress sends no webhooks but cannot start without
# WEBHOOK_SECRET (see progress.tf).
locals {
  secret_readers = concat(["submit", "generate", "progress"], local.housekeeping_enabled ? ["housekeeping"] : [])
}

resource "google_secret_manager_secret_iam_member" "progress_token_keys" {
  for_each = toset(local.secret_readers)

  project   = var.project
  secret_id = var.progress_token_keys_secret
  role      = "roles/secretmanager.secretAccessor"
  member    = local.sa_member[each.key]

  depends_on = [google_service_account.sa]
}

resource "google_secret_manager_secret_iam_member" "webhook_secret" {
  # Progress only streams: it never finishes a batch, so never signs a webhook.
  for_each = toset([for w in local.secret_readers : w if w != "progress"])

  project   = var.project
  secret_id = var.webhook_secret_secret
  role      = "roles/secretmanager.secretAccessor"
  member    = local.sa_member[each.key]

  depends_on = [google_service_account.sa]
}

resource "google_secret_manager_secret_iam_member" "generate_gemini_key" {
  count = local.gemini_secret_enabled ? 1 : 0

  project   = var.project
  secret_id = local.gemini_secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = local.sa_member["generate"]

  depends_on = [google_service_account.sa]
}

# ---------------------------------------------------------------- build ---

# Cloud Build's default service account in new projects is the Compute Engine
# default account, often without the roles a function build needs (or, worse,
# with editor). The dedicated build account gets only: build logs, images in
# Artifact Registry, read of our source archives, and objects in the buckets
# Cloud Run functions manage for builds (gcf-v2-sources-*, gcf-v2-uploads-*).
resource "google_project_iam_member" "build" {
  for_each = var.dedicated_build_service_account ? toset(["roles/logging.logWriter", "roles/artifactregistry.writer"]) : toset([])

  project = var.project
  role    = each.value
  member  = local.sa_member["build"]

  depends_on = [google_service_account.sa]
}

resource "google_project_iam_member" "build_gcf_buckets" {
  count = var.dedicated_build_service_account ? 1 : 0

  project = var.project
  role    = "roles/storage.objectAdmin"
  member  = local.sa_member["build"]

  condition {
    title       = "gcf-build-buckets-only"
    description = "Only the buckets Cloud Run functions create for builds."
    expression  = "resource.name.startsWith(\"projects/_/buckets/gcf-v2-\")"
  }

  depends_on = [google_service_account.sa]
}

resource "google_storage_bucket_iam_member" "build_source_viewer" {
  count = var.dedicated_build_service_account ? 1 : 0

  bucket = local.source_bucket
  role   = "roles/storage.objectViewer"
  member = local.sa_member["build"]

  depends_on = [google_service_account.sa]
}
