/* s3_conf.h: the config table of the S3 client (common/s3.c). */
#ifndef SN_S3_CONF_H
#define SN_S3_CONF_H

#include "common/conf.h"

extern const sn_conf_def_t sn_s3_conf_defs[];

#endif
