#include "producers/produce.h"

#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"
#include "producers/producer.h"
#include "schemas/codec.h"

#define FRAME_MAX (64 * 1024)
#define BAD_ROWS_LOGGED 20 /* then one line per 1000, so a bad file cannot flood the log */

static double now_s(void) {
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void progress_line(const sn_produce_result_t *r, double elapsed, int final) {
    fprintf(stderr, "\rproduce: %llu sent, %llu delivered, %llu failed, %llu bad, %.0f events/s%s",
            (unsigned long long)r->sent, (unsigned long long)r->delivered,
            (unsigned long long)r->failed, (unsigned long long)r->bad,
            elapsed > 0 ? (double)r->sent / elapsed : 0.0, final ? "\n" : "   ");
}

static void update_delivery(sn_producer_t *p, sn_produce_result_t *res) {
    sn_producer_stats_t st;

    sn_producer_stats(p, &st);
    res->delivered = st.delivered;
    res->failed = st.failed;
}

static void note_bad(sn_produce_result_t *res, const char *why) {
    res->bad++;
    if (res->bad <= BAD_ROWS_LOGGED || res->bad % 1000 == 0)
        sn_log_warn("produce", "bad input (%llu so far): %s", (unsigned long long)res->bad, why);
}

/* Resolves the --shift pairs against the schema once, so that a typo in a
 * field name stops the run before anything is sent. */
static int parse_shifts(const sn_codec_t *codec, const sn_produce_opts_t *opts, int *field,
                        double *delta, char *errstr, size_t errstr_size) {
    if (opts->nshift > SN_PRODUCE_SHIFT_MAX)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "at most %d shifts",
                          SN_PRODUCE_SHIFT_MAX);
    for (size_t i = 0; i < opts->nshift; i++) {
        const char *eq = strchr(opts->shift[i], '=');
        char name[128], *end;

        if (!eq || eq == opts->shift[i] || (size_t)(eq - opts->shift[i]) >= sizeof(name))
            return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                              "shift '%s': expected FIELD=DELTA", opts->shift[i]);
        memcpy(name, opts->shift[i], (size_t)(eq - opts->shift[i]));
        name[eq - opts->shift[i]] = '\0';
        delta[i] = strtod(eq + 1, &end);
        if (end == eq + 1 || *end || !isfinite(delta[i]))
            return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                              "shift '%s': DELTA must be a finite number", opts->shift[i]);
        if ((field[i] = sn_codec_field_index(codec, name)) < 0)
            return sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                              "shift '%s': the telemetry schema has no numeric field '%s'",
                              opts->shift[i], name);
    }
    return 0;
}

int sn_produce_run(const sn_conf_t *conf, const sn_produce_opts_t *opts, sn_produce_result_t *res,
                   char *errstr, size_t errstr_size) {
    static unsigned char frame[FRAME_MAX];
    sn_codec_t *codec = NULL;
    sn_source_t *src = NULL;
    sn_producer_t *producer = NULL;
    sn_source_opts_t sopts = opts->source;
    sn_source_schema_t view;
    const char *topic = opts->topic ? opts->topic : sn_conf_str(conf, "topic.telemetry");
    double t0, last_progress = 0;
    char why[512];
    int rc = 0, r;
    sn_event_t ev;
    int shift_field[SN_PRODUCE_SHIFT_MAX];
    double shift_delta[SN_PRODUCE_SHIFT_MAX];

    memset(res, 0, sizeof(*res));
    if (!(codec = sn_codec_new(conf, errstr, errstr_size))) {
        rc = SN_ERR_INVALID;
        goto out;
    }
    view = sn_source_schema_of_codec(codec);
    sopts.key_field = sn_conf_str(conf, "schema.key.field");
    sopts.time_field = sn_conf_str(conf, "schema.time.field");
    sopts.limit = opts->count ? opts->skip + opts->count : 0;
    if (sopts.kind == SN_SOURCE_FLEET && !sopts.limit) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                        "a synthetic fleet needs an event count");
        goto out;
    }
    if ((rc = parse_shifts(codec, opts, shift_field, shift_delta, errstr, errstr_size)) != 0)
        goto out;
    if (!(src = sn_source_new(&sopts, &view, errstr, errstr_size))) {
        rc = SN_ERR_INVALID;
        goto out;
    }
    if (!(producer = sn_producer_new(conf, opts->bootstrap, errstr, errstr_size))) {
        rc = SN_ERR_INVALID;
        goto out;
    }

    t0 = now_s();
    while (!(opts->stop && *opts->stop)) {
        size_t len = 0;

        r = sn_source_next(src, &ev, why, sizeof(why));
        if (r == 0) break;
        res->read++;
        if (r < 0) {
            note_bad(res, why);
            continue;
        }
        if (res->read <= opts->skip) continue;
        for (size_t i = 0; i < opts->nshift; i++) ev.values[shift_field[i]] += shift_delta[i];
        if (sn_codec_encode(codec, &ev, frame, sizeof(frame), &len, why, sizeof(why)) != 0) {
            note_bad(res, why);
            continue;
        }
        if (opts->rate > 0) {
            /* Pace against the schedule, not the previous send, so short stalls
             * are caught up and the long-run rate is exact. */
            double due = t0 + (double)res->sent / opts->rate;
            double wait;

            while (!(opts->stop && *opts->stop) && (wait = due - now_s()) > 0)
                sn_producer_poll(producer, wait > 0.1 ? 100 : (int)ceil(wait * 1000));
        }
        /* 30 s of a full queue means the broker is gone: stop rather than spin. */
        if (sn_producer_send(producer, topic, -1, ev.machine_id, strlen(ev.machine_id), frame, len,
                             NULL, 0, 30000, why, sizeof(why)) != 0) {
            rc = sn_err_set(errstr, errstr_size, SN_ERR_TRANSIENT, "%s", why);
            break;
        }
        res->sent++;
        if (opts->progress && (res->sent & 1023) == 0) {
            double now = now_s();

            if (now - last_progress >= 0.25) {
                update_delivery(producer, res);
                progress_line(res, now - t0, 0);
                last_progress = now;
            }
        }
    }
    if (sn_producer_flush(producer, 30000) != 0)
        sn_log_error("produce", "some events were still in flight after 30 s");
    update_delivery(producer, res);
    res->seconds = now_s() - t0;
    if (opts->progress) progress_line(res, res->seconds, 1);
    snprintf(res->last_error, sizeof(res->last_error), "%s", sn_producer_last_error(producer));
    if (rc == 0 && (res->failed || res->delivered != res->sent))
        rc = sn_err_set(
            errstr, errstr_size, SN_ERR_TRANSIENT, "%llu of %llu events not delivered: %s",
            (unsigned long long)(res->sent - res->delivered), (unsigned long long)res->sent,
            res->last_error[0] ? res->last_error : "timed out");
out:
    sn_producer_destroy(producer, 5000);
    sn_source_destroy(src);
    sn_codec_destroy(codec);
    return rc;
}
