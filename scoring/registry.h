/* registry.h: where model versions live and which one is in production.
 *
 * A version is a pair of files, model.ubj and card.json, under a registered
 * model name; versions are numbered 1, 2, ... by the registry and never
 * change once written. Aliases ("production", "challenger") point at
 * versions; every alias move is recorded in a history, so that rollback puts
 * the alias back on the version it had before.
 *
 * Backends, chosen by registry.url:
 *   file://DIR   a directory:
 *                  DIR/<name>/versions/<n>/{model.ubj,card.json}
 *                  DIR/<name>/aliases/<alias>          the version, one line
 *                  DIR/<name>/aliases/<alias>.history  earlier versions, one per line
 *                A version folder is written under a temporary name and
 *                renamed into place, an alias file is replaced with rename(),
 *                and alias moves hold an flock on DIR/<name>/.lock, so that a
 *                reader never sees a half-written version or alias.
 *   mlflow+http://HOST:PORT  (or mlflow+https://) an MLflow tracking server
 *                through its REST API: one run per version in the experiment
 *                registry.mlflow.experiment holding the files as artifacts
 *                (uploaded through the server's mlflow-artifacts proxy, so the
 *                server needs --serve-artifacts), a registered model version
 *                whose source is that run's model folder, MLflow aliases, and
 *                the alias history in a registered-model tag
 *                (sentinel.alias_history.<alias>).
 *   s3://BUCKET[/PREFIX]  an S3 bucket, through the S3 client and its s3.*
 *                keys (endpoint, credentials, retries):
 *                  PREFIX/<name>/versions/<n>/{model.ubj,card.json}
 *                  PREFIX/<name>/versions/<n>/{claim,claims/<nonce>}  who took n
 *                  PREFIX/<name>/aliases/<alias>            the version, one line
 *                  PREFIX/<name>/aliases/<alias>.history/<seq>
 *                                 the rollback stack after move <seq>
 *                A version is complete once card.json, written last, exists;
 *                numbers are claimed so that concurrent writers never share
 *                one (see registry_s3.c), but one may be skipped; history
 *                objects are only ever added.
 *
 * Errors: SN_ERR_NOENT for an unknown version or unset alias,
 * SN_ERR_TRANSIENT when the registry cannot be reached (retry),
 * SN_ERR_INVALID for a refused request (or a missing S3 bucket),
 * SN_ERR_FATAL when S3 refuses the credentials (403), SN_ERR_IO for local
 * file errors.
 * A handle is used by one thread at a time. */
#ifndef SN_REGISTRY_H
#define SN_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include "common/conf.h"

#define SN_REGISTRY_VERSION_MAX 32  /* a version as text, NUL included */
#define SN_REGISTRY_ALIAS_MAX 64    /* alias name, NUL included */
#define SN_REGISTRY_HISTORY_MAX 100 /* alias moves remembered for rollback */

typedef struct sn_registry sn_registry_t;

/* Options for sn_registry_new; strings are borrowed for the call. */
typedef struct sn_registry_opts {
    const char *url;        /* file://DIR, mlflow+http(s)://HOST:PORT, s3://BUCKET[/PREFIX] */
    const char *model_name; /* [A-Za-z0-9._-], 1..63 bytes */
    long timeout_ms;        /* MLflow requests; 0: 30 s */
    const char *username;   /* MLflow basic auth; NULL or "" for none */
    const char *password;
    const char *token;      /* MLflow bearer token; NULL or "" for none */
    const char *experiment; /* MLflow experiment; NULL: "sentinel" */
    const sn_conf_t *conf;  /* S3: its s3.* keys configure the client (endpoint,
                               credentials, retries); NULL: AWS defaults */
} sn_registry_opts_t;

/* Opens a registry. Does not contact a remote registry; a file registry's
 * folders are created on the first write. NULL with errstr set for a bad URL
 * (an S3 bucket name S3 would refuse, a prefix with "..") or model name. */
sn_registry_t *sn_registry_new(const sn_registry_opts_t *opts, char *errstr, size_t errstr_size);

/* Opens the registry that the registry.* and model.name keys of conf
 * (borrowed for the call) describe. */
sn_registry_t *sn_registry_from_conf(const sn_conf_t *conf, char *errstr, size_t errstr_size);

/* NULL-safe. */
void sn_registry_destroy(sn_registry_t *reg);

/* "file", "mlflow" or "s3". */
const char *sn_registry_kind(const sn_registry_t *reg);

/* Stores a new version: model (model_len bytes) and card (card_len bytes),
 * both borrowed for the call. The version number is written into version
 * (caller-owned, SN_REGISTRY_VERSION_MAX bytes). Aliases are not touched. */
int sn_registry_register(sn_registry_t *reg, const void *model, size_t model_len, const char *card,
                         size_t card_len, char *version, char *errstr, size_t errstr_size);

/* Reads a version's files into *model and *card (each caller frees with
 * free(); *card is NUL-terminated). Either out pointer pair may be NULL to
 * skip that file. */
int sn_registry_fetch(sn_registry_t *reg, const char *version, uint8_t **model, size_t *model_len,
                      char **card, size_t *card_len, char *errstr, size_t errstr_size);

/* Resolves alias into version (SN_REGISTRY_VERSION_MAX bytes). SN_ERR_NOENT
 * when the alias is not set. */
int sn_registry_get_alias(sn_registry_t *reg, const char *alias, char *version, char *errstr,
                          size_t errstr_size);

/* Points alias at version (which must exist), recording the previous target in
 * the alias history (bounded to SN_REGISTRY_HISTORY_MAX). Setting the version
 * it already has is a no-op. */
int sn_registry_set_alias(sn_registry_t *reg, const char *alias, const char *version, char *errstr,
                          size_t errstr_size);

/* Moves alias back to the version it had before its last move, dropping that
 * entry from the history; the new target is written into version
 * (SN_REGISTRY_VERSION_MAX bytes). SN_ERR_NOENT when there is no history. */
int sn_registry_rollback(sn_registry_t *reg, const char *alias, char *version, char *errstr,
                         size_t errstr_size);

/* One version in a listing. */
typedef struct sn_registry_entry {
    char version[SN_REGISTRY_VERSION_MAX];
    char aliases[128];  /* the aliases pointing at it, comma-separated, or "" */
    int64_t created_ms; /* when it was registered; 0 when unknown */
} sn_registry_entry_t;

/* Lists the versions in ascending order into *out (caller frees with free()),
 * at most max entries (the newest ones when there are more). */
int sn_registry_list(sn_registry_t *reg, size_t max, sn_registry_entry_t **out, size_t *n,
                     char *errstr, size_t errstr_size);

/* The alias history, most recent first, into out (caller-owned, max
 * entries of SN_REGISTRY_VERSION_MAX bytes); *n is the count. */
int sn_registry_alias_history(sn_registry_t *reg, const char *alias,
                              char (*out)[SN_REGISTRY_VERSION_MAX], size_t max, size_t *n,
                              char *errstr, size_t errstr_size);

#endif
