/* schema_registry.h (internal to schemas/): a client of the Confluent Schema
 * Registry REST API, only what the codec needs.
 *
 *   GET  /schemas/ids/{id}              writer schema text by id
 *   POST /subjects/{subject}            id of a schema already under subject
 *   POST /subjects/{subject}/versions   register (idempotent), returns the id
 *
 * Every request is bounded: one timeout covers connect and transfer, the
 * response body is capped, redirects are not followed. Errors are classified
 * for the caller: SN_ERR_NOENT (404: no such id, subject or schema),
 * SN_ERR_TRANSIENT (cannot connect, timeout, 5xx, 408, 429: retry later),
 * SN_ERR_FATAL (401/403: our credentials are wrong), SN_ERR_INVALID (any other
 * answer we cannot use). One handle per thread (it keeps one libcurl handle so
 * that connections are reused). */
#ifndef SN_SCHEMAS_SCHEMA_REGISTRY_H
#define SN_SCHEMAS_SCHEMA_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#define SN_SCHEMA_REGISTRY_BODY_MAX (1024 * 1024) /* largest response accepted */

typedef struct sn_schema_registry sn_schema_registry_t;

/* url, username and password are copied; username NULL or "" means no auth. */
sn_schema_registry_t *sn_schema_registry_new(const char *url, const char *username,
                                             const char *password, long timeout_ms, char *errstr,
                                             size_t errstr_size);

/* NULL-safe. */
void sn_schema_registry_destroy(sn_schema_registry_t *reg);

/* Fetches the schema text of id into *json_out (caller frees with free()). A
 * schemaType other than AVRO is SN_ERR_INVALID. */
int sn_schema_registry_get(sn_schema_registry_t *reg, int32_t id, char **json_out, char *errstr,
                           size_t errstr_size);

/* Finds (do_register 0) or registers (1) schema_json under subject (both
 * borrowed) and sets *id_out. */
int sn_schema_registry_id_for(sn_schema_registry_t *reg, const char *subject,
                              const char *schema_json, int do_register, int32_t *id_out,
                              char *errstr, size_t errstr_size);

#endif
