/* What `sentinel drift` does about a drift it found: publish a drift event
 * for whoever acts on it (an alerting rule, a pipeline trigger), and, when
 * asked, retrain on a recent window of the archive and let the promotion gate
 * decide. Kept apart from cmd_drift.c, which only measures. */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "common/err.h"
#include "common/log.h"
#include "producers/producer.h"
#include "scoring/drift.h"
#include "scoring/registry.h"
#include "scoring/trainer.h"

#define EVENT_FLUSH_MS 15000

static int64_t wall_ms(void) {
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The event: small and flat, what a rule engine needs to route it; the full
 * report stays in the JSON/HTML files. */
static char *event_json(const char *type, const cli_drift_ctx_t *ctx, const sn_drift_t *d,
                        const cli_drift_retrain_t *rt) {
    json_t *o = json_object(), *arr = NULL;
    char *text = NULL;

    if (!o) return NULL;
    json_object_set_new(o, "type", json_string(type));
    json_object_set_new(o, "time_ms", json_integer(wall_ms()));
    json_object_set_new(o, "model", json_string(ctx->model_name ? ctx->model_name : ""));
    json_object_set_new(o, "version", json_string(ctx->version ? ctx->version : ""));
    json_object_set_new(o, "input", json_string(ctx->input ? ctx->input : ""));
    json_object_set_new(o, "from_ms", ctx->from_ms >= 0 ? json_integer(ctx->from_ms) : json_null());
    json_object_set_new(o, "to_ms", ctx->to_ms >= 0 ? json_integer(ctx->to_ms) : json_null());
    if (d) {
        json_object_set_new(o, "verdict", json_string("drift"));
        json_object_set_new(o, "events", json_integer((json_int_t)sn_drift_events(d)));
        if (!(arr = json_array())) goto out;
        for (size_t i = 0; i < sn_drift_nfeatures(d); i++) {
            const sn_drift_feature_t *f = sn_drift_feature(d, i);

            if (!f || f->verdict != SN_DRIFT_DRIFTED) continue;
            json_array_append_new(arr, json_pack("{s:s, s:f, s:f, s:f, s:b, s:b}", "name", f->name,
                                                 "psi", f->psi, "ks_d", f->ks.d, "ks_p",
                                                 f->ks.p == f->ks.p ? f->ks.p : -1.0, "psi_flag",
                                                 f->psi_flag, "ks_flag", f->ks_flag));
        }
        json_object_set_new(o, "drifted", arr);
    }
    if (rt) {
        json_object_set_new(o, "train_from_ms", json_integer(rt->from_ms));
        json_object_set_new(o, "train_to_ms", json_integer(rt->to_ms));
        json_object_set_new(o, "train_exit", json_integer(rt->exit_code));
        json_object_set_new(o, "promoted", json_boolean(rt->promoted));
        json_object_set_new(o, "production_before", json_string(rt->before));
        json_object_set_new(o, "production_after", json_string(rt->after));
    }
    text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(12));
out:
    json_decref(o);
    return text;
}

int cli_drift_publish(const sn_conf_t *conf, const char *type, const cli_drift_ctx_t *ctx,
                      const sn_drift_t *d, const cli_drift_retrain_t *rt, char *errstr,
                      size_t errstr_size) {
    const char *topic = sn_conf_str(conf, "drift.events.topic");
    const char *key = ctx->model_name ? ctx->model_name : "";
    sn_producer_t *p = NULL;
    sn_producer_stats_t st;
    char *value = NULL;
    int rc;

    if (!*topic) return 0; /* switched off */
    if (!(value = event_json(type, ctx, d, rt))) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        goto out;
    }
    if (!(p = sn_producer_new(conf, NULL, errstr, errstr_size))) {
        rc = SN_ERR_INVALID;
        goto out;
    }
    if ((rc = sn_producer_send(p, topic, -1, key, strlen(key), value, strlen(value), NULL, 0,
                               EVENT_FLUSH_MS, errstr, errstr_size)) != 0)
        goto out;
    sn_producer_flush(p, EVENT_FLUSH_MS);
    sn_producer_stats(p, &st);
    if (st.delivered != 1) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_TRANSIENT,
                        "the %s event was not delivered to topic %s at %s within %d s: %s "
                        "(drift.events.topic= switches events off)",
                        type, topic, sn_conf_str(conf, "kafka.bootstrap.servers"),
                        EVENT_FLUSH_MS / 1000,
                        *sn_producer_last_error(p) ? sn_producer_last_error(p) : "timed out");
        goto out;
    }
    sn_log_info("drift", "%s event for model %s published to %s", type, key, topic);
    rc = 0;
