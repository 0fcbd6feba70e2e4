output "cluster_name" {
  description = "EKS cluster name (aws eks update-kubeconfig --name ...)."
  value       = aws_eks_cluster.this.name
}

output "cluster_endpoint" {
  description = "EKS API endpoint."
  value       = aws_eks_cluster.this.endpoint
}

output "oidc_provider_arn" {
  description = "The IRSA OIDC provider."
  value       = aws_iam_openid_connect_provider.eks.arn
}

output "vpc_id" {
  description = "VPC id."
  value       = aws_vpc.this.id
}

output "vpc_cidr" {
  description = "VPC CIDR (the chart's networkPolicy.egress.sts.cidrs: STS is a VPC endpoint)."
  value       = aws_vpc.this.cidr_block
}

output "private_subnet_cidrs" {
  description = "Private subnets, where MSK and ElastiCache live (networkPolicy.egress.kafka/redis.cidrs)."
  value       = aws_subnet.private[*].cidr_block
}

output "msk_bootstrap_brokers_sasl_scram" {
  description = "Kafka bootstrap servers, SASL/SCRAM over TLS (the chart's kafka.bootstrapServers)."
  value       = aws_msk_cluster.this.bootstrap_brokers_sasl_scram
}

output "msk_scram_secret_arn" {
  description = "Secrets Manager secret with the SCRAM username and password (sync it to the Kubernetes Secret named in secretEnv.kafkaSaslPassword and keda.auth)."
  value       = aws_secretsmanager_secret.msk_scram.arn
}

output "redis_endpoint" {
  description = "ElastiCache endpoint (TLS, port 6379): the configuration endpoint in cluster mode, else the primary."
  value = coalesce(
    aws_elasticache_replication_group.this.configuration_endpoint_address,
    aws_elasticache_replication_group.this.primary_endpoint_address,
  )
}

output "redis_auth_secret_arn" {
  description = "Secrets Manager secret with the Redis AUTH token (secretEnv.redisPassword)."
  value       = aws_secretsmanager_secret.redis_auth.arn
}

output "bucket" {
  description = "Archive and registry bucket."
  value       = aws_s3_bucket.data.bucket
}

output "kms_key_arn" {
  description = "The customer-managed key of the stack."
  value       = aws_kms_key.this.arn
}

output "role_arns" {
  description = "IRSA role of each sentinel role."
  value       = { for k, r in aws_iam_role.irsa : k => r.arn }
}

# The chart's values that come from this stack, in the chart's shape:
#   terraform output -json helm_values > infra-values.json
#   helm upgrade --install sentinel helm/sentinel -f production.yaml -f infra-values.json
output "helm_values" {
  description = "Values for helm/sentinel (merge over the environment's values file)."
  value = {
    kafka = {
      bootstrapServers = aws_msk_cluster.this.bootstrap_brokers_sasl_scram
      partitions       = var.telemetry_partitions
    }
    scorer   = { serviceAccount = { name = var.service_accounts.scorer, roleArn = aws_iam_role.irsa["scorer"].arn } }
    archiver = { serviceAccount = { name = var.service_accounts.archiver, roleArn = aws_iam_role.irsa["archiver"].arn } }
    train    = { serviceAccount = { name = var.service_accounts.trainer, roleArn = aws_iam_role.irsa["trainer"].arn } }
    drift = {
      serviceAccount = { name = var.service_accounts.drift, roleArn = aws_iam_role.irsa["drift"].arn }
      # The role may write the registry only when this is on.
      retrainOnDrift = var.drift_retrain_on_drift
    }
    archive  = { url = "s3://${aws_s3_bucket.data.bucket}/${trimsuffix(var.archive_prefix, "/")}" }
    registry = { url = "s3://${aws_s3_bucket.data.bucket}/${trimsuffix(var.registry_prefix, "/")}" }
    s3       = { region = local.region }
    networkPolicy = {
      egress = {
        kafka = { cidrs = aws_subnet.private[*].cidr_block, ports = [9096] }
        redis = { cidrs = aws_subnet.private[*].cidr_block, ports = [6379] }
        sts   = { cidrs = [aws_vpc.this.cidr_block], ports = [443] }
        s3    = { cidrs = ["0.0.0.0/0"], ports = [443] }
      }
    }
  }
}

# Settings of the binary that come from this stack (helm_values already carries
# the archive and registry URLs and the region).
output "sentinel_settings" {
  description = "Endpoints and names the sentinel configuration needs."
  value = {
    region          = local.region
    bucket          = aws_s3_bucket.data.bucket
    archive_prefix  = var.archive_prefix
    registry_prefix = var.registry_prefix
    redis_endpoint = coalesce(
      aws_elasticache_replication_group.this.configuration_endpoint_address,
      aws_elasticache_replication_group.this.primary_endpoint_address,
    )
    kafka_sasl_username = var.msk_scram_username
  }
}

output "kafka_topics" {
  description = "Topics to create on MSK (auto-creation is off): name => partitions and topic config (docs/deploy.md)."
  value       = local.kafka_topics
}
