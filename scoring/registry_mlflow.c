/* registry_mlflow.c: the registry on an MLflow tracking server, through its
 * REST API (https://mlflow.org/docs/latest/rest-api.html) with libcurl.
 *
 * Mapping (see registry.h): a version is an MLflow run in the experiment
 * registry.mlflow.experiment whose artifacts hold model/model.ubj and
 * model/card.json (uploaded through the server's artifact proxy,
 * /api/2.0/mlflow-artifacts/artifacts/..., which --serve-artifacts enables),
 * plus a model version of the registered model whose source is that folder.
 * The run also gets the holdout metrics and hashes, so the MLflow UI shows
 * them. Aliases are MLflow aliases; their history, which MLflow does not
 * keep, is a registered-model tag. MLflow has no transactions: two
 * concurrent alias moves may both record the same previous version; the file
 * backend is the one with a lock. */
#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/err.h"
#include "scoring/card.h"
#include "scoring/registry_int.h"

#define JSON_MAX_BYTES (16u * 1024 * 1024)
#define ARTIFACT_MAX_BYTES (512u * 1024 * 1024)
#define HIST_BYTES (SN_REGISTRY_HISTORY_MAX * SN_REGISTRY_VERSION_MAX)
#define ARTIFACTS_PREFIX "mlflow-artifacts:"

struct mlflow {
    char base[512]; /* http(s)://host:port, no trailing slash */
    char name[64];
    char experiment[256];
    char userpwd[512];
    char auth[1024]; /* "Authorization: Bearer ..." or "" */
    long timeout_ms;
    CURL *curl;
};

struct buf {
    uint8_t *data;
    size_t len, cap, max;
};

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *opaque) {
    struct buf *b = opaque;
    size_t n = size * nmemb;

    if (n > b->max - b->len) return 0; /* over the bound: curl fails the transfer */
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        uint8_t *p;

        while (cap < b->len + n + 1) cap *= 2;
        if (!(p = realloc(b->data, cap))) return 0;
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, ptr, n);
    b->len += n;
    b->data[b->len] = '\0';
    return n;
}

void *sn_registry_mlflow_open(const char *base_url, const sn_registry_opts_t *opts, char *errstr,
                              size_t errstr_size) {
    struct mlflow *m = calloc(1, sizeof(*m));
    size_t len;

    if (!m) {
        sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        return NULL;
    }
    len = strlen(base_url);
    while (len && base_url[len - 1] == '/') len--;
    if (len == 0 || len >= sizeof(m->base)) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "registry: bad MLflow URL");
        goto fail;
    }
    memcpy(m->base, base_url, len);
    m->base[len] = '\0';
    snprintf(m->name, sizeof(m->name), "%s", opts->model_name);
    snprintf(m->experiment, sizeof(m->experiment), "%s",
             opts->experiment && *opts->experiment ? opts->experiment : "sentinel");
    m->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : 30000;
    if (opts->token && *opts->token)
        snprintf(m->auth, sizeof(m->auth), "Authorization: Bearer %s", opts->token);
    else if (opts->username && *opts->username)
        snprintf(m->userpwd, sizeof(m->userpwd), "%s:%s", opts->username,
                 opts->password ? opts->password : "");
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (!(m->curl = curl_easy_init())) {
        sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "registry: curl_easy_init failed");
        goto fail;
    }
    return m;
fail:
    free(m);
    return NULL;
}

static void mlflow_destroy(void *impl) {
    struct mlflow *m = impl;

    if (!m) return;
    curl_easy_cleanup(m->curl);
    free(m);
}

/* One HTTP exchange. Connection failures and 5xx are transient (the server
 * may be restarting); the status is returned for the caller to interpret. */
