#include "consumers/scorer_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "scoring/card.h"
#include "scoring/registry.h"

int sn_scorer_version_resolve(const sn_conf_t *conf, char *version, size_t size, char *errstr,
                              size_t errstr_size) {
    return sn_scorer_version_resolve_alias(conf, sn_conf_str(conf, "model.alias"), version, size,
                                           errstr, errstr_size);
}

/* One registry handle per call: the loader thread asks rarely, and a fresh
 * handle picks up a registry that moved or came back. */
int sn_scorer_version_resolve_alias(const sn_conf_t *conf, const char *alias, char *version,
                                    size_t size, char *errstr, size_t errstr_size) {
    char v[SN_REGISTRY_VERSION_MAX];
    sn_registry_t *reg = sn_registry_from_conf(conf, errstr, errstr_size);
    int rc;

    if (!reg) return SN_ERR_INVALID;
    rc = sn_registry_get_alias(reg, alias, v, errstr, errstr_size);
    sn_registry_destroy(reg);
    if (rc == 0) snprintf(version, size, "%s", v);
    return rc;
}

static int field_index(void *opaque, const char *name) {
    return sn_codec_field_index(opaque, name);
}

sn_scorer_version_t *sn_scorer_version_load(const sn_conf_t *conf, const sn_codec_t *codec,
                                            const char *version, char *errstr, size_t errstr_size) {
    return sn_scorer_version_load_prefix(
        conf, codec, version, sn_conf_str(conf, "redis.key.prefix"), errstr, errstr_size);
}

/* Everything that can fail happens here, on the loader thread, so that the
 * scoring thread only ever swaps in a version that is ready to serve. */
sn_scorer_version_t *sn_scorer_version_load_prefix(const sn_conf_t *conf, const sn_codec_t *codec,
                                                   const char *version, const char *key_prefix,
                                                   char *errstr, size_t errstr_size) {
    sn_scorer_version_t *v = calloc(1, sizeof(*v));
    sn_registry_t *reg = NULL;
    sn_card_t *card = NULL;
    sn_model_ctx_t *ctx = NULL;
    uint8_t *model = NULL;
    char *card_json = NULL;
    size_t model_len = 0, card_len = 0;
    char why[512];
    int ok = 0;

    if (!v) {
        sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        return NULL;
    }
    snprintf(v->name, sizeof(v->name), "%s", sn_conf_str(conf, "model.name"));
    snprintf(v->version, sizeof(v->version), "%s", version);
    if (!(reg = sn_registry_from_conf(conf, errstr, errstr_size))) goto out;
    if (sn_registry_fetch(reg, version, &model, &model_len, &card_json, &card_len, why,
                          sizeof(why)) != 0) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "version %s: %s", version, why);
        goto out;
    }
    if (!(card = sn_card_parse(card_json, card_len, why, sizeof(why))) ||
        sn_card_verify_model(card, model, model_len, why, sizeof(why)) != 0 ||
        !(v->spec = sn_feature_spec_parse(sn_card_feature_spec(card),
                                          strlen(sn_card_feature_spec(card)), why, sizeof(why))) ||
        sn_feature_spec_bind(v->spec, field_index, (void *)codec, why, sizeof(why)) != 0 ||
        !(v->model = sn_model_load(model, model_len, sn_feature_spec_nfeatures(v->spec),
                                   (int)sn_conf_int(conf, "model.nthread"), why, sizeof(why))) ||
        !(ctx = sn_model_ctx_new(why, sizeof(why))) ||
        sn_model_warmup(v->model, ctx, why, sizeof(why)) != 0 ||
        !(v->features = sn_feature_redis_new_prefix(conf, v->spec, key_prefix, why, sizeof(why)))) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "version %s: %s", version, why);
        goto out;
    }
    /* exactly-once redoes aborted batches: they must get their vectors again */
    sn_feature_redis_set_undo(v->features, sn_conf_bool(conf, "scorer.exactly.once"));
    v->threshold = sn_card_threshold(card);
    ok = 1;
out:
    sn_model_ctx_destroy(ctx);
    sn_card_destroy(card);
    free(model);
    free(card_json);
    sn_registry_destroy(reg);
    if (!ok) {
        sn_scorer_version_destroy(v);
        return NULL;
    }
    return v;
}

void sn_scorer_version_destroy(sn_scorer_version_t *v) {
    if (!v) return;
    sn_feature_redis_destroy(v->features);
    sn_model_destroy(v->model);
    sn_feature_spec_destroy(v->spec);
    free(v);
}
