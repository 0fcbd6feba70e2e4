#include "common/conf.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/err.h"

#define SOURCE_MAX 160
#define LINE_MAX_LEN 4096
#define PASSTHROUGH_MAX 256

struct entry {
    const sn_conf_def_t *def; /* NULL for a pass-through kafka.* key */
    char *name;               /* owned copy for pass-through keys */
    char *text;               /* current value as text, owned */
    int64_t i;
    double d;
    char source[SOURCE_MAX];
};

struct sn_conf {
    struct entry *entries;
    size_t n, cap;
};

static char *xstrdup(const char *s) {
    size_t len = strlen(s) + 1;
    char *p = malloc(len);

    if (p) memcpy(p, s, len);
    return p;
}

static struct entry *find(const sn_conf_t *conf, const char *key) {
    for (size_t i = 0; i < conf->n; i++)
        if (strcmp(conf->entries[i].name, key) == 0) return &conf->entries[i];
    return NULL;
}

static int parse_bool(const char *s, int *out) {
    static const char *yes[] = {"true", "1", "yes", "on"};
    static const char *no[] = {"false", "0", "no", "off"};

    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) return *out = 1, 0;
        if (strcasecmp(s, no[i]) == 0) return *out = 0, 0;
    }
    return -1;
}

/* An enum value is one of the '|'-separated choices, compared whole. */
static int enum_has(const char *choices, const char *v) {
    size_t vlen = strlen(v);
    const char *p = choices;

    while (*p) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);

        if (len == vlen && strncmp(p, v, len) == 0) return 1;
        if (!bar) break;
        p = bar + 1;
    }
    return 0;
}

/* Parses text for def into e; on failure writes why into errstr. */
static int parse_value(const sn_conf_def_t *def, const char *text, struct entry *e, char *errstr,
                       size_t errstr_size) {
    char *end = NULL;
    int b;

    switch (def->type) {
    case SN_CONF_STR: return 0;
    case SN_CONF_INT: {
        long long v;

        errno = 0;
        v = strtoll(text, &end, 10);
        if (errno || end == text || *end != '\0')
            return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                              "expected an integer, got \"%s\"", text);
        if ((double)v < def->min || (double)v > def->max)
            return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                              "%lld is outside the range [%.0f, %.0f]", v, def->min, def->max);
        e->i = v;
        return 0;
    }
    case SN_CONF_DOUBLE: {
        double v;

        errno = 0;
        v = strtod(text, &end);
        if (errno || end == text || *end != '\0' || !isfinite(v))
            return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "expected a number, got \"%s\"",
                              text);
        if (v < def->min || v > def->max)
            return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                              "%g is outside the range [%g, %g]", v, def->min, def->max);
        e->d = v;
        return 0;
    }
    case SN_CONF_BOOL:
        if (parse_bool(text, &b) != 0)
            return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                              "expected true or false, got \"%s\"", text);
        e->i = b;
        return 0;
    case SN_CONF_ENUM:
        if (!enum_has(def->choices, text))
            return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "expected one of %s, got \"%s\"",
                              def->choices, text);
        return 0;
    }
    return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "bad type");
}

static int grow(sn_conf_t *conf) {
    size_t cap = conf->cap ? conf->cap * 2 : 64;
    struct entry *p;

    if (conf->n < conf->cap) return 0;
    p = realloc(conf->entries, cap * sizeof(*p));
    if (!p) return SN_ERR_NOMEM;
    conf->entries = p;
    conf->cap = cap;
    return 0;
}

sn_conf_t *sn_conf_new(const sn_conf_def_t *const *tables, size_t ntables, char *errstr,
                       size_t errstr_size) {
    sn_conf_t *conf = calloc(1, sizeof(*conf));
    char why[256];

    if (!conf) goto nomem;
    for (size_t t = 0; t < ntables; t++) {
        for (const sn_conf_def_t *def = tables[t]; def->name; def++) {
            struct entry *e;

            if (strchr(def->name, '_') || find(conf, def->name)) {
                sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                           "config table: key '%s' is duplicated or contains '_'", def->name);
                goto fail;
            }
            if (grow(conf) != 0) goto nomem;
            e = &conf->entries[conf->n];
            memset(e, 0, sizeof(*e));
            e->def = def;
            e->name = (char *)def->name;
            e->text = xstrdup(def->def);
            if (!e->text) goto nomem;
            conf->n++;
            snprintf(e->source, sizeof(e->source), "default");
            if (parse_value(def, def->def, e, why, sizeof(why)) != 0) {
                sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "config table: default of '%s': %s",
                           def->name, why);
                goto fail;
            }
        }
    }
    return conf;
nomem:
    sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
fail:
    sn_conf_destroy(conf);
    return NULL;
}

