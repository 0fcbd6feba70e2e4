/* drift.c: PSI and the two-sample KS test against a card's training profile,
 * and the drift report. The KS p-values follow scipy 1.13's ks_2samp and
 * kstwo step by step (see drift.h for which branch is used when), so that the
 * numbers can be checked against tools/reference/drift_reference.py. */
#include "scoring/drift.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "scoring/drift_conf.h"

#define KS_MAX_AUTO_N 10000 /* scipy's MAX_AUTO_N: exact up to this sample size */
#define E128 128

/* ---- KS: exact two-sample distribution ---- */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static uint64_t gcd_u64(uint64_t a, uint64_t b) {
    while (b) {
        uint64_t t = a % b;

        a = b;
        b = t;
    }
    return a;
}

/* Pr(D_{n,n} >= h/n), scipy's Horner-like alternating sum: dividing every
 * binomial term by binom(2n, n) avoids the cancellation of the plain sum. */
static double prob_outside_square(uint64_t n, uint64_t h) {
    double P = 0.0;

    for (int64_t k = (int64_t)(n / h); k >= 0; k--) {
        double p1 = 1.0;

        for (uint64_t j = 0; j < h; j++)
            p1 = (double)(n - (uint64_t)k * h - j) * p1 / (double)(n + (uint64_t)k * h + j + 1);
        P = p1 * (1.0 - P);
    }
    return 2 * P;
}

/* 1 - the proportion of lattice paths from (0,0) to (m,n) that stay strictly
 * inside |x/m - y/n| < h/lcm: Hodges' inside method with Viehmann's
 * recursion for 1 - p, one sliding column at a time (scipy's
 * _compute_outer_prob_inside_method, ported line by line). NaN when out of
 * memory. */
static double prob_outer_inside(uint64_t m, uint64_t n, uint64_t g, uint64_t h) {
    uint64_t mg, ng;
    int64_t minj, maxj, curlen, lenA, alloc;
    double *A, res;

    if (m < n) {
        uint64_t t = m;

        m = n;
        n = t;
    }
    mg = m / g;
    ng = n / g;
    minj = 0;
    maxj = (int64_t)ceil((double)h / (double)mg);
    if (maxj > (int64_t)n + 1) maxj = (int64_t)n + 1;
    curlen = maxj - minj;
    lenA = 2 * maxj + 2 < (int64_t)n + 1 ? 2 * maxj + 2 : (int64_t)n + 1;
    alloc = (int64_t)n + 2 > lenA ? (int64_t)n + 2 : lenA;
    if (!(A = malloc((size_t)alloc * sizeof(*A)))) return NAN;
    for (int64_t i = 0; i < alloc; i++) A[i] = 1.0;
    for (int64_t i = minj; i < maxj; i++) A[i] = 0.0;
    for (uint64_t i = 1; i <= m; i++) {
        int64_t lastminj = minj, lastlen = curlen;
        double val;

        minj = (int64_t)floor(((double)(ng * i) - (double)h) / (double)mg) + 1;
        if (minj < 0) minj = 0;
        if (minj > (int64_t)n) minj = (int64_t)n;
        maxj = (int64_t)ceil(((double)(ng * i) + (double)h) / (double)mg);
        if (maxj > (int64_t)n + 1) maxj = (int64_t)n + 1;
        if (maxj <= minj) {
            free(A);
            return 1.0;
        }
        val = minj == 0 ? 0.0 : 1.0;
        for (int64_t jj = 0; jj < maxj - minj; jj++) {
            int64_t j = jj + minj;

            val =
                (A[jj + minj - lastminj] * (double)i + val * (double)j) / (double)((int64_t)i + j);
            A[jj] = val;
        }
        curlen = maxj - minj;
        if (lastlen > curlen)
            for (int64_t k = maxj - minj; k < maxj - minj + (lastlen - curlen) && k < alloc; k++)
                A[k] = 1.0;
    }
    res = A[maxj - minj - 1];
    free(A);
    return res;
}

/* ---- KS: the one-sample distribution kstwo (scipy.stats._ksstats) ---- */

static double clip01(double p) { return p < 0 ? 0 : p > 1 ? 1 : p; }

/* P(D+_n >= x), the one-sided Smirnov statistic, by the Birnbaum-Tingey sum
 *   x * sum_{j=0}^{floor(n(1-x))} C(n,j) (1-x-j/n)^(n-j) (x+j/n)^(j-1).
 * Every term is positive, so summing in log space loses nothing to
 * cancellation (scipy's cephes smirnov does the same sum in double-double). */
static double smirnov(uint64_t n, double x) {
    double nd = (double)n, lnf = lgamma(nd + 1), sum = 0.0;
    uint64_t jmax;

    if (x >= 1.0) return 0.0;
    if (x <= 0.0) return 1.0;
    jmax = (uint64_t)floor(nd * (1.0 - x));
    for (uint64_t j = 0; j <= jmax && j <= n; j++) {
        double jd = (double)j, u = 1.0 - x - jd / nd, lt;

        if (u <= 0.0 && n - j > 0) continue; /* 0^(n-j): the term is 0 */
        lt = lnf - lgamma(jd + 1) - lgamma(nd - jd + 1) + (n - j > 0 ? (nd - jd) * log(u) : 0.0) +
             (jd - 1) * log(x + jd / nd);
        sum += exp(lt);
    }
    return clip01(x * sum);
}

