#include "schemas/schema_registry.h"

#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"

#define URL_MAX 2048

struct sn_schema_registry {
    CURL *curl;
    char *url; /* without a trailing '/' */
    char *username;
    char *password;
    long timeout_ms;
};

struct body {
    char *buf;
    size_t len, cap;
    int overflow;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_OK;

/* curl_global_init is reference counted but not safe to race with itself;
 * doing it once per process, never undone, is what the docs ask of a library. */
static void curl_init(void) { curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

static char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = malloc(n);

    if (p) memcpy(p, s, n);
    return p;
}

void sn_schema_registry_destroy(sn_schema_registry_t *reg) {
    if (!reg) return;
    if (reg->curl) curl_easy_cleanup(reg->curl);
    free(reg->url);
    free(reg->username);
    if (reg->password) {
        memset(reg->password, 0, strlen(reg->password));
        free(reg->password);
    }
    free(reg);
}

sn_schema_registry_t *sn_schema_registry_new(const char *url, const char *username,
                                             const char *password, long timeout_ms, char *errstr,
                                             size_t errstr_size) {
    sn_schema_registry_t *reg = NULL;
    size_t n;

    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK) {
        sn_err_set(errstr, errstr_size, SN_ERR_FATAL, "curl_global_init: %s",
                   curl_easy_strerror(curl_init_rc));
        return NULL;
    }
    if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                   "schema.registry.url must start with http:// or https://");
        return NULL;
    }
    if (strlen(url) > URL_MAX / 2) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "schema.registry.url too long");
        return NULL;
    }
    if (!(reg = calloc(1, sizeof(*reg)))) goto nomem;
    reg->timeout_ms = timeout_ms;
    if (!(reg->url = xstrdup(url))) goto nomem;
    n = strlen(reg->url);
    while (n > 0 && reg->url[n - 1] == '/') reg->url[--n] = '\0';
    if (username && *username) {
        if (!(reg->username = xstrdup(username))) goto nomem;
        if (!(reg->password = xstrdup(password ? password : ""))) goto nomem;
    }
    if (!(reg->curl = curl_easy_init())) goto nomem;
    return reg;
nomem:
    sn_schema_registry_destroy(reg);
    sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
    return NULL;
}

/* Keeps at most SN_SCHEMA_REGISTRY_BODY_MAX bytes; past that the transfer is
 * aborted (returning less than given makes libcurl stop with an error). */
static size_t on_body(char *data, size_t size, size_t nmemb, void *opaque) {
    struct body *b = opaque;
    size_t n = size * nmemb;

    if (b->len + n + 1 > SN_SCHEMA_REGISTRY_BODY_MAX) {
        b->overflow = 1;
        return 0;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        char *p;

        while (cap < b->len + n + 1) cap *= 2;
        if (!(p = realloc(b->buf, cap))) return 0;
        b->buf = p;
        b->cap = cap;
    }
    memcpy(b->buf + b->len, data, n);
    b->len += n;
    b->buf[b->len] = '\0';
    return n;
}

/* Error message of a registry error body {"error_code":..,"message":".."}, or
 * a prefix of the raw body, for the caller's errstr. */
static void body_message(const struct body *b, char *out, size_t size) {
    json_t *j = b->buf ? json_loads(b->buf, 0, NULL) : NULL;
    const char *m = j ? json_string_value(json_object_get(j, "message")) : NULL;

    snprintf(out, size, "%.200s", m ? m : (b->buf ? b->buf : ""));
    json_decref(j);
}

/* One request: GET when post_body is NULL, else POST with that JSON body.
 * Fills *status and body; returns 0 or a classified error for a transport
 * failure. The HTTP status is classified by the caller. */
