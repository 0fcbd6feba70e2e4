/* The S3 client (common/s3.c) and its credential chain (common/s3_creds.c)
 * against a small fake S3 served by libmicrohttpd in the test process: it
 * checks what every request carries (payload hash, Content-MD5, no Expect,
 * a signature) and injects faults (5xx, 503 SlowDown, slow answers, failing
 * parts). The real signature check is done by s3s-fs in the integration test
 * and by the botocore table in test_s3_sigv4.c. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/err.h"
#include "common/s3.h"

#define MAX_OBJS 64
#define BODY_MAX (32u << 20)

struct obj {
    char key[512];
    char *data;
    size_t len;
};

static struct fake {
    struct MHD_Daemon *d;
    int port;
    pthread_mutex_t mu;
    /* faults */
    int fail_next, fail_status;
    const char *fail_code;
    int fail_parts; /* UploadPart always fails with 500 */
    int delay_next_ms, delay_count;
    /* what was seen */
    int nreq, bad, saw_expect, initiated, completed, aborted, parts, lists;
    char host[256], last_auth[1024], last_token[256], sts_token[256];
    int sts_calls, sts_expiry_s;
    struct obj objs[MAX_OBJS];
    int nobjs;
    char *partbuf[16];
    size_t partlen[16];
} F;

struct conn {
    char *body;
    size_t len;
};

static struct obj *find(const char *key) {
    for (int i = 0; i < F.nobjs; i++)
        if (strcmp(F.objs[i].key, key) == 0) return &F.objs[i];
    return NULL;
}

static void store(const char *key, const char *data, size_t len) {
    struct obj *o = find(key);

    if (!o) {
        cr_assert_lt(F.nobjs, MAX_OBJS);
        o = &F.objs[F.nobjs++];
        snprintf(o->key, sizeof(o->key), "%s", key);
    } else {
        free(o->data);
    }
    o->data = malloc(len + 1);
    memcpy(o->data, data, len);
    o->len = len;
}

