# MSK with SASL/SCRAM over TLS (librdkafka speaks SCRAM natively; MSK IAM auth
# would need an OAUTHBEARER token provider in the binary). Brokers accept
# clients on 9096 from the EKS nodes only.

resource "aws_security_group" "msk" {
  name        = "${local.name}-msk"
  description = "MSK brokers: SASL/SCRAM over TLS from the EKS nodes"
  vpc_id      = aws_vpc.this.id
  tags        = { Name = "${local.name}-msk" }
}

resource "aws_vpc_security_group_ingress_rule" "msk_from_nodes" {
  security_group_id            = aws_security_group.msk.id
  description                  = "Kafka SASL_SSL from the EKS cluster"
  referenced_security_group_id = aws_eks_cluster.this.vpc_config[0].cluster_security_group_id
  ip_protocol                  = "tcp"
  from_port                    = 9096
  to_port                      = 9096
}

# The topics sentinel uses, with the binary's default names (docs/CONFIG.md).
# Brokers do not create topics on first use (auto.create.topics.enable=false)
# and the aws provider has no topic resource, so they are created once with
# kafka-topics.sh from output kafka_topics (docs/deploy.md). The per-event
# topics are keyed by machine id like telemetry and get its partitions.
locals {
  kafka_topics = {
    "telemetry"               = { partitions = var.telemetry_partitions, config = {} }
    "telemetry.scores"        = { partitions = var.telemetry_partitions, config = {} }
    "telemetry.shadow-scores" = { partitions = var.telemetry_partitions, config = {} }
    "telemetry.dlq"           = { partitions = var.telemetry_partitions, config = {} }
    "machine-failures"        = { partitions = var.telemetry_partitions, config = {} }
    # One event per drift run (and one per retrain): an audit trail, kept 90 days.
    "drift-events" = { partitions = 1, config = { "retention.ms" = "7776000000" } }
  }
}

resource "aws_msk_configuration" "this" {
  name           = local.name
  kafka_versions = [var.kafka_version]

  server_properties = <<-PROPERTIES
    auto.create.topics.enable=false
    default.replication.factor=3
    min.insync.replicas=2
    num.partitions=${var.telemetry_partitions}
    unclean.leader.election.enable=false
    log.retention.hours=168
  PROPERTIES
}

resource "aws_cloudwatch_log_group" "msk" {
  name              = "/aws/msk/${local.name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this.arn
}

resource "aws_msk_cluster" "this" {
  cluster_name           = local.name
  kafka_version          = var.kafka_version
  number_of_broker_nodes = var.az_count * var.msk_brokers_per_az

  broker_node_group_info {
    instance_type   = var.msk_broker_instance_type
    client_subnets  = aws_subnet.private[*].id
    security_groups = [aws_security_group.msk.id]

    storage_info {
      ebs_storage_info {
        volume_size = var.msk_volume_size_gb
      }
    }
  }

  client_authentication {
    unauthenticated = false
    sasl {
      scram = true
    }
  }

  encryption_info {
    encryption_at_rest_kms_key_arn = aws_kms_key.this.arn
    encryption_in_transit {
      client_broker = "TLS"
      in_cluster    = true
    }
  }

  configuration_info {
    arn      = aws_msk_configuration.this.arn
    revision = aws_msk_configuration.this.latest_revision
  }

  logging_info {
    broker_logs {
      cloudwatch_logs {
        enabled   = true
        log_group = aws_cloudwatch_log_group.msk.name
      }
    }
  }
}

# The SCRAM credentials: MSK reads secrets named AmazonMSK_* encrypted with a
# customer-managed key. The password is generated once; rotate it by changing
# the secret (and the Kubernetes Secret synced from it).
data "aws_secretsmanager_random_password" "msk" {
  password_length     = 40
  exclude_punctuation = true
}

resource "aws_secretsmanager_secret" "msk_scram" {
  name       = "AmazonMSK_${local.name}_sentinel"
  kms_key_id = aws_kms_key.this.arn
}

resource "aws_secretsmanager_secret_version" "msk_scram" {
  secret_id = aws_secretsmanager_secret.msk_scram.id
  secret_string = jsonencode({
    username = var.msk_scram_username
    password = data.aws_secretsmanager_random_password.msk.random_password
  })

  lifecycle {
    ignore_changes = [secret_string]
  }
}

resource "aws_secretsmanager_secret_policy" "msk_scram" {
  secret_arn = aws_secretsmanager_secret.msk_scram.arn
  policy     = data.aws_iam_policy_document.msk_scram_secret.json
}

data "aws_iam_policy_document" "msk_scram_secret" {
  statement {
    sid       = "AWSKafkaResourcePolicy"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.msk_scram.arn]
    principals {
      type        = "Service"
      identifiers = ["kafka.amazonaws.com"]
    }
  }
}

resource "aws_msk_scram_secret_association" "this" {
  cluster_arn     = aws_msk_cluster.this.arn
  secret_arn_list = [aws_secretsmanager_secret.msk_scram.arn]

  depends_on = [aws_secretsmanager_secret_version.msk_scram]
}
