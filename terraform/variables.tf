# Every input of the deployment. Only `project` and `source_object` have no
# default: an environment's file terraform/env/<env>.tfvars names the project,
# and scripts/deploy.sh passes source_object (the content-hashed archive name
# printed by scripts/package.sh) and housekeeping_image (by digest).

# ---------------------------------------------------------------- project ---

variable "project" {
  type        = string
  description = "Google Cloud project id to deploy into."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project))
    error_message = "project must be a Google Cloud project id: 6-30 characters, lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "region" {
  type        = string
  description = "Region of the functions, the queue, the job and (by default) the bucket, e.g. europe-west1."
  default     = "europe-west1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must look like europe-west1 or us-central1."
  }
}

variable "name_prefix" {
  type        = string
  description = "The environment's name: prefix of every resource name (functions, queue, secrets, service accounts, buckets, job, schedule, image repository, custom roles, metrics, alerts), so several environments fit one project. Short: service account ids are limited to 30 characters."
  default     = "assetgen"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,12}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 3-14 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "labels" {
  type        = map(string)
  description = "Extra labels on every labelled resource (merged over app = assetgen, managed-by = terraform)."
  default     = {}
}

variable "enable_apis" {
  type        = bool
  description = "Enable the required Google APIs with google_project_service. Set false when a platform team enables them for you."
  default     = true
}

# ----------------------------------------------------------------- bucket ---

