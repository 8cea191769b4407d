/* hf_folder.c — opening and validating a Hugging Face folder's weights
 * (hf.h), and reading them into ranks' pieces (ckpt.h's piece semantics),
 * so that train.init = DIR needs no converted copy. */
#include "hf.h"
#include "agree.h"
#include "common.h"
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int hf_index(const hf_model *m, const char *name) {
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->shape[i].name, name)) return i;
    return -1;
}

void hf_close(hf_model *m) {
    for (int i = 0; i < m->nfiles; i++) st_close(&m->files[i]);
    lm_free(m->files);
    hf_names_free(m->shape, m->n);
    lm_free(m->file_of);
    lm_free(m->st);
    lm_free(m->dir);
    memset(m, 0, sizeof *m);
}

static int exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

/* model.safetensors.index.json: the weight_map (name -> file) and the
 * distinct files in order of first mention. A file name must be plain (no
 * '/', not "." or ".."): the shards live in the folder. */
static int read_index(const char *dir, json_t **map, char ***files, int *nfiles, char *err, size_t errlen) {
    char path[LM_ERRLEN];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    json_t *r = hf_json_read(path, err, errlen);
    if (!r) return LM_ERR_INPUT;
    json_t *wm = json_is_object(r) ? json_object_get(r, "weight_map") : NULL;
    if (!json_is_object(wm)) {
        json_decref(r);
        return lm_err(err, errlen, LM_ERR_INPUT, "%s: key weight_map: missing or not an object", path);
    }
    const char *k;
    json_t *v;
    int n = 0, rc = 0;
    char **f = lm_calloc(json_object_size(wm) + 1, sizeof *f);
    json_object_foreach(wm, k, v) {
        const char *s = json_is_string(v) ? json_string_value(v) : NULL;
        if (!s || !*s || strchr(s, '/') || !strcmp(s, ".") || !strcmp(s, "..")) {
            rc = lm_err(err, errlen, LM_ERR_INPUT, "%s: weight_map: tensor %s: file must be a plain file name in the folder", path, k);
            break;
        }
        int seen = 0;
        for (int i = 0; i < n && !seen; i++) seen = !strcmp(f[i], s);
        if (!seen) f[n++] = lm_strdup(s);
    }
    if (rc) {
        for (int i = 0; i < n; i++) lm_free(f[i]);
        lm_free(f);
        json_decref(r);
        return rc;
    }
    *map = json_incref(wm);
    json_decref(r);
    *files = f;
    *nfiles = n;
    return 0;
}

/* Match every file's tensors against the expected set (hf.h's rules). */
static int match_tensors(hf_model *m, json_t *map, char *err, size_t errlen) {
    for (int fi = 0; fi < m->nfiles; fi++) {
        const st_file *f = &m->files[fi];
        const char *base = strrchr(f->path, '/') ? strrchr(f->path, '/') + 1 : f->path;
        for (int k = 0; k < f->n; k++) {
            const st_tensor *t = &f->t[k];
            if (map) {
                json_t *v = json_object_get(map, t->name);
                if (!v || strcmp(json_string_value(v), base))
                    return lm_err(err, errlen, LM_ERR_INPUT, "%s: tensor %s: %s in model.safetensors.index.json's weight_map",
                                  f->path, t->name, v ? "listed for another file" : "not listed");
            }
            int i = hf_index(m, t->name);
            if (i < 0)
                return lm_err(err, errlen, LM_ERR_INPUT, "%s: tensor %s: extra tensor, not one of LlamaForCausalLM's for this "
                              "config.json (SPEC §5)%s", f->path, t->name,
                              !strcmp(t->name, "lm_head.weight") ? "; tie_word_embeddings is true, so lm_head.weight must be absent" : "");
            if (m->st[i])
                return lm_err(err, errlen, LM_ERR_INPUT, "%s: tensor %s: also in %s", f->path, t->name, m->files[m->file_of[i]].path);
            const hf_shape *s = &m->shape[i];
            int ok = t->ndim == s->ndim && t->shape[0] == s->rows && (s->ndim == 1 || t->shape[1] == s->cols);
            if (!ok) {
                char have[128] = "", want[64];
                for (int d = 0; d < t->ndim; d++)
                    snprintf(have + strlen(have), sizeof have - strlen(have), "%s%lld", d ? ", " : "", (long long)t->shape[d]);
                if (s->ndim == 1) snprintf(want, sizeof want, "%lld", (long long)s->rows);
                else snprintf(want, sizeof want, "%lld, %lld", (long long)s->rows, (long long)s->cols);
                return lm_err(err, errlen, LM_ERR_INPUT, "%s: tensor %s: shape [%s], config.json implies [%s]", f->path, t->name,
                              have, want);
            }
            if (t->dtype == ST_OTHER)
                return lm_err(err, errlen, LM_ERR_INPUT, "%s: tensor %s: dtype %s; lamina reads F32, BF16 and F16", f->path,
                              t->name, t->dtype_name);
            m->st[i] = t;
            m->file_of[i] = fi;
        }
    }
    if (map) {
        const char *k;
        json_t *v;
        json_object_foreach(map, k, v) {
            int i = hf_index(m, k);
            if (i < 0 || !m->st[i])
                return lm_err(err, errlen, LM_ERR_INPUT, "%s/%s: tensor %s: listed in model.safetensors.index.json but not in the file",
                              m->dir, json_string_value(v), k);
        }
    }
    for (int i = 0; i < m->n; i++)
        if (!m->st[i])
            return lm_err(err, errlen, LM_ERR_INPUT, "%s: tensor %s: missing (%s has no such tensor)", m->dir, m->shape[i].name,
                          m->weights_desc);
    return 0;
}

