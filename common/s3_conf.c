/* The keys of the S3 client (common/s3.c, s3_creds.c). Credentials are best
 * left out of the configuration altogether (environment, profile or web
 * identity); the keys exist for S3-compatible servers with static keys. */
#include "common/s3_conf.h"

const sn_conf_def_t sn_s3_conf_defs[] = {
    {"s3.region", SN_CONF_STR, "", 0, 0, NULL, 0,
     "AWS region of the bucket, also the signing region; empty takes AWS_REGION, then "
     "AWS_DEFAULT_REGION, then us-east-1."},
    {"s3.endpoint", SN_CONF_STR, "", 0, 0, NULL, 0,
     "Endpoint URL of an S3-compatible server, http(s)://host[:port]; empty uses AWS "
     "(https://s3.<region>.amazonaws.com)."},
    {"s3.addressing", SN_CONF_ENUM, "auto", 0, 0, "auto|path|virtual", 0,
     "Bucket addressing: virtual-hosted (bucket.host/key), path-style (host/bucket/key), or "
     "auto: virtual-hosted on AWS, path-style with s3.endpoint."},
    {"s3.access.key.id", SN_CONF_STR, "", 0, 0, NULL, 0,
     "Static access key id; empty uses the AWS credential chain (environment, shared "
     "credentials file, web identity, metadata)."},
    {"s3.secret.access.key", SN_CONF_STR, "", 0, 0, NULL, SN_CONF_F_SECRET,
     "Secret of s3.access.key.id. Prefer the environment or web identity."},
    {"s3.session.token", SN_CONF_STR, "", 0, 0, NULL, SN_CONF_F_SECRET,
     "Session token going with static temporary credentials."},
    {"s3.profile", SN_CONF_STR, "", 0, 0, NULL, 0,
     "Profile of the shared credentials file; empty takes AWS_PROFILE, then default."},
    {"s3.credentials.file", SN_CONF_STR, "", 0, 0, NULL, 0,
     "Shared credentials file; empty takes AWS_SHARED_CREDENTIALS_FILE, then "
     "~/.aws/credentials."},
    {"s3.role.arn", SN_CONF_STR, "", 0, 0, NULL, 0,
     "Role assumed with a web identity token (EKS IRSA); empty takes AWS_ROLE_ARN."},
    {"s3.web.identity.token.file", SN_CONF_STR, "", 0, 0, NULL, 0,
     "File holding the web identity token, read again at every renewal; empty takes "
     "AWS_WEB_IDENTITY_TOKEN_FILE."},
    {"s3.sts.endpoint", SN_CONF_STR, "", 0, 0, NULL, 0,
     "STS endpoint for AssumeRoleWithWebIdentity; empty takes AWS_STS_ENDPOINT_URL, then "
     "https://sts.<region>.amazonaws.com."},
    {"s3.sts.duration.s", SN_CONF_INT, "3600", 900, 43200, NULL, 0,
     "Lifetime asked for web identity credentials, in seconds."},
    {"s3.credentials.refresh.s", SN_CONF_INT, "300", 1, 43199, NULL, 0,
     "Expiring credentials are renewed this many seconds before they expire."},
    {"s3.credentials.metadata", SN_CONF_BOOL, "false", 0, 0, NULL, 0,
     "Also look for credentials at the container (ECS, EKS pod identity) and EC2 instance "
     "metadata endpoints, last in the chain."},
    {"s3.connect.timeout.ms", SN_CONF_INT, "5000", 100, 300000, NULL, 0,
     "Timeout of a TCP/TLS connection to S3, in milliseconds."},
    {"s3.request.timeout.ms", SN_CONF_INT, "120000", 1000, 3600000, NULL, 0,
     "Timeout of one S3 request (one part of a multipart upload), in milliseconds."},
    {"s3.max.retries", SN_CONF_INT, "4", 0, 20, NULL, 0,
     "Retries of one request on a 5xx answer, throttling (503 SlowDown, 429) or a timeout; "
     "the caller retries further with its own backoff."},
    {"s3.retry.backoff.ms", SN_CONF_INT, "200", 1, 60000, NULL, 0,
     "First retry delay bound; it doubles per retry up to s3.retry.backoff.max.ms, and the "
     "delay is drawn uniformly below it (full jitter)."},
    {"s3.retry.backoff.max.ms", SN_CONF_INT, "5000", 1, 600000, NULL, 0,
     "Largest retry delay bound, in milliseconds."},
    {"s3.multipart.threshold.bytes", SN_CONF_INT, "16777216", 5242880, 268435456.0, NULL, 0,
     "Files of at least this size are uploaded in parts (multipart upload); smaller ones in "
     "one PutObject, read into memory."},
    {"s3.part.bytes", SN_CONF_INT, "8388608", 5242880, 268435456.0, NULL, 0,
     "Size of a multipart upload part (S3's minimum is 5 MiB); one part is held in memory."},
    SN_CONF_END,
};
