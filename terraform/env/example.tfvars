# One environment. Copy to terraform/env/<env>.tfvars (git-ignored), adjust,
# and deploy with `ASSETGEN_ENV=<env> scripts/deploy.sh` (docs/deploy.md).
# scripts/deploy.sh passes source_object and housekeeping_image itself; every
# other setting has a default (terraform/variables.tf).

project = "my-assetgen-project"
region  = "europe-west1"

# The environment's name: every resource name starts with it, so several
# environments fit one project. 3-14 characters.
name_prefix = "ag-staging"

# Authentication of the public API (docs/security.md): Google / Identity
# Platform ID tokens for these audiences (your OAuth client ids, or the
# Identity Platform project id).
auth_mode      = "google"
auth_audiences = ["1234567890-abc.apps.googleusercontent.com"]
# Who may call: verified e-mails, by address or *@domain (service accounts
# only by address).
auth_allow = ["*@example.com"]
# auth_issuers = ["https://securetoken.google.com/my-project"] # Identity Platform

# Origins of the frontend that fetch() signed image URLs (bucket CORS).
allowed_origins = ["https://app.example.com"]

# Retention of batches (manifests, row state, images) and reference images.
retention_days      = 30
refs_retention_days = 30

# Image models: Vertex AI with the generate function's own identity (default),
# or the Gemini API with a key kept in Secret Manager:
# genai_backend                = "gemini_api"
# create_gemini_api_key_secret = true  # empty secret <name_prefix>-gemini-api-key
# gemini_api_key_added         = true  # once `gcloud secrets versions add` ran

# Feature flags on submit: the batch API is on; live (paid) runs start off
# until the smoke test passed (docs/deploy.md, canary rollout).
flags_hybrid_v1 = "on"
flags_live_runs = "off"

# Queue limits (match them to the image model's quota).
tasks_max_dispatches_per_second = 5
tasks_max_concurrent_dispatches = 20

# Alerts, and optionally a monthly project budget (set it in one environment
# of a shared project only).
alert_emails = ["oncall@example.com"]
# billing_account       = "012345-6789AB-CDEF01"
# billing_budget_amount = 200
