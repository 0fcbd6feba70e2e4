terraform {
  # Terraform >= 1.6 or OpenTofu >= 1.6.
  required_version = ">= 1.6.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 6.0"
    }
  }

  # State in S3 with locking; the bucket, key and region come from
  # `-backend-config=backend.hcl` (see docs/deploy.md).
  backend "s3" {}
}
