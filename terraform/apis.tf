# Google APIs the deployment needs. disable_on_destroy = false: destroying this
# stack must not switch off APIs other things in the project may use.

locals {
  apis = toset([
    "cloudfunctions.googleapis.com",       # Cloud Run functions (gen2) control plane
    "run.googleapis.com",                  # the Cloud Run services under the functions, and the job
    "cloudbuild.googleapis.com",           # builds the function images
    "artifactregistry.googleapis.com",     # the environment's image repository
    "cloudtasks.googleapis.com",           # row tasks
    "storage.googleapis.com",              # ledger, images, source archives
    "iam.googleapis.com",                  # service accounts
    "iamcredentials.googleapis.com",       # signBlob for signed URLs
    "aiplatform.googleapis.com",           # Gemini image models on Vertex AI
    "secretmanager.googleapis.com",        # progress-token keys, webhook signing keys, Gemini API key (when used)
    "sheets.googleapis.com",               # Google Sheets write-back of finished batches
    "cloudscheduler.googleapis.com",       # housekeeping schedule
    "logging.googleapis.com",              # request logs, log-based metrics
    "monitoring.googleapis.com",           # alert policies
    "cloudresourcemanager.googleapis.com", # project lookup (data.google_project)
  ])
  # The budget's API, only when a budget is asked for.
  budget_apis = local.budget_enabled ? toset(["billingbudgets.googleapis.com"]) : toset([])
}

resource "google_project_service" "apis" {
  for_each = var.enable_apis ? setunion(local.apis, local.budget_apis) : toset([])

  project            = var.project
  service            = each.value
  disable_on_destroy = false
}