variable "bucket_name" {
  type        = string
  description = "Name of the ledger/assets bucket. Empty: <project>-<name_prefix>-ledger."
  default     = ""

  validation {
    condition     = var.bucket_name == "" || can(regex("^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be a valid bucket name (3-63 lowercase letters, digits, dots, hyphens, underscores) or empty."
  }
}

variable "bucket_location" {
  type        = string
  description = "Location of the ledger bucket. Empty: the region (same-region reads from the functions, no egress)."
  default     = ""
}

variable "retention_days" {
  type        = number
  description = "Objects under batches/ (manifests, row state, images) are deleted this many days after they were written."
  default     = 30

  validation {
    condition     = var.retention_days >= 1 && var.retention_days <= 3650 && floor(var.retention_days) == var.retention_days
    error_message = "retention_days must be a whole number of days between 1 and 3650."
  }
}

variable "refs_retention_days" {
  type        = number
  description = "Objects under refs/ (content-addressed reference images) are deleted this many days after they were first stored."
  default     = 30

  validation {
    condition     = var.refs_retention_days >= 1 && var.refs_retention_days <= 3650 && floor(var.refs_retention_days) == var.refs_retention_days
    error_message = "refs_retention_days must be a whole number of days between 1 and 3650."
  }
}

variable "soft_delete_retention_days" {
  type        = number
  description = "Soft-delete retention of the ledger bucket in days (0 disables; Cloud Storage allows 7-90). Deleted and overwritten objects are billed for this long."
  default     = 7

  validation {
    condition     = var.soft_delete_retention_days == 0 || (var.soft_delete_retention_days >= 7 && var.soft_delete_retention_days <= 90)
    error_message = "soft_delete_retention_days must be 0 or between 7 and 90."
  }
}

variable "allowed_origins" {
  type        = list(string)
  description = "Browser origins allowed to GET objects through signed URLs with fetch()/XHR (bucket CORS). Plain <img src> needs no CORS. Empty: no CORS configuration."
  default     = []

  validation {
    condition     = alltrue([for o in var.allowed_origins : o == "*" || can(regex("^https?://[^/]+$", o))])
    error_message = "allowed_origins entries must be origins such as https://app.example.com (no path, no trailing slash) or \"*\"."
  }
}

variable "auth_mode" {
  type        = string
  description = "How the public API authenticates callers: google (Google / Identity Platform ID tokens) or apikey (keys whose SHA-256 hashes are in config/apikeys.json)."
  default     = "google"

  validation {
    condition     = contains(["google", "apikey"], var.auth_mode)
    error_message = "auth_mode must be google or apikey (none exists only for the local stack)."
  }
}

variable "auth_audiences" {
  type        = list(string)
  description = "Accepted ID-token audiences with auth_mode = google: your OAuth client ids, or the Identity Platform / Firebase project id."
  default     = []
}

variable "auth_issuers" {
  type        = list(string)
  description = "Accepted ID-token issuers; empty means Google's (https://accounts.google.com). Add https://securetoken.google.com/<project> for Identity Platform."
  default     = []
}

variable "progress_token_keys_secret" {
  type        = string
  description = "Secret Manager secret (id in this project) holding the progress-token HMAC keys, id:base64(32+ bytes),… — the first signs, all verify. scripts/deploy.sh creates it with a first version before terraform runs, so its value never enters terraform state. Empty: <name_prefix>-progress-token-keys."
  default     = ""

  validation {
    condition     = var.progress_token_keys_secret == "" || can(regex("^[A-Za-z0-9_-]{1,255}$", var.progress_token_keys_secret))
    error_message = "progress_token_keys_secret must be a Secret Manager secret id (1-255 letters, digits, hyphens or underscores) or empty."
  }
}

variable "webhook_signing_keys_secret" {
  type        = string
  description = "Secret Manager secret (id in this project) holding the Ed25519 keys that sign completion webhooks (WEBHOOK_SIGNING_KEYS: id:base64 of a 32-byte seed,… — the first signs, all are published at GET /webhooks/keys). scripts/deploy.sh creates it with a first version before terraform runs, so no private key enters terraform state. Empty: <name_prefix>-webhook-signing-keys."
  default     = ""

  validation {
    condition     = var.webhook_signing_keys_secret == "" || can(regex("^[A-Za-z0-9_-]{1,255}$", var.webhook_signing_keys_secret))
    error_message = "webhook_signing_keys_secret must be a Secret Manager secret id (1-255 letters, digits, hyphens or underscores) or empty."
  }
}

variable "bucket_force_destroy" {
  type        = bool
  description = "Let terraform destroy the ledger bucket even when it holds objects. Keep false outside throwaway projects."
  default     = false
}

# ----------------------------------------------------------------- source ---

variable "source_bucket" {
  type        = string
  description = "Bucket holding the function source archives uploaded by scripts/deploy.sh (and the staged source of the housekeeping image build). Empty: <project>-<name_prefix>-source."
  default     = ""

  validation {
    condition     = var.source_bucket == "" || can(regex("^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$", var.source_bucket))
    error_message = "source_bucket must be a valid bucket name or empty."
  }
}

variable "manage_source_bucket" {
  type        = bool
  description = "Create the source bucket here. Set false to use an existing deploy bucket named by source_bucket."
  default     = true
}

variable "source_object" {
  type        = string
  description = "Object name of the function source archive in source_bucket, as printed by scripts/package.sh (e.g. source/functions-<hash>.zip). Changing it rebuilds all three functions; a previous name redeploys an earlier release."

  validation {
    condition     = can(regex("^[A-Za-z0-9._/-]+\\.zip$", var.source_object))
    error_message = "source_object must be an object name ending in .zip."
  }
}

variable "source_retention_days" {
  type        = number
  description = "The rollback window: source archives (managed source bucket) and images (the environment's Artifact Registry repository) are kept this many days; the newest images of each function and of the job are kept regardless, so a serving revision never loses its image."
  default     = 90

  validation {
    condition     = var.source_retention_days >= 7 && floor(var.source_retention_days) == var.source_retention_days
    error_message = "source_retention_days must be a whole number of at least 7 days, so recent releases can be rolled back to."
  }
}

variable "images_kept" {
  type        = number
  description = "Newest image versions of each function and of the housekeeping job kept in the Artifact Registry repository whatever their age (a rollback shifts traffic to one of them)."
  default     = 10

  validation {
    condition     = var.images_kept >= 2 && floor(var.images_kept) == var.images_kept
    error_message = "images_kept must be a whole number of at least 2: the serving image and the one a rollback returns to."
  }
}

variable "function_runtime" {
  type        = string
  description = "Cloud Run functions Go runtime id. go.mod says go 1.26, so the builder must be go126 or newer (go125 cannot build the module)."
  default     = "go126"

  validation {
    condition     = can(regex("^go1[0-9]{2}$", var.function_runtime)) && tonumber(substr(var.function_runtime, 2, 3)) >= 126
    error_message = "function_runtime must be a Go runtime id of go126 or newer: go.mod requires Go 1.26."
  }
}

# ------------------------------------------------------------------ queue ---

variable "queue_name" {
  type        = string
  description = "Name of the Cloud Tasks queue for row tasks. Empty: <name_prefix>-generate. A deleted queue's name cannot be reused for about 7 days, so an existing deployment may pin its old name here."
  default     = ""

  validation {
    condition     = var.queue_name == "" || can(regex("^[A-Za-z0-9-]{1,100}$", var.queue_name))
    error_message = "queue_name may contain letters, digits and hyphens (1-100), or be empty."
  }
}

variable "tasks_max_dispatches_per_second" {
  type        = number
  description = "Queue rate limit: row tasks dispatched per second."
  default     = 5

  validation {
    condition     = var.tasks_max_dispatches_per_second > 0 && var.tasks_max_dispatches_per_second <= 500
    error_message = "tasks_max_dispatches_per_second must be within (0, 500]."
  }
}

variable "tasks_max_concurrent_dispatches" {
  type        = number
  description = "Queue limit: row tasks running at once (bounds the model calls in flight and the generate instances)."
  default     = 20

  validation {
    condition     = var.tasks_max_concurrent_dispatches >= 1 && var.tasks_max_concurrent_dispatches <= 5000
    error_message = "tasks_max_concurrent_dispatches must be between 1 and 5000."
  }
}

variable "tasks_max_attempts" {
  type        = number
  description = "Deliveries per row task before Cloud Tasks gives up. Passed to the functions as TASKS_MAX_ATTEMPTS so the last attempt fails the row."
  default     = 8

  validation {
    condition     = var.tasks_max_attempts >= 1 && var.tasks_max_attempts <= 100 && floor(var.tasks_max_attempts) == var.tasks_max_attempts
    error_message = "tasks_max_attempts must be a whole number between 1 and 100 (the functions need a finite attempt budget)."
  }
}

variable "tasks_min_backoff" {
  type        = string
  description = "Queue retry: shortest wait before a retry (seconds with an s suffix)."
  default     = "10s"

  validation {
    condition     = can(regex("^[0-9]+(\\.[0-9]+)?s$", var.tasks_min_backoff))
    error_message = "tasks_min_backoff must be a duration in seconds such as 10s."
  }
}

variable "tasks_max_backoff" {
  type        = string
  description = "Queue retry: longest wait before a retry (seconds with an s suffix)."
  default     = "300s"

  validation {
    condition     = can(regex("^[0-9]+(\\.[0-9]+)?s$", var.tasks_max_backoff))
    error_message = "tasks_max_backoff must be a duration in seconds such as 300s."
  }
}

variable "tasks_max_doublings" {
  type        = number
  description = "Queue retry: how many times the backoff doubles before growing linearly."
  default     = 4

  validation {
    condition     = var.tasks_max_doublings >= 0 && var.tasks_max_doublings <= 16
    error_message = "tasks_max_doublings must be between 0 and 16."
  }
}

variable "tasks_dispatch_deadline_seconds" {
  type        = number
  description = "How long one task delivery may run. Not a queue setting: submit sets it on every task (TASKS_DISPATCH_DEADLINE), and generate's timeout is derived from it. Image models are slow: default 10 minutes."
  default     = 600

  validation {
    condition     = var.tasks_dispatch_deadline_seconds >= 15 && var.tasks_dispatch_deadline_seconds <= 1800 && floor(var.tasks_dispatch_deadline_seconds) == var.tasks_dispatch_deadline_seconds
    error_message = "tasks_dispatch_deadline_seconds must be whole seconds between 15 and 1800 (Cloud Tasks' limits)."
  }
}

# -------------------------------------------------------------- functions ---

variable "public_base_url" {
  type        = string
  description = "Public origin of submit if it sits behind a custom domain or load balancer (PUBLIC_BASE_URL, given to every function and the housekeeping job for statusUrl and the stable image links in webhooks and Sheets). Empty: submit's deterministic run.app URL."
  default     = ""

  validation {
    condition     = var.public_base_url == "" || can(regex("^https?://[^/]+$", var.public_base_url))
    error_message = "public_base_url must be an origin such as https://api.example.com, or empty."
  }
}

variable "progress_public_base_url" {
  type        = string
  description = "Public origin of progress if it sits behind a custom domain (PROGRESS_BASE_URL). Empty: the progress function's run.app URL."
  default     = ""

  validation {
    condition     = var.progress_public_base_url == "" || can(regex("^https?://[^/]+$", var.progress_public_base_url))
    error_message = "progress_public_base_url must be an origin such as https://progress.example.com, or empty."
  }
}

variable "submit" {
  type = object({
    memory        = optional(string, "512Mi")
    cpu           = optional(string, "1")
    concurrency   = optional(number, 80)
    min_instances = optional(number, 0)
    max_instances = optional(number, 10)
    timeout       = optional(number, 60)
  })
  description = "Sizing of the submit function (memory, cpu, request concurrency, instances, timeout in seconds)."
  default     = {}

  validation {
    condition     = var.submit.concurrency >= 1 && var.submit.concurrency <= 1000 && var.submit.min_instances >= 0 && var.submit.max_instances >= 1 && var.submit.timeout >= 1 && var.submit.timeout <= 3600
    error_message = "submit: concurrency 1-1000, min_instances >= 0, max_instances >= 1, timeout 1-3600 s."
  }
}

variable "generate" {
  type = object({
    memory        = optional(string, "1Gi")
    cpu           = optional(string, "1")
    concurrency   = optional(number, 4)
    min_instances = optional(number, 0)
    max_instances = optional(number, 10)
  })
  description = "Sizing of the generate function. Its timeout follows tasks_dispatch_deadline_seconds. Keep concurrency x max_instances >= tasks_max_concurrent_dispatches + tasks_dry_run_max_concurrent_dispatches."
  default     = {}

  validation {
    condition     = var.generate.concurrency >= 1 && var.generate.concurrency <= 1000 && var.generate.min_instances >= 0 && var.generate.max_instances >= 1
    error_message = "generate: concurrency 1-1000, min_instances >= 0, max_instances >= 1."
  }
}

variable "generate_ingress" {
  type        = string
  description = "Ingress of the generate function. ALLOW_INTERNAL_ONLY (default): Cloud Run counts Cloud Tasks in the same project as internal, so only the queue (and VPCs of this project) reach it, on top of IAM. ALLOW_ALL leaves IAM (run.invoker for the tasks account only) as the sole lock."
  default     = "ALLOW_INTERNAL_ONLY"

  validation {
    condition     = contains(["ALLOW_ALL", "ALLOW_INTERNAL_ONLY"], var.generate_ingress)
    error_message = "generate_ingress must be ALLOW_ALL or ALLOW_INTERNAL_ONLY."
  }
}

variable "progress_timeout_seconds" {
  type        = number
  description = "Request timeout of the progress function: SSE streams live up to this long (Cloud Run's maximum is 3600). SSE_MAX_DURATION is set one minute shorter."
  default     = 3600

  validation {
    condition     = var.progress_timeout_seconds >= 120 && var.progress_timeout_seconds <= 3600
    error_message = "progress_timeout_seconds must be between 120 and 3600."
  }
}

variable "progress_max_instance_request_concurrency" {
  type        = number
  description = "SSE streams one progress instance serves at once (Cloud Run allows up to 1000; concurrency > 1 needs at least 1 CPU)."
  default     = 1000

  validation {
    condition     = var.progress_max_instance_request_concurrency >= 1 && var.progress_max_instance_request_concurrency <= 1000
    error_message = "progress_max_instance_request_concurrency must be between 1 and 1000."
  }
}

variable "progress_min_instance_count" {
  type        = number
  description = "Warm progress instances kept running (0 scales to zero; 1 avoids cold starts on the first stream but is billed around the clock)."
  default     = 0

  validation {
    condition     = var.progress_min_instance_count >= 0
    error_message = "progress_min_instance_count must be >= 0."
  }
}

variable "progress_max_instance_count" {
  type        = number
  description = "Upper bound of progress instances."
  default     = 10

  validation {
    condition     = var.progress_max_instance_count >= 1
    error_message = "progress_max_instance_count must be >= 1."
  }
}

variable "progress_available_memory" {
  type        = string
  description = "Memory of a progress instance (~28 KiB per idle stream, so 1000 streams fit easily in 512Mi)."
  default     = "512Mi"

  validation {
    condition     = can(regex("^[0-9]+(Mi|Gi)$", var.progress_available_memory))
    error_message = "progress_available_memory must look like 512Mi or 1Gi."
  }
}

variable "progress_available_cpu" {
  type        = string
  description = "CPUs of a progress instance; at least 1 because concurrency > 1 requires it."
  default     = "1"

  validation {
    condition     = can(tonumber(var.progress_available_cpu)) && tonumber(var.progress_available_cpu) >= 1
    error_message = "progress_available_cpu must be a number >= 1 (request concurrency above 1 needs a whole CPU)."
  }
}

# ---------------------------------------------------------- app settings ---

variable "signed_url_ttl" {
  type        = string
  description = "Validity of signed image URLs (SIGNED_URL_TTL, a Go duration, at most 168h)."
  default     = "15m"

  validation {
    condition     = can(regex("^([0-9]+(\\.[0-9]+)?(h|m|s))+$", var.signed_url_ttl))
    error_message = "signed_url_ttl must be a Go duration such as 15m or 1h30m."
  }
}

variable "log_level" {
  type        = string
  description = "LOG_LEVEL of every function: debug, info, warn or error."
  default     = "info"

  validation {
    condition     = contains(["debug", "info", "warn", "error"], var.log_level)
    error_message = "log_level must be debug, info, warn or error."
  }
}

variable "dry_run_delay" {
  type        = string
  description = "DRY_RUN_DELAY of generate: time the placeholder generator takes per image (a Go duration, 0 for none)."
  default     = "0"

  validation {
    condition     = var.dry_run_delay == "0" || can(regex("^([0-9]+(\\.[0-9]+)?(ms|h|m|s))+$", var.dry_run_delay))
    error_message = "dry_run_delay must be 0 or a Go duration such as 2s."
  }
}

variable "models_json" {
  type        = string
  description = "MODELS_JSON overlay of the model table (prices, reference limits, aspect ratios, default). Empty: built-in table."
  default     = ""

  validation {
    condition     = var.models_json == "" || can(jsondecode(var.models_json))
    error_message = "models_json must be empty or valid JSON."
  }
}

variable "flags_hybrid_v1" {
  type        = string
  description = "HYBRID_V1_ENABLED on submit, the master switch of the batch API: \"on\", \"off\" (POST /batch/images answers 503 FEATURE_DISABLED) or a canary percentage of users such as \"10%\". config/flags.json in the bucket overrides it at run time."
  default     = "on"

  validation {
    condition     = can(regex("^(on|off|(100|[0-9]{1,2}(\\.[0-9]+)?)%)$", var.flags_hybrid_v1))
    error_message = "flags_hybrid_v1 must be on, off, or a percentage from 0% to 100% (e.g. 10% or 12.5%)."
  }
}

variable "flags_live_runs" {
  type        = string
  description = "LIVE_RUNS on submit: live (paid) runs \"on\", \"off\" (live submits answer 503 FEATURE_DISABLED; dry runs still work) or a percentage of users. Off by default here so a fresh deployment cannot spend money until you say so."
  default     = "off"

  validation {
    condition     = can(regex("^(on|off|(100|[0-9]{1,2}(\\.[0-9]+)?)%)$", var.flags_live_runs))
    error_message = "flags_live_runs must be on, off, or a percentage from 0% to 100% (e.g. 10% or 12.5%)."
  }
}

variable "daily_budget_usd" {
  type        = number
  description = "DAILY_BUDGET_USD: default daily budget of each user for live runs, in USD (per-user overrides live in config/budgets.json in the bucket)."
  default     = 25

  validation {
    condition     = var.daily_budget_usd >= 0
    error_message = "daily_budget_usd must be >= 0."
  }
}

variable "ref_buckets" {
  type        = list(string)
  description = "Buckets that gs:// reference images may name (REF_BUCKETS). Submit fetches references, so its service account gets objectViewer on each."
  default     = []

  validation {
    condition     = alltrue([for b in var.ref_buckets : can(regex("^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$", b))])
    error_message = "ref_buckets must be bucket names (no gs:// prefix)."
  }
}

variable "extra_env" {
  type        = map(map(string))
  description = "Extra environment variables per function, keyed submit, generate or progress (e.g. { generate = { DRY_RUN_DELAY = \"2s\" } }). They override the ones set here."
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.extra_env) : contains(["submit", "generate", "progress"], k)])
    error_message = "extra_env keys must be submit, generate or progress."
  }
}