/* The Durbin matrix (Marsaglia, Tsang and Wang 2003): P(D_n < d) exactly, as
 * the (k,k) entry of H^n times n!/n^n, with exponents carried separately
 * because the entries span far more than a double's range. */
static double kolmogn_dmtw(uint64_t n, double d) {
    double nd = (double)n * d, hh, fac, tt, p;
    size_t k, m;
    double *H = NULL, *P = NULL, *T = NULL, *v = NULL, *w = NULL;
    int64_t expnt = 0, Hexpnt = 0;
    uint64_t nn = n;

    if (d >= 1.0) return 1.0;
    if (nd <= 0.5) return 0.0;
    k = (size_t)ceil(nd);
    hh = (double)k - nd;
    m = 2 * k - 1;
    H = calloc(m * m, sizeof(double));
    P = calloc(m * m, sizeof(double));
    T = calloc(m * m, sizeof(double));
    v = malloc(m * sizeof(double));
    w = malloc(m * sizeof(double));
    if (!H || !P || !T || !v || !w) {
        p = NAN;
        goto out;
    }
    fac = 1.0;
    for (size_t j = 1; j <= m; j++) {
        v[j - 1] = 1.0 - pow(hh, (double)j);
        w[j - 1] = fac;
        fac /= (double)j;
        v[j - 1] *= fac;
    }
    tt = pow(fmax(2 * hh - 1.0, 0), (double)m) - 2 * pow(hh, (double)m);
    v[m - 1] = (1.0 + tt) * fac;
    for (size_t i = 1; i < m; i++)
        for (size_t r = i - 1; r < m; r++) H[r * m + i] = w[r - (i - 1)];
    for (size_t r = 0; r < m; r++) H[r * m] = v[r];
    for (size_t c = 0; c < m; c++) H[(m - 1) * m + c] = v[m - 1 - c];
    for (size_t i = 0; i < m; i++) P[i * m + i] = 1.0;
    while (nn > 0) {
        if (nn % 2) {
            for (size_t i = 0; i < m; i++)
                for (size_t j = 0; j < m; j++) {
                    double s = 0;

                    for (size_t l = 0; l < m; l++) s += P[i * m + l] * H[l * m + j];
                    T[i * m + j] = s;
                }
            memcpy(P, T, m * m * sizeof(double));
            expnt += Hexpnt;
        }
        for (size_t i = 0; i < m; i++)
            for (size_t j = 0; j < m; j++) {
                double s = 0;

                for (size_t l = 0; l < m; l++) s += H[i * m + l] * H[l * m + j];
                T[i * m + j] = s;
            }
        memcpy(H, T, m * m * sizeof(double));
        Hexpnt *= 2;
        if (fabs(H[(k - 1) * m + (k - 1)]) > ldexp(1.0, E128)) {
            for (size_t i = 0; i < m * m; i++) H[i] = ldexp(H[i], -E128);
            Hexpnt += E128;
        }
        nn /= 2;
    }
    p = P[(k - 1) * m + (k - 1)];
    for (uint64_t i = 1; i <= n; i++) {
        p = (double)i * p / (double)n;
        if (fabs(p) < ldexp(1.0, -E128)) {
            p = ldexp(p, E128);
            expnt -= E128;
        }
    }
    if (expnt != 0) p = ldexp(p, (int)expnt);
    p = clip01(p);
out:
    free(H);
    free(P);
    free(T);
    free(v);
    free(w);
    return p;
}