static enum MHD_Result reply(struct MHD_Connection *c, int status, const char *body,
                             const char *etag) {
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    enum MHD_Result ret;

    if (etag) MHD_add_response_header(r, "ETag", etag);
    ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

static int obj_cmp(const void *a, const void *b) {
    return strcmp(((const struct obj *)a)->key, ((const struct obj *)b)->key);
}

static enum MHD_Result handle(struct MHD_Connection *c, const char *url, const char *method,
                              const char *body, size_t len) {
    const char *q_uploads = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "uploads");
    const char *q_uid = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "uploadId");
    const char *q_part = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "partNumber");
    const char *q_list = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "list-type");
    const char *sha = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "x-amz-content-sha256");
    const char *md5 = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-MD5");
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host");
    const char *tok = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "x-amz-security-token");
    const char *key;
    char want[SN_S3_SHA256_HEX], wmd5[32], xml[8192];

    F.nreq++;
    snprintf(F.host, sizeof(F.host), "%s", host ? host : "");
    snprintf(F.last_auth, sizeof(F.last_auth), "%s", auth ? auth : "");
    snprintf(F.last_token, sizeof(F.last_token), "%s", tok ? tok : "");
    if (MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Expect")) F.saw_expect = 1;
    if (strcmp(method, "POST") == 0 && strcmp(url, "/sts") == 0) {
        /* a fake STS: AssumeRoleWithWebIdentity with a short expiry */
        const char *t = strstr(body ? body : "", "WebIdentityToken=");
        char exp[64];
        time_t e = time(NULL) + F.sts_expiry_s;
        struct tm tm;

        F.sts_calls++;
        snprintf(F.sts_token, sizeof(F.sts_token), "%s", t ? t + 17 : "");
        gmtime_r(&e, &tm);
        strftime(exp, sizeof(exp), "%Y-%m-%dT%H:%M:%SZ", &tm);
        snprintf(
            xml, sizeof(xml),
            "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>"
            "<AccessKeyId>ASIA%d</AccessKeyId><SecretAccessKey>sts&amp;secret</SecretAccessKey>"
            "<SessionToken>session-%d</SessionToken><Expiration>%s</Expiration></Credentials>"
            "</AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>",
            F.sts_calls, F.sts_calls, exp);
        return reply(c, 200, xml, NULL);
    }
    if (strcmp(url, "/creds") == 0)
        return reply(c, 200,
                     "{\"AccessKeyId\":\"AKCONT\",\"SecretAccessKey\":\"s\",\"Token\":\"t\","
                     "\"Expiration\":\"2999-01-01T00:00:00Z\"}",
                     NULL);
    if (!auth || strncmp(auth, "AWS4-HMAC-SHA256 Credential=", 28) != 0 || !sha) F.bad++;
    sn_s3_sha256_hex(body ? body : "", len, want);
    if (sha && strcmp(sha, want) != 0) F.bad++;
    if (md5) {
        sn_s3_md5_base64(body ? body : "", len, wmd5);
        if (strcmp(md5, wmd5) != 0) F.bad++;
    }
    if (F.delay_count > 0) {
        F.delay_count--;
        usleep((useconds_t)F.delay_next_ms * 1000);
    }
    if (F.fail_next > 0) {
        F.fail_next--;
        snprintf(xml, sizeof(xml), "<Error><Code>%s</Code><Message>x</Message></Error>",
                 F.fail_code ? F.fail_code : "InternalError");
        return reply(c, F.fail_status, xml, NULL);
    }
    if (strncmp(url, "/bkt", 4) != 0)
        return reply(c, 404, "<Error><Code>NoSuchBucket</Code></Error>", NULL);
    key = url[4] == '/' ? url + 5 : "";
    if (strcmp(method, "POST") == 0 && q_uploads) {
        F.initiated++;
        for (int i = 0; i < 16; i++) free(F.partbuf[i]), F.partbuf[i] = NULL, F.partlen[i] = 0;
        return reply(c, 200,
                     "<InitiateMultipartUploadResult><UploadId>up/1+x=</UploadId>"
                     "</InitiateMultipartUploadResult>",
                     NULL);
    }
    if (strcmp(method, "PUT") == 0 && q_part) {
        int n = (int)strtol(q_part, NULL, 10);

        cr_assert_str_eq(q_uid, "up/1+x=");
        if (F.fail_parts) return reply(c, 500, "<Error><Code>InternalError</Code></Error>", NULL);
        cr_assert(n >= 1 && n <= 16);
        F.parts++;
        free(F.partbuf[n - 1]);
        F.partbuf[n - 1] = malloc(len + 1);
        memcpy(F.partbuf[n - 1], body, len);
        F.partlen[n - 1] = len;
        snprintf(xml, sizeof(xml), "\"etag-%d\"", n);
        return reply(c, 200, "", xml);
    }
    if (strcmp(method, "POST") == 0 && q_uid) {
        size_t total = 0, o = 0;
        char *all;

        for (int i = 0; i < 16 && F.partbuf[i]; i++) total += F.partlen[i];
        all = malloc(total + 1);
        for (int i = 0; i < 16 && F.partbuf[i]; i++) {
            char tag[64];

            snprintf(tag, sizeof(tag), "<ETag>\"etag-%d\"</ETag>", i + 1);
            cr_assert(strstr(body, tag), "complete lists part %d", i + 1);
            memcpy(all + o, F.partbuf[i], F.partlen[i]);
            o += F.partlen[i];
        }
        store(key, all, total);
        free(all);
        F.completed++;
        return reply(c, 200, "<CompleteMultipartUploadResult/>", NULL);
    }
    if (strcmp(method, "DELETE") == 0 && q_uid) {
        F.aborted++;
        return reply(c, 204, "", NULL);
    }
    if (strcmp(method, "PUT") == 0) {
        const char *inm = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "If-None-Match");

        if (inm && strcmp(inm, "*") == 0 && find(key))
            return reply(c, 412, "<Error><Code>PreconditionFailed</Code></Error>", NULL);
        store(key, body ? body : "", len);
        return reply(c, 200, "", "\"x\"");
    }
    if (strcmp(method, "GET") == 0 && q_list) {
        const char *prefix = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "prefix");
        const char *cont =
            MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "continuation-token");
        int start = cont ? (int)strtol(cont, NULL, 10) : 0, shown = 0, i;
        size_t o = 0;

        F.lists++;
        qsort(F.objs, (size_t)F.nobjs, sizeof(F.objs[0]), obj_cmp);
        o += (size_t)snprintf(xml + o, sizeof(xml) - o, "<ListBucketResult>");
        for (i = start; i < F.nobjs && shown < 2; i++) { /* pages of 2 force continuations */
            if (prefix && strncmp(F.objs[i].key, prefix, strlen(prefix)) != 0) continue;
            o +=
                (size_t)snprintf(xml + o, sizeof(xml) - o,
                                 "<Contents><Key>%s</Key><Size>%zu</Size><ETag>&quot;e&quot;</ETag>"
                                 "</Contents>",
                                 F.objs[i].key, F.objs[i].len);
            shown++;
        }
        if (i < F.nobjs)
            o += (size_t)snprintf(xml + o, sizeof(xml) - o,
                                  "<IsTruncated>true</IsTruncated><NextContinuationToken>%d"
                                  "</NextContinuationToken>",
                                  i);
        else
            o += (size_t)snprintf(xml + o, sizeof(xml) - o, "<IsTruncated>false</IsTruncated>");
        snprintf(xml + o, sizeof(xml) - o, "</ListBucketResult>");
        return reply(c, 200, xml, NULL);
    }
    if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0) {
        struct obj *ob = find(key);
        struct MHD_Response *r;
        enum MHD_Result ret;

        if (!ob) return reply(c, 404, "<Error><Code>NoSuchKey</Code></Error>", NULL);
        r = MHD_create_response_from_buffer(ob->len, ob->data, MHD_RESPMEM_MUST_COPY);
        ret = MHD_queue_response(c, 200, r);
        MHD_destroy_response(r);
        return ret;
    }
    if (strcmp(method, "DELETE") == 0) {
        struct obj *ob = find(key);

        if (ob) {
            free(ob->data);
            *ob = F.objs[--F.nobjs];
        }
        return reply(c, 204, "", NULL);
    }
    return reply(c, 400, "<Error><Code>BadRequest</Code></Error>", NULL);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls) {
    struct conn *cn = *con_cls;
    enum MHD_Result r;

    (void)cls;
    (void)version;
    if (!cn) {
        *con_cls = calloc(1, sizeof(struct conn));
        return MHD_YES;
    }
    if (*upload_size) {
        cn->body = realloc(cn->body, cn->len + *upload_size + 1);
        memcpy(cn->body + cn->len, upload, *upload_size);
        cn->len += *upload_size;
        cn->body[cn->len] = '\0';
        *upload_size = 0;
        return MHD_YES;
    }
    pthread_mutex_lock(&F.mu);
    r = handle(c, url, method, cn->body, cn->len);
    pthread_mutex_unlock(&F.mu);
    return r;
}