out:
    sn_producer_destroy(p, 0);
    free(value);
    return rc;
}

/* Where the alias points now, "" when it is unset or the registry cannot be
 * read (the retrain itself reports that). */
static void alias_version(const sn_conf_t *conf, char *out, size_t size) {
    sn_registry_t *reg;
    char errstr[512], v[SN_REGISTRY_VERSION_MAX] = "";

    if ((reg = sn_registry_from_conf(conf, errstr, sizeof(errstr))) &&
        sn_registry_get_alias(reg, sn_conf_str(conf, "model.alias"), v, errstr, sizeof(errstr)) !=
            0)
        v[0] = '\0';
    sn_registry_destroy(reg);
    snprintf(out, size, "%s", v);
}

int cli_drift_retrain(const sn_conf_t *conf, const cli_conf_args_t *args, const char *input,
                      const char *topic, int64_t to_ms, cli_drift_retrain_t *out) {
    char from_s[32], to_s[32];
    const char *argv[CLI_DRIFT_RETRAIN_ARGS];
    const char *failures = sn_conf_str(conf, "drift.retrain.failures");
    int argc = 0;

    memset(out, 0, sizeof(*out));
    out->to_ms = to_ms >= 0 ? to_ms : wall_ms();
    out->from_ms = out->to_ms - sn_conf_int(conf, "drift.retrain.window.ms");
    snprintf(from_s, sizeof(from_s), "%" PRId64, out->from_ms);
    snprintf(to_s, sizeof(to_s), "%" PRId64, out->to_ms);
    alias_version(conf, out->before, sizeof(out->before));

    /* The same configuration the drift run had, so registry, S3, model name
     * and train.* settings carry over. */
    argv[argc++] = "train";
    if (args->file) {
        argv[argc++] = "-c";
        argv[argc++] = args->file;
    }
    for (int i = 0; i < args->nx; i++) {
        argv[argc++] = "-X";
        argv[argc++] = args->x[i];
    }
    argv[argc++] = "--input";
    argv[argc++] = input;
    if (topic) {
        argv[argc++] = "--topic";
        argv[argc++] = topic;
    }
    argv[argc++] = "--from";
    argv[argc++] = from_s;
    argv[argc++] = "--to";
    argv[argc++] = to_s;
    if (*failures) {
        argv[argc++] = "--failures";
        argv[argc++] = failures;
    }
    argv[argc++] = "--promote";
    argv[argc++] = "-q";
    argv[argc] = NULL;

    sn_log_info("drift", "retraining on %s from %s to %s (drift.retrain.window.ms=%lld)", input,
                from_s, to_s, (long long)sn_conf_int(conf, "drift.retrain.window.ms"));
    out->exit_code = cmd_train(argc, (char **)argv);
    alias_version(conf, out->after, sizeof(out->after));
    out->promoted = out->exit_code == SN_EXIT_OK && strcmp(out->before, out->after) != 0;
    if (out->exit_code == SN_EXIT_OK || out->exit_code == SN_EXIT_NOT_PROMOTED)
        sn_log_info("drift", "retrain: the gate %s (production %s -> %s)",
                    out->promoted ? "promoted the new version" : "kept the production model",
                    *out->before ? out->before : "(none)", *out->after ? out->after : "(none)");
    else
        sn_log_error("drift", "retrain failed (sentinel train exited %d)", out->exit_code);
    return out->exit_code;
}
