# Service accounts and least-privilege grants. Every grant is on the narrowest
# resource that works (bucket, queue, service account, secret, repository,
# Cloud Run service, job); where a predefined role would carry more than the
# one permission needed, a custom role of this environment carries just it.
# The only project-level grants are Vertex AI prediction for generate and
# build log writing. No account gets owner/editor.
#
#   account         may                                            where
#   submit          write ledger objects, sign URLs as itself,      bucket, itself,
#                   create tasks + read the queue (readiness),      queue,
#                   attach tasks-invoker's OIDC token to tasks,     tasks-invoker,
#                   read gs:// references,                          ref_buckets,
#                   read the token keys and webhook keys             the two secrets
#   generate        read/write ledger objects and images,           bucket,
#                   predict with Vertex AI, read the Gemini key,     project, secret,
#                   read the token keys and webhook keys             the two secrets
#   progress        read ledger objects, sign URLs as itself,        bucket, itself,
#                   read the token keys                              the secret
#   tasks-invoker   invoke the generate function                     generate's service
#   housekeeping    read/write ledger objects, re-enqueue tasks     bucket, queue,
#                   with tasks-invoker's OIDC token,                 tasks-invoker,
#                   read the token keys and webhook keys             the two secrets
#   scheduler       run the housekeeping job                         the job
#   build           build the function and job images                see below

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
# (SIGNING_SERVICE_ACCOUNT). roles/iam.serviceAccountTokenCreator would also
# let it mint access and ID tokens as itself; this role carries signBlob only.
resource "google_project_iam_custom_role" "url_signer" {
  role_id     = "${local.role_prefix}_url_signer"
  title       = "${var.name_prefix} URL signer"
  description = "Sign Cloud Storage URLs through IAM signBlob, as the service account it is granted on."
  permissions = ["iam.serviceAccounts.signBlob"]

  depends_on = [google_project_service.apis]
}

locals {
  # Known at plan time (the role's own name attribute is not).
  url_signer_role = "projects/${var.project}/roles/${local.role_prefix}_url_signer"
}

