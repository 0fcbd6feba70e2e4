/* The alert state machine: open once, re-notify after the cooldown, resolve
 * after N low scores, machines independent, bounded memory. */
#include <criterion/criterion.h>

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
