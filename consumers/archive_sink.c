/* archive_sink.c: where closed archive files go, s3://bucket/prefix or
 * file://DIR, with the same key layout. Both make an object visible whole or
 * not at all, so a reader never sees a partial file, and both replace an
 * object put again under the same key. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"
#include "common/s3.h"
#include "consumers/archive_int.h"

#define COPY_CHUNK (1u << 20)

struct sn_archive_sink {
    sn_s3_t *s3;  /* S3 sink */
    char *dir;    /* file sink: absolute folder */
    char *prefix; /* S3 key prefix, "" when none; "" for files */
    char *location;
};

/* A relative file:// folder is made absolute now, so the location printed and
 * the files written do not depend on a later chdir. */
sn_archive_sink_t *sn_archive_sink_new(const sn_conf_t *conf, const char *url, char *errstr,
                                       size_t errstr_size) {
    sn_archive_sink_t *s = calloc(1, sizeof(*s));
    char buf[PATH_MAX + 64];

    if (!s) {
        sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        return NULL;
    }
    if (strncmp(url, "s3://", 5) == 0) {
        const char *b = url + 5, *slash = strchr(b, '/');
        char bucket[64];
        size_t bl = slash ? (size_t)(slash - b) : strlen(b);
        const char *p = slash ? slash + 1 : "";
        size_t pl = strlen(p);

        while (pl && p[pl - 1] == '/') pl--;
        if (bl == 0 || bl >= sizeof(bucket)) {
            sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                       "archive.url: expected s3://bucket[/prefix], got \"%s\"", url);
            goto fail;
        }
        memcpy(bucket, b, bl);
        bucket[bl] = '\0';
        if (!(s->prefix = strndup(p, pl))) goto oom;
        if (!(s->s3 = sn_s3_new(conf, bucket, errstr, errstr_size))) goto fail;
        snprintf(buf, sizeof(buf), "s3://%s%s%s", bucket, pl ? "/" : "", s->prefix);
    } else if (strncmp(url, "file://", 7) == 0 && url[7]) {
        const char *d = url + 7;
        char cwd[PATH_MAX];

        if (d[0] == '/') {
            snprintf(buf, sizeof(buf), "%s", d);
        } else {
            if (!getcwd(cwd, sizeof(cwd))) {
                sn_err_set(errstr, errstr_size, SN_ERR_IO, "getcwd: %s", strerror(errno));
                goto fail;
            }
            snprintf(buf, sizeof(buf), "%s/%s", cwd, d);
        }
        while (strlen(buf) > 1 && buf[strlen(buf) - 1] == '/') buf[strlen(buf) - 1] = '\0';
        if (!(s->dir = strdup(buf)) || !(s->prefix = strdup(""))) goto oom;
        snprintf(buf, sizeof(buf), "file://%s", s->dir);
    } else {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID,
                   "archive.url: expected s3://bucket[/prefix] or file://DIR, got \"%s\"", url);
        goto fail;
    }
    if (!(s->location = strdup(buf))) goto oom;
    return s;
oom:
    sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
fail:
    sn_archive_sink_destroy(s);
    return NULL;
}

void sn_archive_sink_destroy(sn_archive_sink_t *s) {
    if (!s) return;
    sn_s3_destroy(s->s3);
    free(s->dir);
    free(s->prefix);
    free(s->location);
    free(s);
}

const char *sn_archive_sink_prefix(const sn_archive_sink_t *s) { return s->prefix; }

const char *sn_archive_sink_location(const sn_archive_sink_t *s) { return s->location; }

uint64_t sn_archive_sink_retries(const sn_archive_sink_t *s) {
    sn_s3_stats_t st;

    if (!s->s3) return 0;
    sn_s3_stats(s->s3, &st);
    return st.retries;
}

/* mkdir -p of the folders in path up to its last '/'. */
static int mkdirs(const char *path, char *errstr, size_t errstr_size) {
    char tmp[PATH_MAX];
    size_t n = strlen(path);

    if (n >= sizeof(tmp)) return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "path too long");
    memcpy(tmp, path, n + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
            return sn_err_set(errstr, errstr_size, SN_ERR_IO, "mkdir %s: %s", tmp, strerror(errno));
        *p = '/';
    }
    return 0;
}

/* A rename is durable only once its folder is synced. */
static int fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;

    if (fd < 0) return SN_ERR_IO;
    if (fsync(fd) != 0) rc = SN_ERR_IO;
    close(fd);
    return rc;
}

static int stop_listing(void *opaque, const sn_s3_object_t *obj) {
    (void)opaque;
    (void)obj;
    return 1;
}

int sn_archive_sink_probe(sn_archive_sink_t *s, char *errstr, size_t errstr_size) {
    if (s->dir) {
        char probe[PATH_MAX];

        snprintf(probe, sizeof(probe), "%s/", s->dir);
        if (mkdirs(probe, errstr, errstr_size) != 0) return SN_ERR_IO;
        if (access(s->dir, W_OK) != 0)
            return sn_err_set(errstr, errstr_size, SN_ERR_IO, "%s: %s", s->dir, strerror(errno));
        return 0;
    }
    {
        char p[SN_ARCHIVE_KEY_MAX];

        snprintf(p, sizeof(p), "%s%s", s->prefix, s->prefix[0] ? "/" : "");
        return sn_s3_list(s->s3, p, NULL, 1, stop_listing, NULL, errstr, errstr_size);
    }
}