/* Pelz and Good's (1976) asymptotic series for P(D_n <= x), for large n. */
static double kolmogn_pelzgood(uint64_t n, double x) {
    const double pi2 = M_PI * M_PI, pi4 = pi2 * pi2, pi6 = pi4 * pi2, sqrt2pi = sqrt(2 * M_PI);
    double z, z2, z3, z4, z6, qlog, q, K[4] = {0, 0, 0, 0}, k2extra = 0, k3extra = 0, sum = 0;
    double k1a, k1b, k2a, k2b, k2c, k3a, k3b, k3c, k3d, sqrt3z;
    int maxk;

    if (x <= 0.0) return 0.0;
    if (x >= 1.0) return 1.0;
    z = sqrt((double)n) * x;
    z2 = z * z;
    z3 = z2 * z;
    z4 = z2 * z2;
    z6 = z4 * z2;
    qlog = -pi2 / 8 / z2;
    if (qlog < -708) return 0.0;
    q = exp(qlog);
    k1a = -z2;
    k1b = pi2 / 4;
    k2a = 6 * z6 + 2 * z4;
    k2b = (2 * z4 - 5 * z2) * pi2 / 4;
    k2c = pi4 * (1 - 2 * z2) / 16;
    k3d = pi6 * (5 - 30 * z2) / 64;
    k3c = pi4 * (-60 * z2 + 212 * z4) / 16;
    k3b = pi2 * (135 * z4 - 96 * z6) / 4;
    k3a = -30 * z6 - 90 * pow(z, 8);
    maxk = (int)ceil(16 * z / M_PI);
    for (int k = maxk; k > 0; k--) {
        double mm = 2 * k - 1, m2 = mm * mm, m4 = m2 * m2, m6 = m4 * m2, qp = pow(q, 8 * k);
        double c[4] = {1.0, k1a + k1b * m2, k2a + k2b * m2 + k2c * m4,
                       k3a + k3b * m2 + k3c * m4 + k3d * m6};

        for (int i = 0; i < 4; i++) K[i] = K[i] * qp + c[i];
    }
    for (int i = 0; i < 4; i++) K[i] *= q * sqrt2pi;
    K[0] /= z;
    K[1] /= 6 * z4;
    K[2] /= 72 * pow(z, 7);
    K[3] /= 6480 * pow(z, 10);
    q = exp(-pi2 / 2 / z2);
    sqrt3z = sqrt(3.0) * z;
    for (int k = maxk; k > 0; k--) {
        double ks = k, qp = pow(q, ks * ks), kspi = M_PI * ks;

        k2extra += ks * ks * qp;
        k3extra += (sqrt3z + kspi) * (sqrt3z - kspi) * ks * ks * qp;
    }
    K[2] += k2extra * pi2 * sqrt2pi / (-36 * z3);
    K[3] += k3extra * pi2 * sqrt2pi / (216 * z6);
    for (int i = 0; i < 4; i++) sum += K[i] / pow((double)n, i / 2.0);
    return sum;
}

double sn_drift_kstwo_sf(double x, uint64_t n) {
    double nd = (double)n, t, nx2, cdf;

    if (n < 1 || isnan(x)) return NAN;
    if (x >= 1.0) return 0.0;
    if (x <= 0.0) return 1.0;
    t = nd * x;
    if (t <= 1.0) { /* Ruben-Gambino: 1/2n <= x <= 1/n */
        double prob = 1.0;

        if (t <= 0.5) return 1.0;
        if (n <= 140)
            for (uint64_t i = 1; i <= n; i++) prob *= (double)i * (1.0 / nd) * (2 * t - 1);
        else
            prob = exp(lgamma(nd + 1) - nd * log(nd) + nd * log(2 * t - 1));
        return clip01(1.0 - prob);
    }
    if (t >= nd - 1) return clip01(2 * pow(1.0 - x, nd)); /* Ruben-Gambino */
    if (x >= 0.5) return clip01(2 * smirnov(n, x));
    nx2 = t * x;
    if (n <= 140) {
        /* scipy: Durbin below 0.754693, Pomeranz up to 4 (here: Durbin, also
         * exact), then 2 * smirnov */
        if (nx2 <= 4) return clip01(1.0 - kolmogn_dmtw(n, x));
        return clip01(2 * smirnov(n, x));
    }
    if (nx2 >= 370.0) return 0.0;
    if (nx2 >= 2.2) return clip01(2 * smirnov(n, x));
    if (nx2 >= 18.0)
        cdf = 1.0;
    else if (n <= 100000 && nd * pow(x, 1.5) <= 1.4)
        cdf = kolmogn_dmtw(n, x);
    else
        cdf = kolmogn_pelzgood(n, x);
    return clip01(1.0 - cdf);
}

int sn_drift_ks_2samp(double *a, size_t na, double *b, size_t nb, sn_drift_ks_t *out) {
    size_t i = 0, j = 0;
    uint64_t g, h = 0, n1 = na, n2 = nb;
    double maxS = -INFINITY, minS = INFINITY, d;

    if (!na || !nb || !out) return SN_ERR_INVALID;
    qsort(a, na, sizeof(*a), cmp_double);
    qsort(b, nb, sizeof(*b), cmp_double);
    g = gcd_u64(n1, n2);
    /* Walk the pooled values in order: after all copies of a value, i and j
     * are scipy's searchsorted(side='right') counts. The integer difference
     * i*n2/g - j*n1/g is D in units of 1/lcm, exact where scipy rounds. */
    while (i < na || j < nb) {
        double v = j >= nb || (i < na && a[i] <= b[j]) ? a[i] : b[j], diff;
        int64_t hd;

        while (i < na && a[i] <= v) i++;
        while (j < nb && b[j] <= v) j++;
        diff = (double)i / (double)n1 - (double)j / (double)n2;
        if (diff > maxS) maxS = diff;
        if (diff < minS) minS = diff;
        hd = (int64_t)(i * (n2 / g)) - (int64_t)(j * (n1 / g));
        if (hd < 0) hd = -hd;
        if ((uint64_t)hd > h) h = (uint64_t)hd;
    }
    minS = -minS;
    if (minS < 0) minS = 0;
    if (minS > 1) minS = 1;
    d = minS > maxS ? minS : maxS;
    out->exact = 0;
    if (n1 <= KS_MAX_AUTO_N && n2 <= KS_MAX_AUTO_N) {
        uint64_t lcm = (n1 / g) * n2;
        double p;

        if (h == 0) {
            out->d = 0.0;
            out->p = 1.0;
            out->exact = 1;
            return 0;
        }
        p = n1 == n2 ? prob_outside_square(n1, h) : prob_outer_inside(n1, n2, g, h);
        if (isnan(p) && n1 != n2) return SN_ERR_NOMEM;
        d = (double)h / (double)lcm;
        if (isfinite(p) && p >= 0 && p <= 1) {
            out->d = d;
            out->p = p;
            out->exact = 1;
            return 0;
        }
        /* as scipy: an exact recursion that failed numerically falls back */
    }
    {
        double m = n1 > n2 ? (double)n1 : (double)n2, n = n1 > n2 ? (double)n2 : (double)n1;
        double en = m * n / (m + n);

        out->d = d;
        out->p = clip01(sn_drift_kstwo_sf(d, (uint64_t)nearbyint(en)));
    }
    return 0;
}

