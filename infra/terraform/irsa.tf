# One IAM role per sentinel role, each assumable only by its own service account
# in the sentinel namespace (IRSA), each with the least it needs:
#   archiver  put objects under the archive prefix, and list it (at start, and
#             on each partition assignment it looks for files already uploaded)
#   trainer   read the archive, read and write the registry prefix
#   drift     read the archive and the registry; write the registry only with
#             var.drift_retrain_on_drift (sentinel drift --retrain-on-drift
#             registers a version and moves the alias)
#   scorer    read the registry prefix
# S3 encrypts with the stack's KMS key, so each also gets the key operations its
# S3 calls need, and only through S3.

locals {
  oidc_issuer = replace(aws_eks_cluster.this.identity[0].oidc[0].issuer, "https://", "")
  bucket_arn  = aws_s3_bucket.data.arn

  archive_objects  = "${local.bucket_arn}/${var.archive_prefix}*"
  registry_objects = "${local.bucket_arn}/${var.registry_prefix}*"

  roles = {
    scorer = {
      service_account = var.service_accounts.scorer
      list_prefixes   = [var.registry_prefix]
      read_objects    = [local.registry_objects]
      write_objects   = []
    }
    archiver = {
      service_account = var.service_accounts.archiver
      list_prefixes   = [var.archive_prefix]
      read_objects    = []
      write_objects   = [local.archive_objects]
    }
    trainer = {
      service_account = var.service_accounts.trainer
      list_prefixes   = [var.archive_prefix, var.registry_prefix]
      read_objects    = [local.archive_objects, local.registry_objects]
      write_objects   = [local.registry_objects]
    }
    drift = {
      service_account = var.service_accounts.drift
      list_prefixes   = [var.archive_prefix, var.registry_prefix]
      read_objects    = [local.archive_objects, local.registry_objects]
      write_objects   = var.drift_retrain_on_drift ? [local.registry_objects] : []
    }
  }
}

data "aws_iam_policy_document" "irsa_assume" {
  for_each = local.roles

  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [aws_iam_openid_connect_provider.eks.arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:sub"
      values   = ["system:serviceaccount:${var.namespace}:${each.value.service_account}"]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "irsa" {
  for_each = local.roles

  name                 = "${local.name}-${each.key}"
  description          = "sentinel ${each.key} (IRSA, ${var.namespace}/${each.value.service_account})"
  assume_role_policy   = data.aws_iam_policy_document.irsa_assume[each.key].json
  max_session_duration = 3600
}

data "aws_iam_policy_document" "irsa" {
  for_each = local.roles

  dynamic "statement" {
    for_each = length(each.value.list_prefixes) > 0 ? [1] : []
    content {
      sid       = "ListOwnPrefixes"
      actions   = ["s3:ListBucket"]
      resources = [local.bucket_arn]
      condition {
        test     = "StringLike"
        variable = "s3:prefix"
        values   = [for p in each.value.list_prefixes : "${p}*"]
      }
    }
  }

  dynamic "statement" {
    for_each = length(each.value.read_objects) > 0 ? [1] : []
    content {
      sid       = "ReadObjects"
      actions   = ["s3:GetObject", "s3:GetObjectVersion"]
      resources = each.value.read_objects
    }
  }

  dynamic "statement" {
    for_each = length(each.value.write_objects) > 0 ? [1] : []
    content {
      sid       = "WriteObjects"
      actions   = ["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]
      resources = each.value.write_objects
    }
  }

  # Reading an SSE-KMS object needs Decrypt; writing needs GenerateDataKey, and
  # Decrypt too for multipart uploads. Only when S3 calls on the role's behalf.
  statement {
    sid = "KeyThroughS3"
    actions = concat(
      ["kms:Decrypt"],
      length(each.value.write_objects) > 0 ? ["kms:GenerateDataKey"] : [],
    )
    resources = [aws_kms_key.this.arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${local.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "irsa" {
  for_each = local.roles

  name   = "s3-${each.key}"
  role   = aws_iam_role.irsa[each.key].id
  policy = data.aws_iam_policy_document.irsa[each.key].json
}