static void on_done(void *cls, struct MHD_Connection *c, void **con_cls,
                    enum MHD_RequestTerminationCode toe) {
    struct conn *cn = *con_cls;

    (void)cls;
    (void)c;
    (void)toe;
    if (cn) free(cn->body);
    free(cn);
    *con_cls = NULL;
}

static void fake_start(void) {
    const union MHD_DaemonInfo *info;

    memset(&F, 0, sizeof(F));
    pthread_mutex_init(&F.mu, NULL);
    F.sts_expiry_s = 3600;
    F.d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0, NULL,
                           NULL, on_request, NULL, MHD_OPTION_NOTIFY_COMPLETED, on_done, NULL,
                           MHD_OPTION_SOCK_ADDR, NULL, MHD_OPTION_END);
    cr_assert_not_null(F.d);
    info = MHD_get_daemon_info(F.d, MHD_DAEMON_INFO_BIND_PORT);
    F.port = info->port;
    /* nothing in these tests may reach a real metadata endpoint */
    setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
    unsetenv("AWS_ROLE_ARN");
    unsetenv("AWS_WEB_IDENTITY_TOKEN_FILE");
    unsetenv("AWS_PROFILE");
    unsetenv("AWS_SESSION_TOKEN");
    setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent", 1);
    setenv("AWS_ACCESS_KEY_ID", "AKTEST", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "secret", 1);
}

