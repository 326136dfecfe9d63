# What operators look at in Cloud Monitoring. Cloud Run does not scrape the
# functions' /metrics, so the figures come from two sources that need no agent
# and no exporter in the functions:
#
# - log-based metrics over the structured log lines the functions already
#   write (request lines with their status, latency and problem code; one
#   "generate: variant failed" line per failed image with its class), and
# - Cloud Run's and Cloud Tasks' built-in metrics (container memory, queue
#   depth).
#
# An OpenTelemetry export would add a dependency, a push path that can fail
# or stall a request, and per-instance state that a scale-to-zero function
# loses; the log lines exist anyway and Cloud Logging turns them into metrics
# without any code on the request path.

resource "google_logging_metric" "model_failures" {
  name        = "${var.name_prefix}-model-failures"
  description = "Failed image generations by class (blocked, rate_limited, transient, permanent) and model, from generate's \"generate: variant failed\" log lines."
  filter = join(" AND ", [
    "resource.type=\"cloud_run_revision\"",
    "resource.labels.service_name=\"${local.function_names.generate}\"",
    "jsonPayload.message=\"generate: variant failed\"",
  ])

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "${var.name_prefix} model failures"
    labels {
      key         = "class"
      value_type  = "STRING"
      description = "blocked, rate_limited, transient or permanent"
    }
    labels {
      key         = "model"
      value_type  = "STRING"
      description = "the model asked (placeholder for dry runs)"
    }
  }
  label_extractors = {
    class = "EXTRACT(jsonPayload.class)"
    model = "EXTRACT(jsonPayload.model)"
  }

  depends_on = [google_project_service.apis]
}

resource "google_logging_metric" "refusals" {
  name        = "${var.name_prefix}-refusals"
  description = "Requests answered with a problem document, by code (BUDGET_EXCEEDED, RATE_LIMITED, VALIDATION_FAILED, …), from the request log lines."
  filter      = "${local.request_log_filter} AND jsonPayload.code:*"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "${var.name_prefix} refusals by code"
    labels {
      key         = "code"
      value_type  = "STRING"
      description = "the problem document's code"
    }
  }
  label_extractors = {
    code = "EXTRACT(jsonPayload.code)"
  }

  depends_on = [google_project_service.apis]
}

# Submit logs one "submit: references resolved" line per batch with
# references: how many URLs were asked for and which share of them were
# duplicates (by URL or by content) that were neither fetched twice nor stored
# twice.
resource "google_logging_metric" "ref_dedup" {
  name        = "${var.name_prefix}-ref-dedup"
  description = "Share of a batch's reference URLs that deduplication saved (0-1), one value per batch with references."
  filter = join(" AND ", [
    "resource.type=\"cloud_run_revision\"",
    "resource.labels.service_name=\"${local.function_names.submit}\"",
    "jsonPayload.message=\"submit: references resolved\"",
  ])
  value_extractor = "EXTRACT(jsonPayload.dedupRate)"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = "1"
    display_name = "${var.name_prefix} reference dedup share"
  }

  bucket_options {
    linear_buckets {
      num_finite_buckets = 10
      width              = 0.1
      offset             = 0
    }
  }

  depends_on = [google_project_service.apis]
}

