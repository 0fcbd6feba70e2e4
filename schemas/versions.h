/* versions.h: the avro-c version this binary was built with. */
#ifndef SN_SCHEMAS_VERSIONS_H
#define SN_SCHEMAS_VERSIONS_H

const char *sn_schemas_avro_version(void);

#endif