double sn_drift_psi(const uint64_t *expected, const uint64_t *actual, size_t ncells,
                    double psi_floor) {
    uint64_t te = 0, ta = 0;
    double psi = 0.0;

    for (size_t i = 0; i < ncells; i++) {
        te += expected[i];
        ta += actual[i];
    }
    if (!te || !ta) return 0.0;
    for (size_t i = 0; i < ncells; i++) {
        double e, a;

        if (!expected[i] && !actual[i]) continue;
        e = expected[i] ? (double)expected[i] / (double)te : psi_floor;
        a = actual[i] ? (double)actual[i] / (double)ta : psi_floor;
        psi += (a - e) * log(a / e);
    }
    return psi;
}

/* ---- the check ---- */

struct sn_drift {
    const sn_card_t *card;
    sn_drift_opts_t opts;
    size_t nf;
    uint64_t events;
    sn_card_profile_t *prof; /* nf */
    uint64_t *expected;      /* nf * (maxbins + 1) */
    uint64_t *actual;        /* nf * (maxbins + 1) */
    size_t stride;           /* maxbins + 1 */
    float *rows;             /* kept rows for KS: cap * nf */
    size_t nrows, cap, alloc;
    uint64_t rng;
    sn_drift_feature_t *res;
    int finished;
    int verdict;
    char *model, *version, *input;
    int64_t from_ms, to_ms;
    /* the model's scores (sn_drift_enable_score), a row after the features */
    int has_score;
    sn_card_profile_t sprof;
    uint64_t *sexp, *sact; /* sprof.bins + 1 each */
    double *svals;         /* kept scores for KS: up to cap */
    size_t nsvals, salloc;
    uint64_t nscores, srng;
    sn_drift_feature_t sres;
};

void sn_drift_opts_from_conf(const sn_conf_t *conf, sn_drift_opts_t *opts) {
    opts->psi_threshold = sn_conf_double(conf, "drift.psi.threshold");
    opts->ks_alpha = sn_conf_double(conf, "drift.ks.alpha");
    opts->psi_floor = sn_conf_double(conf, "drift.psi.floor");
    opts->min_events = (uint64_t)sn_conf_int(conf, "drift.min.events");
    opts->max_events = (uint64_t)sn_conf_int(conf, "drift.max.events");
    opts->ks_windowed = sn_conf_bool(conf, "drift.ks.windowed");
}

const char *sn_drift_verdict_str(enum sn_drift_verdict v) {
    switch (v) {
    case SN_DRIFT_NONE: return "no drift";
    case SN_DRIFT_DRIFTED: return "drift";
    case SN_DRIFT_NOT_ENOUGH: return "not enough data";
    }
    return "?";
}

sn_drift_t *sn_drift_new(const sn_card_t *card, const sn_drift_opts_t *opts, char *errstr,
                         size_t errstr_size) {
    sn_drift_t *d = NULL;
    size_t maxbins = 0;

    if (!card || !opts || opts->max_events < 1) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "drift: no card or bad options");
        return NULL;
    }
    if (!(d = calloc(1, sizeof(*d)))) goto nomem;
    d->card = card;
    d->opts = *opts;
    d->nf = sn_card_nfeatures(card);
    d->rng = 0x5eed5eedULL;
    d->from_ms = d->to_ms = -1;
    if (!d->nf) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "drift: the card has no features");
        goto fail;
    }
    if (!(d->prof = calloc(d->nf, sizeof(*d->prof))) || !(d->res = calloc(d->nf, sizeof(*d->res))))
        goto nomem;
    for (size_t i = 0; i < d->nf; i++) {
        int rc = sn_card_profile(card, i, &d->prof[i]);

        if (rc != 0 || d->prof[i].bins < 1) {
            sn_err_set(errstr, errstr_size, rc ? rc : SN_ERR_INVALID,
                       "drift: the card has no training profile for feature %zu", i);
            goto fail;
        }
        if (d->prof[i].bins > maxbins) maxbins = d->prof[i].bins;
    }
    d->stride = maxbins + 1;
    if (!(d->expected = calloc(d->nf * d->stride, sizeof(uint64_t))) ||
        !(d->actual = calloc(d->nf * d->stride, sizeof(uint64_t))))
        goto nomem;
    for (size_t i = 0; i < d->nf; i++) {
        uint64_t *e = d->expected + i * d->stride;

        for (size_t k = 0; k < d->prof[i].bins; k++) e[k] = d->prof[i].counts[k];
        e[d->prof[i].bins] = d->prof[i].missing;
    }
    d->cap = opts->max_events;
    return d;
