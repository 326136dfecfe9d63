output "submit_url" {
  description = "Origin of the submit function (POST /batch/images, GET /batch/{id})."
  value       = google_cloudfunctions2_function.submit.service_config[0].uri
}

output "progress_url" {
  description = "Origin of the progress function (GET /progress/{id}, SSE), as handed out by submit in progressUrl."
  value       = local.progress_base_url
}

output "generate_url" {
  description = "URL Cloud Tasks posts row tasks to (GENERATE_URL). Not publicly invokable."
  value       = local.generate_url
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
  description = "The source archive the functions are built from (redeploy an earlier one to roll back)."
  value       = var.source_object
}

output "queue" {
  description = "Full name of the row task queue (TASKS_QUEUE)."
  value       = google_cloud_tasks_queue.generate.id
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
  description = "Cloud Build account of the function builds (null: the project default)."
  value       = var.dedicated_build_service_account ? google_service_account.sa["build"].email : null
}

output "housekeeping_job" {
  description = "Name of the housekeeping Cloud Run job (null when housekeeping_image is empty)."
  value       = local.housekeeping_enabled ? google_cloud_run_v2_job.housekeeping[0].name : null
}
