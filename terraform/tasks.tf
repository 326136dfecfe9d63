# The Cloud Tasks queue of row tasks. One task per batch row; submit (and the
# housekeeping job) create them with deterministic names, an OIDC token of the
# tasks-invoker service account, and a per-task dispatch deadline
# (TASKS_DISPATCH_DEADLINE, default 10m, suited to image models). The dispatch
# deadline is a task property, not a queue property, so it is not set here.

resource "google_cloud_tasks_queue" "generate" {
  name     = local.queue_name
  location = var.region

  rate_limits {
    max_dispatches_per_second = var.tasks_max_dispatches_per_second
    max_concurrent_dispatches = var.tasks_max_concurrent_dispatches
  }

  # TASKS_MAX_ATTEMPTS on the functions is set from the same variable: the
  # generate function fails a row for good on the last attempt instead of
  # asking for a retry that would never come.
  retry_config {
    max_attempts  = var.tasks_max_attempts
    min_backoff   = var.tasks_min_backoff
    max_backoff   = var.tasks_max_backoff
    max_doublings = var.tasks_max_doublings
  }

  # Cloud Tasks' own dispatch logs are off: the functions log every request.
  # Raise the ratio (up to 1.0) while debugging dispatch failures.
  stackdriver_logging_config {
    sampling_ratio = 0
  }

  depends_on = [google_project_service.apis]
}

# Dry-run rows have a queue of their own (TASKS_DRY_RUN_QUEUE): Cloud Tasks
# applies rate limits per queue, so free dry runs, however many one user
# submits, never wait in front of paid live rows, and their own limits keep
# them from taking all of generate's instances. Same retry policy: the
# functions' TASKS_MAX_ATTEMPTS holds for both.
locals {
  dry_run_queue_name = var.dry_run_queue_name != "" ? var.dry_run_queue_name : "${local.queue_name}-dry-run"
  dry_run_queue_id   = "projects/${var.project}/locations/${var.region}/queues/${local.dry_run_queue_name}"
}

resource "google_cloud_tasks_queue" "generate_dry_run" {
  name     = local.dry_run_queue_name
  location = var.region

  rate_limits {
    max_dispatches_per_second = var.tasks_dry_run_max_dispatches_per_second
    max_concurrent_dispatches = var.tasks_dry_run_max_concurrent_dispatches
  }

  retry_config {
    max_attempts  = var.tasks_max_attempts
    min_backoff   = var.tasks_min_backoff
    max_backoff   = var.tasks_max_backoff
    max_doublings = var.tasks_max_doublings
  }

  stackdriver_logging_config {
    sampling_ratio = 0
  }

  depends_on = [google_project_service.apis]
}