nomem:
    sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "drift: out of memory");
fail:
    sn_drift_destroy(d);
    return NULL;
}

void sn_drift_destroy(sn_drift_t *d) {
    if (!d) return;
    free(d->prof);
    free(d->res);
    free(d->expected);
    free(d->actual);
    free(d->rows);
    free(d->sexp);
    free(d->sact);
    free(d->svals);
    free(d->model);
    free(d->version);
    free(d->input);
    free(d);
}

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

int sn_drift_add(sn_drift_t *d, const float *x) {
    float *slot = NULL;

    for (size_t f = 0; f < d->nf; f++) {
        uint64_t *a = d->actual + f * d->stride;

        if (isnan(x[f]))
            a[d->prof[f].bins]++;
        else
            a[sn_card_profile_bin(&d->prof[f], x[f])]++;
    }
    d->events++;
    /* KS values: every row up to the cap, then Algorithm R so that a long
     * input stays bounded and still a uniform sample of all its rows */
    if (d->nrows < d->cap) {
        if (d->nrows == d->alloc) {
            size_t na = d->alloc ? d->alloc * 2 : 1024;
            float *r;

            if (na > d->cap) na = d->cap;
            if (!(r = realloc(d->rows, na * d->nf * sizeof(float)))) return SN_ERR_NOMEM;
            d->rows = r;
            d->alloc = na;
        }
        slot = d->rows + d->nrows++ * d->nf;
    } else {
        uint64_t j = splitmix64(&d->rng) % d->events;

        if (j < d->cap) slot = d->rows + j * d->nf;
    }
    if (slot) memcpy(slot, x, d->nf * sizeof(float));
    return 0;
}

int sn_drift_enable_score(sn_drift_t *d, char *errstr, size_t errstr_size) {
    int rc = sn_card_score_profile(d->card, &d->sprof);

    if (rc != 0 || d->sprof.bins < 1)
        return sn_err_set(errstr, errstr_size, rc ? rc : SN_ERR_INVALID,
                          "drift: the card has no score profile (profile.score; trained before "
                          "score profiles were written)");
    if (!(d->sexp = calloc(d->sprof.bins + 1, sizeof(uint64_t))) ||
        !(d->sact = calloc(d->sprof.bins + 1, sizeof(uint64_t))))
        return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "drift: out of memory");
    for (size_t k = 0; k < d->sprof.bins; k++) d->sexp[k] = d->sprof.counts[k];
    d->sexp[d->sprof.bins] = d->sprof.missing;
    d->srng = 0x5c0e5c0eULL;
    d->has_score = 1;
    return 0;
}

/* Same binning and bounded sample as a feature's values. */
int sn_drift_add_score(sn_drift_t *d, double score) {
    double *slot = NULL;

    if (!d->has_score) return SN_ERR_INVALID;
    d->sact[isnan(score) ? d->sprof.bins : sn_card_profile_bin(&d->sprof, score)]++;
    d->nscores++;
    if (isnan(score)) return 0;
    if (d->nsvals < d->cap) {
        if (d->nsvals == d->salloc) {
            size_t na = d->salloc ? d->salloc * 2 : 1024;
            double *r;

            if (na > d->cap) na = d->cap;
            if (!(r = realloc(d->svals, na * sizeof(double)))) return SN_ERR_NOMEM;
            d->svals = r;
            d->salloc = na;
        }
        slot = d->svals + d->nsvals++;
    } else {
        uint64_t j = splitmix64(&d->srng) % d->nscores;

        if (j < d->cap) slot = d->svals + j;
    }
    if (slot) *slot = score;
    return 0;
}

/* One row's statistics and verdict: cur (nc values, sorted in place) against
 * the profile's sample; may_ks says whether KS may flag it. */
static int finish_row(sn_drift_t *d, sn_drift_feature_t *r, const sn_card_profile_t *p,
                      uint64_t *expected, uint64_t *actual, uint64_t n, double *cur, size_t nc,
                      double *ref, double alpha, int windowed, int enough, char *errstr,
                      size_t errstr_size) {
    int rc;

    r->name = p->name;
    r->n = n;
    r->ncells = p->bins + 1;
    r->expected = expected;
    r->actual = actual;
    r->edges = p->edges;
    r->missing = actual[p->bins];
    r->psi = sn_drift_psi(expected, actual, r->ncells, d->opts.psi_floor);
    for (size_t i = 0; i < p->nsample; i++) ref[i] = p->sample[i];
    r->ks = (sn_drift_ks_t){NAN, NAN, 0};
    if (nc && p->nsample && (rc = sn_drift_ks_2samp(ref, p->nsample, cur, nc, &r->ks)) != 0)
        return sn_err_set(errstr, errstr_size, rc, "drift: KS test of %s failed", p->name);
    r->psi_flag = r->psi >= d->opts.psi_threshold;
    r->windowed = windowed;
    r->ks_flag = !isnan(r->ks.p) && r->ks.p < alpha && (!r->windowed || d->opts.ks_windowed);
    r->verdict = !enough                       ? SN_DRIFT_NOT_ENOUGH
                 : (r->psi_flag || r->ks_flag) ? SN_DRIFT_DRIFTED
                                               : SN_DRIFT_NONE;
    return 0;
}

