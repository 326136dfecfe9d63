# Log-based metrics over the functions' structured request logs, alert
# policies (error rate and p95 latency of the functions; generate refusing
# task deliveries; the queue backing up; housekeeping failing or falling
# silent) and an optional project budget as the last guard on model spend.
#
# shared/obs logs one JSON line per request with message "request", the numeric
# HTTP status and the latency. The latency is written by log/slog's JSON
# handler, which encodes a time.Duration as an integer number of NANOSECONDS
# (not a "12.5ms" string), so a distribution metric can EXTRACT it directly; its
# unit is ns and the threshold below is converted to ns. If the logger ever
# writes the latency as a string, the distribution stays empty (the alert
# cannot fire): switch the latency condition to Cloud Run's built-in
# run.googleapis.com/request_latencies (ms) filtered on service_name.

locals {
  # Cloud Run functions (gen2) log as their Cloud Run service, named like the
  # function.
  request_log_filter = join(" AND ", [
    "resource.type=\"cloud_run_revision\"",
    "resource.labels.service_name=(${join(" OR ", [for n in values(local.function_names) : "\"${n}\""])})",
    "jsonPayload.message=\"request\"",
  ])
}

resource "google_logging_metric" "requests" {
  name        = "${var.name_prefix}-requests"
  description = "Requests served by the ${var.name_prefix} functions (one structured request log line each)."
  filter      = local.request_log_filter

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "${var.name_prefix} requests"
  }

  depends_on = [google_project_service.apis]
}

resource "google_logging_metric" "request_errors" {
  name        = "${var.name_prefix}-request-errors"
  description = "Requests answered with a status >= 500. Generate answers 5xx on purpose when Cloud Tasks should retry (model rate limits, transient failures)."
  filter      = "${local.request_log_filter} AND jsonPayload.status>=500"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "${var.name_prefix} 5xx responses"
  }

  depends_on = [google_project_service.apis]
}

# API latency only: SSE streams (progress /progress/*) last up to an hour and
# task deliveries (generate) take as long as the image model, so both are left
# out; what remains is submit (POST /batch/images, GET /batch/{id}) and the
# health probes.
resource "google_logging_metric" "request_latency" {
  name            = "${var.name_prefix}-request-latency"
  description     = "Latency of API requests (submit, and progress outside SSE streams), from jsonPayload.latency in nanoseconds."
  filter          = "${local.request_log_filter} AND resource.labels.service_name!=\"${local.function_names.generate}\" AND NOT jsonPayload.route=~\"/progress/\""
  value_extractor = "EXTRACT(jsonPayload.latency)"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = "ns"
    display_name = "${var.name_prefix} API request latency"
  }

  # 1 ms growing by 1.5x: 40 buckets reach ~3 h; ~1.3-2 s is one bucket.
  bucket_options {
    exponential_buckets {
      num_finite_buckets = 40
      growth_factor      = 1.5
      scale              = 1000000
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_monitoring_notification_channel" "email" {
  for_each = toset(var.alert_emails)

  display_name = "${var.name_prefix} alerts: ${each.value}"
  type         = "email"
  labels = {
    email_address = each.value
  }

  depends_on = [google_project_service.apis]
}

locals {
  notification_channels = [for c in google_monitoring_notification_channel.email : c.id]
}

resource "google_monitoring_alert_policy" "error_rate" {
  count = var.alerts_enabled ? 1 : 0

  display_name          = "${var.name_prefix}: 5xx rate above ${var.alert_error_rate * 100}%"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = local.notification_channels

  conditions {
    display_name = "5xx / all requests over 5 min, per service"

    condition_threshold {
      filter             = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.request_errors.name}\" AND resource.type=\"cloud_run_revision\""
      denominator_filter = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.requests.name}\" AND resource.type=\"cloud_run_revision\""
      comparison         = "COMPARISON_GT"
      threshold_value    = var.alert_error_rate
      duration           = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.label.service_name"]
      }

      denominator_aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.label.service_name"]
      }

      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "1800s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "${var.name_prefix}: error rate above ${var.alert_error_rate * 100}%"
    content   = <<-EOT
      More than ${var.alert_error_rate * 100}% of the requests of one ${var.name_prefix} function were answered with a 5xx over the last 5 minutes.
      Look at the function's logs (jsonPayload.message="request" AND jsonPayload.status>=500, then the problem+json code).
      On generate, 5xx asks Cloud Tasks for a retry (model rate limits, transient errors): check the model's quota first.
      With very little traffic one failure can cross the threshold.
    EOT
  }
}