static void fake_stop(void) {
    MHD_stop_daemon(F.d);
    for (int i = 0; i < F.nobjs; i++) free(F.objs[i].data);
    for (int i = 0; i < 16; i++) free(F.partbuf[i]);
}

/* A client of the fake with a request timeout of timeout_ms: short where a
 * test waits for timeouts, long where 5 MiB parts go through the fake under
 * ASan on a loaded machine (1.5 s was not always enough there). */
static sn_s3_t *client_timeout(int path_style, long timeout_ms) {
    char ep[64], errstr[256];
    sn_s3_opts_t o;
    sn_s3_t *s3;

    snprintf(ep, sizeof(ep), "http://%s:%d", path_style ? "127.0.0.1" : "localhost", F.port);
    memset(&o, 0, sizeof(o));
    o.bucket = "bkt";
    o.region = "us-east-1";
    o.endpoint = ep;
    o.addressing = path_style ? SN_S3_ADDR_PATH : SN_S3_ADDR_VIRTUAL;
    o.max_retries = 3;
    o.backoff_ms = 5;
    o.backoff_max_ms = 20;
    o.timeout_ms = timeout_ms;
    o.multipart_threshold = 6u << 20;
    o.part_size = 5u << 20;
    s3 = sn_s3_new_opts(&o, errstr, sizeof(errstr));
    cr_assert_not_null(s3, "%s", errstr);
    return s3;
}

static sn_s3_t *client(int path_style) { return client_timeout(path_style, 1500); }

TestSuite(s3, .init = fake_start, .fini = fake_stop, .timeout = 60);

Test(s3, put_get_head_delete_with_checksums) {
    sn_s3_t *s3 = client(1);
    char errstr[256], *got = NULL;
    size_t len = 0;
    int64_t size = -1;

    cr_assert_eq(sn_s3_put(s3, "a b/c+d=é.avro", "hello", 5, "avro/binary", errstr, sizeof(errstr)),
                 0, "%s", errstr);
    cr_assert_not_null(find("a b/c+d=é.avro"), "the key arrives unchanged");
    cr_assert_eq(sn_s3_get(s3, "a b/c+d=é.avro", &got, &len, 1024, errstr, sizeof(errstr)), 0);
    cr_assert_eq(len, 5);
    cr_assert_str_eq(got, "hello");
    free(got);
    cr_assert_eq(sn_s3_get(s3, "a b/c+d=é.avro", &got, &len, 3, errstr, sizeof(errstr)),
                 SN_ERR_NOMEM, "bounded download");
    cr_assert_eq(sn_s3_head(s3, "a b/c+d=é.avro", &size, errstr, sizeof(errstr)), 0);
    cr_assert_eq(size, 5);
    cr_assert_eq(sn_s3_delete(s3, "a b/c+d=é.avro", errstr, sizeof(errstr)), 0);
    cr_assert_eq(sn_s3_head(s3, "a b/c+d=é.avro", &size, errstr, sizeof(errstr)), SN_ERR_NOENT);
    cr_assert_eq(sn_s3_delete(s3, "never", errstr, sizeof(errstr)), 0, "deleting nothing is fine");
    cr_assert_eq(F.bad, 0, "every request had a signature and the right payload hash and MD5");
    cr_assert_eq(F.saw_expect, 0, "no Expect: 100-continue");
    sn_s3_destroy(s3);
}

