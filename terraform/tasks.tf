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
