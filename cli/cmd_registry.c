/* sentinel registry: look at model versions and move aliases by hand (list,
 * show, promote, rollback, alias, download), on whatever registry.url names.
 * Promotion here skips the gate on purpose: it is the operator's override. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli/cli.h"
#include "common/err.h"
#include "scoring/card.h"
#include "scoring/registry.h"

static void usage(FILE *out) {
    fprintf(
        out,
        "usage: sentinel registry <command> [options]\n\n"
        "Model versions and aliases in registry.url (file://DIR, mlflow+http://HOST:PORT or\n"
        "s3://BUCKET[/PREFIX] with the s3.* keys), under model.name.\n\n"
        "commands:\n"
        "  list [--limit N]          versions, oldest first, with their aliases and holdout "
        "PR-AUC\n"
        "  show VERSION|ALIAS [--json]\n"
        "                            a version's card: metrics, threshold, data, lineage\n"
        "                            (--json prints card.json as stored)\n"
        "  promote VERSION [--alias A]\n"
        "                            point A (default model.alias) at VERSION, without the gate\n"
        "  rollback [--alias A]      move A back to the version it had before its last move\n"
        "  alias NAME [VERSION]      print NAME's version and history, or point it at VERSION\n"
        "  download VERSION|ALIAS DIR\n"
        "                            write model.ubj and card.json into DIR\n"
        "\nExit codes: 0 done, 1 failure (unknown version, unset alias, registry down), 2 bad\n"
        "usage or config.\n");
    cli_conf_usage(out);
}

/* A malformed alias or version on the command line is a usage error; every
 * other failure (unknown version, registry down, refused request) is a
 * runtime one. */
static int fail(const char *errstr, int err) {
    fprintf(stderr, "sentinel registry: %s\n",
            strncmp(errstr, "registry: ", 10) == 0 ? errstr + 10 : errstr);
    if (err == SN_ERR_INVALID &&
        (strstr(errstr, "bad alias") || strstr(errstr, "not a version number")))
        return SN_EXIT_USAGE;
    return SN_EXIT_RUNTIME;
}

static int is_version(const char *s) {
    return s[0] >= '1' && s[0] <= '9' && strspn(s, "0123456789") == strlen(s);
}

/* A version number, or an alias resolved to one. */
static int resolve(sn_registry_t *reg, const char *what, char *version, char *errstr,
                   size_t errstr_size) {
    if (is_version(what)) {
        snprintf(version, SN_REGISTRY_VERSION_MAX, "%s", what);
        return 0;
    }
    return sn_registry_get_alias(reg, what, version, errstr, errstr_size);
}

