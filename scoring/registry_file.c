/* registry_file.c: the registry in a local directory (see registry.h for the
 * layout). Every write goes to a temporary name and is renamed into place
 * after an fsync, so a crash leaves either the old state or the new one. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/err.h"
#include "scoring/registry_int.h"

#define FILE_MAX_BYTES (512u * 1024 * 1024)
#define HIST_BYTES (SN_REGISTRY_HISTORY_MAX * SN_REGISTRY_VERSION_MAX)

struct file_reg {
    char root[PATH_MAX]; /* DIR/<name> */
    unsigned tmp_seq;
};

static int path_fmt(char *out, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int path_fmt(char *out, size_t size, const char *fmt, ...) {
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(out, size, fmt, ap);
    va_end(ap);
    return n < 0 || (size_t)n >= size ? SN_ERR_INVALID : 0;
}

static int io_err(char *errstr, size_t errstr_size, const char *what, const char *path) {
    return sn_err_set(errstr, errstr_size, SN_ERR_IO, "registry: %s %s: %s", what, path,
                      strerror(errno));
}

/* mkdir -p, for the few levels below the registry root. */
static int mkdirs(const char *path, char *errstr, size_t errstr_size) {
    char tmp[PATH_MAX];
    size_t len = strlen(path);

    if (len >= sizeof(tmp))
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "registry: path too long");
    memcpy(tmp, path, len + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
            return io_err(errstr, errstr_size, "cannot create", tmp);
        *p = '/';
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
        return io_err(errstr, errstr_size, "cannot create", tmp);
    return 0;
}

static int write_all_fd(int fd, const void *buf, size_t len) {
    const char *p = buf;

    while (len) {
        ssize_t w = write(fd, p, len);

        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Writes a file durably: data and then the file's own fsync, so that the
 * rename that publishes it never exposes an empty file after a crash. */
static int write_file(const char *path, const void *buf, size_t len, char *errstr,
                      size_t errstr_size) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

    if (fd < 0) return io_err(errstr, errstr_size, "cannot create", path);
    if (write_all_fd(fd, buf, len) != 0 || fsync(fd) != 0) {
        int rc = io_err(errstr, errstr_size, "cannot write", path);

        close(fd);
        return rc;
    }
    if (close(fd) != 0) return io_err(errstr, errstr_size, "cannot write", path);
    return 0;
}

static void fsync_dir(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* Reads a whole file into a NUL-terminated buffer (caller frees). */
static int read_file(const char *path, size_t max, uint8_t **out, size_t *out_len, char *errstr,
                     size_t errstr_size) {
    FILE *fp = fopen(path, "rb");
    struct stat st;
    uint8_t *buf = NULL;
    int rc = 0;

    *out = NULL;
    if (!fp) {
        if (errno == ENOENT)
            return sn_err_set(errstr, errstr_size, SN_ERR_NOENT, "registry: no %s", path);
        return io_err(errstr, errstr_size, "cannot open", path);
    }
    if (fstat(fileno(fp), &st) != 0 || (size_t)st.st_size > max) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "registry: %s larger than %zu bytes",
                        path, max);
        goto out;
    }
    if (!(buf = malloc((size_t)st.st_size + 1))) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        goto out;
    }
    if (fread(buf, 1, (size_t)st.st_size, fp) != (size_t)st.st_size) {
        rc = io_err(errstr, errstr_size, "cannot read", path);
        goto out;
    }
    buf[st.st_size] = '\0';
    *out = buf;
    if (out_len) *out_len = (size_t)st.st_size;
    buf = NULL;
out:
    free(buf);
    fclose(fp);
    return rc;
}

void *sn_registry_file_open(const char *dir, const sn_registry_opts_t *opts, char *errstr,
                            size_t errstr_size) {
    struct file_reg *f = calloc(1, sizeof(*f));

    if (!f) {
        sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        return NULL;
    }
    if (path_fmt(f->root, sizeof(f->root), "%s/%s", dir, opts->model_name) != 0) {
        sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "registry: path too long");
        free(f);
        return NULL;
    }
    return f;
}

static void file_destroy(void *impl) { free(impl); }

/* Alias moves are read-modify-write of two files (alias and history); an
 * exclusive flock on one lock file serialises them between processes. */
static int lock_root(struct file_reg *f, int *fd_out, char *errstr, size_t errstr_size) {
    char path[PATH_MAX];
    int fd, rc;

    if ((rc = mkdirs(f->root, errstr, errstr_size)) != 0) return rc;
    if (path_fmt(path, sizeof(path), "%s/.lock", f->root) != 0)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "registry: path too long");
    if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0)
        return io_err(errstr, errstr_size, "cannot open", path);
    while (flock(fd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            rc = io_err(errstr, errstr_size, "cannot lock", path);
            close(fd);
            return rc;
        }
    }
    *fd_out = fd;
    return 0;
}

