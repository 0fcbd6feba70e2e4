/* The alert state machine: open once, re-notify after the cooldown, resolve
 * after N low scores, machines independent, bounded memory. */
#include <criterion/criterion.h>

#include <string.h>

#include "common/err.h"
#include "consumers/alerting.h"

static sn_alerter_t *make(size_t max_open) {
    sn_alerter_opts_t o = {.cooldown_ms = 10000, .resolve_after = 3, .max_open = max_open};
    sn_alerter_t *a = sn_alerter_new(&o);

    cr_assert_not_null(a);
    return a;
}

Test(alerting, one_incident_lifecycle) {
    sn_alerter_t *a = make(10);
    sn_alerter_stats_t st;

    cr_assert_eq(sn_alerter_observe(a, "m1", 0, 0.1, 0.5), SN_ALERTING_NONE);
    cr_assert_eq(sn_alerter_observe(a, "m1", 1000, 0.5, 0.5), SN_ALERTING_OPEN,
                 "at the threshold opens");
    cr_assert_eq(sn_alerter_observe(a, "m1", 2000, 0.9, 0.5), SN_ALERTING_NONE,
                 "inside the cooldown");
    cr_assert_eq(sn_alerter_observe(a, "m1", 10999, 0.9, 0.5), SN_ALERTING_NONE);
    cr_assert_eq(sn_alerter_observe(a, "m1", 11000, 0.9, 0.5), SN_ALERTING_RENOTIFY);
    cr_assert_eq(sn_alerter_observe(a, "m1", 12000, 0.1, 0.5), SN_ALERTING_NONE);
    cr_assert_eq(sn_alerter_observe(a, "m1", 13000, 0.1, 0.5), SN_ALERTING_NONE);
    cr_assert_eq(sn_alerter_observe(a, "m1", 14000, 0.9, 0.5), SN_ALERTING_NONE,
                 "a high score resets the count");
    cr_assert_eq(sn_alerter_observe(a, "m1", 15000, 0.1, 0.5), SN_ALERTING_NONE);
    cr_assert_eq(sn_alerter_observe(a, "m1", 16000, 0.1, 0.5), SN_ALERTING_NONE);
    cr_assert_eq(sn_alerter_observe(a, "m1", 17000, 0.1, 0.5), SN_ALERTING_RESOLVE);
    cr_assert_eq(sn_alerter_observe(a, "m1", 18000, 0.1, 0.5), SN_ALERTING_NONE);
    cr_assert_eq(sn_alerter_observe(a, "m1", 19000, 0.7, 0.5), SN_ALERTING_OPEN, "a new incident");
    sn_alerter_stats(a, &st);
    cr_assert_eq(st.opened, 2);
    cr_assert_eq(st.renotified, 1);
    cr_assert_eq(st.resolved, 1);
    cr_assert_eq(st.open_now, 1);
    sn_alerter_destroy(a);
}

Test(alerting, machines_are_independent) {
    sn_alerter_t *a = make(10);

    cr_assert_eq(sn_alerter_observe(a, "m1", 0, 0.9, 0.5), SN_ALERTING_OPEN);
    cr_assert_eq(sn_alerter_observe(a, "m2", 0, 0.9, 0.5), SN_ALERTING_OPEN);
    for (int i = 1; i <= 3; i++)
        cr_assert_eq(sn_alerter_observe(a, "m2", i, 0.1, 0.5),
                     i == 3 ? SN_ALERTING_RESOLVE : SN_ALERTING_NONE);
    cr_assert_eq(sn_alerter_observe(a, "m1", 5, 0.9, 0.5), SN_ALERTING_NONE, "m1 still open");
    sn_alerter_destroy(a);
}