resource "google_monitoring_alert_policy" "latency_p95" {
  count = var.alerts_enabled ? 1 : 0

  display_name          = "${var.name_prefix}: API p95 latency above ${var.alert_latency_p95_seconds}s"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = local.notification_channels

  conditions {
    display_name = "p95 of API request latency over 5 min, per service"

    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.request_latency.name}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_latency_p95_seconds * 1e9 # the metric is in ns
      duration        = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_PERCENTILE_95"
        group_by_fields      = ["resource.label.service_name"]
      }

      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "1800s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "${var.name_prefix}: API p95 latency above ${var.alert_latency_p95_seconds}s"
    content   = <<-EOT
      The 95th percentile latency of API requests (submit, status reads, health probes; not SSE streams, not task deliveries) exceeded ${var.alert_latency_p95_seconds}s over 5 minutes.
      Usual causes: cold starts after scaling from zero (consider submit.min_instances = 1), Cloud Storage 429s on hot objects, slow Cloud Tasks enqueues.
    EOT
  }
}

# ------------------------------------------------------- task deliveries ---

# Generate answering 401, 403 or 404 to deliveries means the queue's tasks do
# not get through (token claims, invoker binding, ingress, URL): every attempt
# fails, the rows are retried until the queue drops them, and nothing is
# generated. 409 (another attempt holds the row) and 429 (model rate limit)
# are retry signals the design expects, so they are left out. Cloud Run's own
# request_count also counts what its front end refuses before the function
# runs, which the function's request logs cannot.
resource "google_monitoring_alert_policy" "generate_rejects_tasks" {
  count = var.alerts_enabled ? 1 : 0

  display_name          = "${var.name_prefix}: generate refuses task deliveries (401/403/404)"
  combiner              = "OR"
  severity              = "CRITICAL"
  notification_channels = local.notification_channels

  conditions {
    display_name = "generate answered 401, 403 or 404 in the last 5 min"

    condition_threshold {
      filter          = "metric.type=\"run.googleapis.com/request_count\" AND resource.type=\"cloud_run_revision\" AND resource.label.service_name=\"${local.function_names.generate}\" AND metric.label.response_code=one_of(\"401\", \"403\", \"404\")"
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.response_code"]
      }

      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "1800s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "${var.name_prefix}: generate refuses task deliveries"
    content   = <<-EOT
      The generate function (${local.function_names.generate}) answered 401, 403 or 404 to requests: row tasks are not getting through, and batches stay queued until the queue gives up.
      - 403 from Cloud Run itself (no request log line from the function): the tasks account ${local.sa_email["tasks-invoker"]} lacks run.invoker on the service.
      - 401/403 problem documents from the function: the task's OIDC token claims do not match TASKS_OIDC_AUDIENCE / TASKS_SERVICE_ACCOUNT.
      - 404: the queue posts to a wrong URL (GENERATE_URL), or ingress refuses a caller outside this project.
    EOT
  }
}

# ------------------------------------------------------------------ queue ---

locals {
  queue_filter = "resource.type=\"cloud_tasks_queue\" AND resource.label.queue_id=\"${local.queue_name}\""
}

resource "google_monitoring_alert_policy" "queue_depth" {
  count = var.alerts_enabled ? 1 : 0

  display_name          = "${var.name_prefix}: more than ${var.alert_queue_depth} row tasks queued"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = local.notification_channels

  conditions {
    display_name = "queue depth above ${var.alert_queue_depth} for 15 min"

    condition_threshold {
      filter          = "metric.type=\"cloudtasks.googleapis.com/queue/depth\" AND ${local.queue_filter}"
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_queue_depth
      duration        = "900s"

      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_MAX"
      }

      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "1800s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "${var.name_prefix}: row task queue backing up"
    content   = <<-EOT
      The queue ${local.queue_name} has held more than ${var.alert_queue_depth} tasks for 15 minutes: rows arrive faster than the queue's rate limits (tasks_max_dispatches_per_second, tasks_max_concurrent_dispatches) or the model let them drain.
      Check generate's 429/5xx answers (model quota) and whether the queue is paused (gcloud tasks queues describe ${local.queue_name} --location ${var.region}).
    EOT
  }
}