# ------------------------------------------------------------- image model ---

variable "genai_backend" {
  type        = string
  description = "LIVE_BACKEND of live runs: \"vertex\" (Vertex AI with generate's own identity and a one-permission role, aiplatform.endpoints.predict), \"gemini_api\" (an API key from Secret Manager) or \"none\" (dry runs only)."
  default     = "vertex"

  validation {
    condition     = contains(["vertex", "gemini_api", "none"], var.genai_backend)
    error_message = "genai_backend must be vertex, gemini_api or none."
  }
}

variable "vertex_location" {
  type        = string
  description = "VERTEX_LOCATION: Vertex AI location of the image models; the Gemini image models are served from global."
  default     = "global"
}

variable "model_timeout" {
  type        = string
  description = "MODEL_TIMEOUT of generate: longest wait for one image from the model (a Go duration, well under the dispatch deadline)."
  default     = "120s"

  validation {
    condition     = can(regex("^([0-9]+(\\.[0-9]+)?(h|m|s))+$", var.model_timeout))
    error_message = "model_timeout must be a Go duration such as 120s."
  }
}

variable "gemini_api_key_secret" {
  type        = string
  description = "Secret Manager secret id (short name, in this project) holding the Gemini API key, for genai_backend = gemini_api. Its value is added outside terraform; terraform never sees it. Empty: <name_prefix>-gemini-api-key."
  default     = ""

  validation {
    condition     = var.gemini_api_key_secret == "" || can(regex("^[A-Za-z0-9_-]{1,255}$", var.gemini_api_key_secret))
    error_message = "gemini_api_key_secret must be a secret id (letters, digits, _ and -), not a full resource name or a key."
  }
}

