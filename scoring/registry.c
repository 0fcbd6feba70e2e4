#include "scoring/registry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "scoring/registry_int.h"

struct sn_registry {
    const struct sn_registry_ops *ops;
    void *impl;
};

/* Model names, aliases and versions end up in paths and URLs: a tight
 * alphabet keeps "../" and query strings out of both. */
static int valid_name(const char *s, size_t max, const char *extra) {
    size_t n = s ? strlen(s) : 0;

    if (n == 0 || n >= max || s[0] == '.') return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr(extra, c)))
            return 0;
    }
    return 1;
}

static int valid_version(const char *v) {
    size_t n = v ? strlen(v) : 0;

    return n > 0 && n < 10 && strspn(v, "0123456789") == n && v[0] != '0';
}

/* MLflow reserves "latest" and version-like aliases ("v3"); refuse them for
 * every backend so that a registry can move between backends. */
static int valid_alias(const char *a) {
    if (!valid_name(a, SN_REGISTRY_ALIAS_MAX, "_-")) return 0;
    if (strcmp(a, "latest") == 0) return 0;
    if ((a[0] == 'v' || a[0] == 'V') && a[1] && strspn(a + 1, "0123456789") == strlen(a + 1))
        return 0;
    return 1;
}

sn_registry_t *sn_registry_new(const sn_registry_opts_t *opts, char *errstr, size_t errstr_size) {
    sn_registry_t *reg = NULL;
    const char *url = opts->url ? opts->url : "";

    if (!valid_name(opts->model_name, 64, "._-")) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                   "registry: model name \"%s\" must be 1-63 characters of [A-Za-z0-9._-]",
                   opts->model_name ? opts->model_name : "");
        return NULL;
    }
    if (!(reg = calloc(1, sizeof(*reg)))) {
        sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        return NULL;
    }
    if (strncmp(url, "file://", 7) == 0 && url[7]) {
        reg->ops = &sn_registry_file_ops;
        reg->impl = sn_registry_file_open(url + 7, opts, errstr, errstr_size);
    } else if (strncmp(url, "mlflow+http://", 14) == 0 ||
               strncmp(url, "mlflow+https://", 15) == 0) {
        reg->ops = &sn_registry_mlflow_ops;
        reg->impl = sn_registry_mlflow_open(url + 7, opts, errstr, errstr_size);
    } else if (strncmp(url, "s3://", 5) == 0) {
        reg->ops = &sn_registry_s3_ops;
        reg->impl = sn_registry_s3_open(url, opts, errstr, errstr_size);
    } else {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                   "registry: url \"%s\" is neither file://DIR, mlflow+http(s)://HOST:PORT nor "
                   "s3://BUCKET[/PREFIX]",
                   url);
    }
    if (!reg->impl) {
        free(reg);
        return NULL;
    }
    return reg;
}

sn_registry_t *sn_registry_from_conf(const sn_conf_t *conf, char *errstr, size_t errstr_size) {
    sn_registry_opts_t o = {
        .url = sn_conf_str(conf, "registry.url"),
        .model_name = sn_conf_str(conf, "model.name"),
        .timeout_ms = (long)sn_conf_int(conf, "registry.timeout.ms"),
        .username = sn_conf_str(conf, "registry.username"),
        .password = sn_conf_str(conf, "registry.password"),
        .token = sn_conf_str(conf, "registry.token"),
        .experiment = sn_conf_str(conf, "registry.mlflow.experiment"),
        .conf = conf,
    };

    return sn_registry_new(&o, errstr, errstr_size);
}

void sn_registry_destroy(sn_registry_t *reg) {
    if (!reg) return;
    reg->ops->destroy(reg->impl);
    free(reg);
}

const char *sn_registry_kind(const sn_registry_t *reg) { return reg->ops->kind; }

int sn_registry_register(sn_registry_t *reg, const void *model, size_t model_len, const char *card,
                         size_t card_len, char *version, char *errstr, size_t errstr_size) {
    if (!model || !model_len || !card || !card_len)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "registry: empty model or card");
    return reg->ops->reg(reg->impl, model, model_len, card, card_len, version, errstr, errstr_size);
}

int sn_registry_fetch(sn_registry_t *reg, const char *version, uint8_t **model, size_t *model_len,
                      char **card, size_t *card_len, char *errstr, size_t errstr_size) {
    if (!valid_version(version))
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "registry: \"%s\" is not a version number", version ? version : "");
    return reg->ops->fetch(reg->impl, version, model, model_len, card, card_len, errstr,
                           errstr_size);
}