resource "google_service_account_iam_member" "self_url_signer" {
  for_each = toset(["submit", "progress"])

  service_account_id = google_service_account.sa[each.key].name
  role               = local.url_signer_role
  member             = local.sa_member[each.key]

  depends_on = [google_project_iam_custom_role.url_signer]
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

# submit's readiness check calls GetQueue (cloudtasks.queues.get), which the
# enqueuer role lacks; the viewer role on this one queue is the smallest
# predefined role that has it.
resource "google_cloud_tasks_queue_iam_member" "viewer" {
  for_each = toset(["submit"])

  name     = google_cloud_tasks_queue.generate.name
  location = google_cloud_tasks_queue.generate.location
  role     = "roles/cloudtasks.viewer"
  member   = local.sa_member[each.key]

  depends_on = [google_service_account.sa]
}

# The same roles on the dry-run queue: submit and housekeeping enqueue dry-run
# rows there, and submit's readiness check reads both queues.
resource "google_cloud_tasks_queue_iam_member" "dry_run_enqueuer" {
  for_each = toset(concat(["submit"], local.housekeeping_enabled ? ["housekeeping"] : []))

  name     = google_cloud_tasks_queue.generate_dry_run.name
  location = google_cloud_tasks_queue.generate_dry_run.location
  role     = "roles/cloudtasks.enqueuer"
  member   = local.sa_member[each.key]

  depends_on = [google_service_account.sa]
}

resource "google_cloud_tasks_queue_iam_member" "dry_run_viewer" {
  for_each = toset(["submit"])

  name     = google_cloud_tasks_queue.generate_dry_run.name
  location = google_cloud_tasks_queue.generate_dry_run.location
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

# Vertex AI has no per-model IAM, and roles/aiplatform.user would also let
# generate create and delete every Vertex AI resource in the project. Calling
# a Gemini model (generateContent) needs aiplatform.endpoints.predict only.
resource "google_project_iam_custom_role" "vertex_predict" {
  count = var.genai_backend == "vertex" ? 1 : 0

  role_id     = "${local.role_prefix}_vertex_predict"
  title       = "${var.name_prefix} Vertex AI predict"
  description = "Call Vertex AI models (generateContent on publisher models); nothing else."
  permissions = ["aiplatform.endpoints.predict"]

  depends_on = [google_project_service.apis]
}

resource "google_project_iam_member" "generate_vertex" {
  count = var.genai_backend == "vertex" ? 1 : 0

  project = var.project
  role    = "projects/${var.project}/roles/${local.role_prefix}_vertex_predict"
  member  = local.sa_member["generate"]

  depends_on = [google_service_account.sa, google_project_iam_custom_role.vertex_predict]
}

# The Gemini API key lives in Secret Manager. Terraform either creates the
# empty secret (no version: the key is added with gcloud from stdin and never
# enters terraform state) or references an existing one by id. A created
# secret is mounted only once gemini_api_key_added says a version exists
# (main.tf, gemini_key_mounted).
resource "google_secret_manager_secret" "gemini_api_key" {
  count = local.gemini_secret_enabled && var.create_gemini_api_key_secret ? 1 : 0

  secret_id = local.secret_ids.gemini_api_key

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}

# The secrets the workloads read at start, granted on each secret (never on
# the project). Every workload builds progress and image-link tokens from
# PROGRESS_TOKEN_KEYS (submit mints progress tokens, progress verifies them,
# whoever finishes a batch signs stable image links). WEBHOOK_SIGNING_KEYS is
# read only by what finishes batches: generate (the last row), submit (cancel) and
# the housekeeping job (recovered rows, retried notifications).
locals {
  secret_readers  = concat(["submit", "generate", "progress"], local.housekeeping_enabled ? ["housekeeping"] : [])
  webhook_signers = [for w in local.secret_readers : w if w != "progress"]
}

resource "google_secret_manager_secret_iam_member" "progress_token_keys" {
  for_each = toset(local.secret_readers)

  project   = var.project
  secret_id = local.secret_ids.progress_token_keys
  role      = "roles/secretmanager.secretAccessor"
  member    = local.sa_member[each.key]

  depends_on = [google_service_account.sa]
}

resource "google_secret_manager_secret_iam_member" "webhook_signing_keys" {
  for_each = toset(local.webhook_signers)

  project   = var.project
  secret_id = local.secret_ids.webhook_signing_keys
  role      = "roles/secretmanager.secretAccessor"
  member    = local.sa_member[each.key]

  depends_on = [google_service_account.sa]
}

resource "google_secret_manager_secret_iam_member" "generate_gemini_key" {
  count = local.gemini_secret_enabled ? 1 : 0

  project   = var.project
  secret_id = var.create_gemini_api_key_secret ? google_secret_manager_secret.gemini_api_key[0].secret_id : local.secret_ids.gemini_api_key
  role      = "roles/secretmanager.secretAccessor"
  member    = local.sa_member["generate"]

  depends_on = [google_service_account.sa]
}

# ---------------------------------------------------------------- build ---

# The build account builds the three function images (Cloud Run functions'
# builds) and the housekeeping image (scripts/deploy.sh submits it to Cloud
# Build as this account). It may: write build logs (project: Cloud Logging has
# no narrower scope), push images to this environment's repository only, read
# the source bucket (archives and the job's staged source), and use the
# buckets Cloud Run functions manage for builds (gcf-v2-sources-*,
# gcf-v2-uploads-*).
resource "google_project_iam_member" "build_logs" {
  project = var.project
  role    = "roles/logging.logWriter"
  member  = local.sa_member["build"]

  depends_on = [google_service_account.sa]
}

resource "google_artifact_registry_repository_iam_member" "build_writer" {
  project    = var.project
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.repository_id
  role       = "roles/artifactregistry.writer"
  member     = local.sa_member["build"]

  depends_on = [google_service_account.sa]
}

resource "google_project_iam_member" "build_gcf_buckets" {
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
  bucket = local.source_bucket
  role   = "roles/storage.objectViewer"
  member = local.sa_member["build"]

  depends_on = [google_service_account.sa]
}