# Cloud Tasks publishes no oldest-task-age metric. task_attempt_delays (the
# actual minus the scheduled time of each attempt, in ms) grows when tasks
# wait behind the queue's limits, so its p99 stands in for it.
resource "google_monitoring_alert_policy" "dispatch_delay" {
  count = var.alerts_enabled ? 1 : 0

  display_name          = "${var.name_prefix}: row tasks dispatched more than ${var.alert_dispatch_delay_p99_seconds}s late (p99)"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = local.notification_channels

  conditions {
    display_name = "p99 dispatch delay above ${var.alert_dispatch_delay_p99_seconds}s for 15 min"

    condition_threshold {
      filter          = "metric.type=\"cloudtasks.googleapis.com/queue/task_attempt_delays\" AND ${local.queue_filter}"
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_dispatch_delay_p99_seconds * 1000 # the metric is in ms
      duration        = "900s"

      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_PERCENTILE_99"
      }

      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "1800s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "${var.name_prefix}: row tasks dispatched late"
    content   = <<-EOT
      The 99th percentile of how late the queue ${local.queue_name} dispatches row tasks stayed above ${var.alert_dispatch_delay_p99_seconds}s for 15 minutes: users wait that long before a row starts.
      Cloud Tasks has no oldest-task-age metric; this delay is the nearest signal. Causes: the queue's rate limits, generate at max instances, or a paused queue.
    EOT
  }
}

# ---------------------------------------------------------- housekeeping ---

# The job recovers rows whose attempt died and completes crashed finishers:
# when it fails or stops running, stuck batches stay stuck.
resource "google_monitoring_alert_policy" "housekeeping" {
  count = var.alerts_enabled && local.housekeeping_enabled ? 1 : 0

  display_name          = "${var.name_prefix}: housekeeping job failing or not running"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = local.notification_channels

  conditions {
    display_name = "a housekeeping execution failed"

    condition_threshold {
      filter          = "metric.type=\"run.googleapis.com/job/completed_execution_count\" AND resource.type=\"cloud_run_job\" AND resource.label.job_name=\"${google_cloud_run_v2_job.housekeeping[0].name}\" AND metric.label.result=\"failed\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = "600s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }

      trigger {
        count = 1
      }
    }
  }

  conditions {
    display_name = "no successful housekeeping execution for ${var.alert_housekeeping_quiet_seconds}s"

    condition_absent {
      filter   = "metric.type=\"run.googleapis.com/job/completed_execution_count\" AND resource.type=\"cloud_run_job\" AND resource.label.job_name=\"${google_cloud_run_v2_job.housekeeping[0].name}\" AND metric.label.result=\"succeeded\""
      duration = "${var.alert_housekeeping_quiet_seconds}s"

      aggregations {
        alignment_period   = "600s"
        per_series_aligner = "ALIGN_DELTA"
      }

      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "3600s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "${var.name_prefix}: housekeeping job failing or not running"
    content   = <<-EOT
      The housekeeping job ${google_cloud_run_v2_job.housekeeping[0].name} failed, or has not succeeded for ${var.alert_housekeeping_quiet_seconds}s. Until it runs, rows whose attempt died are not re-enqueued and crashed batches are not completed.
      Look at its executions (gcloud run jobs executions list --job ${google_cloud_run_v2_job.housekeeping[0].name} --region ${var.region}) and its last line of output; check the Cloud Scheduler job ${var.name_prefix}-housekeeping is enabled.
    EOT
  }
}

# ---------------------------------------------------------------- budget ---

# A monthly budget on the whole project: model calls are billed to the project
# (Vertex AI) or the key's project (Gemini API), not to labelled resources, so
# only a project budget sees them. It notifies; it never stops anything.
resource "google_billing_budget" "project" {
  count = local.budget_enabled ? 1 : 0

  billing_account = var.billing_account
  display_name    = "${var.name_prefix}: project monthly spend"

  budget_filter {
    projects        = ["projects/${data.google_project.this.number}"]
    calendar_period = "MONTH"
  }

  amount {
    specified_amount {
      units = tostring(var.billing_budget_amount)
    }
  }

  threshold_rules {
    threshold_percent = 0.5
  }
  threshold_rules {
    threshold_percent = 0.9
  }
  threshold_rules {
    threshold_percent = 1.0
  }
  threshold_rules {
    threshold_percent = 1.0
    spend_basis       = "FORECASTED_SPEND"
  }

  all_updates_rule {
    monitoring_notification_channels = local.notification_channels
    disable_default_iam_recipients   = false
  }

  lifecycle {
    precondition {
      condition     = var.billing_budget_amount > 0
      error_message = "billing_account is set: billing_budget_amount must be the monthly amount (> 0)."
    }
    precondition {
      condition     = length(var.alert_emails) <= 5
      error_message = "A budget notifies at most 5 channels: list at most 5 alert_emails when billing_account is set."
    }
  }

  depends_on = [google_project_service.apis]
}