Test(alerting, bounded) {
    sn_alerter_t *a = make(2);
    sn_alerter_stats_t st;

    cr_assert_eq(sn_alerter_observe(a, "a", 0, 0.9, 0.5), SN_ALERTING_OPEN);
    cr_assert_eq(sn_alerter_observe(a, "b", 0, 0.9, 0.5), SN_ALERTING_OPEN);
    cr_assert_eq(sn_alerter_observe(a, "c", 0, 0.9, 0.5), SN_ALERTING_OPEN, "still notified");
    sn_alerter_stats(a, &st);
    cr_assert_eq(st.untracked, 1);
    cr_assert_eq(st.open_now, 2);
    sn_alerter_destroy(a);
}

/* Feeds a fixed sequence of (machine, time, score) and returns the actions as
 * a string, one letter per observation: the fingerprint of the state. */
static void feed(sn_alerter_t *a, int from, int to, char *out) {
    static const char *const machines[] = {"m1", "m2", "m3"};

    for (int i = from; i < to; i++) {
        double score = ((i * 7) % 10) / 10.0;
        enum sn_alerting_action act =
            sn_alerter_observe(a, machines[i % 3], (int64_t)i * 4000, score, 0.5);

        *out++ = "norR"[act];
    }
    *out = '\0';
}

Test(alerting, rollback_restores_the_checkpoint) {
    sn_alerter_t *a = make(10), *ref = make(10);
    sn_alerter_stats_t st, st_ref;
    char got[64], want[64], aborted[64];

    feed(a, 0, 20, got);
    feed(ref, 0, 20, want);
    cr_assert_str_eq(got, want);
    sn_alerter_checkpoint(a);
    feed(a, 20, 40, aborted); /* opens, renotifies and resolves along the way */
    cr_assert(strpbrk(aborted, "orR") != NULL, "the aborted stretch changed something: %s",
              aborted);
    cr_assert_eq(sn_alerter_rollback(a), 0);
    sn_alerter_stats(a, &st);
    sn_alerter_stats(ref, &st_ref);
    cr_assert_eq(memcmp(&st, &st_ref, sizeof(st)), 0, "counters back to the checkpoint");
    /* the redo decides exactly what the first attempt decided */
    feed(a, 20, 40, got);
    cr_assert_str_eq(got, aborted);
    /* and both continue identically afterwards */
    feed(ref, 20, 60, want);
    feed(a, 40, 60, got);
    cr_assert_str_eq(got, want + 20);
    sn_alerter_destroy(a);
    sn_alerter_destroy(ref);
}

Test(alerting, rollback_twice_and_checkpoint_moves) {
    sn_alerter_t *a = make(10);
    char first[64], again[64];

    cr_assert_eq(sn_alerter_rollback(a), SN_ERR_INVALID, "no checkpoint yet");
    sn_alerter_checkpoint(a);
    cr_assert_eq(sn_alerter_observe(a, "m1", 0, 0.9, 0.5), SN_ALERTING_OPEN);
    cr_assert_eq(sn_alerter_rollback(a), 0);
    cr_assert_eq(sn_alerter_observe(a, "m1", 0, 0.9, 0.5), SN_ALERTING_OPEN, "open undone");
    cr_assert_eq(sn_alerter_rollback(a), 0);
    cr_assert_eq(sn_alerter_observe(a, "m1", 0, 0.9, 0.5), SN_ALERTING_OPEN, "again");
    sn_alerter_checkpoint(a); /* committed: the open stays */
    for (int i = 1; i <= 3; i++) sn_alerter_observe(a, "m1", i, 0.1, 0.5); /* resolves */
    cr_assert_eq(sn_alerter_rollback(a), 0);
    cr_assert_eq(sn_alerter_observe(a, "m1", 4, 0.9, 0.5), SN_ALERTING_NONE,
                 "the resolve was undone: still open, inside the cooldown");
    sn_alerter_checkpoint(a);
    feed(a, 0, 30, first);
    cr_assert_eq(sn_alerter_rollback(a), 0);
    feed(a, 0, 30, again);
    cr_assert_str_eq(first, again);
    sn_alerter_destroy(a);
}
