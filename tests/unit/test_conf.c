/* Config: precedence, typed validation, errors that name key and source,
 * pass-through of kafka.* keys, secrets masked, the generated reference. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/conf.h"
#include "common/err.h"
#include "common/kafka.h"

static const sn_conf_def_t defs[] = {
    {"a.str", SN_CONF_STR, "hello", 0, 0, NULL, 0, "A string."},
    {"a.int", SN_CONF_INT, "10", 1, 100, NULL, 0, "An integer."},
    {"a.dbl", SN_CONF_DOUBLE, "0.5", 0, 1, NULL, 0, "A number."},
    {"a.bool", SN_CONF_BOOL, "false", 0, 0, NULL, 0, "A switch."},
    {"a.enum", SN_CONF_ENUM, "x", 0, 0, "x|y|zz", 0, "A choice."},
    {"a.password", SN_CONF_STR, "", 0, 0, NULL, SN_CONF_F_SECRET, "A secret."},
    {"kafka.bootstrap.servers", SN_CONF_STR, "localhost:9092", 0, 0, NULL, 0, "Brokers."},
    SN_CONF_END,
};
static const sn_conf_def_t *const tables[] = {defs};

static sn_conf_t *new_conf(void) {
    char errstr[256];
    sn_conf_t *conf = sn_conf_new(tables, 1, errstr, sizeof(errstr));

    cr_assert_not_null(conf, "%s", errstr);
    return conf;
}

static char *write_tmp(const char *text) {
    static char path[64];
    FILE *fp;
    int fd;

    snprintf(path, sizeof(path), "/tmp/sn_conf_XXXXXX");
    fd = mkstemp(path);
    cr_assert(fd >= 0);
    fp = fdopen(fd, "w");
    fputs(text, fp);
    fclose(fp);
    return path;
}

Test(conf, defaults_are_typed) {
    sn_conf_t *conf = new_conf();

    cr_assert_str_eq(sn_conf_str(conf, "a.str"), "hello");
    cr_assert_eq(sn_conf_int(conf, "a.int"), 10);
    cr_assert_float_eq(sn_conf_double(conf, "a.dbl"), 0.5, 1e-12);
    cr_assert_eq(sn_conf_bool(conf, "a.bool"), 0);
    cr_assert_str_eq(sn_conf_str(conf, "a.enum"), "x");
    cr_assert_str_eq(sn_conf_source(conf, "a.int"), "default");
    sn_conf_destroy(conf);
}

Test(conf, precedence_default_file_env_x) {
    char errstr[256];
    sn_conf_t *conf = new_conf();
    char *path = write_tmp("# comment\n\n a.int = 20 \na.str=from-file\na.enum=y\n");
    char *env[] = {"SENTINEL_A_INT=30", "OTHER=1", "SENTINEL_A_BOOL=yes", NULL};

    cr_assert_eq(sn_conf_load_file(conf, path, errstr, sizeof(errstr)), 0, "%s", errstr);
    cr_assert_eq(sn_conf_int(conf, "a.int"), 20);
    cr_assert_eq(sn_conf_load_env(conf, env, errstr, sizeof(errstr)), 0, "%s", errstr);
    cr_assert_eq(sn_conf_int(conf, "a.int"), 30);
    cr_assert_eq(sn_conf_set(conf, "a.int", "40", "-X", errstr, sizeof(errstr)), 0);
    cr_assert_eq(sn_conf_int(conf, "a.int"), 40);
    cr_assert_str_eq(sn_conf_source(conf, "a.int"), "-X");
    cr_assert_str_eq(sn_conf_str(conf, "a.str"), "from-file");
    cr_assert(strstr(sn_conf_source(conf, "a.str"), ":4") != NULL, "file source names the line");
    cr_assert_eq(sn_conf_bool(conf, "a.bool"), 1);
    cr_assert_str_eq(sn_conf_source(conf, "a.bool"), "environment SENTINEL_A_BOOL");
    unlink(path);
    sn_conf_destroy(conf);
}

Test(conf, unknown_key_names_key_and_source) {
    char errstr[256];
    sn_conf_t *conf = new_conf();
    char *path = write_tmp("a.int=5\nno.such.key=1\n");
    char *env[] = {"SENTINEL_BOGUS_KEY=1", NULL};

    cr_assert_eq(sn_conf_set(conf, "a.nope", "1", "-X", errstr, sizeof(errstr)), SN_ERR_INVALID);
    cr_assert(strstr(errstr, "'a.nope'") && strstr(errstr, "-X"), "%s", errstr);
    cr_assert_eq(sn_conf_load_file(conf, path, errstr, sizeof(errstr)), SN_ERR_INVALID);
    cr_assert(strstr(errstr, "'no.such.key'") && strstr(errstr, ":2"), "%s", errstr);
    cr_assert_eq(sn_conf_load_env(conf, env, errstr, sizeof(errstr)), SN_ERR_INVALID);
    cr_assert(strstr(errstr, "SENTINEL_BOGUS_KEY") && strstr(errstr, "'bogus.key'"), "%s", errstr);
    unlink(path);
    sn_conf_destroy(conf);
}

Test(conf, bad_values_are_rejected_and_old_value_kept) {
    static const char *bad[][2] = {
        {"a.int", "abc"}, {"a.int", "0"},   {"a.int", "101"}, {"a.int", "5x"},
        {"a.dbl", "1.5"}, {"a.dbl", "nan"}, {"a.dbl", ""},    {"a.bool", "maybe"},
        {"a.enum", "z"},  {"a.enum", "xx"}, {"a.int", ""},
    };
    char errstr[256];
    sn_conf_t *conf = new_conf();

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(sn_conf_set(conf, bad[i][0], bad[i][1], "-X", errstr, sizeof(errstr)),
                     SN_ERR_INVALID, "%s=%s accepted", bad[i][0], bad[i][1]);
        cr_assert(strstr(errstr, bad[i][0]) != NULL, "%s", errstr);
    }
    cr_assert_eq(sn_conf_int(conf, "a.int"), 10);
    cr_assert_str_eq(sn_conf_str(conf, "a.enum"), "x");
    sn_conf_destroy(conf);
}

Test(conf, malformed_file_lines) {
    char errstr[256];
    sn_conf_t *conf = new_conf();
    char *path = write_tmp("a.int\n");

    cr_assert_eq(sn_conf_load_file(conf, path, errstr, sizeof(errstr)), SN_ERR_INVALID);
    cr_assert(strstr(errstr, "key=value"), "%s", errstr);
    unlink(path);
    cr_assert_eq(sn_conf_load_file(conf, "/nonexistent/x.conf", errstr, sizeof(errstr)),
                 SN_ERR_INVALID);
    cr_assert(strstr(errstr, "/nonexistent/x.conf"), "%s", errstr);
    sn_conf_destroy(conf);
}

struct collected {
    char keys[512];
};

static int collect(const char *key, const char *value, const char *source, void *opaque) {
    struct collected *c = opaque;
    size_t n = strlen(c->keys);

    (void)source;
    snprintf(c->keys + n, sizeof(c->keys) - n, "%s=%s;", key, value);
    return 0;
}

Test(conf, kafka_passthrough_reaches_librdkafka) {
    char errstr[256];
    struct collected c = {""};
    sn_conf_t *conf = new_conf();
    rd_kafka_conf_t *rk;
    char val[64];
    size_t vlen = sizeof(val);

    cr_assert_eq(sn_conf_set(conf, "kafka.linger.ms", "7", "-X", errstr, sizeof(errstr)), 0);
    cr_assert_eq(sn_conf_set(conf, "kafka.sasl.password", "hunter2", "-X", errstr, sizeof(errstr)),
                 0);
    sn_conf_kafka_each(conf, collect, &c);
    cr_assert_str_eq(c.keys, "bootstrap.servers=localhost:9092;linger.ms=7;sasl.password=hunter2;");
    rk = sn_kafka_conf_new(conf, NULL, errstr, sizeof(errstr));
    cr_assert_not_null(rk, "%s", errstr);
    cr_assert_eq(rd_kafka_conf_get(rk, "linger.ms", val, &vlen), RD_KAFKA_CONF_OK);
    cr_assert_str_eq(val, "7");
    rd_kafka_conf_destroy(rk);

    /* librdkafka's own message reaches the user, with the key and source. */
    cr_assert_eq(
        sn_conf_set(conf, "kafka.no.such.property", "1", "file x.conf:9", errstr, sizeof(errstr)),
        0);
    cr_assert_null(sn_kafka_conf_new(conf, NULL, errstr, sizeof(errstr)));
    cr_assert(strstr(errstr, "kafka.no.such.property") && strstr(errstr, "x.conf:9") &&
                  strstr(errstr, "No such configuration property"),
              "%s", errstr);
    sn_conf_destroy(conf);
}