static int http(struct mlflow *m, const char *method, const char *path, const void *body,
                size_t body_len, const char *content_type, struct buf *resp, long *status,
                char *errstr, size_t errstr_size) {
    char url[2048], ctype[128];
    struct curl_slist *hdrs = NULL;
    CURLcode cc;
    CURL *c = m->curl;

    if ((size_t)snprintf(url, sizeof(url), "%s%s", m->base, path) >= sizeof(url))
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "registry: URL too long");
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, m->timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, m->timeout_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, resp);
    if (body) {
        snprintf(ctype, sizeof(ctype), "Content-Type: %s", content_type);
        hdrs = curl_slist_append(hdrs, ctype);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    }
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (m->auth[0]) hdrs = curl_slist_append(hdrs, m->auth);
    if (m->userpwd[0]) curl_easy_setopt(c, CURLOPT_USERPWD, m->userpwd);
    hdrs = curl_slist_append(hdrs, "Expect:"); /* no 100-continue round trip on uploads */
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    cc = curl_easy_perform(c);
    curl_slist_free_all(hdrs);
    if (cc != CURLE_OK) {
        if (cc == CURLE_WRITE_ERROR)
            return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                              "registry: %s %s: reply over %zu bytes", method, path, resp->max);
        return sn_err_set(errstr, errstr_size, SN_ERR_TRANSIENT, "registry: %s %s: %s", method,
                          m->base, curl_easy_strerror(cc));
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    if (*status >= 500)
        return sn_err_set(errstr, errstr_size, SN_ERR_TRANSIENT, "registry: %s %s: HTTP %ld",
                          method, path, *status);
    return 0;
}

/* A REST call with a JSON body (req, stolen; NULL for none) and a JSON
 * reply (*resp, caller decrefs; may be NULL to ignore it). MLflow's error
 * codes become ours: RESOURCE_DOES_NOT_EXIST is NOENT, the rest INVALID with
 * the server's message. */
static int api(struct mlflow *m, const char *method, const char *path, json_t *req, json_t **resp,
               const char **code_out, char *errstr, size_t errstr_size) {
    static char code[64];
    struct buf b = {.max = JSON_MAX_BYTES};
    char *body = NULL;
    json_t *doc = NULL;
    long status = 0;
    int rc;

    if (resp) *resp = NULL;
    if (code_out) *code_out = "";
    if (req) {
        body = json_dumps(req, JSON_COMPACT);
        json_decref(req);
        if (!body) return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
    }
    rc = http(m, method, path, body, body ? strlen(body) : 0, "application/json", &b, &status,
              errstr, errstr_size);
    free(body);
    if (rc != 0) goto out;
    doc = b.len ? json_loadb((const char *)b.data, b.len, 0, NULL) : json_object();
    if (status != 200) {
        const char *ec = json_string_value(json_object_get(doc, "error_code"));
        const char *msg = json_string_value(json_object_get(doc, "message"));

        snprintf(code, sizeof(code), "%s", ec ? ec : "");
        if (code_out) *code_out = code;
        rc = sn_err_set(errstr, errstr_size,
                        status == 404 || (ec && strcmp(ec, "RESOURCE_DOES_NOT_EXIST") == 0)
                            ? SN_ERR_NOENT
                            : SN_ERR_INVALID,
                        "registry: MLflow %s %s: HTTP %ld %s: %s", method, path, status,
                        ec ? ec : "", msg ? msg : (b.data ? (const char *)b.data : ""));
        goto out;
    }
    if (!doc) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                        "registry: MLflow %s %s: reply is not JSON", method, path);
        goto out;
    }
    if (resp) {
        *resp = doc;
        doc = NULL;
    }
out:
    json_decref(doc);
    free(b.data);
    return rc;
}

/* Escapes s for a query string into out. */
static int q(struct mlflow *m, const char *s, char *out, size_t size) {
    char *e = curl_easy_escape(m->curl, s, 0);
    int rc = 0;

    if (!e || (size_t)snprintf(out, size, "%s", e) >= size) rc = -1;
    curl_free(e);
    return rc;
}