/* The conditional PUT: the header is signed and sent, a 412 is the answer
 * "exists" (1, not an error, not retried, nothing overwritten), a 409
 * conflict is retried, and an unconditional PUT still overwrites. */
Test(s3, put_if_absent) {
    sn_s3_t *s3 = client(1);
    char errstr[256], *got = NULL;
    size_t len = 0;
    sn_s3_stats_t st;

    cr_assert_eq(sn_s3_put_if_absent(s3, "claim", "first", 5, NULL, errstr, sizeof(errstr)), 0,
                 "%s", errstr);
    cr_assert_eq(sn_s3_put_if_absent(s3, "claim", "second", 6, NULL, errstr, sizeof(errstr)), 1,
                 "%s", errstr);
    cr_assert(strstr(errstr, "412"), "%s", errstr);
    cr_assert(strstr(F.last_auth, "if-none-match"), "If-None-Match is signed: %s", F.last_auth);
    cr_assert_eq(sn_s3_get(s3, "claim", &got, &len, 64, errstr, sizeof(errstr)), 0);
    cr_assert_str_eq(got, "first", "the refused PUT wrote nothing");
    free(got);
    F.fail_next = 1;
    F.fail_status = 409;
    F.fail_code = "ConditionalRequestConflict";
    cr_assert_eq(sn_s3_put_if_absent(s3, "other", "x", 1, NULL, errstr, sizeof(errstr)), 0, "%s",
                 errstr);
    sn_s3_stats(s3, &st);
    cr_assert_eq(st.retries, 1);
    cr_assert_eq(st.failures, 0);
    cr_assert_eq(sn_s3_put(s3, "claim", "third", 5, NULL, errstr, sizeof(errstr)), 0, "%s", errstr);
    cr_assert_eq(sn_s3_get(s3, "claim", &got, &len, 64, errstr, sizeof(errstr)), 0);
    cr_assert_str_eq(got, "third");
    free(got);
    cr_assert_eq(F.bad, 0);
    sn_s3_destroy(s3);
}

Test(s3, virtual_hosted_addressing) {
    sn_s3_t *s3 = client(0);
    char errstr[256], want[64];

    /* bkt.localhost resolves to the loopback in libcurl */
    cr_assert_eq(sn_s3_put(s3, "k", "x", 1, NULL, errstr, sizeof(errstr)), SN_ERR_NOENT,
                 "the fake only serves path-style /bkt, so a virtual-hosted request is /k");
    snprintf(want, sizeof(want), "bkt.localhost:%d", F.port);
    cr_assert_str_eq(F.host, want);
    sn_s3_destroy(s3);
}

Test(s3, retries_5xx_and_slowdown_then_succeeds) {
    sn_s3_t *s3 = client(1);
    sn_s3_stats_t st;
    char errstr[256];

    F.fail_next = 2;
    F.fail_status = 503;
    F.fail_code = "SlowDown";
    cr_assert_eq(sn_s3_put(s3, "k1", "x", 1, NULL, errstr, sizeof(errstr)), 0, "%s", errstr);
    F.fail_next = 1;
    F.fail_status = 500;
    F.fail_code = "InternalError";
    cr_assert_eq(sn_s3_put(s3, "k2", "x", 1, NULL, errstr, sizeof(errstr)), 0);
    sn_s3_stats(s3, &st);
    cr_assert_eq(st.retries, 3);
    cr_assert_eq(st.failures, 0);
    F.fail_next = 10; /* more than max_retries: a transient error, bounded */
    F.fail_status = 503;
    cr_assert_eq(sn_s3_put(s3, "k3", "x", 1, NULL, errstr, sizeof(errstr)), SN_ERR_TRANSIENT);
    cr_assert(strstr(errstr, "503") != NULL, "%s", errstr);
    sn_s3_stats(s3, &st);
    cr_assert_eq(st.failures, 1);
    cr_assert_eq(F.nreq, 3 + 2 + 4);
    sn_s3_destroy(s3);
}

