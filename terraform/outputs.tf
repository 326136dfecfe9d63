output "environment" {
  description = "The environment's name_prefix: every resource name of this environment starts with it."
  value       = var.name_prefix
}

output "services" {
  description = "Cloud Run service of each function (a gen2 function's service carries its name): the names scripts/deploy.sh --rollback shifts traffic on."
  value       = local.function_names
}

output "submit_url" {
  description = "Deterministic origin of the submit function (POST /batch/images, GET /batch/{id}): https://<service>-<project number>.<region>.run.app, known before the function exists."
  value       = local.run_urls.submit
}

output "progress_url" {
  description = "Origin of the progress function (GET /progress/{id}, SSE), as handed out by submit in progressUrl."
  value       = local.progress_base_url
}

output "generate_url" {
  description = "URL Cloud Tasks posts row tasks to (GENERATE_URL, and the audience of their OIDC tokens). Not invokable but by the tasks account."
  value       = local.generate_url
}

output "auth_audiences" {
  description = "ID-token audiences submit and progress accept (auth_mode = google): mint a smoke-test token for one of them."
  value       = var.auth_audiences
}

output "bucket" {
  description = "The ledger/assets bucket."
  value       = google_storage_bucket.ledger.name
}

output "source_bucket" {
  description = "Bucket of the function source archives."
  value       = local.source_bucket
}

output "source_object" {
  description = "The source archive the functions are built from (scripts/deploy.sh --source-object redeploys an earlier one)."
  value       = var.source_object
}

output "image_repository" {
  description = "The environment's Artifact Registry repository (function and housekeeping images)."
  value       = local.image_base
}

output "housekeeping_image" {
  description = "Image of the housekeeping job, by digest (empty: no job)."
  value       = var.housekeeping_image
}

output "queue" {
  description = "Full name of the row task queue (TASKS_QUEUE)."
  value       = google_cloud_tasks_queue.generate.id
}

output "dry_run_queue" {
  description = "Full name of the dry-run row task queue (TASKS_DRY_RUN_QUEUE)."
  value       = google_cloud_tasks_queue.generate_dry_run.id
}

output "queue_name" {
  description = "Short name of the row task queue (gcloud tasks queues pause/resume)."
  value       = local.queue_name
}

output "secrets" {
  description = "Secret Manager secret ids the workloads read: progress_token_keys and webhook_signing_keys (created by scripts/deploy.sh), gemini_api_key (with genai_backend = gemini_api)."
  value = merge(
    { progress_token_keys = local.secret_ids.progress_token_keys, webhook_signing_keys = local.secret_ids.webhook_signing_keys },
    local.gemini_secret_enabled ? { gemini_api_key = local.secret_ids.gemini_api_key } : {},
  )
}

output "live_backend" {
  description = "LIVE_BACKEND the functions run with; empty while the Gemini API key secret waits for its first version (then add it and set gemini_api_key_added = true)."
  value       = local.live_backend
}

output "submit_service_account" {
  description = "Identity of the submit function."
  value       = google_service_account.sa["submit"].email
}

output "generate_service_account" {
  description = "Identity of the generate function."
  value       = google_service_account.sa["generate"].email
}

output "sheets_share_with" {
  description = "Service accounts that write finished batches back to Google Sheets: users share their sheet (as Editor) with these e-mails; no project IAM is involved. Generate writes when a batch's last row finishes; submit (cancel) and the housekeeping job (recovery, retried notifications) when they finish one."
  value = concat(
    [google_service_account.sa["generate"].email, google_service_account.sa["submit"].email],
    local.housekeeping_enabled ? [google_service_account.sa["housekeeping"].email] : [],
  )
}

output "progress_service_account" {
  description = "Identity of the progress function."
  value       = google_service_account.sa["progress"].email
}

output "tasks_invoker_service_account" {
  description = "Account whose OIDC token row tasks carry; the only invoker of generate."
  value       = google_service_account.sa["tasks-invoker"].email
}

output "housekeeping_service_account" {
  description = "Identity of the housekeeping job."
  value       = google_service_account.sa["housekeeping"].email
}

output "scheduler_service_account" {
  description = "Account Cloud Scheduler uses to run the housekeeping job."
  value       = google_service_account.sa["scheduler"].email
}

output "build_service_account" {
  description = "Cloud Build account that builds the function images and the housekeeping image."
  value       = google_service_account.sa["build"].email
}

output "housekeeping_job" {
  description = "Name of the housekeeping Cloud Run job (null when housekeeping_image is empty)."
  value       = local.housekeeping_enabled ? google_cloud_run_v2_job.housekeeping[0].name : null
}

output "scheduler_job" {
  description = "Name and region of the Cloud Scheduler job that runs housekeeping (null when housekeeping_image is empty)."
  value       = local.housekeeping_enabled ? { name = google_cloud_scheduler_job.housekeeping[0].name, region = local.scheduler_region } : null
}