static int64_t now_ms(void) {
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int experiment_id(struct mlflow *m, char *id, size_t size, char *errstr,
                         size_t errstr_size) {
    char path[512], e[300];
    json_t *r = NULL;
    const char *code;
    int rc;

    if (q(m, m->experiment, e, sizeof(e)) != 0)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "registry: bad experiment");
    for (int attempt = 0; attempt < 2; attempt++) {
        snprintf(path, sizeof(path), "/api/2.0/mlflow/experiments/get-by-name?experiment_name=%s",
                 e);
        rc = api(m, "GET", path, NULL, &r, NULL, errstr, errstr_size);
        if (rc == 0) {
            const char *v = json_string_value(
                json_object_get(json_object_get(r, "experiment"), "experiment_id"));

            rc = v ? 0
                   : sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                                "registry: experiment without an id");
            if (v) snprintf(id, size, "%s", v);
            json_decref(r);
            return rc;
        }
        if (rc != SN_ERR_NOENT) return rc;
        rc = api(m, "POST", "/api/2.0/mlflow/experiments/create",
                 json_pack("{s:s}", "name", m->experiment), &r, &code, errstr, errstr_size);
        if (rc == 0) {
            const char *v = json_string_value(json_object_get(r, "experiment_id"));

            rc = v ? 0
                   : sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                                "registry: experiment without an id");
            if (v) snprintf(id, size, "%s", v);
            json_decref(r);
            return rc;
        }
        if (strcmp(code, "RESOURCE_ALREADY_EXISTS") != 0)
            return rc; /* else: lost a race, read it */
    }
    return rc;
}

/* PUTs or GETs one artifact through the tracking server's proxy. uri is an
 * artifact folder "mlflow-artifacts:/<path>". */
static int artifact_path(const char *uri, const char *file, char *out, size_t size, char *errstr,
                         size_t errstr_size) {
    const char *p;

    if (strncmp(uri, ARTIFACTS_PREFIX, strlen(ARTIFACTS_PREFIX)) != 0)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "registry: artifact location \"%s\" is not served by the tracking server "
                          "(start mlflow server with --serve-artifacts)",
                          uri);
    p = uri + strlen(ARTIFACTS_PREFIX);
    while (*p == '/') p++;
    /* "mlflow-artifacts://host:port/path" carries an authority: skip it */
    if (strncmp(uri + strlen(ARTIFACTS_PREFIX), "//", 2) == 0) {
        p = strchr(p, '/');
        p = p ? p + 1 : "";
    }
    if ((size_t)snprintf(out, size, "/api/2.0/mlflow-artifacts/artifacts/%s/%s", p, file) >= size)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "registry: artifact path too long");
    return 0;
}

static int put_artifact(struct mlflow *m, const char *uri, const char *file, const void *data,
                        size_t len, char *errstr, size_t errstr_size) {
    char path[1024];
    struct buf b = {.max = JSON_MAX_BYTES};
    long status = 0;
    int rc;

    if ((rc = artifact_path(uri, file, path, sizeof(path), errstr, errstr_size)) != 0) return rc;
    rc = http(m, "PUT", path, data, len, "application/octet-stream", &b, &status, errstr,
              errstr_size);
    if (rc == 0 && status != 200)
        rc = sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "registry: upload %s: HTTP %ld %s",
                        file, status, b.data ? (const char *)b.data : "");
    free(b.data);
    return rc;
}

static int get_artifact(struct mlflow *m, const char *uri, const char *file, uint8_t **out,
                        size_t *out_len, char *errstr, size_t errstr_size) {
    char path[1024];
    struct buf b = {.max = ARTIFACT_MAX_BYTES};
    long status = 0;
    int rc;

    *out = NULL;
    if ((rc = artifact_path(uri, file, path, sizeof(path), errstr, errstr_size)) != 0) return rc;
    rc = http(m, "GET", path, NULL, 0, NULL, &b, &status, errstr, errstr_size);
    if (rc == 0 && status != 200)
        rc = sn_err_set(errstr, errstr_size, status == 404 ? SN_ERR_NOENT : SN_ERR_INVALID,
                        "registry: download %s: HTTP %ld", file, status);
    if (rc != 0) {
        free(b.data);
        return rc;
    }
    if (!b.data && !(b.data = calloc(1, 1)))
        return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
    *out = b.data;
    if (out_len) *out_len = b.len;
    return 0;
}

/* The run gets what an MLflow user looks for first: holdout metrics, the
 * threshold, the hashes that tie it to its data and model. Best effort in
 * content (a card without a metric just logs fewer), strict in transport. */
