# Redis for the rolling feature state: TLS in transit, encrypted at rest with
# the stack's key, an AUTH token from Secrets Manager, failover across AZs.

resource "aws_security_group" "redis" {
  name        = "${local.name}-redis"
  description = "ElastiCache Redis from the EKS nodes"
  vpc_id      = aws_vpc.this.id
  tags        = { Name = "${local.name}-redis" }
}

resource "aws_vpc_security_group_ingress_rule" "redis_from_nodes" {
  security_group_id            = aws_security_group.redis.id
  description                  = "Redis TLS from the EKS cluster"
  referenced_security_group_id = aws_eks_cluster.this.vpc_config[0].cluster_security_group_id
  ip_protocol                  = "tcp"
  from_port                    = 6379
  to_port                      = 6379
}

resource "aws_elasticache_subnet_group" "this" {
  name       = local.name
  subnet_ids = aws_subnet.private[*].id
}

data "aws_secretsmanager_random_password" "redis" {
  password_length     = 64
  exclude_punctuation = true
}

resource "aws_secretsmanager_secret" "redis_auth" {
  name       = "${local.name}/redis-auth"
  kms_key_id = aws_kms_key.this.arn
}

resource "aws_secretsmanager_secret_version" "redis_auth" {
  secret_id     = aws_secretsmanager_secret.redis_auth.id
  secret_string = jsonencode({ password = data.aws_secretsmanager_random_password.redis.random_password })

  lifecycle {
    ignore_changes = [secret_string]
  }
}

resource "aws_elasticache_replication_group" "this" {
  replication_group_id = local.name
  description          = "${local.name}: rolling feature state per machine"
  engine               = "redis"
  engine_version       = var.redis_engine_version
  node_type            = var.redis_node_type
  port                 = 6379
  parameter_group_name = var.redis_shards > 1 ? "default.redis7.cluster.on" : "default.redis7"

  num_node_groups         = var.redis_shards
  replicas_per_node_group = var.redis_replicas_per_shard

  automatic_failover_enabled = var.redis_replicas_per_shard > 0
  multi_az_enabled           = var.redis_replicas_per_shard > 0

  subnet_group_name  = aws_elasticache_subnet_group.this.name
  security_group_ids = [aws_security_group.redis.id]

  at_rest_encryption_enabled = true
  kms_key_id                 = aws_kms_key.this.arn
  transit_encryption_enabled = true
  auth_token                 = jsondecode(aws_secretsmanager_secret_version.redis_auth.secret_string).password

  snapshot_retention_limit = 1
  apply_immediately        = false

  lifecycle {
    ignore_changes = [auth_token]
  }
}