int sn_drift_finish(sn_drift_t *d, char *errstr, size_t errstr_size) {
    double *cur = NULL, *ref = NULL, alpha;
    size_t maxs = 0;
    int rc = 0, any = 0, windowed_any = 0, enough = d->events >= d->opts.min_events;

    if (d->finished) return d->verdict;
    for (size_t f = 0; f < d->nf; f++)
        if (d->prof[f].nsample > maxs) maxs = d->prof[f].nsample;
    if (d->has_score && d->sprof.nsample > maxs) maxs = d->sprof.nsample;
    if (!(cur = malloc((d->nrows ? d->nrows : 1) * sizeof(double))) ||
        !(ref = malloc((maxs ? maxs : 1) * sizeof(double)))) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "drift: out of memory");
        goto out;
    }
    alpha = d->opts.ks_alpha / (double)sn_drift_ntests(d);
    for (size_t f = 0; f < d->nf; f++) {
        const sn_card_profile_t *p = &d->prof[f];
        sn_drift_feature_t *r = &d->res[f];
        size_t nc = 0;

        for (size_t i = 0; i < d->nrows; i++) {
            float v = d->rows[i * d->nf + f];

            if (!isnan(v)) cur[nc++] = v;
        }
        if ((rc = finish_row(d, r, p, d->expected + f * d->stride, d->actual + f * d->stride,
                             d->events, cur, nc, ref, alpha, p->name && strstr(p->name, "__"),
                             enough, errstr, errstr_size)) != 0)
            goto out;
        windowed_any |= r->windowed;
        any |= r->verdict == SN_DRIFT_DRIFTED;
    }
    if (d->has_score) {
        /* The score is a function of the feature vector: when window
         * aggregates feed it, successive scores of a machine share them and
         * KS is as over-confident as for those features, so the same rule
         * applies. Scores have their own count: the verdict needs
         * drift.min.events of them, and too few leaves the row "not enough
         * data" without holding back the features' verdict. */
        double *sc = malloc((d->nsvals ? d->nsvals : 1) * sizeof(double));

        if (!sc) {
            rc = sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "drift: out of memory");
            goto out;
        }
        memcpy(sc, d->svals, d->nsvals * sizeof(double));
        rc = finish_row(d, &d->sres, &d->sprof, d->sexp, d->sact, d->nscores, sc, d->nsvals, ref,
                        alpha, windowed_any, enough && d->nscores >= d->opts.min_events, errstr,
                        errstr_size);
        free(sc);
        if (rc != 0) goto out;
        any |= d->sres.verdict == SN_DRIFT_DRIFTED;
    }
    d->finished = 1;
    d->verdict = !enough ? SN_DRIFT_NOT_ENOUGH : any ? SN_DRIFT_DRIFTED : SN_DRIFT_NONE;
    rc = d->verdict;
out:
    free(cur);
    free(ref);
    return rc;
}

size_t sn_drift_nfeatures(const sn_drift_t *d) { return d->nf; }
size_t sn_drift_ntests(const sn_drift_t *d) { return d->nf + (d->has_score ? 1 : 0); }
uint64_t sn_drift_scores(const sn_drift_t *d) { return d->nscores; }

const sn_drift_feature_t *sn_drift_score(const sn_drift_t *d) {
    return d && d->finished && d->has_score ? &d->sres : NULL;
}

/* Row i of the reports: the features, then the score when compared. */
static const sn_drift_feature_t *report_row(const sn_drift_t *d, size_t i) {
    return i < d->nf ? sn_drift_feature(d, i) : i == d->nf ? sn_drift_score(d) : NULL;
}
uint64_t sn_drift_events(const sn_drift_t *d) { return d->events; }

const sn_drift_feature_t *sn_drift_feature(const sn_drift_t *d, size_t i) {
    return d && d->finished && i < d->nf ? &d->res[i] : NULL;
}

static int dup_opt(char **dst, const char *s) {
    free(*dst);
    *dst = NULL;
    if (s && !(*dst = strdup(s))) return SN_ERR_NOMEM;
    return 0;
}

int sn_drift_set_context(sn_drift_t *d, const char *model, const char *version, const char *input,
                         int64_t from_ms, int64_t to_ms) {
    d->from_ms = from_ms;
    d->to_ms = to_ms;
    if (dup_opt(&d->model, model) || dup_opt(&d->version, version) || dup_opt(&d->input, input))
        return SN_ERR_NOMEM;
    return 0;
}

/* ---- reports ---- */