int hf_open(const char *dir, hf_model *m, char *err, size_t errlen) {
    memset(m, 0, sizeof *m);
    m->dir = lm_strdup(dir);
    int rc = hf_config_read(dir, &m->cfg, err, errlen);
    if (rc) {
        hf_close(m);
        return rc;
    }
    m->n = hf_expected(&m->cfg, &m->shape);
    m->file_of = lm_calloc((size_t)m->n, sizeof *m->file_of);
    m->st = lm_calloc((size_t)m->n, sizeof *m->st);
    char path[LM_ERRLEN + 300];
    json_t *map = NULL;
    char **names = NULL;
    int nn = 0;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (exists(path)) {
        names = lm_calloc(1, sizeof *names);
        names[nn++] = lm_strdup("model.safetensors");
        snprintf(m->weights_desc, sizeof m->weights_desc, "model.safetensors");
    } else {
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
        if (!exists(path))
            rc = lm_err(err, errlen, LM_ERR_INPUT, "%s: no model.safetensors or model.safetensors.index.json (lamina reads "
                        "safetensors weights only)", dir);
        else rc = read_index(dir, &map, &names, &nn, err, errlen);
        snprintf(m->weights_desc, sizeof m->weights_desc, "the %d shard(s) of model.safetensors.index.json", nn);
    }
    m->files = lm_calloc((size_t)(nn ? nn : 1), sizeof *m->files);
    for (int i = 0; i < nn && !rc; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        rc = st_open(&m->files[i], path, err, errlen);
        if (!rc) m->nfiles++;
        else if (map && !exists(path)) {
            /* name a tensor the index places in the missing shard */
            const char *k, *first = "?";
            json_t *v;
            json_object_foreach(map, k, v) if (!strcmp(json_string_value(v), names[i])) { first = k; break; }
            rc = lm_err(err, errlen, LM_ERR_INPUT, "%s: missing shard, listed in model.safetensors.index.json for tensor %s", path,
                        first);
        }
    }
    if (!rc) rc = match_tensors(m, map, err, errlen);
    for (int i = 0; i < nn; i++) lm_free(names[i]);
    lm_free(names);
    json_decref(map);
    if (rc) hf_close(m);
    return rc;
}

int hf_read_rows(const hf_model *m, int i, int64_t r0, int64_t r1, float *out, char *err, size_t errlen) {
    const hf_shape *s = &m->shape[i];
    return st_read_elems(&m->files[m->file_of[i]], m->st[i], r0 * s->cols, (r1 - r0) * s->cols, out, err, errlen);
}