void sn_conf_destroy(sn_conf_t *conf) {
    if (!conf) return;
    for (size_t i = 0; i < conf->n; i++) {
        free(conf->entries[i].text);
        if (!conf->entries[i].def) free(conf->entries[i].name);
    }
    free(conf->entries);
    free(conf);
}

int sn_conf_set(sn_conf_t *conf, const char *key, const char *value, const char *source,
                char *errstr, size_t errstr_size) {
    struct entry *e = find(conf, key);
    struct entry tmp;
    char why[256];
    char *text;

    if (!e) {
        size_t passthrough = 0;

        if (strncmp(key, "kafka.", 6) != 0 || key[6] == '\0')
            return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "%s: unknown config key '%s'",
                              source, key);
        for (size_t i = 0; i < conf->n; i++) passthrough += conf->entries[i].def == NULL;
        if (passthrough >= PASSTHROUGH_MAX || grow(conf) != 0)
            return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "%s: too many kafka.* keys",
                              source);
        e = &conf->entries[conf->n];
        memset(e, 0, sizeof(*e));
        e->name = xstrdup(key);
        e->text = xstrdup("");
        if (!e->name || !e->text) {
            free(e->name);
            free(e->text);
            return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        }
        conf->n++;
    }

    tmp = *e;
    if (e->def && parse_value(e->def, value, &tmp, why, sizeof(why)) != 0)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "%s: config key '%s': %s", source,
                          key, why);
    text = xstrdup(value);
    if (!text) return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
    free(e->text);
    tmp.text = text;
    snprintf(tmp.source, sizeof(tmp.source), "%s", source);
    *e = tmp;
    return 0;
}

static char *trim(char *s) {
    char *end;

    while (isspace((unsigned char)*s)) s++;
    end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1])) *--end = '\0';
    return s;
}

int sn_conf_load_file(sn_conf_t *conf, const char *path, char *errstr, size_t errstr_size) {
    char line[LINE_MAX_LEN];
    char source[SOURCE_MAX];
    FILE *fp = fopen(path, "r");
    int lineno = 0;
    int err = 0;

    if (!fp)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "cannot open config file %s: %s",
                          path, strerror(errno));
    while (fgets(line, sizeof(line), fp)) {
        char *eq, *key, *value;

        lineno++;
        snprintf(source, sizeof(source), "file %s:%d", path, lineno);
        if (!strchr(line, '\n') && !feof(fp)) {
            err = sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "%s: line longer than %d bytes",
                             source, LINE_MAX_LEN - 2);
            goto out;
        }
        key = trim(line);
        if (*key == '\0' || *key == '#') continue;
        eq = strchr(key, '=');
        if (!eq) {
            err = sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                             "%s: expected key=value, got \"%s\"", source, key);
            goto out;
        }
        *eq = '\0';
        value = trim(eq + 1);
        key = trim(key);
        if ((err = sn_conf_set(conf, key, value, source, errstr, errstr_size)) != 0) goto out;
    }
    if (ferror(fp))
        err = sn_err_set(errstr, errstr_size, SN_ERR_IO, "reading %s: %s", path, strerror(errno));
out:
    fclose(fp);
    return err;
}

int sn_conf_load_env(sn_conf_t *conf, char *const *envp, char *errstr, size_t errstr_size) {
    static const char prefix[] = "SENTINEL_";
    const size_t plen = sizeof(prefix) - 1;

    for (; envp && *envp; envp++) {
        const char *var = *envp;
        const char *eq = strchr(var, '=');
        char key[256];
        char source[SOURCE_MAX];
        size_t klen;
        int err;

        if (strncmp(var, prefix, plen) != 0 || !eq) continue;
        klen = (size_t)(eq - var) - plen;
        if (klen == 0 || klen >= sizeof(key))
            return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "environment: bad variable %.*s",
                              (int)(eq - var), var);
        for (size_t i = 0; i < klen; i++) {
            char c = var[plen + i];
            key[i] = c == '_' ? '.' : (char)tolower((unsigned char)c);
        }
        key[klen] = '\0';
        snprintf(source, sizeof(source), "environment %.*s", (int)(eq - var), var);
        if ((err = sn_conf_set(conf, key, eq + 1, source, errstr, errstr_size)) != 0) return err;
    }
    return 0;
}

static const struct entry *get(const sn_conf_t *conf, const char *key, enum sn_conf_type type) {
    const struct entry *e = find(conf, key);

    if (!e || !e->def ||
        (e->def->type != type && !(type == SN_CONF_STR && e->def->type == SN_CONF_ENUM))) {
        fprintf(stderr, "BUG: config key '%s' read as the wrong type or not in a table\n", key);
        abort();
    }
    return e;
}

