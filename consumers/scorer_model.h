/* scorer_model.h: a model version as the scorer serves it.
 *
 * Everything a version needs to score, built and checked off the hot path:
 * the XGBoost model (hash checked against its card), the card's feature spec
 * bound to the telemetry schema, the Redis feature backend for that spec, and
 * the card's decision threshold. */
#ifndef SN_SCORER_MODEL_H
#define SN_SCORER_MODEL_H

#include <stddef.h>

#include "common/conf.h"
#include "schemas/codec.h"
#include "scoring/feature_redis.h"
#include "scoring/features.h"
#include "scoring/model.h"

typedef struct sn_scorer_version {
    sn_model_t *model;
    sn_feature_spec_t *spec;
    sn_feature_redis_t *features;
    double threshold;
    char name[SN_MODEL_NAME_MAX];
    char version[SN_MODEL_VERSION_MAX];
} sn_scorer_version_t;

/* Where model.alias of model.name points now, into version (size bytes).
 * SN_ERR_NOENT when the alias is not set, SN_ERR_TRANSIENT when the registry
 * cannot be reached. conf is borrowed. */
int sn_scorer_version_resolve(const sn_conf_t *conf, char *version, size_t size, char *errstr,
                              size_t errstr_size);

/* As sn_scorer_version_resolve, for another alias of model.name (borrowed). */
int sn_scorer_version_resolve_alias(const sn_conf_t *conf, const char *alias, char *version,
                                    size_t size, char *errstr, size_t errstr_size);

/* Fetches, checks, loads and warms up a version. codec (borrowed) is only used
 * to look up field positions, which never change, so the loader thread may
 * use the scoring thread's codec for that. NULL with errstr naming what is
 * wrong (a corrupt model, a hash mismatch, a spec the schema cannot feed). */
sn_scorer_version_t *sn_scorer_version_load(const sn_conf_t *conf, const sn_codec_t *codec,
                                            const char *version, char *errstr, size_t errstr_size);

/* As sn_scorer_version_load, with the version's feature state under
 * key_prefix (borrowed for the call) instead of redis.key.prefix. */
sn_scorer_version_t *sn_scorer_version_load_prefix(const sn_conf_t *conf, const sn_codec_t *codec,
                                                   const char *version, const char *key_prefix,
                                                   char *errstr, size_t errstr_size);

/* NULL-safe. */
void sn_scorer_version_destroy(sn_scorer_version_t *v);

#endif