static void unlock_root(int fd) {
    if (fd >= 0) close(fd); /* closing releases the flock */
}

static long max_version(const char *versions_dir) {
    DIR *d = opendir(versions_dir);
    struct dirent *e;
    long max = 0;

    if (!d) return 0;
    while ((e = readdir(d))) {
        char *end;
        long v;

        if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
        v = strtol(e->d_name, &end, 10);
        if (*end == '\0' && v > max) max = v;
    }
    closedir(d);
    return max;
}

/* Writes both files into a private folder, then renames it to the next free
 * number. rename() of a directory onto an existing non-empty one fails, so
 * two trainers registering at once get distinct numbers without a lock. */
static int file_register(void *impl, const void *model, size_t model_len, const char *card,
                         size_t card_len, char *version, char *errstr, size_t errstr_size) {
    struct file_reg *f = impl;
    char vdir[PATH_MAX], tmp[PATH_MAX], path[PATH_MAX], dst[PATH_MAX];
    int rc;

    if (path_fmt(vdir, sizeof(vdir), "%s/versions", f->root) != 0 ||
        path_fmt(tmp, sizeof(tmp), "%s/.tmp-%ld-%u", vdir, (long)getpid(), f->tmp_seq++) != 0)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "registry: path too long");
    if ((rc = mkdirs(tmp, errstr, errstr_size)) != 0) return rc;
    if (path_fmt(path, sizeof(path), "%s/model.ubj", tmp) != 0 ||
        (rc = write_file(path, model, model_len, errstr, errstr_size)) != 0)
        goto fail;
    if (path_fmt(path, sizeof(path), "%s/card.json", tmp) != 0 ||
        (rc = write_file(path, card, card_len, errstr, errstr_size)) != 0)
        goto fail;
    fsync_dir(tmp);
    for (int attempt = 0; attempt < 1000; attempt++) {
        long v = max_version(vdir) + 1;

        if (path_fmt(dst, sizeof(dst), "%s/%ld", vdir, v) != 0) {
            rc = sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "registry: path too long");
            goto fail;
        }
        if (rename(tmp, dst) == 0) {
            fsync_dir(vdir);
            snprintf(version, SN_REGISTRY_VERSION_MAX, "%ld", v);
            return 0;
        }
        if (errno != EEXIST && errno != ENOTEMPTY) {
            rc = io_err(errstr, errstr_size, "cannot publish", dst);
            goto fail;
        }
    }
    rc = sn_err_set(errstr, errstr_size, SN_ERR_TRANSIENT,
                    "registry: could not find a free version number");
fail:
    if (path_fmt(path, sizeof(path), "%s/model.ubj", tmp) == 0) unlink(path);
    if (path_fmt(path, sizeof(path), "%s/card.json", tmp) == 0) unlink(path);
    rmdir(tmp);
    return rc;
}

static int version_exists(struct file_reg *f, const char *version) {
    char path[PATH_MAX];
    struct stat st;

    return path_fmt(path, sizeof(path), "%s/versions/%s/card.json", f->root, version) == 0 &&
           stat(path, &st) == 0;
}

static int file_fetch(void *impl, const char *version, uint8_t **model, size_t *model_len,
                      char **card, size_t *card_len, char *errstr, size_t errstr_size) {
    struct file_reg *f = impl;
    char path[PATH_MAX];
    int rc;

    if (!version_exists(f, version))
        return sn_err_set(errstr, errstr_size, SN_ERR_NOENT, "registry: no version %s of %s",
                          version, f->root);
    if (model) {
        if (path_fmt(path, sizeof(path), "%s/versions/%s/model.ubj", f->root, version) != 0)
            return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "registry: path too long");
        if ((rc = read_file(path, FILE_MAX_BYTES, model, model_len, errstr, errstr_size)) != 0)
            return rc;
    }
    if (card) {
        if (path_fmt(path, sizeof(path), "%s/versions/%s/card.json", f->root, version) != 0 ||
            (rc = read_file(path, FILE_MAX_BYTES, (uint8_t **)card, card_len, errstr,
                            errstr_size)) != 0) {
            if (model) {
                free(*model);
                *model = NULL;
            }
            return rc ? rc
                      : sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "registry: path too long");
        }
    }
    return 0;
}