static json_t *run_metrics(const char *card_text, size_t card_len, int64_t ts) {
    static const char *const names[] = {"pr_auc", "roc_auc", "best_f1",        "precision",
                                        "recall", "f1",      "alerts_per_1000"};
    char err[128];
    sn_card_t *card = sn_card_parse(card_text, card_len, err, sizeof(err));
    json_t *metrics = json_array(), *params = json_array(), *batch;

    if (card) {
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
            double v = sn_card_metric(card, "holdout", names[i]);
            char key[64];

            if (v != v) continue;
            snprintf(key, sizeof(key), "holdout_%s", names[i]);
            json_array_append_new(metrics, json_pack("{s:s, s:f, s:I, s:i}", "key", key, "value", v,
                                                     "timestamp", (json_int_t)ts, "step", 0));
        }
        json_array_append_new(metrics, json_pack("{s:s, s:f, s:I, s:i}", "key", "threshold",
                                                 "value", sn_card_threshold(card), "timestamp",
                                                 (json_int_t)ts, "step", 0));
        json_array_append_new(params, json_pack("{s:s, s:s}", "key", "data_sha256", "value",
                                                sn_card_get_str(card, "data.sha256")));
        json_array_append_new(params, json_pack("{s:s, s:s}", "key", "model_sha256", "value",
                                                sn_card_model_sha256(card)));
        json_array_append_new(params, json_pack("{s:s, s:s}", "key", "threshold_policy", "value",
                                                sn_card_threshold_policy(card)));
        sn_card_destroy(card);
    }
    batch = json_pack("{s:o, s:o}", "metrics", metrics, "params", params);
    return batch;
}

static int mlflow_register(void *impl, const void *model, size_t model_len, const char *card,
                           size_t card_len, char *version, char *errstr, size_t errstr_size) {
    struct mlflow *m = impl;
    char exp[64], run_id[128], uri[1024], src[1100];
    json_t *r = NULL, *batch;
    const char *code, *v;
    int64_t t0 = now_ms();
    int rc;

    if ((rc = experiment_id(m, exp, sizeof(exp), errstr, errstr_size)) != 0) return rc;
    rc = api(m, "POST", "/api/2.0/mlflow/runs/create",
             json_pack("{s:s, s:I, s:s, s:[{s:s, s:s}]}", "experiment_id", exp, "start_time",
                       (json_int_t)t0, "run_name", m->name, "tags", "key", "sentinel.model",
                       "value", m->name),
             &r, NULL, errstr, errstr_size);
    if (rc != 0) return rc;
    v = json_string_value(
        json_object_get(json_object_get(json_object_get(r, "run"), "info"), "run_id"));
    code = json_string_value(
        json_object_get(json_object_get(json_object_get(r, "run"), "info"), "artifact_uri"));
    if (!v || !code || strlen(v) >= sizeof(run_id) || strlen(code) + 7 >= sizeof(uri)) {
        json_decref(r);
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "registry: MLflow run without id or artifact_uri");
    }
    snprintf(run_id, sizeof(run_id), "%s", v);
    snprintf(uri, sizeof(uri), "%s/model", code);
    json_decref(r);
    if ((rc = put_artifact(m, uri, "model.ubj", model, model_len, errstr, errstr_size)) != 0)
        goto fail_run;
    if ((rc = put_artifact(m, uri, "card.json", card, card_len, errstr, errstr_size)) != 0)
        goto fail_run;
    if ((batch = run_metrics(card, card_len, t0))) {
        json_object_set_new(batch, "run_id", json_string(run_id));
        if ((rc = api(m, "POST", "/api/2.0/mlflow/runs/log-batch", batch, NULL, NULL, errstr,
                      errstr_size)) != 0)
            goto fail_run;
    }
    if ((rc = api(m, "POST", "/api/2.0/mlflow/runs/update",
                  json_pack("{s:s, s:s, s:I}", "run_id", run_id, "status", "FINISHED", "end_time",
                            (json_int_t)now_ms()),
                  NULL, NULL, errstr, errstr_size)) != 0)
        return rc;
    rc = api(m, "POST", "/api/2.0/mlflow/registered-models/create",
             json_pack("{s:s}", "name", m->name), NULL, &code, errstr, errstr_size);
    if (rc != 0 && strcmp(code, "RESOURCE_ALREADY_EXISTS") != 0) return rc;
    snprintf(src, sizeof(src), "%s", uri);
    rc = api(m, "POST", "/api/2.0/mlflow/model-versions/create",
             json_pack("{s:s, s:s, s:s}", "name", m->name, "source", src, "run_id", run_id), &r,
             NULL, errstr, errstr_size);
    if (rc != 0) return rc;
    v = json_string_value(json_object_get(json_object_get(r, "model_version"), "version"));
    if (!v || strlen(v) >= SN_REGISTRY_VERSION_MAX) {
        json_decref(r);
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "registry: MLflow model version without a number");
    }
    snprintf(version, SN_REGISTRY_VERSION_MAX, "%s", v);
    json_decref(r);
    return 0;
