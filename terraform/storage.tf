# The ledger/assets bucket (the platform's only database) and the bucket of
# function source archives.

resource "google_storage_bucket" "ledger" {
  name          = local.bucket_name
  location      = local.bucket_location
  storage_class = "STANDARD"
  force_destroy = var.bucket_force_destroy

  # IAM only (no object ACLs) and never public: images leave the bucket through
  # short-lived signed URLs only.
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  # The ledger keeps its own audit trail (each row object's history and the
  # batch's state.json); object versioning would keep a copy of every
  # compare-and-swap write of every row object.
  versioning {
    enabled = false
  }

  soft_delete_policy {
    retention_duration_seconds = var.soft_delete_retention_days * 86400
  }

  # Retention by prefix. config/ (flags.json, budgets.json) has no rule:
  # operators own it. users/<user>/batches/ holds one index entry per batch,
  # written by the same submit as the batch: the same age removes both on the
  # same day, so a user's list never outlives its batches.
  lifecycle_rule {
    condition {
      age            = var.retention_days
      matches_prefix = ["batches/", "users/"]
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      # Reference images are shared by content across batches; every reuse moves
      # their custom time forward, so only references nobody used lately go.
      days_since_custom_time = var.refs_retention_days
      matches_prefix         = ["refs/"]
    }
    action {
      type = "Delete"
    }
  }

  # Idempotency keys (idempotency/) point at batches and daily budget
  # counters (budgets/<day>/) only matter while the batches do.
  lifecycle_rule {
    condition {
      age            = var.retention_days
      matches_prefix = ["idempotency/", "budgets/"]
    }
    action {
      type = "Delete"
    }
  }

  # Readiness probes write probes/<instance>.json; nothing reads them later.
  lifecycle_rule {
    condition {
      age            = 1
      matches_prefix = ["probes/"]
    }
    action {
      type = "Delete"
    }
  }

  # A submit streams each reference image to staging/ while hashing it, then
  # copies it to refs/<sha256> and deletes it; only an instance that died
  # mid-submit leaves one behind.
  lifecycle_rule {
    condition {
      age            = 1
      matches_prefix = ["staging/"]
    }
    action {
      type = "Delete"
    }
  }

  # queued/<user>/<batch>.<rows> marks an unfinished batch for the per-user
  # queued-row cap; completion deletes it, and after a day it no longer
  # counts. This rule removes any a crash left behind.
  lifecycle_rule {
    condition {
      age            = 2
      matches_prefix = ["queued/"]
    }
    action {
      type = "Delete"
    }
  }

  # POST /uploads issues uploads/<user>/<id> and a signed URL to PUT the image
  # to; it is usable for a day, and this rule removes it after that.
  lifecycle_rule {
    condition {
      age            = 1
      matches_prefix = ["uploads/"]
    }
    action {
      type = "Delete"
    }
  }

  # Browsers fetch images through signed URLs; fetch()/XHR from the frontend's
  # origin needs CORS (a plain <img src> does not). The console PUTs uploads
  # with the headers their signed URLs bind, which a preflight must allow.
  dynamic "cors" {
    for_each = length(var.allowed_origins) > 0 ? [1] : []
    content {
      origin          = var.allowed_origins
      method          = ["GET", "HEAD", "PUT"]
      response_header = ["Content-Type", "Content-Length", "ETag", "x-goog-content-length-range", "x-goog-if-generation-match", "x-goog-meta-sha256"]
      max_age_seconds = 3600
    }
  }

  depends_on = [google_project_service.apis]
}

# Source archives built by scripts/package.sh and uploaded by scripts/deploy.sh,
# and the staged source of housekeeping image builds. Cloud Run functions copy
# the archive at deploy time; old archives are kept for source_retention_days
# (the rollback window) so a previous release can be redeployed.
resource "google_storage_bucket" "source" {
  count = var.manage_source_bucket ? 1 : 0

  name          = local.source_bucket_name
  location      = upper(var.region)
  storage_class = "STANDARD"
  force_destroy = var.bucket_force_destroy

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  versioning {
    enabled = false
  }

  lifecycle_rule {
    condition {
      age = var.source_retention_days
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}

locals {
  # The name the functions build from, whether the bucket is managed here or not.
  source_bucket = var.manage_source_bucket ? google_storage_bucket.source[0].name : local.source_bucket_name
}