static int request(sn_schema_registry_t *reg, const char *path, const char *post_body, long *status,
                   struct body *b, char *errstr, size_t errstr_size) {
    char url[URL_MAX + 256];
    struct curl_slist *hdrs = NULL;
    CURLcode rc;
    int ret = 0;

    if ((size_t)snprintf(url, sizeof(url), "%s%s", reg->url, path) >= sizeof(url))
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "registry URL too long");
    curl_easy_reset(reg->curl);
    hdrs = curl_slist_append(hdrs, "Accept: application/vnd.schemaregistry.v1+json, "
                                   "application/vnd.schemaregistry+json, application/json");
    if (post_body)
        hdrs = curl_slist_append(hdrs, "Content-Type: application/vnd.schemaregistry.v1+json");
    if (!hdrs) return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
    curl_easy_setopt(reg->curl, CURLOPT_URL, url);
    curl_easy_setopt(reg->curl, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(reg->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(reg->curl, CURLOPT_TIMEOUT_MS, reg->timeout_ms);
    curl_easy_setopt(reg->curl, CURLOPT_CONNECTTIMEOUT_MS, reg->timeout_ms);
    curl_easy_setopt(reg->curl, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(reg->curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(reg->curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(reg->curl, CURLOPT_WRITEDATA, b);
    curl_easy_setopt(reg->curl, CURLOPT_USERAGENT, "sentinel/" SN_VERSION);
    if (reg->username) {
        curl_easy_setopt(reg->curl, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(reg->curl, CURLOPT_USERNAME, reg->username);
        curl_easy_setopt(reg->curl, CURLOPT_PASSWORD, reg->password);
    }
    if (post_body) curl_easy_setopt(reg->curl, CURLOPT_POSTFIELDS, post_body);
    rc = curl_easy_perform(reg->curl);
    if (rc != CURLE_OK) {
        if (b->overflow)
            ret = sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                             "schema registry %s: response larger than %d bytes", path,
                             SN_SCHEMA_REGISTRY_BODY_MAX);
        else
            ret = sn_err_set(errstr, errstr_size, SN_ERR_TRANSIENT,
                             "schema registry %s unreachable: %s", path, curl_easy_strerror(rc));
        goto out;
    }
    curl_easy_getinfo(reg->curl, CURLINFO_RESPONSE_CODE, status);
out:
    curl_slist_free_all(hdrs);
    return ret;
}

/* Maps a non-200 status to the caller's error class. */
static int status_error(long status, const char *path, const struct body *b, char *errstr,
                        size_t errstr_size) {
    char msg[256];
    int err;

    body_message(b, msg, sizeof(msg));
    if (status == 404)
        err = SN_ERR_NOENT;
    else if (status == 401 || status == 403)
        err = SN_ERR_FATAL;
    else if (status >= 500 || status == 408 || status == 429)
        err = SN_ERR_TRANSIENT;
    else
        err = SN_ERR_INVALID;
    return sn_err_set(errstr, errstr_size, err, "schema registry %s: HTTP %ld: %s", path, status,
                      msg);
}

int sn_schema_registry_get(sn_schema_registry_t *reg, int32_t id, char **json_out, char *errstr,
                           size_t errstr_size) {
    char path[64];
    struct body b = {0};
    long status = 0;
    json_t *j = NULL;
    const char *schema, *type;
    int rc;

    *json_out = NULL;
    snprintf(path, sizeof(path), "/schemas/ids/%d", (int)id);
    if ((rc = request(reg, path, NULL, &status, &b, errstr, errstr_size)) != 0) goto out;
    if (status != 200) {
        rc = status_error(status, path, &b, errstr, errstr_size);
        goto out;
    }
    j = b.buf ? json_loads(b.buf, 0, NULL) : NULL;
    schema = j ? json_string_value(json_object_get(j, "schema")) : NULL;
    if (!schema) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                        "schema registry %s: answer has no \"schema\" string", path);
        goto out;
    }
    type = json_string_value(json_object_get(j, "schemaType"));
    if (type && strcmp(type, "AVRO") != 0) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                        "schema registry %s: schemaType %.32s is not AVRO", path, type);
        goto out;
    }
    if (!(*json_out = xstrdup(schema)))
        rc = sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
out:
    json_decref(j);
    free(b.buf);
    return rc;
}

int sn_schema_registry_id_for(sn_schema_registry_t *reg, const char *subject,
                              const char *schema_json, int do_register, int32_t *id_out,
                              char *errstr, size_t errstr_size) {
    char path[URL_MAX];
    struct body b = {0};
    long status = 0;
    json_t *req = NULL, *j = NULL;
    char *esc = NULL, *post = NULL;
    json_int_t id;
    int rc = 0;

    if (!(esc = curl_easy_escape(reg->curl, subject, 0)) ||
        !(req = json_pack("{s:s}", "schema", schema_json)) ||
        !(post = json_dumps(req, JSON_COMPACT))) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        goto out;
    }
    if ((size_t)snprintf(path, sizeof(path), "/subjects/%s%s", esc,
                         do_register ? "/versions" : "") >= sizeof(path)) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "subject too long");
        goto out;
    }
    if ((rc = request(reg, path, post, &status, &b, errstr, errstr_size)) != 0) goto out;
    if (status != 200) {
        rc = status_error(status, path, &b, errstr, errstr_size);
        goto out;
    }
    j = b.buf ? json_loads(b.buf, 0, NULL) : NULL;
    if (!j || !json_is_integer(json_object_get(j, "id")) ||
        (id = json_integer_value(json_object_get(j, "id"))) < 1 || id > INT32_MAX) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                        "schema registry %s: answer has no valid \"id\"", path);
        goto out;
    }
    *id_out = (int32_t)id;
out:
    json_decref(j);
    json_decref(req);
    free(post);
    curl_free(esc);
    free(b.buf);
    return rc;
}