fail_run:
    /* leave a failed run visible as such rather than running forever */
    {
        char err2[64];

        api(m, "POST", "/api/2.0/mlflow/runs/update",
            json_pack("{s:s, s:s, s:I}", "run_id", run_id, "status", "FAILED", "end_time",
                      (json_int_t)now_ms()),
            NULL, NULL, err2, sizeof(err2));
    }
    return rc;
}

/* Where a version's files are: MLflow resolves the source (a runs:/ URI or
 * an artifact location) into a download URI. */
static int version_uri(struct mlflow *m, const char *version, char *uri, size_t size, char *errstr,
                       size_t errstr_size) {
    char path[512], n[200];
    json_t *r = NULL;
    const char *u;
    int rc;

    if (q(m, m->name, n, sizeof(n)) != 0)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "registry: bad name");
    snprintf(path, sizeof(path),
             "/api/2.0/mlflow/model-versions/get-download-uri?name=%s&version=%s", n, version);
    if ((rc = api(m, "GET", path, NULL, &r, NULL, errstr, errstr_size)) != 0) {
        if (rc == SN_ERR_NOENT)
            sn_err_set(errstr, errstr_size, SN_ERR_NOENT, "registry: no version %s of %s", version,
                       m->name);
        return rc;
    }
    u = json_string_value(json_object_get(r, "artifact_uri"));
    if (!u || (size_t)snprintf(uri, size, "%s", u) >= size)
        rc = sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                        "registry: no artifact_uri for version %s", version);
    json_decref(r);
    return rc;
}

static int mlflow_fetch(void *impl, const char *version, uint8_t **model, size_t *model_len,
                        char **card, size_t *card_len, char *errstr, size_t errstr_size) {
    struct mlflow *m = impl;
    char uri[1024];
    int rc;

    if ((rc = version_uri(m, version, uri, sizeof(uri), errstr, errstr_size)) != 0) return rc;
    if (model &&
        (rc = get_artifact(m, uri, "model.ubj", model, model_len, errstr, errstr_size)) != 0)
        return rc;
    if (card && (rc = get_artifact(m, uri, "card.json", (uint8_t **)card, card_len, errstr,
                                   errstr_size)) != 0) {
        if (model) {
            free(*model);
            *model = NULL;
        }
        return rc;
    }
    return 0;
}

static int mlflow_get_alias(void *impl, const char *alias, char *version, char *errstr,
                            size_t errstr_size) {
    struct mlflow *m = impl;
    char path[512], n[200];
    json_t *r = NULL;
    const char *v, *code;
    int rc;

    if (q(m, m->name, n, sizeof(n)) != 0)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "registry: bad name");
    snprintf(path, sizeof(path), "/api/2.0/mlflow/registered-models/alias?name=%s&alias=%s", n,
             alias);
    rc = api(m, "GET", path, NULL, &r, &code, errstr, errstr_size);
    /* an unknown alias or model is 404 RESOURCE_DOES_NOT_EXIST, or
     * INVALID_PARAMETER_VALUE on some server versions */
    if (rc == SN_ERR_NOENT ||
        (rc == SN_ERR_INVALID && strcmp(code, "INVALID_PARAMETER_VALUE") == 0))
        return sn_err_set(errstr, errstr_size, SN_ERR_NOENT, "registry: alias %s of %s is not set",
                          alias, m->name);
    if (rc != 0) return rc;
    v = json_string_value(json_object_get(json_object_get(r, "model_version"), "version"));
    if (!v)
        rc = sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                        "registry: alias reply without a version");
    else
        snprintf(version, SN_REGISTRY_VERSION_MAX, "%s", v);
    json_decref(r);
    return rc;
}

