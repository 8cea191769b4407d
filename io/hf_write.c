/* hf_write.c — writing a Hugging Face LlamaForCausalLM folder (hf.h):
 * shards, index, config.json, generation_config.json, in DIR.tmp renamed
 * to DIR at the end. Tensors are fetched, converted and written one at a
 * time: memory is one tensor's float32 copy plus a 1 MiB buffer. */
#include "hf.h"
#include "common.h"
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Remove DIR.tmp: it was made by this call, so every regular file in it is
 * ours (shards, their .tmp, index, configs, the hook's files). */
static void remove_tmpdir(const char *tmp) {
    DIR *d = opendir(tmp);
    if (d) {
        struct dirent *e;
        char p[LM_ERRLEN + 300];
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
                snprintf(p, sizeof p, "%s/%s", tmp, e->d_name);
                unlink(p);
            }
        closedir(d);
    }
    rmdir(tmp);
}

/* Split tensors (bytes each) into shards, transformers' rule: a tensor goes
 * to the current shard unless that shard is non-empty and would exceed cap.
 * shard_of[i] gets the shard index; returns the number of shards. */
static int plan_shards(const uint64_t *bytes, int n, uint64_t cap, int *shard_of) {
    int s = 0;
    uint64_t cur = 0;
    for (int i = 0; i < n; i++) {
        if (cap && cur > 0 && cur + bytes[i] > cap) s++, cur = 0;
        cur += bytes[i];
        shard_of[i] = s;
    }
    return n ? s + 1 : 1;
}

static void shard_name(char *buf, size_t len, int k, int nshards) {
    if (nshards == 1) snprintf(buf, len, "model.safetensors");
    else snprintf(buf, len, "model-%05d-of-%05d.safetensors", k + 1, nshards);
}

/* model.safetensors.index.json: metadata.total_size (tensor bytes) and
 * weight_map with sorted keys, as transformers writes it. */
static int write_index(const char *tmp, const hf_shape *s, const int *shard_of, int n, int nshards, uint64_t total,
                       char *err, size_t errlen) {
    json_t *root = json_object(), *meta = json_object(), *wm = json_object();
    json_object_set_new(meta, "total_size", json_integer((json_int_t)total));
    char name[64], path[LM_ERRLEN + 64];
    for (int i = 0; i < n; i++) {
        shard_name(name, sizeof name, shard_of[i], nshards);
        json_object_set_new(wm, s[i].name, json_string(name));
    }
    json_object_set_new(root, "metadata", meta);
    json_object_set_new(root, "weight_map", wm);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", tmp);
    int rc = json_dump_file(root, path, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(root);
    return rc ? lm_err(err, errlen, LM_ERR_RUNTIME, "%s: cannot write (%s)", path, strerror(errno)) : 0;
}

/* DIR must not exist, or be an empty directory (removed before the
 * rename); DIR.tmp must not exist (a crashed run's: the user removes it). */
static int check_target(const char *dir, const char *tmp, int *empty_dir, char *err, size_t errlen) {
    struct stat st;
    *empty_dir = 0;
    if (stat(dir, &st) == 0) {
        DIR *d = S_ISDIR(st.st_mode) ? opendir(dir) : NULL;
        int entries = 0;
        struct dirent *e;
        while (d && (e = readdir(d))) entries += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
        if (d) closedir(d);
        if (!S_ISDIR(st.st_mode) || entries)
            return lm_err(err, errlen, LM_ERR_INPUT, "%s: exists and is %s; convert --to-hf writes a new folder (remove it or "
                          "choose another -o)", dir, S_ISDIR(st.st_mode) ? "not empty" : "not a directory");
        *empty_dir = 1;
    }
    if (stat(tmp, &st) == 0)
        return lm_err(err, errlen, LM_ERR_INPUT, "%s: exists (left by an interrupted convert?); remove it first", tmp);
    return 0;
}

int hf_write_folder(const char *dir, const hf_config *c, st_dtype dtype, uint64_t shard_bytes, hf_fetch_fn fetch,
                    hf_extra_fn extra, hf_progress_fn progress, void *ctx, char *err, size_t errlen) {
    char tmp[LM_ERRLEN], path[LM_ERRLEN + 64], name[64];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", dir) >= (int)sizeof tmp)
        return lm_err(err, errlen, LM_ERR_INPUT, "%s: path too long", dir);
    int empty_dir, rc = check_target(dir, tmp, &empty_dir, err, errlen);
    if (rc) return rc;
    if (mkdir(tmp, 0755)) return lm_err(err, errlen, LM_ERR_RUNTIME, "%s: cannot create (%s)", tmp, strerror(errno));
    hf_shape *s;
    int n = hf_expected(c, &s), es = st_dtype_size(dtype);
    uint64_t *bytes = lm_calloc((size_t)n, sizeof *bytes), total = 0, done = 0;
    int *shard_of = lm_calloc((size_t)n, sizeof *shard_of);
    for (int i = 0; i < n; i++) total += bytes[i] = (uint64_t)(s[i].rows * s[i].cols) * (uint64_t)es;
    int nshards = plan_shards(bytes, n, shard_bytes, shard_of);
    static const char *const META[2] = {"format", "pt"};
    for (int k = 0, i = 0; k < nshards && !rc; k++) {
        int i0 = i;
        while (i < n && shard_of[i] == k) i++;
        st_spec *sp = lm_calloc((size_t)(i - i0 ? i - i0 : 1), sizeof *sp);
        for (int j = i0; j < i; j++)
            sp[j - i0] = (st_spec){.name = s[j].name, .dtype = dtype, .ndim = s[j].ndim, .shape = {s[j].rows, s[j].cols}};
        shard_name(name, sizeof name, k, nshards);
        snprintf(path, sizeof path, "%s/%s", tmp, name);
        st_writer *w;
        rc = st_writer_open(&w, path, sp, i - i0, META, 1, err, errlen);
        for (int j = i0; j < i && !rc; j++) {
            int64_t cnt = s[j].rows * s[j].cols;
            float *buf = lm_alloc(sizeof(float) * (size_t)(cnt ? cnt : 1));
            rc = fetch(ctx, j, &s[j], buf, err, errlen);
            if (!rc) rc = st_writer_put(w, buf, cnt, err, errlen);
            lm_free(buf);
            done += bytes[j];
            if (!rc && progress) progress(ctx, j + 1, done);
        }
        if (!rc) rc = st_writer_finish(w, err, errlen);
        else st_writer_abort(w);
        lm_free(sp);
    }
    if (!rc && nshards > 1) rc = write_index(tmp, s, shard_of, n, nshards, total, err, errlen);
    if (!rc) rc = hf_config_write(tmp, c, dtype, err, errlen);
    if (!rc && extra) rc = extra(ctx, tmp, err, errlen);
    if (!rc && lm_fsync_path(tmp, 1)) rc = lm_err(err, errlen, LM_ERR_RUNTIME, "%s: fsync failed (%s)", tmp, strerror(errno));
    if (!rc && empty_dir && rmdir(dir)) rc = lm_err(err, errlen, LM_ERR_RUNTIME, "%s: cannot replace (%s)", dir, strerror(errno));
    if (!rc && rename(tmp, dir)) rc = lm_err(err, errlen, LM_ERR_RUNTIME, "%s: rename to %s failed (%s)", tmp, dir, strerror(errno));
    if (rc) remove_tmpdir(tmp);
    lm_free(bytes);
    lm_free(shard_of);
    hf_names_free(s, n);
    return rc;
}
