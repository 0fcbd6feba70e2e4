#include "common/kafka.h"

#include <stdio.h>

#include "common/err.h"

struct apply_ctx {
    rd_kafka_conf_t *rk_conf;
    char *errstr;
    size_t errstr_size;
};

static int apply_one(const char *key, const char *value, const char *source, void *opaque) {
    struct apply_ctx *ctx = opaque;
    char rk_err[512];

    if (rd_kafka_conf_set(ctx->rk_conf, key, value, rk_err, sizeof(rk_err)) != RD_KAFKA_CONF_OK)
        return sn_err_set(ctx->errstr, ctx->errstr_size, SN_ERR_INVALID,
                          "%s: config key 'kafka.%s': librdkafka: %s", source, key, rk_err);
    return 0;
}

rd_kafka_conf_t *sn_kafka_conf_new(const sn_conf_t *conf, const char *const *defaults,
                                   char *errstr, size_t errstr_size) {
    struct apply_ctx ctx = {rd_kafka_conf_new(), errstr, errstr_size};

    for (; defaults && defaults[0]; defaults += 2) {
        if (apply_one(defaults[0], defaults[1], "built-in default", &ctx) != 0) {
            rd_kafka_conf_destroy(ctx.rk_conf);
            return NULL;
        }
    }
    if (sn_conf_kafka_each(conf, apply_one, &ctx) != 0) {
        rd_kafka_conf_destroy(ctx.rk_conf);
        return NULL;
    }
    return ctx.rk_conf;
}

const char *sn_kafka_version(void) { return rd_kafka_version_str(); }