variable "create_gemini_api_key_secret" {
  type        = bool
  description = "Create the (empty) secret named gemini_api_key_secret here, without any version; add the key with `gcloud secrets versions add`, then set gemini_api_key_added = true. false: the secret already exists with a version."
  default     = false
}

variable "gemini_api_key_added" {
  type        = bool
  description = "With create_gemini_api_key_secret: a version of the key exists. Until then generate does not mount the secret (a revision cannot start on a secret without versions) and live runs stay off (LIVE_BACKEND empty), so the first apply succeeds and dry runs work."
  default     = false
}

# ----------------------------------------------------------- housekeeping ---

variable "housekeeping_image" {
  type        = string
  description = "Container image of the housekeeping job, by digest (<region>-docker.pkg.dev/<project>/<name_prefix>-images/housekeeping@sha256:…): scripts/deploy.sh builds it from jobs/housekeeping with the build account and passes it. Empty: no job and no schedule are created."
  default     = ""

  validation {
    condition     = var.housekeeping_image == "" || can(regex("^[a-z0-9.-]+/[^@:]+@sha256:[0-9a-f]{64}$", var.housekeeping_image))
    error_message = "housekeeping_image must name an image by digest (…/housekeeping@sha256:<64 hex>), so a job's image never changes under it, or be empty."
  }
}

