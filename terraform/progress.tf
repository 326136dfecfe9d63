# The progress service: a gen2 function (a Cloud Run service underneath) from
# the same source archive, so all three functions share one build path. SSE
# streams are long requests: timeout 3600 s (Cloud Run's maximum) and up to
# 1000 streams per instance, which needs a whole CPU.

resource "google_cloudfunctions2_function" "progress" {
  name        = local.function_names.progress
  location    = var.region
  description = "assetgen progress: GET /progress/{id} Server-Sent Events"

  build_config {
    runtime           = var.function_runtime
    entry_point       = "Progress"
    service_account   = local.build_service_account
    docker_repository = local.repository_name
    source {
      storage_source {
        bucket = local.source_bucket
        object = var.source_object
      }
    }
  }

  service_config {
    service_account_email            = local.sa_email["progress"]
    available_memory                 = var.progress_available_memory
    available_cpu                    = var.progress_available_cpu
    max_instance_request_concurrency = var.progress_max_instance_request_concurrency
    min_instance_count               = var.progress_min_instance_count
    max_instance_count               = var.progress_max_instance_count
    timeout_seconds                  = var.progress_timeout_seconds
    ingress_settings                 = "ALLOW_ALL"
    all_traffic_on_latest_revision   = true

    environment_variables = merge(local.common_env, local.auth_env, {
      SIGNING_SERVICE_ACCOUNT = local.sa_email["progress"]
      # End streams a minute before the request timeout so clients reconnect
      # cleanly (with Last-Event-ID) instead of being cut off.
      SSE_MAX_DURATION = "${var.progress_timeout_seconds - 60}s"
    }, lookup(var.extra_env, "progress", {}))

    # Verifies the progress tokens submit mints.
    secret_environment_variables {
      key        = "PROGRESS_TOKEN_KEYS"
      project_id = var.project
      secret     = local.secret_ids.progress_token_keys
      version    = "latest"
    }
  }

  depends_on = [
    google_service_account.sa,
    google_project_iam_member.build_logs,
    google_project_iam_member.build_gcf_buckets,
    google_artifact_registry_repository_iam_member.build_writer,
    google_storage_bucket_iam_member.build_source_viewer,
    google_storage_bucket_iam_member.ledger_object_viewer,
    google_service_account_iam_member.self_url_signer,
    google_secret_manager_secret_iam_member.progress_token_keys,
  ]
}

# Public at IAM: EventSource cannot send an Authorization header, so the
# stream is authorised by the short-lived token in its URL (returned by
# submit), which the progress function verifies itself.
resource "google_cloud_run_v2_service_iam_member" "progress_public" {
  project  = var.project
  location = var.region
  name     = google_cloudfunctions2_function.progress.service_config[0].service
  role     = "roles/run.invoker"
  member   = "allUsers"
}