void sn_drift_print_table(const sn_drift_t *d, FILE *out) {
    fprintf(out, "%-32s %9s %9s %8s %10s %8s  %s\n", "feature", "events", "missing", "psi", "ks_d",
            "ks_p", "verdict");
    for (size_t f = 0; f < sn_drift_ntests(d) && d->finished; f++) {
        const sn_drift_feature_t *r = report_row(d, f);

        fprintf(out, "%-32.32s %9llu %9llu %8.4f %10.6f %8.2e  %s%s%s\n", r->name,
                (unsigned long long)r->n, (unsigned long long)r->missing, r->psi, r->ks.d, r->ks.p,
                sn_drift_verdict_str(r->verdict),
                r->psi_flag && r->verdict == SN_DRIFT_DRIFTED ? " (psi)" : "",
                r->ks_flag && r->verdict == SN_DRIFT_DRIFTED ? " (ks)" : "");
    }
    if (d->has_score)
        fprintf(out, "%llu events, %zu features and %llu scores: %s (psi >= %g or ks p < %g/%zu)\n",
                (unsigned long long)d->events, d->nf, (unsigned long long)d->nscores,
                sn_drift_verdict_str((enum sn_drift_verdict)d->verdict), d->opts.psi_threshold,
                d->opts.ks_alpha, sn_drift_ntests(d));
    else
        fprintf(out, "%llu events, %zu features: %s (psi >= %g or ks p < %g/%zu)\n",
                (unsigned long long)d->events, d->nf,
                sn_drift_verdict_str((enum sn_drift_verdict)d->verdict), d->opts.psi_threshold,
                d->opts.ks_alpha, d->nf);
}

/* NaN and infinities have no JSON spelling: they are null. */
static json_t *num(double v) { return isfinite(v) ? json_real(v) : json_null(); }

char *sn_drift_report_json(const sn_drift_t *d) {
    json_t *root = NULL, *feats = json_array(), *score = NULL;
    char *s = NULL;

    if (!feats) return NULL;
    for (size_t f = 0; f < sn_drift_ntests(d) && d->finished; f++) {
        const sn_drift_feature_t *r = report_row(d, f);
        json_t *exp = json_array(), *act = json_array(), *o;

        for (size_t k = 0; exp && act && k < r->ncells; k++) {
            json_array_append_new(exp, json_integer((json_int_t)r->expected[k]));
            json_array_append_new(act, json_integer((json_int_t)r->actual[k]));
        }
        o = json_pack("{s:s, s:s, s:I, s:I, s:o, s:b, s:{s:o, s:o, s:s}, s:b, s:o, s:o}", "name",
                      r->name, "verdict", sn_drift_verdict_str(r->verdict), "events",
                      (json_int_t)r->n, "missing", (json_int_t)r->missing, "psi", num(r->psi),
                      "psi_flag", r->psi_flag, "ks", "d", num(r->ks.d), "p", num(r->ks.p), "mode",
                      r->ks.exact ? "exact" : "asymp", "ks_flag", r->ks_flag, "expected_counts",
                      exp ? exp : json_null(), "current_counts", act ? act : json_null());
        if (!o) goto out;
        if (f == d->nf) { /* the score row: its own object, not a feature */
            if (!(score = o)) goto out;
            continue;
        }
        if (json_array_append_new(feats, o) != 0) goto out;
    }
    root = json_pack("{s:s, s:s?, s:s?, s:s?, s:I, s:I, s:I, s:{s:f, s:f, s:f, s:f, s:I}, s:o}",
                     "verdict", sn_drift_verdict_str((enum sn_drift_verdict)d->verdict), "model",
                     d->model, "version", d->version, "input", d->input, "from_ms",
                     (json_int_t)d->from_ms, "to_ms", (json_int_t)d->to_ms, "events",
                     (json_int_t)d->events, "thresholds", "psi", d->opts.psi_threshold, "ks_alpha",
                     d->opts.ks_alpha, "ks_alpha_per_feature",
                     d->opts.ks_alpha / (double)sn_drift_ntests(d), "psi_floor", d->opts.psi_floor,
                     "min_events", (json_int_t)d->opts.min_events, "features", feats);
    feats = NULL;
    if (root && score) {
        json_object_set_new(score, "scores", json_integer((json_int_t)d->nscores));
        json_object_set_new(root, "score", score);
        score = NULL;
    }
    if (root) s = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12));
out:
    json_decref(score);
    json_decref(feats);
    json_decref(root);
    return s;
}

/* Feature names come from the card, which anyone can write: escape them. */
static void html_text(FILE *out, const char *s) {
    for (; s && *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", out); break;
        case '>': fputs("&gt;", out); break;
        case '&': fputs("&amp;", out); break;
        case '"': fputs("&quot;", out); break;
        default: fputc(*s, out);
        }
    }
}

/* Reference vs current proportions per training bin (and the missing cell),
 * as grouped bars: bins are quantiles, so the reference is flat by design
 * and any shape in the current bars is the drift. */
