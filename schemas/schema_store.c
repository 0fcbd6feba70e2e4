#include "schemas/schema_store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "schemas/schema_registry.h"

struct id_entry {
    int32_t id;
    char *path; /* schema.dir joined with the manifest's file name */
};

struct sn_schema_store {
    struct id_entry *ids; /* local mode */
    size_t nids;
    sn_schema_registry_t *reg; /* registry mode */
};

int sn_schema_read_file(const char *path, char **out, size_t *len_out, char *errstr,
                        size_t errstr_size) {
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0;
    int rc = 0;

    *out = NULL;
    if (!f) return sn_err_set(errstr, errstr_size, SN_ERR_IO, "%s: %s", path, strerror(errno));
    if (!(buf = malloc(SN_SCHEMA_STORE_FILE_MAX + 1))) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        goto out;
    }
    len = fread(buf, 1, SN_SCHEMA_STORE_FILE_MAX + 1, f);
    if (ferror(f)) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_IO, "%s: read error", path);
        goto out;
    }
    if (len > SN_SCHEMA_STORE_FILE_MAX) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "%s: larger than %d bytes", path,
                        SN_SCHEMA_STORE_FILE_MAX);
        goto out;
    }
    buf[len] = '\0';
    *out = buf;
    buf = NULL;
    if (len_out) *len_out = len;
out:
    free(buf);
    fclose(f);
    return rc;
}

void sn_schema_store_destroy(sn_schema_store_t *store) {
    if (!store) return;
    for (size_t i = 0; i < store->nids; i++) free(store->ids[i].path);
    free(store->ids);
    sn_schema_registry_destroy(store->reg);
    free(store);
}

/* Parses "<id> <file>" lines of <dir>/ids. Strict on purpose: a duplicate id
 * or a malformed line is a deployment mistake that would otherwise decode
 * records with the wrong schema, so creation fails naming the line. */
static int load_manifest(sn_schema_store_t *st, const char *dir, char *errstr, size_t errstr_size) {
    char path[4096];
    char *text = NULL, *line, *next;
    int lineno = 0, rc;

    if ((size_t)snprintf(path, sizeof(path), "%s/ids", dir) >= sizeof(path))
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "schema.dir too long");
    if ((rc = sn_schema_read_file(path, &text, NULL, errstr, errstr_size)) != 0) return rc;
    for (line = text; line && *line; line = next) {
        char *end, *file;
        long long id;
        size_t flen;

        lineno++;
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        while (*line == ' ' || *line == '\t' || *line == '\r') line++;
        flen = strlen(line);
        while (flen && (line[flen - 1] == ' ' || line[flen - 1] == '\t' || line[flen - 1] == '\r'))
            line[--flen] = '\0';
        if (*line == '\0' || *line == '#') continue;
        errno = 0;
        id = strtoll(line, &end, 10);
        if (errno || end == line || (*end != ' ' && *end != '\t') || id < 1 || id > INT32_MAX) {
            rc = sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                            "%s:%d: expected '<id> <file>' with id in 1..2147483647", path, lineno);
            goto out;
        }
        for (file = end; *file == ' ' || *file == '\t'; file++)
            ;
        if (*file == '\0' || strpbrk(file, " \t")) {
            rc = sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                            "%s:%d: expected one file name after the id", path, lineno);
            goto out;
        }
        for (size_t i = 0; i < st->nids; i++)
            if (st->ids[i].id == (int32_t)id) {
                rc = sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "%s:%d: duplicate id %lld",
                                path, lineno, id);
                goto out;
            }
        if (st->nids >= SN_SCHEMA_STORE_IDS_MAX) {
            rc = sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "%s: more than %d ids", path,
                            SN_SCHEMA_STORE_IDS_MAX);
            goto out;
        }
        {
            struct id_entry *grown = realloc(st->ids, (st->nids + 1) * sizeof(*grown));
            size_t plen = strlen(dir) + 1 + strlen(file) + 1;
            char *p;

            if (!grown) goto nomem;
            st->ids = grown;
            if (!(p = malloc(plen))) goto nomem;
            if (file[0] == '/')
                snprintf(p, plen, "%s", file);
            else
                snprintf(p, plen, "%s/%s", dir, file);
            st->ids[st->nids].id = (int32_t)id;
            st->ids[st->nids].path = p;
            st->nids++;
        }
    }
    rc = 0;
    goto out;
nomem:
    rc = sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
out:
    free(text);
    return rc;
}

sn_schema_store_t *sn_schema_store_new(const sn_conf_t *conf, char *errstr, size_t errstr_size) {
    sn_schema_store_t *st = calloc(1, sizeof(*st));
    const char *url = sn_conf_str(conf, "schema.registry.url");

    if (!st) {
        sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        return NULL;
    }
    if (url && *url) {
        st->reg = sn_schema_registry_new(url, sn_conf_str(conf, "schema.registry.username"),
                                         sn_conf_str(conf, "schema.registry.password"),
                                         (long)sn_conf_int(conf, "schema.registry.timeout.ms"),
                                         errstr, errstr_size);
        if (!st->reg) goto fail;
    } else if (load_manifest(st, sn_conf_str(conf, "schema.dir"), errstr, errstr_size) != 0) {
        goto fail;
    }
    return st;
fail:
    sn_schema_store_destroy(st);
    return NULL;
}

int sn_schema_store_is_registry(const sn_schema_store_t *store) { return store->reg != NULL; }

int sn_schema_store_fetch(sn_schema_store_t *store, int32_t id, char **json_out, char *errstr,
                          size_t errstr_size) {
    *json_out = NULL;
    if (store->reg) return sn_schema_registry_get(store->reg, id, json_out, errstr, errstr_size);
    for (size_t i = 0; i < store->nids; i++)
        if (store->ids[i].id == id) {
            int rc = sn_schema_read_file(store->ids[i].path, json_out, NULL, errstr, errstr_size);

            /* A listed file that cannot be read is a broken deployment, not a
             * bad record: report it as I/O so it is not dead-lettered. */
            return rc;
        }
    return sn_err_set(errstr, errstr_size, SN_ERR_NOENT, "schema id %d is not in the ids manifest",
                      (int)id);
}

int sn_schema_store_id_for(sn_schema_store_t *store, const char *subject, const char *schema_json,
                           int do_register, int32_t *id_out, char *errstr, size_t errstr_size) {
    if (!store->reg)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                          "schema.registry.mode needs schema.registry.url");
    return sn_schema_registry_id_for(store->reg, subject, schema_json, do_register, id_out, errstr,
                                     errstr_size);
}
