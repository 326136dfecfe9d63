# Fake but valid values for the offline validator (../shared/tools/tf-offline-validate)
# and the policy tests in terraform/plantest. Nothing here is deployed.
project       = "assetgen-ci"
region        = "europe-west1"
source_object = "source/functions-0123456789abcdef0123456789abcdef01234567.zip"

allowed_origins = ["https://app.example.com"]

# Exercise the optional parts too: the housekeeping job and its schedule, the
# Gemini API key secret (created empty, no version), alert e-mails, flags.
housekeeping_image           = "europe-west1-docker.pkg.dev/assetgen-ci/assetgen/housekeeping:ci"
genai_backend                = "gemini_api"
gemini_api_key_secret        = "assetgen-gemini-api-key"
create_gemini_api_key_secret = true
alert_emails                 = ["oncall@example.com"]
flags_hybrid_v1              = "10%"
flags_live_runs              = "off"

# Authentication of the public API (docs/security.md).
auth_mode      = "google"
auth_audiences = ["1234567890-abc.apps.googleusercontent.com"]
# auth_issuers = ["https://securetoken.google.com/my-project"] # Identity Platform