static void fmt_time(int64_t ms, char *buf, size_t size) {
    time_t s = (time_t)(ms / 1000);
    struct tm tm;

    if (ms <= 0) {
        snprintf(buf, size, "-");
        return;
    }
    gmtime_r(&s, &tm);
    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int do_list(sn_registry_t *reg, size_t limit) {
    sn_registry_entry_t *e = NULL;
    size_t n = 0;
    char err[512];
    int rc = sn_registry_list(reg, limit, &e, &n, err, sizeof(err));

    if (rc != 0) return fail(err, rc);
    printf("%-8s %-21s %-9s %-9s %s\n", "version", "registered", "pr_auc", "threshold", "aliases");
    for (size_t i = 0; i < n; i++) {
        char when[32], *card = NULL;
        size_t len = 0;
        sn_card_t *c = NULL;

        fmt_time(e[i].created_ms, when, sizeof(when));
        if (sn_registry_fetch(reg, e[i].version, NULL, NULL, &card, &len, err, sizeof(err)) == 0)
            c = sn_card_parse(card, len, err, sizeof(err));
        if (c)
            printf("%-8s %-21s %-9.4f %-9.4f %s\n", e[i].version, when,
                   sn_card_metric(c, "holdout", "pr_auc"), sn_card_threshold(c), e[i].aliases);
        else
            printf("%-8s %-21s %-9s %-9s %s\n", e[i].version, when, "?", "?", e[i].aliases);
        sn_card_destroy(c);
        free(card);
    }
    if (n == 0) printf("(no versions)\n");
    free(e);
    return SN_EXIT_OK;
}

static int do_show(sn_registry_t *reg, const char *what, int json) {
    char version[SN_REGISTRY_VERSION_MAX], err[512], *card = NULL;
    size_t len = 0;
    sn_card_t *c = NULL;
    int rc;

    if ((rc = resolve(reg, what, version, err, sizeof(err))) != 0 ||
        (rc = sn_registry_fetch(reg, version, NULL, NULL, &card, &len, err, sizeof(err))) != 0)
        return fail(err, rc);
    if (json) {
        fwrite(card, 1, len, stdout);
        free(card);
        return SN_EXIT_OK;
    }
    if (!(c = sn_card_parse(card, len, err, sizeof(err)))) {
        free(card);
        return fail(err, SN_ERR_FATAL);
    }
    printf("version          %s\n", version);
    printf("created          %s\n", sn_card_get_str(c, "created"));
    printf("parent version   %s\n", sn_card_parent_version(c) ? sn_card_parent_version(c) : "-");
    printf("features         %zu (%s ... %s)\n", sn_card_nfeatures(c), sn_card_feature_name(c, 0),
           sn_card_feature_name(c, sn_card_nfeatures(c) - 1));
    printf("label            %s", sn_card_get_str(c, "label.kind"));
    if (sn_card_get_str(c, "label.field")) printf(" (tag %s)", sn_card_get_str(c, "label.field"));
    if (!isnan(sn_card_get_num(c, "label.horizon_ms")))
        printf(" (horizon %.0f ms)", sn_card_get_num(c, "label.horizon_ms"));
    printf("\nthreshold        %.6f (%s, chosen on %s)\n", sn_card_threshold(c),
           sn_card_threshold_policy(c),
           sn_card_get_str(c, "threshold.chosen_on") ? sn_card_get_str(c, "threshold.chosen_on")
                                                     : "?");
    printf("holdout          PR-AUC %.4f  ROC-AUC %.4f  F1 %.4f  precision %.4f  recall %.4f  "
           "alerts/1000 %.2f\n",
           sn_card_metric(c, "holdout", "pr_auc"), sn_card_metric(c, "holdout", "roc_auc"),
           sn_card_metric(c, "holdout", "f1"), sn_card_metric(c, "holdout", "precision"),
           sn_card_metric(c, "holdout", "recall"), sn_card_metric(c, "holdout", "alerts_per_1000"));
    printf("data             %s (%.0f events), sha256 %s\n",
           sn_card_get_str(c, "data.path") ? sn_card_get_str(c, "data.path") : "?",
           sn_card_get_num(c, "data.events"), sn_card_get_str(c, "data.sha256"));
    printf("model            sha256 %s, %.0f rounds, xgboost %s\n", sn_card_model_sha256(c),
           sn_card_get_num(c, "model.rounds"),
           sn_card_get_str(c, "libraries.xgboost") ? sn_card_get_str(c, "libraries.xgboost") : "?");
    sn_card_destroy(c);
    free(card);
    return SN_EXIT_OK;
}

static int do_alias(sn_registry_t *reg, const char *alias, const char *version) {
    char err[512], cur[SN_REGISTRY_VERSION_MAX], hist[20][SN_REGISTRY_VERSION_MAX];
    size_t n = 0;
    int rc;

    if (version) {
        rc = sn_registry_get_alias(reg, alias, cur, err, sizeof(err));
        if (rc != 0 && rc != SN_ERR_NOENT) return fail(err, rc);
        if (rc == SN_ERR_NOENT) cur[0] = '\0';
        if ((rc = sn_registry_set_alias(reg, alias, version, err, sizeof(err))) != 0)
            return fail(err, rc);
        printf("%s: %s -> %s\n", alias, cur[0] ? cur : "(unset)", version);
        return SN_EXIT_OK;
    }
    if ((rc = sn_registry_get_alias(reg, alias, cur, err, sizeof(err))) != 0) return fail(err, rc);
    if ((rc = sn_registry_alias_history(reg, alias, hist, 20, &n, err, sizeof(err))) != 0)
        return fail(err, rc);
    printf("%s -> %s", alias, cur);
    if (n) {
        printf("  (before: ");
        for (size_t i = 0; i < n; i++) printf("%s%s", i ? ", " : "", hist[i]);
        printf(")");
    }
    printf("\n");
    return SN_EXIT_OK;
}

static int write_file(const char *dir, const char *name, const void *buf, size_t len) {
    char path[4096];
    FILE *fp;
    int ok;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (!(fp = fopen(path, "wb"))) {
        fprintf(stderr, "sentinel registry: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    ok = fwrite(buf, 1, len, fp) == len;
    ok = (fclose(fp) == 0) && ok;
    if (!ok) fprintf(stderr, "sentinel registry: cannot write %s\n", path);
    return ok ? 0 : -1;
}

/* Downloads and checks: the card must parse and describe exactly these
 * model bytes, so that what lands in DIR is loadable as is. */
static int do_download(sn_registry_t *reg, const char *what, const char *dir) {
    char version[SN_REGISTRY_VERSION_MAX], err[512], *card = NULL;
    uint8_t *model = NULL;
    size_t lm = 0, lc = 0;
    sn_card_t *c = NULL;
    int rc;

    if ((rc = resolve(reg, what, version, err, sizeof(err))) != 0 ||
        (rc = sn_registry_fetch(reg, version, &model, &lm, &card, &lc, err, sizeof(err))) != 0)
        return fail(err, rc);
    if (!(c = sn_card_parse(card, lc, err, sizeof(err))) ||
        sn_card_verify_model(c, model, lm, err, sizeof(err)) != 0) {
        rc = fail(err, SN_ERR_FATAL);
        goto out;
    }
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "sentinel registry: cannot create %s: %s\n", dir, strerror(errno));
        rc = SN_EXIT_RUNTIME;
        goto out;
    }
    rc = write_file(dir, "model.ubj", model, lm) || write_file(dir, "card.json", card, lc)
             ? SN_EXIT_RUNTIME
             : SN_EXIT_OK;
    if (rc == SN_EXIT_OK)
        printf("version %s -> %s/model.ubj, %s/card.json (sha256 verified)\n", version, dir, dir);
out:
    sn_card_destroy(c);
    free(model);
    free(card);
    return rc;
}

int cmd_registry(int argc, char **argv) {
    enum { O_ALIAS = 256, O_LIMIT, O_JSON };
    static const struct option longopts[] = {{"alias", required_argument, NULL, O_ALIAS},
                                             {"limit", required_argument, NULL, O_LIMIT},
                                             {"json", no_argument, NULL, O_JSON},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    cli_conf_args_t args = {0};
    sn_conf_t *conf = NULL;
    sn_registry_t *reg = NULL;
    const char *alias = NULL, *cmd, *a1, *a2;
    char errstr[512], v[SN_REGISTRY_VERSION_MAX];
    unsigned long limit = 0;
    int opt, json = 0, rc = SN_EXIT_USAGE, nargs;

    while ((opt = getopt_long(argc, argv, CLI_CONF_OPTS "h", longopts, NULL)) != -1) {
        int r = cli_conf_opt(&args, opt, optarg);
        char *end;

        if (r < 0) return SN_EXIT_USAGE;
        if (r) continue;
        switch (opt) {
        case O_ALIAS: alias = optarg; break;
        case O_LIMIT:
            limit = strtoul(optarg, &end, 10);
            if (end == optarg || *end) {
                fprintf(stderr, "sentinel registry: --limit expects a number\n");
                return SN_EXIT_USAGE;
            }
            break;
        case O_JSON: json = 1; break;
        case 'h': usage(stdout); return SN_EXIT_OK;
        default: usage(stderr); return SN_EXIT_USAGE;
        }
    }
    nargs = argc - optind;
    if (nargs < 1) {
        usage(stderr);
        return SN_EXIT_USAGE;
    }
    cmd = argv[optind];
    a1 = nargs > 1 ? argv[optind + 1] : NULL;
    a2 = nargs > 2 ? argv[optind + 2] : NULL;
    {
        static const struct {
            const char *name;
            int min, max;
        } shapes[] = {{"list", 0, 0},     {"show", 1, 1},  {"promote", 1, 1},
                      {"rollback", 0, 0}, {"alias", 1, 2}, {"download", 2, 2}};
        int known = 0;

        for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++)
            if (strcmp(cmd, shapes[i].name) == 0) {
                known = 1;
                if (nargs - 1 < shapes[i].min || nargs - 1 > shapes[i].max) {
                    fprintf(stderr, "sentinel registry %s: wrong number of arguments\n", cmd);
                    usage(stderr);
                    return SN_EXIT_USAGE;
                }
            }
        if (!known) {
            fprintf(stderr, "sentinel registry: unknown command '%s'\n", cmd);
            usage(stderr);
            return SN_EXIT_USAGE;
        }
    }
    if (!(conf = cli_conf_build(&args))) goto out;
    if (!(reg = sn_registry_from_conf(conf, errstr, sizeof(errstr)))) {
        fprintf(stderr, "sentinel registry: %s\n", errstr);
        goto out;
    }
    if (!alias) alias = sn_conf_str(conf, "model.alias");
    if (strcmp(cmd, "list") == 0) {
        rc = do_list(reg, limit);
    } else if (strcmp(cmd, "show") == 0) {
        rc = do_show(reg, a1, json);
    } else if (strcmp(cmd, "promote") == 0) {
        rc = do_alias(reg, alias, a1);
    } else if (strcmp(cmd, "rollback") == 0) {
        int r = sn_registry_rollback(reg, alias, v, errstr, sizeof(errstr));

        rc = r ? fail(errstr, r) : SN_EXIT_OK;
        if (!r) printf("%s rolled back to version %s\n", alias, v);
    } else if (strcmp(cmd, "alias") == 0) {
        rc = do_alias(reg, a1, a2);
    } else {
        rc = do_download(reg, a1, a2);
    }
out:
    sn_registry_destroy(reg);
    sn_conf_destroy(conf);
    return rc;
}
