/* schema_store.h (internal to schemas/): writer schema text by Confluent id.
 *
 * Two sources, chosen by config: the local schema directory (default) whose
 * manifest file "ids" maps ids to .avsc files, or a Schema Registry when
 * schema.registry.url is set (then only the registry is asked). The store
 * only fetches; the codec caches what it compiled from the text, per id. */
#ifndef SN_SCHEMAS_SCHEMA_STORE_H
#define SN_SCHEMAS_SCHEMA_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "common/conf.h"

#define SN_SCHEMA_STORE_IDS_MAX 4096           /* entries of the ids manifest */
#define SN_SCHEMA_STORE_FILE_MAX (1024 * 1024) /* largest .avsc or manifest file */

typedef struct sn_schema_store sn_schema_store_t;

/* Reads the manifest (local mode) or prepares the registry client; conf is
 * borrowed for the call. */
sn_schema_store_t *sn_schema_store_new(const sn_conf_t *conf, char *errstr, size_t errstr_size);

/* NULL-safe. */
void sn_schema_store_destroy(sn_schema_store_t *store);

/* 1 when a registry is configured. */
int sn_schema_store_is_registry(const sn_schema_store_t *store);

/* Schema text of id into *json_out (caller frees with free()). SN_ERR_NOENT for
 * an unknown id; registry errors as in schema_registry.h. */
int sn_schema_store_fetch(sn_schema_store_t *store, int32_t id, char **json_out, char *errstr,
                          size_t errstr_size);

/* Registry only: the id of schema_json under subject (looked up, or registered
 * when do_register). */
int sn_schema_store_id_for(sn_schema_store_t *store, const char *subject, const char *schema_json,
                           int do_register, int32_t *id_out, char *errstr, size_t errstr_size);

/* Reads a whole file of at most SN_SCHEMA_STORE_FILE_MAX bytes into a
 * NUL-terminated buffer (caller frees with free()). */
int sn_schema_read_file(const char *path, char **out, size_t *len_out, char *errstr,
                        size_t errstr_size);

#endif