int sn_registry_get_alias(sn_registry_t *reg, const char *alias, char *version, char *errstr,
                          size_t errstr_size) {
    int rc;

    if (!valid_alias(alias))
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "registry: bad alias \"%s\"",
                          alias ? alias : "");
    rc = reg->ops->get_alias(reg->impl, alias, version, errstr, errstr_size);
    if (rc == 0 && !valid_version(version))
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "registry: alias %s holds \"%s\", not a version", alias, version);
    return rc;
}

int sn_registry_set_alias(sn_registry_t *reg, const char *alias, const char *version, char *errstr,
                          size_t errstr_size) {
    if (!valid_alias(alias))
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "registry: bad alias \"%s\"",
                          alias ? alias : "");
    if (!valid_version(version))
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "registry: \"%s\" is not a version number", version ? version : "");
    return reg->ops->set_alias(reg->impl, alias, version, errstr, errstr_size);
}

int sn_registry_rollback(sn_registry_t *reg, const char *alias, char *version, char *errstr,
                         size_t errstr_size) {
    if (!valid_alias(alias))
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "registry: bad alias \"%s\"",
                          alias ? alias : "");
    return reg->ops->rollback(reg->impl, alias, version, errstr, errstr_size);
}

static int cmp_entry(const void *a, const void *b) {
    long x = strtol(((const sn_registry_entry_t *)a)->version, NULL, 10);
    long y = strtol(((const sn_registry_entry_t *)b)->version, NULL, 10);

    return (x > y) - (x < y);
}

int sn_registry_list(sn_registry_t *reg, size_t max, sn_registry_entry_t **out, size_t *n,
                     char *errstr, size_t errstr_size) {
    int rc;

    *out = NULL;
    *n = 0;
    if ((rc = reg->ops->list(reg->impl, out, n, errstr, errstr_size)) != 0) return rc;
    if (*n > 1) qsort(*out, *n, sizeof(**out), cmp_entry);
    if (max && *n > max) {
        memmove(*out, *out + (*n - max), max * sizeof(**out));
        *n = max;
    }
    return 0;
}

int sn_registry_alias_history(sn_registry_t *reg, const char *alias,
                              char (*out)[SN_REGISTRY_VERSION_MAX], size_t max, size_t *n,
                              char *errstr, size_t errstr_size) {
    *n = 0;
    if (!valid_alias(alias))
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "registry: bad alias \"%s\"",
                          alias ? alias : "");
    return reg->ops->history(reg->impl, alias, out, max, n, errstr, errstr_size);
}

/* ---- history helpers ---- */

static size_t history_count(const char *hist, char sep) {
    size_t n = 0;

    for (const char *p = hist; *p; p++)
        if (*p == sep) n++;
    return n;
}

int sn_registry_history_push(char *hist, size_t size, char sep, const char *version) {
    size_t len = strlen(hist), vlen = strlen(version);

    /* drop the oldest entries (at the front) beyond the bound */
    while (history_count(hist, sep) >= SN_REGISTRY_HISTORY_MAX || len + vlen + 2 > size) {
        char *p = strchr(hist, sep);

        if (!p) {
            hist[0] = '\0';
            len = 0;
            break;
        }
        memmove(hist, p + 1, strlen(p + 1) + 1);
        len = strlen(hist);
    }
    if (len + vlen + 2 > size) return SN_ERR_NOMEM;
    memcpy(hist + len, version, vlen);
    hist[len + vlen] = sep;
    hist[len + vlen + 1] = '\0';
    return 0;
}

int sn_registry_history_pop(char *hist, char sep, char *version) {
    size_t len = strlen(hist);
    char *start;

    while (len && hist[len - 1] == sep) hist[--len] = '\0';
    if (len == 0) return SN_ERR_NOENT;
    start = strrchr(hist, sep);
    start = start ? start + 1 : hist;
    snprintf(version, SN_REGISTRY_VERSION_MAX, "%s", start);
    *start = '\0';
    return 0;
}

void sn_registry_history_list(const char *hist, char sep, char (*out)[SN_REGISTRY_VERSION_MAX],
                              size_t max, size_t *n) {
    const char *end = hist + strlen(hist);

    *n = 0;
    while (end > hist && *n < max) {
        const char *start = end;
        size_t len;

        while (start > hist && start[-1] != sep) start--;
        len = (size_t)(end - start);
        if (len > 0 && len < SN_REGISTRY_VERSION_MAX) {
            memcpy(out[*n], start, len);
            out[*n][len] = '\0';
            (*n)++;
        }
        end = start > hist ? start - 1 : hist;
    }
}