variable "housekeeping_args" {
  type        = list(string)
  description = "Arguments of the housekeeping job."
  default     = ["--max-rows=500"]
}

variable "housekeeping_schedule" {
  type        = string
  description = "Cron schedule of the housekeeping job (Cloud Scheduler, unix-cron)."
  default     = "*/10 * * * *"

  validation {
    condition     = length(split(" ", trimspace(var.housekeeping_schedule))) == 5
    error_message = "housekeeping_schedule must be a five-field unix-cron expression such as */10 * * * *."
  }
}

variable "housekeeping_time_zone" {
  type        = string
  description = "Time zone of housekeeping_schedule."
  default     = "Etc/UTC"
}

variable "housekeeping_timeout" {
  type        = string
  description = "Longest run of one housekeeping execution (seconds with an s suffix)."
  default     = "600s"

  validation {
    condition     = can(regex("^[0-9]+s$", var.housekeeping_timeout))
    error_message = "housekeeping_timeout must be whole seconds such as 600s."
  }
}

variable "scheduler_region" {
  type        = string
  description = "Region of the Cloud Scheduler job. Empty: the region (Cloud Scheduler is not offered in every region)."
  default     = ""
}

# ------------------------------------------------------------- monitoring ---

variable "alerts_enabled" {
  type        = bool
  description = "Create the alert policies (the log-based metrics are created either way)."
  default     = true
}

