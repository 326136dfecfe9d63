# The environment's Artifact Registry repository. Cloud Run functions push the
# three function images here (build_config.docker_repository) instead of the
# project-wide gcf-artifacts, and scripts/deploy.sh pushes the housekeeping
# image here; the build account may write to this repository and no other.
#
# A rollback (scripts/deploy.sh --rollback) moves traffic back to earlier
# revisions, which start from their images: images are deleted only when they
# are older than the rollback window (source_retention_days, the same window
# as the source archives) and not among the newest images_kept of their
# function or job. KEEP rules win over DELETE rules.

resource "google_artifact_registry_repository" "images" {
  repository_id = local.repository_id
  location      = var.region
  format        = "DOCKER"
  description   = "${var.name_prefix}: images of the functions and the housekeeping job."

  cleanup_policy_dry_run = false

  cleanup_policies {
    id     = "keep-newest"
    action = "KEEP"
    most_recent_versions {
      keep_count = var.images_kept
    }
  }

  cleanup_policies {
    id     = "delete-past-rollback-window"
    action = "DELETE"
    condition {
      older_than = "${var.source_retention_days * 86400}s"
    }
  }

  depends_on = [google_project_service.apis]
}