Test(s3, access_denied_is_fatal_not_retried) {
    sn_s3_t *s3 = client(1);
    char errstr[256];

    F.fail_next = 1;
    F.fail_status = 403;
    F.fail_code = "AccessDenied";
    cr_assert_eq(sn_s3_put(s3, "k", "x", 1, NULL, errstr, sizeof(errstr)), SN_ERR_FATAL);
    cr_assert_eq(F.nreq, 1);
    sn_s3_destroy(s3);
}

Test(s3, timeout_is_retried) {
    sn_s3_t *s3 = client(1);
    char errstr[256];

    F.delay_next_ms = 2500; /* longer than the 1.5 s request timeout */
    F.delay_count = 1;
    cr_assert_eq(sn_s3_put(s3, "slow", "x", 1, NULL, errstr, sizeof(errstr)), 0, "%s", errstr);
    cr_assert_not_null(find("slow"));
    sn_s3_destroy(s3);
}

static char *write_temp(size_t size) {
    char tmpl[] = "/tmp/sn-s3-test-XXXXXX";
    int fd = mkstemp(tmpl);
    char *buf = malloc(size);

    for (size_t i = 0; i < size; i++) buf[i] = (char)(i * 2654435761u >> 13);
    cr_assert_eq(write(fd, buf, size), (ssize_t)size);
    close(fd);
    free(buf);
    return strdup(tmpl);
}

Test(s3, multipart_above_threshold) {
    sn_s3_t *s3 = client_timeout(1, 30000);
    char errstr[256], *path = write_temp((13u << 20) + 123);
    sn_s3_stats_t st;
    struct obj *o;
    FILE *f;
    char *want = malloc((13u << 20) + 123);

    cr_assert_eq(sn_s3_put_file(s3, "big.avro", path, "avro/binary", errstr, sizeof(errstr)), 0,
                 "%s", errstr);
    cr_assert_eq(F.initiated, 1);
    cr_assert_eq(F.parts, 3, "5 MiB parts: 5 + 5 + 3");
    cr_assert_eq(F.completed, 1);
    cr_assert_eq(F.bad, 0, "every part carries its payload hash and Content-MD5");
    o = find("big.avro");
    cr_assert_not_null(o);
    f = fopen(path, "rb");
    cr_assert_eq(fread(want, 1, (13u << 20) + 123, f), (13u << 20) + 123);
    fclose(f);
    cr_assert_eq(o->len, (13u << 20) + 123);
    cr_assert_eq(memcmp(o->data, want, o->len), 0);
    sn_s3_stats(s3, &st);
    cr_assert_eq(st.multipart, 1);
    unlink(path);
    free(path);
    free(want);
    sn_s3_destroy(s3);
}

Test(s3, small_file_is_one_put) {
    sn_s3_t *s3 = client(1);
    char errstr[256], *path = write_temp(1000);

    cr_assert_eq(sn_s3_put_file(s3, "small", path, NULL, errstr, sizeof(errstr)), 0);
    cr_assert_eq(F.initiated, 0);
    cr_assert_eq(find("small")->len, 1000);
    unlink(path);
    free(path);
    sn_s3_destroy(s3);
}

Test(s3, multipart_aborted_on_failure) {
    sn_s3_t *s3 = client_timeout(1, 30000);
    char errstr[256], *path = write_temp(7u << 20);
    sn_s3_stats_t st;

    F.fail_parts = 1;
    cr_assert_eq(sn_s3_put_file(s3, "doomed", path, NULL, errstr, sizeof(errstr)),
                 SN_ERR_TRANSIENT);
    cr_assert_eq(F.aborted, 1, "the upload is aborted so no parts are left behind");
    cr_assert_null(find("doomed"));
    sn_s3_stats(s3, &st);
    cr_assert_eq(st.aborted, 1);
    unlink(path);
    free(path);
    sn_s3_destroy(s3);
}

struct listed {
    int n;
    char keys[16][64];
};

