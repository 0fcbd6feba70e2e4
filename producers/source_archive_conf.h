/* source_archive_conf.h: the archive.read.* keys (producers/source_archive.c). */
#ifndef SN_SOURCE_ARCHIVE_CONF_H
#define SN_SOURCE_ARCHIVE_CONF_H

#include "common/conf.h"

extern const sn_conf_def_t sn_source_archive_conf_defs[];

#endif