locals {
  service_filter = "resource.type=\"cloud_run_revision\" AND resource.label.service_name=(${join(" OR ", [for n in values(local.function_names) : "\"${n}\""])})"

  # One chart: a title and time series queries, each a filter and how to
  # align and reduce it.
  dashboard_charts = [
    {
      title   = "API latency p95 (submit and status reads; ns)"
      filter  = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.request_latency.name}\" AND resource.type=\"cloud_run_revision\""
      aligner = "ALIGN_DELTA", reducer = "REDUCE_PERCENTILE_95", group_by = ["resource.label.service_name"]
    },
    {
      title   = "Requests answered 5xx"
      filter  = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.request_errors.name}\" AND resource.type=\"cloud_run_revision\""
      aligner = "ALIGN_RATE", reducer = "REDUCE_SUM", group_by = ["resource.label.service_name"]
    },
    {
      title   = "Model failures by class"
      filter  = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.model_failures.name}\" AND resource.type=\"cloud_run_revision\""
      aligner = "ALIGN_RATE", reducer = "REDUCE_SUM", group_by = ["metric.label.class"]
    },
    {
      title   = "Budget refusals (402 BUDGET_EXCEEDED)"
      filter  = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.refusals.name}\" AND resource.type=\"cloud_run_revision\" AND metric.label.code=\"BUDGET_EXCEEDED\""
      aligner = "ALIGN_RATE", reducer = "REDUCE_SUM", group_by = []
    },
    {
      title   = "Refusals by code"
      filter  = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.refusals.name}\" AND resource.type=\"cloud_run_revision\""
      aligner = "ALIGN_RATE", reducer = "REDUCE_SUM", group_by = ["metric.label.code"]
    },
    {
      title   = "Reference dedup share, mean per batch"
      filter  = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.ref_dedup.name}\" AND resource.type=\"cloud_run_revision\""
      aligner = "ALIGN_MEAN", reducer = "REDUCE_MEAN", group_by = []
    },
    {
      title   = "Memory used, p99 of instances (headroom is 1 minus this)"
      filter  = "metric.type=\"run.googleapis.com/container/memory/utilizations\" AND ${local.service_filter}"
      aligner = "ALIGN_PERCENTILE_99", reducer = "REDUCE_MAX", group_by = ["resource.label.service_name"]
    },
    {
      title   = "Row tasks queued"
      filter  = "metric.type=\"cloudtasks.googleapis.com/queue/depth\" AND ${local.queue_filter}"
      aligner = "ALIGN_MAX", reducer = "REDUCE_SUM", group_by = []
    },
  ]
}

resource "google_monitoring_dashboard" "main" {
  dashboard_json = jsonencode({
    displayName = "${var.name_prefix} operations"
    mosaicLayout = {
      columns = 12
      tiles = [for i, c in local.dashboard_charts : {
        xPos   = (i % 2) * 6
        yPos   = floor(i / 2) * 4
        width  = 6
        height = 4
        widget = {
          title = c.title
          xyChart = {
            dataSets = [{
              plotType = "LINE"
              timeSeriesQuery = {
                timeSeriesFilter = {
                  filter = c.filter
                  aggregation = {
                    alignmentPeriod    = "300s"
                    perSeriesAligner   = c.aligner
                    crossSeriesReducer = c.reducer
                    groupByFields      = c.group_by
                  }
                }
              }
            }]
          }
        }
      }]
    }
  })

  depends_on = [google_project_service.apis]
}

resource "google_monitoring_alert_policy" "memory_headroom" {
  count = var.alerts_enabled ? 1 : 0

  display_name          = "${var.name_prefix}: memory above ${var.alert_memory_utilization * 100}% of the limit"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = local.notification_channels

  conditions {
    display_name = "p99 memory utilization of instances over 10 min, per service"

    condition_threshold {
      filter          = "metric.type=\"run.googleapis.com/container/memory/utilizations\" AND ${local.service_filter}"
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_memory_utilization
      duration        = "600s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_PERCENTILE_99"
        cross_series_reducer = "REDUCE_MAX"
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
    subject   = "${var.name_prefix}: little memory headroom"
    content   = <<-EOT
      Instances of one ${var.name_prefix} function have used more than ${var.alert_memory_utilization * 100}% of their memory limit for 10 minutes.
      Progress refuses new streams (503 OVERLOADED) below SSE_MIN_HEADROOM free; submit bounds reference work per instance (REF_MAX_FETCHES, REF_MAX_INFLIGHT_MIB).
      Raise the function's memory, or lower its concurrency, before instances are killed for memory.
    EOT
  }
}

resource "google_monitoring_alert_policy" "model_failures" {
  count = var.alerts_enabled ? 1 : 0

  display_name          = "${var.name_prefix}: more than ${var.alert_model_failures} failed images in 15 min"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = local.notification_channels

  conditions {
    display_name = "model failures (every class) over 15 min"

    condition_threshold {
      filter          = "metric.type=\"logging.googleapis.com/user/${google_logging_metric.model_failures.name}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_model_failures
      duration        = "0s"

      aggregations {
        alignment_period     = "900s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
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
    subject   = "${var.name_prefix}: image model failing"
    content   = <<-EOT
      More than ${var.alert_model_failures} image generations failed in 15 minutes. The dashboard's "Model failures by class" says which:
      rate_limited — the model's quota (retried by the queue); transient — the model or the path to it is unavailable (retried); blocked — safety refusals (users' prompts); permanent — requests the model refuses (model name, parameters).
    EOT
  }
}
