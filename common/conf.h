/* conf.h: typed configuration from one table of keys.
 *
 * Every module declares its keys in a table of sn_conf_def (name, type, default,
 * range, help), like Redis's config table or Fluent Bit's config_map; the binary
 * hands all tables to sn_conf_new(). Values come from, in rising precedence:
 * the defaults, a file of key=value lines, SENTINEL_* environment variables and
 * -X key=value. An unknown key or a bad value is an error that names the key and
 * where it came from. Keys under "kafka." that are not in a table pass through
 * untouched to librdkafka, which validates them itself.
 *
 * The reference in docs/CONFIG.md is generated from the tables
 * (sn_conf_write_markdown), so it cannot drift from the code. */
#ifndef SN_CONF_H
#define SN_CONF_H

#include <stdint.h>
#include <stdio.h>

enum sn_conf_type {
    SN_CONF_STR,
    SN_CONF_INT,    /* int64, range [min, max] */
    SN_CONF_DOUBLE, /* finite double, range [min, max] */
    SN_CONF_BOOL,   /* true/false, 1/0, yes/no, on/off */
    SN_CONF_ENUM,   /* one of choices, "a|b|c" */
};

#define SN_CONF_F_SECRET 0x1 /* masked by sn_conf_dump() */

typedef struct sn_conf_def {
    const char *name; /* lower case, dots, no '_' (SENTINEL_A_B maps to a.b) */
    enum sn_conf_type type;
    const char *def;     /* default as text; "" for an empty string */
    double min, max;     /* INT and DOUBLE only */
    const char *choices; /* ENUM only */
    int flags;
    const char *help;
} sn_conf_def_t;

/* A module's table ends with an entry whose name is NULL. */
#define SN_CONF_END                                                                                \
    { NULL, SN_CONF_STR, NULL, 0, 0, NULL, 0, NULL }

typedef struct sn_conf sn_conf_t;

/* Creates a configuration holding every table's defaults. tables is borrowed and
 * must outlive the handle (they are static arrays). Fails on a malformed table
 * (a duplicate key or a default outside its range): a programming error. */
sn_conf_t *sn_conf_new(const sn_conf_def_t *const *tables, size_t ntables, char *errstr,
                       size_t errstr_size);

/* NULL-safe. */
void sn_conf_destroy(sn_conf_t *conf);

/* Sets one key from text. source describes where it came from ("-X",
 * "file a.conf:3", "env SENTINEL_X") and is copied. Returns SN_ERR_INVALID with
 * a message naming the key and the source for an unknown key or bad value. */
int sn_conf_set(sn_conf_t *conf, const char *key, const char *value, const char *source,
                char *errstr, size_t errstr_size);

/* Reads key=value lines; '#' starts a comment line. */
int sn_conf_load_file(sn_conf_t *conf, const char *path, char *errstr, size_t errstr_size);

/* Applies SENTINEL_* variables from envp (NULL-terminated, borrowed). Every
 * SENTINEL_* variable must name a key. */
int sn_conf_load_env(sn_conf_t *conf, char *const *envp, char *errstr, size_t errstr_size);

/* Typed getters. The key must exist in a table with that type: asking for a key
 * that is not there is a programming error and aborts. Strings are borrowed
 * from the handle. */
const char *sn_conf_str(const sn_conf_t *conf, const char *key);
int64_t sn_conf_int(const sn_conf_t *conf, const char *key);
double sn_conf_double(const sn_conf_t *conf, const char *key);
int sn_conf_bool(const sn_conf_t *conf, const char *key);

/* Where the current value of key came from ("default", "-X", ...); borrowed. */
const char *sn_conf_source(const sn_conf_t *conf, const char *key);

/* Calls fn for every kafka.* key, table keys first then pass-through ones, with
 * the "kafka." prefix removed. Stops and returns fn's value when non-zero. */
int sn_conf_kafka_each(const sn_conf_t *conf,
                       int (*fn)(const char *key, const char *value, const char *source,
                                 void *opaque),
                       void *opaque);

/* True for keys whose values must never be printed (by flag, or by name for
 * pass-through keys: password, secret, key material). */
int sn_conf_is_secret(const sn_conf_t *conf, const char *key);

/* Prints "key = value  # source" for every key, secrets masked. */
void sn_conf_dump(const sn_conf_t *conf, FILE *out);

/* Writes the config reference (docs/CONFIG.md) for the tables. */
void sn_conf_write_markdown(const sn_conf_def_t *const *tables, const char *const *titles,
                            size_t ntables, FILE *out);

#endif
