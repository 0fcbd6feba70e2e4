# tflint configuration for infra/terraform (tests/deploy/check_terraform.sh).
# Only the bundled "terraform" ruleset: plugins (e.g. the AWS ruleset) would be
# downloaded from GitHub, which cannot be reached here.
config {
  call_module_type = "none"
}

plugin "terraform" {
  enabled = true
  preset  = "all"
}
