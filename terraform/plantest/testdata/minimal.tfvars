# The smallest valid input: every default, nothing optional (no housekeeping
# job, Vertex AI instead of an API key secret, no alert e-mails, no budget, no
# CORS). scripts/ci-terraform.sh plans this as well as terraform/ci.tfvars and
# terraform/env/example.tfvars, so both sides of every count/for_each are
# checked.
project       = "assetgen-ci"
source_object = "source/functions-0123456789abcdef0123456789abcdef01234567.zip"
# The settings without a default: who the frontend's ID tokens are for, and
# whose verified e-mails they must carry.
auth_audiences = ["1234567890-abc.apps.googleusercontent.com"]
auth_allow     = ["alice@example.com"]