static void html_svg(FILE *out, const sn_drift_feature_t *r) {
    const double W = 640, H = 220, ml = 40, mb = 40, mt = 10;
    double te = 0, ta = 0, ymax = 0, bw;

    for (size_t k = 0; k < r->ncells; k++) {
        te += (double)r->expected[k];
        ta += (double)r->actual[k];
    }
    for (size_t k = 0; k < r->ncells; k++) {
        double e = te ? (double)r->expected[k] / te : 0, a = ta ? (double)r->actual[k] / ta : 0;

        if (e > ymax) ymax = e;
        if (a > ymax) ymax = a;
    }
    if (ymax <= 0) ymax = 1;
    bw = (W - ml - 10) / (double)r->ncells;
    fprintf(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" role=\"img\">\n",
        W, H);
    fprintf(out, "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"#333\"/>\n", ml,
            H - mb, W - 10, H - mb);
    fprintf(out, "<text x=\"2\" y=\"%.0f\" font-size=\"10\">%.3f</text>\n", mt + 10, ymax);
    for (size_t k = 0; k < r->ncells; k++) {
        double e = te ? (double)r->expected[k] / te : 0, a = ta ? (double)r->actual[k] / ta : 0;
        double x = ml + (double)k * bw, he = e / ymax * (H - mb - mt),
               ha = a / ymax * (H - mb - mt);

        fprintf(out,
                "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                "fill=\"#8fa8c8\"><title>reference %.4f</title></rect>\n",
                x + 2, H - mb - he, bw / 2 - 2, he, e);
        fprintf(out,
                "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                "fill=\"#d9534f\"><title>current %.4f</title></rect>\n",
                x + bw / 2, H - mb - ha, bw / 2 - 2, ha, a);
        if (k + 1 < r->ncells)
            fprintf(out,
                    "<text x=\"%.1f\" y=\"%.0f\" font-size=\"9\" transform=\"rotate(30 %.1f "
                    "%.0f)\">%.4g</text>\n",
                    x + 2, H - mb + 12, x + 2, H - mb + 12, r->edges[k]);
        else
            fprintf(out, "<text x=\"%.1f\" y=\"%.0f\" font-size=\"9\">NaN</text>\n", x + 2,
                    H - mb + 12);
    }
    fprintf(out, "</svg>\n");
}

int sn_drift_write_html(const sn_drift_t *d, FILE *out) {
    fputs("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Sentinel drift "
          "report</title>\n"
          "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
          "td,th{border:1px solid #ccc;padding:2px "
          "6px;text-align:right}td:first-child{text-align:left}"
          "tr.drift{background:#fbe3e2}.legend "
          "span{display:inline-block;width:1em;height:1em;margin:0 4px}</style>\n"
          "</head><body>\n<h1>Drift report</h1>\n<p>",
          out);
    if (d->model) {
        fputs("Model ", out);
        html_text(out, d->model);
        if (d->version) {
            fputs(" version ", out);
            html_text(out, d->version);
        }
        fputs(". ", out);
    }
    if (d->input) {
        fputs("Input ", out);
        html_text(out, d->input);
        fputs(". ", out);
    }
    fprintf(out, "%llu events. Verdict: <b>%s</b> (PSI &ge; %g or KS p &lt; %g / %zu).</p>\n",
            (unsigned long long)d->events, sn_drift_verdict_str((enum sn_drift_verdict)d->verdict),
            d->opts.psi_threshold, d->opts.ks_alpha, sn_drift_ntests(d));
    fputs("<table><tr><th>feature</th><th>missing</th><th>PSI</th><th>KS D</th><th>KS "
          "p</th><th>verdict</th></tr>\n",
          out);
    for (size_t f = 0; f < sn_drift_ntests(d) && d->finished; f++) {
        const sn_drift_feature_t *r = report_row(d, f);

        fprintf(out, "<tr%s><td>", r->verdict == SN_DRIFT_DRIFTED ? " class=\"drift\"" : "");
        html_text(out, r->name);
        fprintf(out, "</td><td>%llu</td><td>%.4f</td><td>%.4f</td><td>%.3g</td><td>%s</td></tr>\n",
                (unsigned long long)r->missing, r->psi, r->ks.d, r->ks.p,
                sn_drift_verdict_str(r->verdict));
    }
    fputs("</table>\n<p class=\"legend\"><span style=\"background:#8fa8c8\"></span>reference "
          "(training)"
          "<span style=\"background:#d9534f\"></span>current; bars are proportions per training "
          "quantile bin, "
          "labelled by the bin's lower edge, the last cell is missing values.</p>\n",
          out);
    for (size_t f = 0; f < sn_drift_ntests(d) && d->finished; f++) {
        const sn_drift_feature_t *r = report_row(d, f);

        if (r->verdict != SN_DRIFT_DRIFTED) continue;
        fputs("<h2>", out);
        html_text(out, r->name);
        fprintf(out, "</h2>\n<p>PSI %.4f, KS D %.4f, p %.3g</p>\n", r->psi, r->ks.d, r->ks.p);
        html_svg(out, r);
    }
    fputs("</body></html>\n", out);
    return ferror(out) ? SN_ERR_IO : 0;
}