static int on_obj(void *opaque, const sn_s3_object_t *o) {
    struct listed *l = opaque;

    snprintf(l->keys[l->n++], 64, "%s", o->key);
    return 0;
}

Test(s3, list_follows_continuation) {
    sn_s3_t *s3 = client(1);
    char errstr[256];
    struct listed l = {0};

    for (int i = 0; i < 5; i++) {
        char k[32];

        snprintf(k, sizeof(k), "p/%d", i);
        sn_s3_put(s3, k, "x", 1, NULL, errstr, sizeof(errstr));
    }
    sn_s3_put(s3, "q/other", "x", 1, NULL, errstr, sizeof(errstr));
    cr_assert_eq(sn_s3_list(s3, "p/", NULL, 0, on_obj, &l, errstr, sizeof(errstr)), 0, "%s",
                 errstr);
    cr_assert_eq(l.n, 5);
    cr_assert_str_eq(l.keys[0], "p/0");
    cr_assert_str_eq(l.keys[4], "p/4");
    cr_assert_geq(F.lists, 3, "pages of 2 keys");
    memset(&l, 0, sizeof(l));
    cr_assert_eq(sn_s3_list(s3, "p/", NULL, 3, on_obj, &l, errstr, sizeof(errstr)), 0);
    cr_assert_eq(l.n, 3, "max_keys bounds the listing");
    sn_s3_destroy(s3);
}

/* ---- credentials ------------------------------------------------------------------ */

Test(s3, creds_env_then_profile) {
    sn_s3_creds_opts_t o = {0};
    sn_s3_credentials_t c;
    char errstr[256], path[] = "/tmp/sn-creds-XXXXXX";
    int fd = mkstemp(path);
    const char *ini =
        "[default]\naws_access_key_id = AKDEF\naws_secret_access_key=sdef\n"
        "# comment\n[ops]\n aws_access_key_id = AKOPS \naws_secret_access_key = sops\n"
        "aws_session_token = tops\n";
    sn_s3_creds_t *p;

    cr_assert_eq(write(fd, ini, strlen(ini)), (ssize_t)strlen(ini));
    close(fd);
    p = sn_s3_creds_new(&o, errstr, sizeof(errstr));
    cr_assert_eq(sn_s3_creds_get(p, &c, errstr, sizeof(errstr)), 0);
    cr_assert_str_eq(c.access_key, "AKTEST");
    cr_assert_str_eq(c.source, "environment");
    sn_s3_creds_destroy(p);

    unsetenv("AWS_ACCESS_KEY_ID");
    setenv("AWS_SHARED_CREDENTIALS_FILE", path, 1);
    setenv("AWS_PROFILE", "ops", 1);
    p = sn_s3_creds_new(&o, errstr, sizeof(errstr));
    cr_assert_eq(sn_s3_creds_get(p, &c, errstr, sizeof(errstr)), 0, "%s", errstr);
    cr_assert_str_eq(c.access_key, "AKOPS");
    cr_assert_str_eq(c.secret_key, "sops");
    cr_assert_str_eq(c.token, "tops");
    cr_assert_str_eq(c.source, "profile");
    sn_s3_creds_destroy(p);

    o.access_key = "AKCONF"; /* config first */
    o.secret_key = "sconf";
    p = sn_s3_creds_new(&o, errstr, sizeof(errstr));
    cr_assert_eq(sn_s3_creds_get(p, &c, errstr, sizeof(errstr)), 0);
    cr_assert_str_eq(c.access_key, "AKCONF");
    sn_s3_creds_destroy(p);

    setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent", 1);
    o.access_key = o.secret_key = NULL;
    p = sn_s3_creds_new(&o, errstr, sizeof(errstr));
    cr_assert_eq(sn_s3_creds_get(p, &c, errstr, sizeof(errstr)), SN_ERR_NOENT);
    sn_s3_creds_destroy(p);
    unlink(path);
}

