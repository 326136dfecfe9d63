# Fake but valid values for the offline validator (../shared/tools/tf-offline-validate)
# and the policy tests in terraform/plantest. Nothing here is deployed.
#
# An environment named "ag-ci" in the same project as
# plantest/testdata/minimal.tfvars (the default name_prefix), so the policy
# tests can check that two environments share no resource name.
project       = "assetgen-ci"
name_prefix   = "ag-ci"
region        = "europe-west1"
source_object = "source/functions-0123456789abcdef0123456789abcdef01234567.zip"

allowed_origins = ["https://app.example.com"]

# Exercise the optional parts too: the housekeeping job and its schedule, the
# Gemini API key secret created here without a version (so live runs wait for
# gemini_api_key_added), alert e-mails, the project budget, flags.
housekeeping_image           = "europe-west1-docker.pkg.dev/assetgen-ci/ag-ci-images/housekeeping@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
genai_backend                = "gemini_api"
create_gemini_api_key_secret = true
alert_emails                 = ["oncall@example.com"]
billing_account              = "012345-6789AB-CDEF01"
billing_budget_amount        = 200
flags_hybrid_v1              = "10%"
flags_live_runs              = "off"

# Authentication of the public API (docs/security.md).
auth_mode      = "google"
auth_audiences = ["1234567890-abc.apps.googleusercontent.com"]
# Who may call: verified e-mails, by address or *@domain (service accounts
# only by address).
auth_allow = ["*@example.com"]
# auth_issuers = ["https://securetoken.google.com/my-project"] # Identity Platform