const char *sn_conf_str(const sn_conf_t *conf, const char *key) {
    return get(conf, key, SN_CONF_STR)->text;
}

int64_t sn_conf_int(const sn_conf_t *conf, const char *key) {
    return get(conf, key, SN_CONF_INT)->i;
}

double sn_conf_double(const sn_conf_t *conf, const char *key) {
    return get(conf, key, SN_CONF_DOUBLE)->d;
}

int sn_conf_bool(const sn_conf_t *conf, const char *key) {
    return (int)get(conf, key, SN_CONF_BOOL)->i;
}

const char *sn_conf_source(const sn_conf_t *conf, const char *key) {
    const struct entry *e = find(conf, key);

    return e ? e->source : NULL;
}

int sn_conf_kafka_each(const sn_conf_t *conf,
                       int (*fn)(const char *key, const char *value, const char *source,
                                 void *opaque),
                       void *opaque) {
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < conf->n; i++) {
            const struct entry *e = &conf->entries[i];
            int rc;

            if ((pass == 0) != (e->def != NULL) || strncmp(e->name, "kafka.", 6) != 0) continue;
            if ((rc = fn(e->name + 6, e->text, e->source, opaque)) != 0) return rc;
        }
    }
    return 0;
}

int sn_conf_is_secret(const sn_conf_t *conf, const char *key) {
    static const char *words[] = {"password", "secret", "sasl.oauthbearer.config", "ssl.key",
                                  "token"};
    const struct entry *e = find(conf, key);

    if (e && e->def) return (e->def->flags & SN_CONF_F_SECRET) != 0;
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (strstr(key, words[i])) return 1;
    return 0;
}

void sn_conf_dump(const sn_conf_t *conf, FILE *out) {
    for (size_t i = 0; i < conf->n; i++) {
        const struct entry *e = &conf->entries[i];
        const char *v = e->text;

        if (sn_conf_is_secret(conf, e->name) && *v) v = "******";
        fprintf(out, "%s = %s  # %s\n", e->name, v, e->source);
    }
}

static const char *type_name(enum sn_conf_type t) {
    switch (t) {
    case SN_CONF_STR: return "string";
    case SN_CONF_INT: return "integer";
    case SN_CONF_DOUBLE: return "number";
    case SN_CONF_BOOL: return "boolean";
    case SN_CONF_ENUM: return "enum";
    }
    return "?";
}

void sn_conf_write_markdown(const sn_conf_def_t *const *tables, const char *const *titles,
                            size_t ntables, FILE *out) {
    fprintf(
        out,
        "# Configuration reference\n\n"
        "Generated by `sentinel config --markdown` from the config tables in the code; do not\n"
        "edit by hand (a test fails when this file is stale).\n\n"
        "Sources, in rising precedence: defaults, the file given with `-c FILE` (`key=value`\n"
        "lines, `#` comments), environment variables (`SENTINEL_` + the key in upper case with\n"
        "dots as underscores: `kafka.bootstrap.servers` is `SENTINEL_KAFKA_BOOTSTRAP_SERVERS`),\n"
        "and `-X key=value` on the command line. An unknown key or a bad value stops the\n"
        "program with exit code 2 and a message naming the key and its source.\n\n"
        "Any other `kafka.*` key passes through to librdkafka (without the `kafka.` prefix) for\n"
        "both consumers and producers; see librdkafka's CONFIGURATION.md. Secrets are masked\n"
        "by `sentinel config`.\n");
    for (size_t t = 0; t < ntables; t++) {
        fprintf(
            out,
            "\n## %s\n\n| key | type | default | range | description |\n|---|---|---|---|---|\n",
            titles[t]);
        for (const sn_conf_def_t *d = tables[t]; d->name; d++) {
            char range[128] = "";

            if (d->type == SN_CONF_INT)
                snprintf(range, sizeof(range), "%.0f .. %.0f", d->min, d->max);
            else if (d->type == SN_CONF_DOUBLE)
                snprintf(range, sizeof(range), "%g .. %g", d->min, d->max);
            else if (d->type == SN_CONF_ENUM) {
                /* '|' would end the markdown cell */
                size_t n = 0;

                for (const char *c = d->choices; *c && n + 3 < sizeof(range); c++) {
                    if (*c == '|') {
                        range[n++] = ',';
                        range[n++] = ' ';
                    } else {
                        range[n++] = *c;
                    }
                }
                range[n] = '\0';
            }
            fprintf(out, "| `%s` | %s%s | `%s` | %s | %s |\n", d->name, type_name(d->type),
                    (d->flags & SN_CONF_F_SECRET) ? ", secret" : "", d->def, range, d->help);
        }
    }
}