Test(s3, creds_web_identity_renewed_and_token_reread) {
    char errstr[256], url[64], path[] = "/tmp/sn-token-XXXXXX";
    int fd = mkstemp(path);
    sn_s3_creds_opts_t o = {0};
    sn_s3_credentials_t c;
    sn_s3_creds_t *p;

    cr_assert_eq(write(fd, "tok-1\n", 6), 6);
    close(fd);
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    setenv("AWS_ROLE_ARN", "arn:aws:iam::1:role/r", 1);
    setenv("AWS_WEB_IDENTITY_TOKEN_FILE", path, 1);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/sts", F.port);
    o.sts_endpoint = url;
    o.refresh_before_s = 60;
    F.sts_expiry_s = 3600;
    p = sn_s3_creds_new(&o, errstr, sizeof(errstr));
    cr_assert_eq(sn_s3_creds_get(p, &c, errstr, sizeof(errstr)), 0, "%s", errstr);
    cr_assert_str_eq(c.access_key, "ASIA1");
    cr_assert_str_eq(c.secret_key, "sts&secret", "XML entities decoded");
    cr_assert_str_eq(c.token, "session-1");
    cr_assert_str_eq(c.source, "web-identity");
    cr_assert_str_eq(F.sts_token, "tok-1");
    cr_assert_eq(sn_s3_creds_get(p, &c, errstr, sizeof(errstr)), 0);
    cr_assert_eq(F.sts_calls, 1, "valid credentials are reused");

    /* credentials that expire within the refresh window are renewed, with the
     * token file read again */
    fd = open(path, O_WRONLY | O_TRUNC);
    cr_assert_eq(write(fd, "tok-2", 5), 5);
    close(fd);
    sn_s3_creds_invalidate(p);
    cr_assert_eq(sn_s3_creds_get(p, &c, errstr, sizeof(errstr)), 0);
    cr_assert_eq(F.sts_calls, 2);
    cr_assert_str_eq(c.access_key, "ASIA2");
    cr_assert_str_eq(F.sts_token, "tok-2");
    F.sts_expiry_s = 30; /* inside the 60 s window: renewed at every get */
    sn_s3_creds_invalidate(p);
    cr_assert_eq(sn_s3_creds_get(p, &c, errstr, sizeof(errstr)), 0);
    cr_assert_eq(sn_s3_creds_get(p, &c, errstr, sizeof(errstr)), 0);
    cr_assert_eq(F.sts_calls, 4);
    cr_assert_eq(sn_s3_creds_refreshes(p), 4);
    sn_s3_creds_destroy(p);
    unlink(path);
}

Test(s3, creds_container_endpoint) {
    char errstr[256], url[64];
    sn_s3_creds_opts_t o = {0};
    sn_s3_credentials_t c;
    sn_s3_creds_t *p;

    unsetenv("AWS_ACCESS_KEY_ID");
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/creds", F.port);
    setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", url, 1);
    p = sn_s3_creds_new(&o, errstr, sizeof(errstr));
    cr_assert_eq(sn_s3_creds_get(p, &c, errstr, sizeof(errstr)), SN_ERR_NOENT,
                 "metadata endpoints are off unless asked for");
    sn_s3_creds_destroy(p);
    o.metadata = 1;
    p = sn_s3_creds_new(&o, errstr, sizeof(errstr));
    cr_assert_eq(sn_s3_creds_get(p, &c, errstr, sizeof(errstr)), 0, "%s", errstr);
    cr_assert_str_eq(c.access_key, "AKCONT");
    cr_assert_str_eq(c.source, "container");
    sn_s3_creds_destroy(p);
}

Test(s3, session_token_sent) {
    sn_s3_t *s3;
    char errstr[256];

    setenv("AWS_SESSION_TOKEN", "the-session", 1);
    s3 = client(1);
    cr_assert_eq(sn_s3_put(s3, "t", "x", 1, NULL, errstr, sizeof(errstr)), 0);
    cr_assert_str_eq(F.last_token, "the-session");
    cr_assert(strstr(F.last_auth, "x-amz-security-token") != NULL, "the token is signed");
    sn_s3_destroy(s3);
}
