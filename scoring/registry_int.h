/* registry_int.h: what the registry front end (registry.c) and its backends
 * (registry_file.c, registry_mlflow.c, registry_s3.c) share. Not a public
 * header. */
#ifndef SN_REGISTRY_INT_H
#define SN_REGISTRY_INT_H

#include "scoring/registry.h"

/* One backend. impl is the backend's private context; every function has the
 * contract of the public function of the same name, with arguments already
 * checked (alias and version names valid, pointers non-NULL). */
struct sn_registry_ops {
    const char *kind;
    int (*reg)(void *impl, const void *model, size_t model_len, const char *card, size_t card_len,
               char *version, char *errstr, size_t errstr_size);
    int (*fetch)(void *impl, const char *version, uint8_t **model, size_t *model_len, char **card,
                 size_t *card_len, char *errstr, size_t errstr_size);
    int (*get_alias)(void *impl, const char *alias, char *version, char *errstr,
                     size_t errstr_size);
    int (*set_alias)(void *impl, const char *alias, const char *version, char *errstr,
                     size_t errstr_size);
    int (*rollback)(void *impl, const char *alias, char *version, char *errstr, size_t errstr_size);
    int (*list)(void *impl, sn_registry_entry_t **out, size_t *n, char *errstr, size_t errstr_size);
    int (*history)(void *impl, const char *alias, char (*out)[SN_REGISTRY_VERSION_MAX], size_t max,
                   size_t *n, char *errstr, size_t errstr_size);
    void (*destroy)(void *impl);
};

extern const struct sn_registry_ops sn_registry_file_ops;
extern const struct sn_registry_ops sn_registry_mlflow_ops;
extern const struct sn_registry_ops sn_registry_s3_ops;

/* Backend constructors; opts and the parsed location are borrowed. */
void *sn_registry_file_open(const char *dir, const sn_registry_opts_t *opts, char *errstr,
                            size_t errstr_size);
void *sn_registry_mlflow_open(const char *base_url, const sn_registry_opts_t *opts, char *errstr,
                              size_t errstr_size);
/* url is the whole s3://BUCKET[/PREFIX]. */
void *sn_registry_s3_open(const char *url, const sn_registry_opts_t *opts, char *errstr,
                          size_t errstr_size);

/* Splits s3://BUCKET[/PREFIX] into bucket and prefix (both caller-owned;
 * prefix without leading or trailing '/', "" when none), refusing bucket
 * names S3 would refuse and prefixes with empty, "." or ".." segments.
 * SN_ERR_INVALID with errstr naming the url. */
int sn_registry_s3_parse_url(const char *url, char *bucket, size_t bucket_size, char *prefix,
                             size_t prefix_size, char *errstr, size_t errstr_size);

/* An S3 LastModified ("2026-01-02T03:04:05.678Z", borrowed) as Unix ms; 0
 * when it does not parse. */
int64_t sn_registry_s3_parse_time(const char *s);

/* A version history as text: versions separated by ',' or newlines, oldest
 * first. Helpers shared by both backends so that they bound and order it the
 * same way. */

/* Appends version to hist (a NUL-terminated list, caller-owned, size bytes),
 * dropping the oldest entries beyond SN_REGISTRY_HISTORY_MAX. */
int sn_registry_history_push(char *hist, size_t size, char sep, const char *version);

/* Removes the newest entry of hist into version (SN_REGISTRY_VERSION_MAX);
 * SN_ERR_NOENT when empty. */
int sn_registry_history_pop(char *hist, char sep, char *version);

/* Fills out with the entries newest first. */
void sn_registry_history_list(const char *hist, char sep, char (*out)[SN_REGISTRY_VERSION_MAX],
                              size_t max, size_t *n);

#endif
