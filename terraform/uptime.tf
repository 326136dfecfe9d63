# Uptime checks: Cloud Monitoring calls GET /ready on submit and progress from
# several regions every 5 minutes, and an alert fires when a function stops
# answering 2xx. /ready proves the bucket (and, for submit, the queue); it is
# cached for 5 s per instance, so checks cost the bucket next to nothing. The
# paths do not end in z: Cloud Run's front end answers some such paths itself.

locals {
  uptime_hosts = {
    submit   = trimsuffix(trimprefix(local.public_base_url, "https://"), "/")
    progress = trimsuffix(trimprefix(local.progress_base_url, "https://"), "/")
  }
}

resource "google_monitoring_uptime_check_config" "ready" {
  for_each = var.alerts_enabled ? local.uptime_hosts : {}

  display_name = "${var.name_prefix} ${each.key} ready"
  timeout      = "10s"
  period       = "300s"
  checker_type = "STATIC_IP_CHECKERS"

  http_check {
    path         = "/ready"
    port         = 443
    use_ssl      = true
    validate_ssl = true

    accepted_response_status_codes {
      status_class = "STATUS_CLASS_2XX"
    }
  }

  monitored_resource {
    type = "uptime_url"
    labels = {
      project_id = var.project
      host       = each.value
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_monitoring_alert_policy" "not_ready" {
  for_each = var.alerts_enabled ? local.uptime_hosts : {}

  display_name          = "${var.name_prefix}: ${each.key} not ready"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = local.notification_channels

  conditions {
    display_name = "GET /ready on ${each.key} failing from more than one region"

    condition_threshold {
      filter     = "metric.type=\"monitoring.googleapis.com/uptime_check/check_passed\" AND resource.type=\"uptime_url\" AND resource.label.\"host\"=\"${each.value}\""
      comparison = "COMPARISON_GT"
      # More than one checker region failing, for two check periods.
      threshold_value = 1
      duration        = "600s"

      aggregations {
        alignment_period     = "600s"
        per_series_aligner   = "ALIGN_NEXT_OLDER"
        cross_series_reducer = "REDUCE_COUNT_FALSE"
        group_by_fields      = ["resource.label.host"]
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
    subject   = "${var.name_prefix}: ${each.key} not ready"
    content   = <<-EOT
      GET https://${each.value}/ready has failed from more than one region for 10 minutes.
      The answer's "checks" member names the failing dependency (bucket, queue, a config object); the function's logs say why.
      A 404 page from Google (not a problem+json document) means the request never reached the function: check the service exists and its ingress.
    EOT
  }

  depends_on = [google_monitoring_uptime_check_config.ready]
}
