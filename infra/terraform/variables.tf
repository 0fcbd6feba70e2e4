variable "name" {
  description = "Prefix of every resource name."
  type        = string
  default     = "sentinel"
}

variable "environment" {
  description = "Environment name (prod, staging, ...), part of every resource name."
  type        = string
  default     = "prod"
}

variable "region" {
  description = "AWS region."
  type        = string
  default     = "eu-west-1"
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}

# --- network ----------------------------------------------------------------

variable "vpc_cidr" {
  description = "CIDR of the VPC; split into one public and one private subnet per AZ."
  type        = string
  default     = "10.40.0.0/16"
}

variable "az_count" {
  description = "Availability zones used (MSK needs its broker count to be a multiple)."
  type        = number
  default     = 3

  validation {
    condition     = var.az_count >= 2 && var.az_count <= 3
    error_message = "az_count must be 2 or 3."
  }
}

variable "single_nat_gateway" {
  description = "One NAT gateway for all AZs (cheaper) instead of one per AZ."
  type        = bool
  default     = false
}

# --- EKS --------------------------------------------------------------------

variable "kubernetes_version" {
  description = "EKS Kubernetes version (the chart's checks validate against the same)."
  type        = string
  default     = "1.34"
}

variable "cluster_endpoint_public_access_cidrs" {
  description = "Who may reach the EKS API endpoint publicly; empty makes it private only."
  type        = list(string)
  default     = []
}

variable "node_instance_types" {
  description = "Instance types of the managed node group."
  type        = list(string)
  default     = ["m7i.xlarge"]
}

variable "node_min_size" {
  type        = number
  description = "Managed node group minimum size."
  default     = 3
}

variable "node_desired_size" {
  type        = number
  description = "Managed node group desired size."
  default     = 3
}

variable "node_max_size" {
  type        = number
  description = "Managed node group maximum size."
  default     = 12
}

variable "namespace" {
  description = "Kubernetes namespace of the sentinel release (IRSA trust is bound to it)."
  type        = string
  default     = "sentinel"
}

variable "service_accounts" {
  description = "Service account of each role, as the chart names them (<release>-sentinel-<role> for release \"sentinel\" is sentinel-<role>)."
  type = object({
    scorer   = string
    archiver = string
    trainer  = string
    drift    = string
  })
  default = {
    scorer   = "sentinel-scorer"
    archiver = "sentinel-archiver"
    trainer  = "sentinel-train"
    drift    = "sentinel-drift"
  }
}

# --- MSK --------------------------------------------------------------------

variable "kafka_version" {
  description = "MSK Kafka version."
  type        = string
  default     = "3.8.x"
}

variable "msk_broker_instance_type" {
  description = "MSK broker instance type."
  type        = string
  default     = "kafka.m7g.large"
}

variable "msk_brokers_per_az" {
  description = "Brokers per availability zone."
  type        = number
  default     = 1
}

variable "msk_volume_size_gb" {
  description = "EBS volume per broker, GiB."
  type        = number
  default     = 500
}

variable "telemetry_partitions" {
  description = "Partitions of the telemetry topic and of the per-event topics keyed like it (kafka_topics); the chart's kafka.partitions (helm_values) is this."
  type        = number
  default     = 24
}

variable "msk_scram_username" {
  description = "SASL/SCRAM user of the sentinel consumers and producers."
  type        = string
  default     = "sentinel"
}

# --- ElastiCache ------------------------------------------------------------

variable "redis_engine_version" {
  description = "ElastiCache Redis OSS engine version."
  type        = string
  default     = "7.1"
}

variable "redis_node_type" {
  description = "ElastiCache node type."
  type        = string
  default     = "cache.r7g.large"
}

variable "redis_replicas_per_shard" {
  description = "Replicas per shard (>= 1 for automatic failover)."
  type        = number
  default     = 1
}

variable "redis_shards" {
  description = "Shards (node groups). Sentinel's keys carry a hash tag per machine, so cluster mode works."
  type        = number
  default     = 1
}

# --- S3 ---------------------------------------------------------------------

variable "bucket_name" {
  description = "Archive and model registry bucket; default <name>-<environment>-<account id>."
  type        = string
  default     = ""
}

variable "archive_prefix" {
  description = "Key prefix of the archived telemetry (written by the archiver)."
  type        = string
  default     = "archive/"

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9._/-]*/$", var.archive_prefix))
    error_message = "archive_prefix must end with a slash."
  }
}

variable "registry_prefix" {
  description = "Key prefix of the model registry (written by train and drift, read by the scorer)."
  type        = string
  default     = "registry/"

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9._/-]*/$", var.registry_prefix))
    error_message = "registry_prefix must end with a slash."
  }
}

variable "drift_retrain_on_drift" {
  description = "The drift CronJob runs with --retrain-on-drift (the chart's drift.retrainOnDrift, passed on in helm_values): its role may then write the registry prefix."
  type        = bool
  default     = false
}

variable "archive_transition_ia_days" {
  description = "Days after which archived objects move to STANDARD_IA."
  type        = number
  default     = 30
}

variable "archive_transition_glacier_days" {
  description = "Days after which archived objects move to GLACIER_IR."
  type        = number
  default     = 90
}

variable "archive_expiration_days" {
  description = "Days after which archived objects expire; 0 keeps them."
  type        = number
  default     = 0
}

variable "noncurrent_version_expiration_days" {
  description = "Days a replaced or deleted object version is kept."
  type        = number
  default     = 30
}

variable "log_retention_days" {
  description = "CloudWatch retention of the EKS and MSK logs."
  type        = number
  default     = 30
}