variable "alert_emails" {
  type        = list(string)
  description = "E-mail addresses notified by the alert policies. Empty: the alerts still open incidents in the console."
  default     = []

  validation {
    condition     = alltrue([for e in var.alert_emails : can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", e))])
    error_message = "alert_emails must be e-mail addresses."
  }
}

variable "alert_error_rate" {
  type        = number
  description = "Alert when the share of requests answered with status >= 500 exceeds this over 5 minutes (per service)."
  default     = 0.05

  validation {
    condition     = var.alert_error_rate > 0 && var.alert_error_rate < 1
    error_message = "alert_error_rate must be within (0, 1)."
  }
}

variable "alert_latency_p95_seconds" {
  type        = number
  description = "Alert when the 95th percentile latency of API requests (submit and status reads; not SSE streams, not task deliveries) exceeds this over 5 minutes."
  default     = 2

  validation {
    condition     = var.alert_latency_p95_seconds > 0
    error_message = "alert_latency_p95_seconds must be positive."
  }
}

variable "alert_queue_depth" {
  type        = number
  description = "Alert when the row task queue holds more than this many tasks for 15 minutes (work arrives faster than the queue's rate limits or the model let it drain)."
  default     = 1000

  validation {
    condition     = var.alert_queue_depth >= 1
    error_message = "alert_queue_depth must be at least 1."
  }
}

variable "alert_dispatch_delay_p99_seconds" {
  type        = number
  description = "Alert when the 99th percentile of how late Cloud Tasks dispatches row tasks (queue/task_attempt_delays: actual minus scheduled attempt time) exceeds this for 15 minutes. Cloud Tasks publishes no oldest-task-age metric; this delay is its closest signal."
  default     = 300

  validation {
    condition     = var.alert_dispatch_delay_p99_seconds > 0
    error_message = "alert_dispatch_delay_p99_seconds must be positive."
  }
}

variable "alert_housekeeping_quiet_seconds" {
  type        = number
  description = "Alert when no housekeeping execution has succeeded for this many seconds (the schedule runs it every 10 minutes by default). Cloud Monitoring allows whole minutes from 120 to 84600."
  default     = 3600

  validation {
    condition     = var.alert_housekeeping_quiet_seconds >= 120 && var.alert_housekeeping_quiet_seconds <= 84600 && var.alert_housekeeping_quiet_seconds % 60 == 0
    error_message = "alert_housekeeping_quiet_seconds must be whole minutes between 120 and 84600 seconds."
  }
}

# ---------------------------------------------------------------- billing ---

variable "billing_account" {
  type        = string
  description = "Billing account id (XXXXXX-XXXXXX-XXXXXX) of the project. Set it, with billing_budget_amount, to create a monthly budget on the whole project as the last guard on model spend; the deploying identity then needs billing.budgets.create on that account. Empty: no budget. In a project shared by several environments, set it in one of them only."
  default     = ""

  validation {
    condition     = var.billing_account == "" || can(regex("^[0-9A-F]{6}-[0-9A-F]{6}-[0-9A-F]{6}$", var.billing_account))
    error_message = "billing_account must look like 012345-6789AB-CDEF01, or be empty."
  }
}

variable "billing_budget_amount" {
  type        = number
  description = "Monthly budget of the project, in the billing account's currency, with billing_account. Notifies the alert_emails channels (and the billing account's administrators) at 50, 90 and 100 % of actual spend and at 100 % of forecast spend. A budget alerts; it does not stop spending."
  default     = 0

  validation {
    condition     = var.billing_budget_amount >= 0 && floor(var.billing_budget_amount) == var.billing_budget_amount
    error_message = "billing_budget_amount must be a whole, non-negative amount."
  }
}

variable "alert_memory_utilization" {
  type        = number
  description = "Alert when the p99 memory utilization of a function's instances exceeds this share of its limit for 10 minutes."
  default     = 0.85

  validation {
    condition     = var.alert_memory_utilization > 0 && var.alert_memory_utilization < 1
    error_message = "alert_memory_utilization must be within (0, 1)."
  }
}

variable "alert_model_failures" {
  type        = number
  description = "Alert when more than this many image generations fail (any class) in 15 minutes."
  default     = 50

  validation {
    condition     = var.alert_model_failures >= 1
    error_message = "alert_model_failures must be at least 1."
  }
}

# ------------------------------------------------------------ daily cap ---

variable "daily_budget_total_usd" {
  type        = number
  description = "DAILY_BUDGET_TOTAL_USD: daily cap on the live spend of the whole deployment, every user together, in USD (UTC days). A live batch must fit both its user's budget and this cap. The default is ten times the default per-user budget ($25): at most $250 a day (about 6,400 images at $0.039), however many identities are admitted. 0 stops live runs."
  default     = 250

  validation {
    condition     = var.daily_budget_total_usd >= 0
    error_message = "daily_budget_total_usd must be >= 0."
  }
}

# ------------------------------------------------------------ allow-list ---

variable "auth_allow" {
  type        = list(string)
  description = "Who may call the public API with auth_mode = google (AUTH_ALLOW): e-mail addresses and \"*@domain\" entries, case-insensitive; tokens must carry email_verified. Service accounts (…gserviceaccount.com) are admitted only by their exact address. Required with auth_mode = google: a Google signature alone admits any Google identity."
  default     = []

  validation {
    condition     = alltrue([for e in var.auth_allow : can(regex("^([^@\\s,*]+|\\*)@[^@\\s,*]+$", e))])
    error_message = "auth_allow entries must be name@domain or *@domain."
  }
  validation {
    condition     = alltrue([for e in var.auth_allow : !can(regex("^\\*@(.+\\.)?gserviceaccount\\.com$", lower(e)))])
    error_message = "auth_allow: a *@ entry never admits service accounts; list each by its address."
  }
}

# ---------------------------------------------------------- dry-run queue ---

variable "dry_run_queue_name" {
  type        = string
  description = "Name of the Cloud Tasks queue for dry-run row tasks (TASKS_DRY_RUN_QUEUE). Empty: <queue name>-dry-run."
  default     = ""

  validation {
    condition     = var.dry_run_queue_name == "" || can(regex("^[A-Za-z0-9-]{1,100}$", var.dry_run_queue_name))
    error_message = "dry_run_queue_name may contain letters, digits and hyphens (1-100), or be empty."
  }
}

variable "tasks_dry_run_max_dispatches_per_second" {
  type        = number
  description = "Dry-run queue rate limit: dry-run row tasks dispatched per second. Dry runs are free but use generate's instances; their own limits keep them from crowding out live rows."
  default     = 5

  validation {
    condition     = var.tasks_dry_run_max_dispatches_per_second > 0 && var.tasks_dry_run_max_dispatches_per_second <= 500
    error_message = "tasks_dry_run_max_dispatches_per_second must be within (0, 500]."
  }
}

variable "tasks_dry_run_max_concurrent_dispatches" {
  type        = number
  description = "Dry-run queue limit: dry-run row tasks running at once. Generate's capacity must cover this plus tasks_max_concurrent_dispatches."
  default     = 20

  validation {
    condition     = var.tasks_dry_run_max_concurrent_dispatches >= 1 && var.tasks_dry_run_max_concurrent_dispatches <= 5000
    error_message = "tasks_dry_run_max_concurrent_dispatches must be between 1 and 5000."
  }
}