static int read_alias(struct file_reg *f, const char *alias, char *version, char *errstr,
                      size_t errstr_size) {
    char path[PATH_MAX];
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc;

    if (path_fmt(path, sizeof(path), "%s/aliases/%s", f->root, alias) != 0)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "registry: path too long");
    if ((rc = read_file(path, 256, &buf, &len, errstr, errstr_size)) != 0) {
        if (rc == SN_ERR_NOENT)
            sn_err_set(errstr, errstr_size, SN_ERR_NOENT, "registry: alias %s is not set", alias);
        return rc;
    }
    while (len && (buf[len - 1] == '\n' || buf[len - 1] == ' ')) buf[--len] = '\0';
    snprintf(version, SN_REGISTRY_VERSION_MAX, "%s", (char *)buf);
    free(buf);
    return 0;
}

static int file_get_alias(void *impl, const char *alias, char *version, char *errstr,
                          size_t errstr_size) {
    return read_alias(impl, alias, version, errstr, errstr_size);
}

/* Replaces a small file atomically: write a sibling, fsync, rename over. */
static int replace_file(struct file_reg *f, const char *path, const char *text, char *errstr,
                        size_t errstr_size) {
    char tmp[PATH_MAX];
    int rc;

    if (path_fmt(tmp, sizeof(tmp), "%s.tmp-%ld", path, (long)getpid()) != 0)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "registry: path too long");
    if ((rc = write_file(tmp, text, strlen(text), errstr, errstr_size)) != 0) return rc;
    if (rename(tmp, path) != 0) {
        rc = io_err(errstr, errstr_size, "cannot replace", path);
        unlink(tmp);
        return rc;
    }
    (void)f;
    return 0;
}

static int read_history(struct file_reg *f, const char *alias, char *hist, char *errstr,
                        size_t errstr_size) {
    char path[PATH_MAX];
    uint8_t *buf = NULL;
    int rc;

    hist[0] = '\0';
    if (path_fmt(path, sizeof(path), "%s/aliases/%s.history", f->root, alias) != 0)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "registry: path too long");
    rc = read_file(path, HIST_BYTES - 1, &buf, NULL, errstr, errstr_size);
    if (rc == SN_ERR_NOENT) return 0;
    if (rc != 0) return rc;
    snprintf(hist, HIST_BYTES, "%s", (char *)buf);
    free(buf);
    return 0;
}

/* Writes the alias and its history under the lock: history first, so that a
 * crash between the two leaves an extra history entry (a harmless no-op
 * rollback target) rather than a move that cannot be undone. */
static int write_alias(struct file_reg *f, const char *alias, const char *version, const char *hist,
                       char *errstr, size_t errstr_size) {
    char dir[PATH_MAX], path[PATH_MAX], line[SN_REGISTRY_VERSION_MAX + 2];
    int rc;

    if (path_fmt(dir, sizeof(dir), "%s/aliases", f->root) != 0)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "registry: path too long");
    if ((rc = mkdirs(dir, errstr, errstr_size)) != 0) return rc;
    if (hist) {
        if (path_fmt(path, sizeof(path), "%s/%s.history", dir, alias) != 0)
            return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "registry: path too long");
        if ((rc = replace_file(f, path, hist, errstr, errstr_size)) != 0) return rc;
    }
    if (path_fmt(path, sizeof(path), "%s/%s", dir, alias) != 0)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "registry: path too long");
    snprintf(line, sizeof(line), "%s\n", version);
    if ((rc = replace_file(f, path, line, errstr, errstr_size)) != 0) return rc;
    fsync_dir(dir);
    return 0;
}

static int file_set_alias(void *impl, const char *alias, const char *version, char *errstr,
                          size_t errstr_size) {
    struct file_reg *f = impl;
    char cur[SN_REGISTRY_VERSION_MAX] = "", *hist = NULL;
    int fd = -1, rc;

    if (!version_exists(f, version))
        return sn_err_set(errstr, errstr_size, SN_ERR_NOENT, "registry: no version %s", version);
    if ((rc = lock_root(f, &fd, errstr, errstr_size)) != 0) return rc;
    rc = read_alias(f, alias, cur, errstr, errstr_size);
    if (rc == SN_ERR_NOENT) {
        cur[0] = '\0';
        rc = 0;
    } else if (rc != 0) {
        goto out;
    }
    if (strcmp(cur, version) == 0) goto out; /* already there */
    if (!(hist = malloc(HIST_BYTES))) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
        goto out;
    }
    if ((rc = read_history(f, alias, hist, errstr, errstr_size)) != 0) goto out;
    if (cur[0] && (rc = sn_registry_history_push(hist, HIST_BYTES, '\n', cur)) != 0) goto out;
    rc = write_alias(f, alias, version, hist, errstr, errstr_size);
