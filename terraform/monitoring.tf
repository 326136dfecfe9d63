# Log-based metrics over the functions' structured request logs and two alert
# policies: error rate and p95 latency.
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