/* The registered model: its tags hold the alias histories. */
static int get_model(struct mlflow *m, json_t **out, char *errstr, size_t errstr_size) {
    char path[512], n[200];

    if (q(m, m->name, n, sizeof(n)) != 0)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "registry: bad name");
    snprintf(path, sizeof(path), "/api/2.0/mlflow/registered-models/get?name=%s", n);
    return api(m, "GET", path, NULL, out, NULL, errstr, errstr_size);
}

static void history_key(const char *alias, char *key, size_t size) {
    snprintf(key, size, "sentinel.alias_history.%s", alias);
}

static int read_history(struct mlflow *m, const char *alias, char *hist, char *errstr,
                        size_t errstr_size) {
    json_t *r = NULL, *tags, *t;
    char key[128];
    size_t i;
    int rc;

    hist[0] = '\0';
    if ((rc = get_model(m, &r, errstr, errstr_size)) != 0) return rc == SN_ERR_NOENT ? 0 : rc;
    history_key(alias, key, sizeof(key));
    tags = json_object_get(json_object_get(r, "registered_model"), "tags");
    json_array_foreach(tags, i, t) {
        const char *k = json_string_value(json_object_get(t, "key"));
        const char *v = json_string_value(json_object_get(t, "value"));

        if (k && v && strcmp(k, key) == 0) snprintf(hist, HIST_BYTES, "%s", v);
    }
    json_decref(r);
    return 0;
}

static int write_history(struct mlflow *m, const char *alias, const char *hist, char *errstr,
                         size_t errstr_size) {
    char key[128];

    history_key(alias, key, sizeof(key));
    return api(m, "POST", "/api/2.0/mlflow/registered-models/set-tag",
               json_pack("{s:s, s:s, s:s}", "name", m->name, "key", key, "value", hist), NULL, NULL,
               errstr, errstr_size);
}

static int put_alias(struct mlflow *m, const char *alias, const char *version, char *errstr,
                     size_t errstr_size) {
    return api(m, "POST", "/api/2.0/mlflow/registered-models/alias",
               json_pack("{s:s, s:s, s:s}", "name", m->name, "alias", alias, "version", version),
               NULL, NULL, errstr, errstr_size);
}

static int mlflow_set_alias(void *impl, const char *alias, const char *version, char *errstr,
                            size_t errstr_size) {
    struct mlflow *m = impl;
    char cur[SN_REGISTRY_VERSION_MAX] = "", uri[1024], *hist = NULL;
    int rc;

    /* the version must exist: MLflow would also refuse, less clearly */
    if ((rc = version_uri(m, version, uri, sizeof(uri), errstr, errstr_size)) != 0) return rc;
    rc = mlflow_get_alias(m, alias, cur, errstr, errstr_size);
    if (rc == SN_ERR_NOENT)
        cur[0] = '\0';
    else if (rc != 0)
        return rc;
    if (strcmp(cur, version) == 0) return 0;
    if (!(hist = malloc(HIST_BYTES)))
        return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
    if ((rc = read_history(m, alias, hist, errstr, errstr_size)) != 0) goto out;
    if (cur[0]) {
        if ((rc = sn_registry_history_push(hist, HIST_BYTES, ',', cur)) != 0) goto out;
        if ((rc = write_history(m, alias, hist, errstr, errstr_size)) != 0) goto out;
    }
    rc = put_alias(m, alias, version, errstr, errstr_size);
out:
    free(hist);
    return rc;
}

static int mlflow_rollback(void *impl, const char *alias, char *version, char *errstr,
                           size_t errstr_size) {
    struct mlflow *m = impl;
    char *hist = malloc(HIST_BYTES);
    int rc;

    if (!hist) return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
    if ((rc = read_history(m, alias, hist, errstr, errstr_size)) != 0) goto out;
    if (sn_registry_history_pop(hist, ',', version) != 0) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_NOENT,
                        "registry: alias %s has no earlier version", alias);
        goto out;
    }
    if ((rc = put_alias(m, alias, version, errstr, errstr_size)) != 0) goto out;
    rc = write_history(m, alias, hist, errstr, errstr_size);
