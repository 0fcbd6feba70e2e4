#include "schemas/versions.h"

/* avro-c has no version call; the version is the one pkg-config reported when
 * this binary was built against the shared library (same Debian package). */
const char *sn_schemas_avro_version(void) { return SN_AVRO_VERSION; }