Test(conf, secrets_are_masked) {
    char errstr[256], buf[4096] = "";
    sn_conf_t *conf = new_conf();
    FILE *fp = fmemopen(buf, sizeof(buf), "w");

    sn_conf_set(conf, "a.password", "s3cr3t", "-X", errstr, sizeof(errstr));
    sn_conf_set(conf, "kafka.sasl.password", "hunter2", "-X", errstr, sizeof(errstr));
    sn_conf_dump(conf, fp);
    fclose(fp);
    cr_assert(strstr(buf, "s3cr3t") == NULL && strstr(buf, "hunter2") == NULL, "%s", buf);
    cr_assert(strstr(buf, "a.password = ******") != NULL, "%s", buf);
    cr_assert(strstr(buf, "a.int = 10  # default") != NULL, "%s", buf);
    sn_conf_destroy(conf);
}

Test(conf, malformed_tables_are_refused) {
    static const sn_conf_def_t dup[] = {
        {"x.y", SN_CONF_INT, "1", 0, 5, NULL, 0, ""},
        {"x.y", SN_CONF_INT, "1", 0, 5, NULL, 0, ""},
        SN_CONF_END,
    };
    static const sn_conf_def_t range[] = {{"x.y", SN_CONF_INT, "9", 0, 5, NULL, 0, ""},
                                          SN_CONF_END};
    static const sn_conf_def_t underscore[] = {{"x_y", SN_CONF_STR, "", 0, 0, NULL, 0, ""},
                                               SN_CONF_END};
    const sn_conf_def_t *const t1[] = {dup}, *const t2[] = {range}, *const t3[] = {underscore};
    char errstr[256];

    cr_assert_null(sn_conf_new(t1, 1, errstr, sizeof(errstr)));
    cr_assert_null(sn_conf_new(t2, 1, errstr, sizeof(errstr)));
    cr_assert_null(sn_conf_new(t3, 1, errstr, sizeof(errstr)));
}

Test(conf, markdown_lists_every_key) {
    static const char *titles[] = {"Test"};
    char buf[8192] = "";
    FILE *fp = fmemopen(buf, sizeof(buf), "w");

    sn_conf_write_markdown(tables, titles, 1, fp);
    fclose(fp);
    for (const sn_conf_def_t *d = defs; d->name; d++) {
        char needle[64];

        snprintf(needle, sizeof(needle), "| `%s` |", d->name);
        cr_assert(strstr(buf, needle) != NULL, "%s missing", d->name);
    }
    /* enum choices must not break the markdown table */
    cr_assert(strstr(buf, "x, y, zz") != NULL, "%s", buf);
}
