/* The challenger beside production: the canary hash an offline tool must
 * reproduce, and the configurations that must stop startup or run without a
 * challenger. The shadow and canary pipelines themselves are tested on the
 * real stack (tests/integration/test_score_challenger.sh). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/err.h"
#include "consumers/scorer_challenger.h"
#include "consumers/scorer_conf.h"
#include "schemas/schemas_conf.h"
#include "scoring/model_conf.h"
#include "scoring/scoring_conf.h"

/* fmix64 of MurmurHash3, so that the published FNV-1a 64 test vectors can be
 * checked through the public function. */
static uint64_t fmix64(uint64_t h) {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

Test(scorer_challenger, hash_known_values) {
    /* FNV-1a 64 of "", "a", "foobar" as published with the algorithm */
    cr_assert_eq(sn_scorer_challenger_hash(""),
                 (double)fmix64(0xcbf29ce484222325ULL) / 18446744073709551616.0);
    cr_assert_eq(sn_scorer_challenger_hash("a"),
                 (double)fmix64(0xaf63dc4c8601ec8cULL) / 18446744073709551616.0);
    cr_assert_eq(sn_scorer_challenger_hash("foobar"),
                 (double)fmix64(0x85944171f73967e8ULL) / 18446744073709551616.0);
    /* computed independently with Python integers: h / 2**64 */
    cr_assert_eq(sn_scorer_challenger_hash("machine-0000"), 0.6321274313762337);
    cr_assert_eq(sn_scorer_challenger_hash("machine-0001"), 0.46303354721476947);
    cr_assert_eq(sn_scorer_challenger_hash("machine-0199"), 0.9252242282270435);
    cr_assert_eq(sn_scorer_challenger_hash("foobar"), 0.17239530597254815);
}

/* Sequential ids differ in their last bytes only: the fraction picked must
 * still be about the fraction asked for, in any range of ids. */
Test(scorer_challenger, hash_spreads_sequential_ids) {
    char id[32];
    int below = 0, first200 = 0;

    for (int i = 0; i < 10000; i++) {
        double u;

        snprintf(id, sizeof(id), "machine-%04d", i);
        u = sn_scorer_challenger_hash(id);
        cr_assert(u >= 0 && u < 1);
        below += u < 0.3;
        if (i < 200) first200 += u < 0.3;
    }
    cr_assert(below > 2850 && below < 3150, "%d of 10000 below 0.3", below);
    cr_assert_eq(first200, 69, "the integration test's fleet: %d", first200);
}

static sn_conf_t *conf_new(const char *mode, const char *alias, const char *registry) {
    static const sn_conf_def_t *const tables[] = {sn_scoring_conf_defs, sn_model_conf_defs,
                                                  sn_scorer_conf_defs, sn_schemas_conf_defs};
    char errstr[256];
    sn_conf_t *conf = sn_conf_new(tables, 4, errstr, sizeof(errstr));

    cr_assert_not_null(conf, "%s", errstr);
    cr_assert_eq(sn_conf_set(conf, "scorer.challenger", mode, "test", errstr, sizeof(errstr)), 0,
                 "%s", errstr);
    cr_assert_eq(sn_conf_set(conf, "model.challenger.alias", alias, "test", errstr, sizeof(errstr)),
                 0, "%s", errstr);
    cr_assert_eq(sn_conf_set(conf, "registry.url", registry, "test", errstr, sizeof(errstr)), 0,
                 "%s", errstr);
    return conf;
}

Test(scorer_challenger, bad_values_stop_startup) {
    static const sn_conf_def_t *const tables[] = {sn_scorer_conf_defs};
    char errstr[256];
    sn_conf_t *conf = sn_conf_new(tables, 1, errstr, sizeof(errstr));

    cr_assert_eq(sn_conf_set(conf, "scorer.challenger", "shadows", "-X", errstr, sizeof(errstr)),
                 SN_ERR_INVALID);
    cr_assert(strstr(errstr, "scorer.challenger"), "%s", errstr);
    cr_assert_eq(sn_conf_set(conf, "scorer.canary.fraction", "1.01", "-X", errstr, sizeof(errstr)),
                 SN_ERR_INVALID);
    cr_assert(strstr(errstr, "scorer.canary.fraction"), "%s", errstr);
    sn_conf_destroy(conf);
}

Test(scorer_challenger, shadow_without_an_alias_name_is_an_error) {
    sn_conf_t *conf = conf_new("shadow", "", "file:///nonexistent");
    char errstr[256] = "";

    cr_assert_null(sn_scorer_challenger_new(conf, NULL, NULL, 16, errstr, sizeof(errstr)));
    cr_assert(strstr(errstr, "model.challenger.alias"), "%s", errstr);
    sn_conf_destroy(conf);
}

/* An alias that is not set is the normal state before the first training
 * the gate did not promote: the scorer runs, production serves everything. */
Test(scorer_challenger, unset_alias_runs_without_a_challenger) {
    char dir[] = "/tmp/sn-challenger-XXXXXX", url[64], errstr[256] = "", version[64] = "x";
    sn_scorer_challenger_t *c;
    sn_conf_t *conf;
    sn_event_t ev;
    float score = 0.25f;

    cr_assert_not_null(mkdtemp(dir));
    snprintf(url, sizeof(url), "file://%s", dir);
    conf = conf_new("canary", "challenger", url);
    c = sn_scorer_challenger_new(conf, NULL, NULL, 16, errstr, sizeof(errstr));
    cr_assert_not_null(c, "%s", errstr);
    sn_scorer_challenger_version(c, version, sizeof(version));
    cr_assert_str_eq(version, "");
    memset(&ev, 0, sizeof(ev));
    snprintf(ev.machine_id, sizeof(ev.machine_id), "m");
    cr_assert_eq(
        sn_scorer_challenger_score(c, NULL, &ev, NULL, NULL, 1, &score, errstr, sizeof(errstr)), 0);
    cr_assert_eq(score, 0.25f, "production's score left alone");
    cr_assert_null(sn_scorer_challenger_serves(c, 0, NULL));
    sn_scorer_challenger_destroy(c);
    sn_conf_destroy(conf);
    rmdir(dir);
}
