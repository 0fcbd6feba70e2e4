#include "common/kafka.h"

#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>

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

rd_kafka_conf_t *sn_kafka_conf_new(const sn_conf_t *conf, const char *const *defaults, char *errstr,
                                   size_t errstr_size) {
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

struct sn_kafka_mock {
    rd_kafka_t *rk; /* the handle that owns the cluster */
    rd_kafka_mock_cluster_t *cluster;
};

sn_kafka_mock_t *sn_kafka_mock_new(int nbrokers, char *errstr, size_t errstr_size) {
    sn_kafka_mock_t *m = calloc(1, sizeof(*m));
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char rk_err[512];

    if (!m) {
        rd_kafka_conf_destroy(conf);
        sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        return NULL;
    }
    rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
    if (!(m->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, rk_err, sizeof(rk_err)))) {
        rd_kafka_conf_destroy(conf);
        sn_err_set(errstr, errstr_size, SN_ERR_FATAL, "mock cluster: %s", rk_err);
        free(m);
        return NULL;
    }
    if (!(m->cluster = rd_kafka_mock_cluster_new(m->rk, nbrokers))) {
        sn_err_set(errstr, errstr_size, SN_ERR_FATAL, "mock cluster: could not start");
        rd_kafka_destroy(m->rk);
        free(m);
        return NULL;
    }
    return m;
}

int sn_kafka_mock_topic(sn_kafka_mock_t *m, const char *topic, int npartitions, char *errstr,
                        size_t errstr_size) {
    rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(m->cluster, topic, npartitions, 1);

    if (err)
        return sn_err_set(errstr, errstr_size, SN_ERR_FATAL, "mock topic %s: %s", topic,
                          rd_kafka_err2str(err));
    return 0;
}

const char *sn_kafka_mock_bootstraps(const sn_kafka_mock_t *m) {
    return rd_kafka_mock_cluster_bootstraps(m->cluster);
}

void sn_kafka_mock_destroy(sn_kafka_mock_t *m) {
    if (!m) return;
    rd_kafka_mock_cluster_destroy(m->cluster);
    rd_kafka_destroy(m->rk);
    free(m);
}