out:
    free(hist);
    return rc;
}

static int mlflow_history(void *impl, const char *alias, char (*out)[SN_REGISTRY_VERSION_MAX],
                          size_t max, size_t *n, char *errstr, size_t errstr_size) {
    char *hist = malloc(HIST_BYTES);
    int rc;

    if (!hist) return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
    if ((rc = read_history(impl, alias, hist, errstr, errstr_size)) == 0)
        sn_registry_history_list(hist, ',', out, max, n);
    free(hist);
    return rc;
}

/* Versions come from model-versions/search (paged), aliases from the
 * registered model, which lists them all in one reply. */
static int mlflow_list(void *impl, sn_registry_entry_t **out, size_t *n, char *errstr,
                       size_t errstr_size) {
    struct mlflow *m = impl;
    char path[1024], filter[256], f[600], token[512] = "", tq[600];
    json_t *r = NULL, *mv, *aliases, *a;
    size_t cap = 0, i;
    int rc;

    *out = NULL;
    *n = 0;
    snprintf(filter, sizeof(filter), "name='%s'", m->name);
    if (q(m, filter, f, sizeof(f)) != 0)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "registry: bad name");
    for (int page = 0; page < 1000; page++) {
        const char *next;

        tq[0] = '\0';
        if (token[0] && q(m, token, tq, sizeof(tq)) != 0) break;
        snprintf(path, sizeof(path),
                 "/api/2.0/mlflow/model-versions/search?filter=%s&max_results=200%s%s", f,
                 tq[0] ? "&page_token=" : "", tq);
        if ((rc = api(m, "GET", path, NULL, &r, NULL, errstr, errstr_size)) != 0) goto fail;
        json_array_foreach(json_object_get(r, "model_versions"), i, mv) {
            const char *v = json_string_value(json_object_get(mv, "version"));
            sn_registry_entry_t *e;

            if (!v || strlen(v) >= SN_REGISTRY_VERSION_MAX) continue;
            if (*n == cap) {
                size_t ncap = cap ? cap * 2 : 16;
                sn_registry_entry_t *p = realloc(*out, ncap * sizeof(*p));

                if (!p) {
                    json_decref(r);
                    rc = sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
                    goto fail;
                }
                *out = p;
                cap = ncap;
            }
            e = &(*out)[(*n)++];
            memset(e, 0, sizeof(*e));
            snprintf(e->version, sizeof(e->version), "%s", v);
            e->created_ms = json_integer_value(json_object_get(mv, "creation_timestamp"));
        }
        next = json_string_value(json_object_get(r, "next_page_token"));
        if (!next || !*next || strlen(next) >= sizeof(token)) {
            json_decref(r);
            break;
        }
        snprintf(token, sizeof(token), "%s", next);
        json_decref(r);
    }
    if ((rc = get_model(m, &r, errstr, errstr_size)) != 0) {
        if (rc == SN_ERR_NOENT) return 0;
        goto fail;
    }
    aliases = json_object_get(json_object_get(r, "registered_model"), "aliases");
    json_array_foreach(aliases, i, a) {
        const char *al = json_string_value(json_object_get(a, "alias"));
        const char *v = json_string_value(json_object_get(a, "version"));

        if (!al || !v) continue;
        for (size_t k = 0; k < *n; k++) {
            sn_registry_entry_t *e = &(*out)[k];
            size_t len = strlen(e->aliases);

            if (strcmp(e->version, v) == 0)
                snprintf(e->aliases + len, sizeof(e->aliases) - len, "%s%s", len ? "," : "", al);
        }
    }
    json_decref(r);
    return 0;
fail:
    free(*out);
    *out = NULL;
    *n = 0;
    return rc;
}

const struct sn_registry_ops sn_registry_mlflow_ops = {
    .kind = "mlflow",
    .reg = mlflow_register,
    .fetch = mlflow_fetch,
    .get_alias = mlflow_get_alias,
    .set_alias = mlflow_set_alias,
    .rollback = mlflow_rollback,
    .list = mlflow_list,
    .history = mlflow_history,
    .destroy = mlflow_destroy,
};
