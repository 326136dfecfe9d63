# The housekeeping Cloud Run job (jobs/housekeeping: recovers stuck rows,
# prunes, settles) and the Cloud Scheduler job that runs it. Both exist only
# when housekeeping_image is set; scripts/deploy.sh builds the image with the
# build account into this environment's repository and passes it by digest.

resource "google_cloud_run_v2_job" "housekeeping" {
  count = local.housekeeping_enabled ? 1 : 0

  name                = "${var.name_prefix}-housekeeping"
  location            = var.region
  deletion_protection = false

  template {
    task_count  = 1
    parallelism = 1

    template {
      service_account = local.sa_email["housekeeping"]
      timeout         = var.housekeeping_timeout
      # The next scheduled run retries anyway.
      max_retries = 1

      containers {
        image = var.housekeeping_image
        args  = var.housekeeping_args

        resources {
          limits = {
            cpu    = "1"
            memory = "512Mi"
          }
        }

        # The functions' shared settings (BUCKET, TASKS_QUEUE, attempts,
        # deadline, budget, ...) plus what re-enqueuing a row needs.
        dynamic "env" {
          for_each = merge(local.common_env, {
            GENERATE_URL          = local.generate_url
            TASKS_SERVICE_ACCOUNT = local.sa_email["tasks-invoker"]
          })
          content {
            name  = env.key
            value = env.value
          }
        }

        # The job finishes batches too (recovered rows, retried
        # notifications): image-link tokens and webhook signatures, from
        # Secret Manager (version latest, read when an execution starts).
        env {
          name = "PROGRESS_TOKEN_KEYS"
          value_source {
            secret_key_ref {
              secret  = local.secret_ids.progress_token_keys
              version = "latest"
            }
          }
        }
        env {
          name = "WEBHOOK_SIGNING_KEYS"
          value_source {
            secret_key_ref {
              secret  = local.secret_ids.webhook_signing_keys
              version = "latest"
            }
          }
        }
      }
    }
  }

  depends_on = [
    google_service_account.sa,
    google_storage_bucket_iam_member.ledger_object_admin,
    google_cloud_tasks_queue_iam_member.enqueuer,
    google_cloud_tasks_queue_iam_member.dry_run_enqueuer,
    google_service_account_iam_member.act_as_tasks_invoker,
    google_secret_manager_secret_iam_member.progress_token_keys,
    google_secret_manager_secret_iam_member.webhook_signing_keys,
  ]
}

# roles/run.invoker on this one job is the least privilege that lets the
# scheduler account start it: it carries run.jobs.run (execute with the job's
# own configuration) but not run.jobs.runWithOverrides, nor any right to change
# or delete the job, which roles/run.developer would add.
resource "google_cloud_run_v2_job_iam_member" "scheduler_runs_housekeeping" {
  count = local.housekeeping_enabled ? 1 : 0

  project  = var.project
  location = var.region
  name     = google_cloud_run_v2_job.housekeeping[0].name
  role     = "roles/run.invoker"
  member   = local.sa_member["scheduler"]

  depends_on = [google_service_account.sa]
}

resource "google_cloud_scheduler_job" "housekeeping" {
  count = local.housekeeping_enabled ? 1 : 0

  name             = "${var.name_prefix}-housekeeping"
  region           = local.scheduler_region
  description      = "Runs the ${var.name_prefix}-housekeeping Cloud Run job."
  schedule         = var.housekeeping_schedule
  time_zone        = var.housekeeping_time_zone
  attempt_deadline = "60s"

  retry_config {
    retry_count = 1
  }

  # The Cloud Run Admin API starts an execution and returns at once; the job
  # runs on its own. An OAuth access token (not OIDC) is what googleapis.com
  # accepts.
  http_target {
    http_method = "POST"
    uri         = "https://run.googleapis.com/v2/projects/${var.project}/locations/${var.region}/jobs/${google_cloud_run_v2_job.housekeeping[0].name}:run"

    oauth_token {
      service_account_email = local.sa_email["scheduler"]
      scope                 = "https://www.googleapis.com/auth/cloud-platform"
    }
  }

  depends_on = [google_cloud_run_v2_job_iam_member.scheduler_runs_housekeeping]
}
