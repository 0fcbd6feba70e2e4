/* schemas_conf.h: the config table of the schemas module (codec, schema lookup). */
#ifndef SN_SCHEMAS_CONF_H
#define SN_SCHEMAS_CONF_H

#include "common/conf.h"

extern const sn_conf_def_t sn_schemas_conf_defs[];

#endif
