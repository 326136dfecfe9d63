# Terraform and provider constraints. Only hashicorp/google is used: the function
# source archive is built by scripts/package.sh (not the archive provider) and no
# random names are needed (names derive from the project id).
terraform {
  required_version = ">= 1.5.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.0, < 7.0"
    }
  }
}

provider "google" {
  project = var.project
  region  = var.region

  default_labels = local.labels
}