/* Copy to a hidden temporary name in the target folder, fsync, rename, fsync
 * the folder: after a crash the folder holds the old object, the new one, or
 * a ".*.tmp" leftover that every reader skips (Hive, Spark and Athena ignore
 * names starting with '.' or '_'); never a partial "<first>-<last>.avro". */
static int file_put(sn_archive_sink_t *s, const char *key, const char *path, char *errstr,
                    size_t errstr_size) {
    char dest[PATH_MAX], tmp[PATH_MAX + 16], dir[PATH_MAX], *buf = NULL;
    const char *base;
    int in = -1, out = -1, rc = 0;

    if ((size_t)snprintf(dest, sizeof(dest), "%s/%s", s->dir, key) >= sizeof(dest))
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "path too long");
    snprintf(dir, sizeof(dir), "%s", dest);
    *strrchr(dir, '/') = '\0';
    base = strrchr(dest, '/') + 1;
    snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, base);
    if ((rc = mkdirs(dest, errstr, errstr_size)) != 0) return rc;
    if (!(buf = malloc(COPY_CHUNK))) return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "oom");
    if ((in = open(path, O_RDONLY | O_CLOEXEC)) < 0 ||
        (out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_IO, "%s: %s", in < 0 ? path : tmp,
                        strerror(errno));
        goto out;
    }
    for (;;) {
        ssize_t n = read(in, buf, COPY_CHUNK), done = 0;

        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            rc = sn_err_set(errstr, errstr_size, SN_ERR_IO, "%s: %s", path, strerror(errno));
            goto out;
        }
        if (n == 0) break;
        while (done < n) {
            ssize_t w = write(out, buf + done, (size_t)(n - done));

            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) {
                rc = sn_err_set(errstr, errstr_size, SN_ERR_IO, "%s: %s", tmp, strerror(errno));
                goto out;
            }
            done += w;
        }
    }
    if (fsync(out) != 0 || close(out) != 0) {
        out = -1;
        rc = sn_err_set(errstr, errstr_size, SN_ERR_IO, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    out = -1;
    if (rename(tmp, dest) != 0) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_IO, "rename %s: %s", dest, strerror(errno));
        goto out;
    }
    if (fsync_dir(dir) != 0)
        rc = sn_err_set(errstr, errstr_size, SN_ERR_IO, "fsync %s: %s", dir, strerror(errno));
out:
    if (in >= 0) close(in);
    if (out >= 0) close(out);
    if (rc != 0) unlink(tmp);
    free(buf);
    return rc;
}

int sn_archive_sink_put(sn_archive_sink_t *s, const char *key, const char *path, char *errstr,
                        size_t errstr_size) {
    if (s->dir) return file_put(s, key, path, errstr, errstr_size);
    return sn_s3_put_file(s->s3, key, path, "avro/binary", errstr, errstr_size);
}

struct find_ctx {
    int64_t first, last;
    int found;
};

static int on_found(void *opaque, const sn_s3_object_t *obj) {
    struct find_ctx *c = opaque;
    int64_t f, l;

    if (sn_archive_parse_name(obj->key, &f, &l) == 0 && f == c->first &&
        (!c->found || l > c->last)) {
        c->last = l;
        c->found = 1;
    }
    return 0;
}

/* One LIST with the prefix ".../<first>-" on S3 (names sort by offset, so the
 * prefix matches exactly the objects starting at first), a readdir for files. */
int sn_archive_sink_find(sn_archive_sink_t *s, const char *dir, int64_t first, int64_t *last,
                         char *errstr, size_t errstr_size) {
    struct find_ctx c = {first, -1, 0};

    if (s->dir) {
        char path[PATH_MAX];
        DIR *d;
        struct dirent *e;

        snprintf(path, sizeof(path), "%s/%s", s->dir, dir);
        if (!(d = opendir(path))) {
            if (errno == ENOENT) return SN_ERR_NOENT;
            return sn_err_set(errstr, errstr_size, SN_ERR_IO, "%s: %s", path, strerror(errno));
        }
        while ((e = readdir(d))) {
            sn_s3_object_t o = {e->d_name, 0, "", ""};

            if (e->d_name[0] != '.') on_found(&c, &o);
        }
        closedir(d);
    } else {
        char prefix[SN_ARCHIVE_KEY_MAX + 32];
        int rc;

        snprintf(prefix, sizeof(prefix), "%s%020" PRId64 "-", dir, first);
        if ((rc = sn_s3_list(s->s3, prefix, NULL, 100, on_found, &c, errstr, errstr_size)) != 0)
            return rc;
    }
    if (!c.found) return SN_ERR_NOENT;
    *last = c.last;
    return 0;
}

int sn_archive_sink_delete(sn_archive_sink_t *s, const char *key, char *errstr,
                           size_t errstr_size) {
    char path[PATH_MAX];

    if (s->s3) return sn_s3_delete(s->s3, key, errstr, errstr_size);
    snprintf(path, sizeof(path), "%s/%s", s->dir, key);
    if (unlink(path) != 0 && errno != ENOENT)
        return sn_err_set(errstr, errstr_size, SN_ERR_IO, "%s: %s", path, strerror(errno));
    return 0;
}