out:
    free(hist);
    unlock_root(fd);
    return rc;
}

static int file_rollback(void *impl, const char *alias, char *version, char *errstr,
                         size_t errstr_size) {
    struct file_reg *f = impl;
    char *hist = malloc(HIST_BYTES);
    int fd = -1, rc;

    if (!hist) return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
    if ((rc = lock_root(f, &fd, errstr, errstr_size)) != 0) goto out;
    if ((rc = read_history(f, alias, hist, errstr, errstr_size)) != 0) goto out;
    if ((rc = sn_registry_history_pop(hist, '\n', version)) != 0) {
        rc = sn_err_set(errstr, errstr_size, SN_ERR_NOENT,
                        "registry: alias %s has no earlier version", alias);
        goto out;
    }
    rc = write_alias(f, alias, version, hist, errstr, errstr_size);
out:
    unlock_root(fd);
    free(hist);
    return rc;
}

static int file_history(void *impl, const char *alias, char (*out)[SN_REGISTRY_VERSION_MAX],
                        size_t max, size_t *n, char *errstr, size_t errstr_size) {
    char *hist = malloc(HIST_BYTES);
    int rc;

    if (!hist) return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
    if ((rc = read_history(impl, alias, hist, errstr, errstr_size)) == 0)
        sn_registry_history_list(hist, '\n', out, max, n);
    free(hist);
    return rc;
}

/* Adds alias to the entry of the version it points at. */
static void tag_alias(sn_registry_entry_t *e, size_t n, const char *alias, const char *version) {
    for (size_t i = 0; i < n; i++) {
        size_t len;

        if (strcmp(e[i].version, version) != 0) continue;
        len = strlen(e[i].aliases);
        snprintf(e[i].aliases + len, sizeof(e[i].aliases) - len, "%s%s", len ? "," : "", alias);
    }
}

static int file_list(void *impl, sn_registry_entry_t **out, size_t *n, char *errstr,
                     size_t errstr_size) {
    struct file_reg *f = impl;
    char dir[PATH_MAX], path[PATH_MAX];
    DIR *d;
    struct dirent *e;
    size_t cap = 0;

    *out = NULL;
    *n = 0;
    if (path_fmt(dir, sizeof(dir), "%s/versions", f->root) != 0)
        return sn_err_set(errstr, errstr_size, SN_ERR_INVALID, "registry: path too long");
    if (!(d = opendir(dir)))
        return errno == ENOENT ? 0 : io_err(errstr, errstr_size, "cannot list", dir);
    while ((e = readdir(d))) {
        struct stat st;
        sn_registry_entry_t *ent;

        if (e->d_name[0] < '1' || e->d_name[0] > '9' ||
            strlen(e->d_name) >= SN_REGISTRY_VERSION_MAX)
            continue;
        if (path_fmt(path, sizeof(path), "%s/%s/card.json", dir, e->d_name) != 0 ||
            stat(path, &st) != 0)
            continue;
        if (*n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            sn_registry_entry_t *p = realloc(*out, ncap * sizeof(*p));

            if (!p) {
                closedir(d);
                free(*out);
                *out = NULL;
                *n = 0;
                return sn_err_set(errstr, errstr_size, SN_ERR_NOMEM, "out of memory");
            }
            *out = p;
            cap = ncap;
        }
        ent = &(*out)[(*n)++];
        memset(ent, 0, sizeof(*ent));
        snprintf(ent->version, sizeof(ent->version), "%s", e->d_name);
        ent->created_ms = (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
    }
    closedir(d);
    if (path_fmt(dir, sizeof(dir), "%s/aliases", f->root) == 0 && (d = opendir(dir))) {
        while ((e = readdir(d))) {
            char v[SN_REGISTRY_VERSION_MAX], err[64];

            if (e->d_name[0] == '.' || strchr(e->d_name, '.')) continue; /* .history, .tmp-* */
            if (read_alias(f, e->d_name, v, err, sizeof(err)) == 0)
                tag_alias(*out, *n, e->d_name, v);
        }
        closedir(d);
    }
    return 0;
}

const struct sn_registry_ops sn_registry_file_ops = {
    .kind = "file",
    .reg = file_register,
    .fetch = file_fetch,
    .get_alias = file_get_alias,
    .set_alias = file_set_alias,
    .rollback = file_rollback,
    .list = file_list,
    .history = file_history,
    .destroy = file_destroy,
};