/* One piece (ckpt.h): block-local element l is full element (row0 + l /
 * width, col0 + l % width) with width = bcols for a slice, cols for the
 * whole tensor. The block rows the piece touches are read as full rows of
 * the file, a batch of at most 4 Mi floats (at least one row) at a time,
 * and the piece's elements copied out; a column slice so reads its rows
 * whole (at most tp times the bytes it keeps). Then every value must be
 * finite, as ckpt_load requires. */
static int load_piece(const hf_model *m, int i, ckpt_tensor *t, char *err, size_t errlen) {
    const hf_shape *s = &m->shape[i];
    const char *fp = m->files[m->file_of[i]].path;
    int whole = t->brows == 0 && t->bcols == 0;
    int64_t width = whole ? s->cols : t->bcols, row0 = whole ? 0 : t->row0, col0 = whole ? 0 : t->col0;
    if (t->count <= 0 || width <= 0) return 0;
    int64_t brows = whole ? s->rows : t->brows;
    if (t->off < 0 || t->off + t->count > brows * width || row0 + brows > s->rows || col0 + width > s->cols)
        return lm_err(err, errlen, LM_ERR_INPUT, "%s: tensor %s: piece outside the tensor", fp, t->name);
    const int64_t CHUNK = (int64_t)4 << 20;
    int64_t per = CHUNK / s->cols > 0 ? CHUNK / s->cols : 1;
    int64_t first = t->off / width, last = (t->off + t->count - 1) / width;
    float *buf = lm_alloc(sizeof(float) * (size_t)(per * s->cols));
    int rc = 0;
    for (int64_t a = first; a <= last && !rc; a += per) {
        int64_t b = a + per <= last + 1 ? a + per : last + 1;
        if ((rc = hf_read_rows(m, i, row0 + a, row0 + b, buf, err, errlen))) break;
        for (int64_t br = a; br < b; br++) {
            int64_t l0 = br * width, l1 = l0 + width;
            if (l0 < t->off) l0 = t->off;
            if (l1 > t->off + t->count) l1 = t->off + t->count;
            const float *row = buf + (br - a) * s->cols + col0 - br * width;
            for (int64_t l = l0; l < l1; l++) t->data[l - t->off] = row[l];
        }
    }
    lm_free(buf);
    for (int64_t k = 0; k < t->count && !rc; k++)
        if (!isfinite(t->data[k]))
            rc = lm_err(err, errlen, LM_ERR_INPUT, "%s: tensor %s: holds %s values; every weight must be finite", fp, t->name,
                        isnan(t->data[k]) ? "NaN" : "Inf");
    return rc;
}

int hf_load(MPI_Comm comm, const char *dir, ckpt_tensor *model, int n, hf_config *cfg, hf_progress_fn progress, void *ctx,
            char *err, size_t errlen) {
    uint64_t bytes = 0;
    hf_model m;
    int rc = hf_open(dir, &m, err, errlen);
    if (lm_agree(comm, rc, err, errlen, NULL, NULL)) return LM_ERR_INPUT;
    *cfg = m.cfg;
    for (int k = 0; k < n && !rc; k++) {
        ckpt_tensor *t = &model[k];
        int i = hf_index(&m, t->name);
        if (i < 0) {
            rc = lm_err(err, errlen, LM_ERR_INPUT, "%s: tensor %s: missing", dir, t->name);
            break;
        }
        const hf_shape *s = &m.shape[i];
        if (s->rows != t->rows || s->cols != t->cols)
            rc = lm_err(err, errlen, LM_ERR_INPUT, "%s: tensor %s: shape [%lld, %lld], the model needs [%lld, %lld]",
                        m.files[m.file_of[i]].path, t->name, (long long)s->rows, (long long)s->cols, (long long)t->rows,
                        (long long)t->cols);
        else rc = load_piece(&m, i, t, err, errlen);
        bytes += (uint64_t)t->count * sizeof(float);
        if (!rc && progress) progress(ctx, k + 1, bytes);
    }
    hf_close(&m);
    return lm_agree(comm, rc, err, errlen, NULL, NULL) ? LM_ERR_INPUT : 0;
}
