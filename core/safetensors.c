/* safetensors.c — the safetensors format: an 8-byte little-endian header length, a JSON header
 * {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}, then the data, with
 * offsets relative to the end of the header. See safetensors.h. */
#define _GNU_SOURCE /* qsort_r */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cJSON.h>

#include "fileio.h"
#include "safetensors.h"

/* The spec caps headers at 100 MB; larger means a corrupt length field. */
#define MAX_HEADER (100u << 20)
/* An index names each tensor once: a few hundred KB for the largest models. */
#define MAX_INDEX (64u << 20)

typedef struct {
    const char *name;
    size_t size;
    int has_dtype;
    apl_dtype dt;
} st_dtype;

static const st_dtype DTYPES[] = {
    {"F64", 8, 1, APL_F64},  {"F32", 4, 1, APL_F32}, {"F16", 2, 1, APL_F16},
    {"BF16", 2, 1, APL_BF16}, {"I64", 8, 1, APL_I64}, {"I32", 4, 1, APL_I32},
    {"U8", 1, 1, APL_U8},    {"BOOL", 1, 1, APL_BOOL},
    /* valid safetensors dtypes that apl has no tensor type for: checked, never loaded */
    {"I16", 2, 0, APL_F32},  {"I8", 1, 0, APL_F32},  {"U16", 2, 0, APL_F32},
    {"U32", 4, 0, APL_F32},  {"U64", 8, 0, APL_F32}, {"F8_E4M3", 1, 0, APL_F32},
    {"F8_E5M2", 1, 0, APL_F32},
};

/* One mapped file, shared by the apl_st and every tensor viewing it. */
typedef struct {
    char *path;
    unsigned char *base;
    size_t size;
    uint64_t data_start; /* 8 + header length */
    int refs;
} st_map;

typedef struct {
    apl_st_info info;
    st_map *map;
    uint64_t begin; /* relative to data_start */
} st_entry;

struct apl_st {
    st_entry *e;
    int n, cap;
    int *by_name; /* entry indices sorted by name (apl_st_find bisects), built once all are read */
    st_map **maps;
    int nmaps;
};

static void map_unref(void *ctx)
{
    st_map *m = ctx;
    if (__atomic_sub_fetch(&m->refs, 1, __ATOMIC_ACQ_REL) > 0) return;
    munmap(m->base, m->size);
    free(m->path);
    free(m);
}

static apl_status map_file(const char *path, st_map **out)
{
    int fd;
    apl_status st = apl_open_regular(path, &fd); /* a FIFO would block the open */
    if (st != APL_OK) return st;
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        close(fd);
        return apl_fail(APL_EIO, "%s: %s", path, strerror(errno));
    }
    if (sb.st_size < 8) {
        close(fd);
        return apl_fail(APL_EFORMAT, "%s: truncated file (%lld bytes, no header length)", path,
                        (long long)sb.st_size);
    }
    void *base = mmap(NULL, (size_t)sb.st_size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    close(fd);
    if (base == MAP_FAILED) return apl_fail(APL_EIO, "%s: mmap: %s", path, strerror(errno));
    st_map *m = calloc(1, sizeof *m);
    char *p = strdup(path);
    if (!m || !p) {
        munmap(base, (size_t)sb.st_size);
        free(m);
        free(p);
        return apl_fail(APL_ENOMEM, "%s: out of memory", path);
    }
    *m = (st_map){.path = p, .base = base, .size = (size_t)sb.st_size, .refs = 1};
    *out = m;
    return APL_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Header checks */

static apl_status add_entry(apl_st *st, st_entry *e)
{
    if (st->n == st->cap) {
        int cap = st->cap ? 2 * st->cap : 64;
        st_entry *ne = realloc(st->e, (size_t)cap * sizeof *ne);
        if (!ne) return apl_fail(APL_ENOMEM, "safetensors: out of memory");
        st->e = ne;
        st->cap = cap;
    }
    st->e[st->n++] = *e;
    return APL_OK;
}

static int json_uint(const cJSON *j, uint64_t *out)
{
    if (!cJSON_IsNumber(j)) return 0;
    double d = j->valuedouble;
    if (d < 0 || d > 9007199254740992.0 || d != (double)(uint64_t)d) return 0;
    *out = (uint64_t)d;
    return 1;
}

static apl_status parse_dtype(const char *path, const char *name, const cJSON *j, st_entry *e,
                              size_t *size)
{
    if (!cJSON_IsString(j))
        return apl_fail(APL_EFORMAT, "%s: tensor \"%s\": missing \"dtype\"", path, name);
    for (size_t i = 0; i < sizeof DTYPES / sizeof *DTYPES; i++) {
        if (strcmp(DTYPES[i].name, j->valuestring) == 0) {
            e->info.dtype_name = DTYPES[i].name;
            e->info.has_dtype = DTYPES[i].has_dtype;
            e->info.dt = DTYPES[i].dt;
            *size = DTYPES[i].size;
            return APL_OK;
        }
    }
    return apl_fail(APL_EFORMAT, "%s: tensor \"%s\": unknown dtype \"%s\"", path, name,
                    j->valuestring);
}

/* Fills e from one header item; the data size must agree with dtype x shape and fit the file. */
static apl_status parse_entry(const st_map *m, const cJSON *item, st_entry *e)
{
    const char *path = m->path, *name = item->string;
    if (!cJSON_IsObject(item))
        return apl_fail(APL_EFORMAT, "%s: tensor \"%s\": not an object", path, name);
    size_t esize = 1;
    apl_status st = parse_dtype(path, name, cJSON_GetObjectItemCaseSensitive(item, "dtype"), e,
                                &esize);
    if (st != APL_OK) return st;
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
    if (!cJSON_IsArray(shape) || cJSON_GetArraySize(shape) > APL_MAX_DIMS)
        return apl_fail(APL_EFORMAT, "%s: tensor \"%s\": bad \"shape\"", path, name);
    uint64_t numel = 1;
    const cJSON *d;
    cJSON_ArrayForEach(d, shape) {
        uint64_t v;
        if (!json_uint(d, &v) || (v && numel > UINT64_MAX / v / esize))
            return apl_fail(APL_EFORMAT, "%s: tensor \"%s\": bad \"shape\"", path, name);
        e->info.shape[e->info.ndim++] = (int64_t)v;
        numel *= v;
    }
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    uint64_t b, en;
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 ||
        !json_uint(cJSON_GetArrayItem(offs, 0), &b) || !json_uint(cJSON_GetArrayItem(offs, 1), &en) ||
        en < b)
        return apl_fail(APL_EFORMAT, "%s: tensor \"%s\": bad \"data_offsets\"", path, name);
    uint64_t avail = m->size - m->data_start;
    if (en > avail)
        return apl_fail(APL_EFORMAT,
                        "%s: tensor \"%s\": data_offsets [%llu, %llu] outside the data (%llu bytes;"
                        " truncated file?)", path, name, (unsigned long long)b,
                        (unsigned long long)en, (unsigned long long)avail);
    if (en - b != numel * esize)
        return apl_fail(APL_EFORMAT,
                        "%s: tensor \"%s\": data_offsets hold %llu bytes, dtype %s x shape needs %llu",
                        path, name, (unsigned long long)(en - b), e->info.dtype_name,
                        (unsigned long long)(numel * esize));
    e->info.nbytes = en - b;
    e->begin = b;
    return APL_OK;
}

static int by_begin(const void *a, const void *b)
{
    const st_entry *x = *(st_entry *const *)a, *y = *(st_entry *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->info.nbytes < y->info.nbytes ? -1 : x->info.nbytes > y->info.nbytes;
}

/* Entries [from, st->n) belong to one file; no two may share bytes. Each is compared with the
 * furthest end seen so far, not only its neighbour: a large tensor may cover several that start
 * after it. A zero-size tensor strictly inside another's bytes is an overlap too (it names bytes
 * that belong to the other; writers put empty tensors between others, never inside). */
static apl_status check_overlap(apl_st *st, int from, const char *path)
{
    int n = st->n - from;
    if (n < 2) return APL_OK;
    st_entry **v = malloc((size_t)n * sizeof *v);
    if (!v) return apl_fail(APL_ENOMEM, "%s: out of memory", path);
    for (int i = 0; i < n; i++) v[i] = &st->e[from + i];
    qsort(v, (size_t)n, sizeof *v, by_begin);
    apl_status s = APL_OK;
    const st_entry *far = v[0]; /* the entry ending furthest so far */
    for (int i = 1; i < n && s == APL_OK; i++) {
        const st_entry *b = v[i];
        if (b->begin < far->begin + far->info.nbytes)
            s = apl_fail(APL_EFORMAT, "%s: tensors \"%s\" and \"%s\" overlap", path,
                         far->info.name, b->info.name);
        if (b->begin + b->info.nbytes > far->begin + far->info.nbytes) far = b;
    }
    free(v);
    return s;
}

static apl_status parse_header(apl_st *st, st_map *m)
{
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | m->base[i];
    if (hlen > m->size - 8 || hlen > MAX_HEADER)
        return apl_fail(APL_EFORMAT, "%s: header length %llu exceeds the file (%zu bytes)",
                        m->path, (unsigned long long)hlen, m->size);
    m->data_start = 8 + hlen;
    cJSON *h = cJSON_ParseWithLength((const char *)m->base + 8, (size_t)hlen);
    if (!cJSON_IsObject(h)) {
        cJSON_Delete(h);
        return apl_fail(APL_EFORMAT, "%s: header is not a JSON object", m->path);
    }
    int from = st->n;
    apl_status s = APL_OK;
    const cJSON *item;
    cJSON_ArrayForEach(item, h) {
        if (strcmp(item->string, "__metadata__") == 0) continue;
        st_entry e = {.map = m};
        s = parse_entry(m, item, &e);
        if (s != APL_OK) break;
        e.info.file = m->path;
        e.info.name = strdup(item->string);
        if (!e.info.name) {
            s = apl_fail(APL_ENOMEM, "%s: out of memory", m->path);
            break;
        }
        s = add_entry(st, &e);
        if (s != APL_OK) {
            free((char *)e.info.name);
            break;
        }
    }
    cJSON_Delete(h);
    return s == APL_OK ? check_overlap(st, from, m->path) : s;
}

/* ------------------------------------------------------------------------------------------ */
/* The name index */

static int by_name(const void *a, const void *b, void *ctx)
{
    const st_entry *e = ctx;
    return strcmp(e[*(const int *)a].info.name, e[*(const int *)b].info.name);
}

/* Sorts the entries' names for apl_st_find and refuses a name given twice (in one header, or in
 * two shards): which of the two a lookup found would depend on the order of the file. */
static apl_status index_names(apl_st *st)
{
    free(st->by_name);
    st->by_name = malloc((size_t)(st->n ? st->n : 1) * sizeof *st->by_name);
    if (!st->by_name) return apl_fail(APL_ENOMEM, "safetensors: out of memory");
    for (int i = 0; i < st->n; i++) st->by_name[i] = i;
    qsort_r(st->by_name, (size_t)st->n, sizeof *st->by_name, by_name, st->e);
    for (int i = 1; i < st->n; i++) {
        const apl_st_info *a = &st->e[st->by_name[i - 1]].info, *b = &st->e[st->by_name[i]].info;
        if (strcmp(a->name, b->name) != 0) continue;
        if (a->file == b->file)
            return apl_fail(APL_EFORMAT, "%s: tensor \"%s\" appears twice", b->file, b->name);
        return apl_fail(APL_EFORMAT, "tensor \"%s\" appears in both %s and %s", b->name, a->file,
                        b->file);
    }
    return APL_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Opening */

static apl_status add_file(apl_st *st, const char *path)
{
    st_map **nm = realloc(st->maps, (size_t)(st->nmaps + 1) * sizeof *nm);
    if (!nm) return apl_fail(APL_ENOMEM, "%s: out of memory", path);
    st->maps = nm;
    apl_status s = map_file(path, &st->maps[st->nmaps]);
    if (s != APL_OK) return s;
    st_map *m = st->maps[st->nmaps++];
    return parse_header(st, m);
}

apl_status apl_st_open(const char *path, apl_st **out)
{
    *out = NULL;
    apl_st *st = calloc(1, sizeof *st);
    if (!st) return apl_fail(APL_ENOMEM, "%s: out of memory", path);
    apl_status s = add_file(st, path);
    if (s == APL_OK) s = index_names(st);
    if (s != APL_OK) {
        apl_st_close(st);
        return s;
    }
    *out = st;
    return APL_OK;
}

/* The shards named by an index, each opened once; then every name of the weight_map must be in
 * the shard it names. */
static apl_status open_index(apl_st *st, const char *dir, const char *ipath)
{
    char *text;
    size_t len;
    apl_status s = apl_read_text(ipath, MAX_INDEX, &text, &len);
    if (s != APL_OK) return s;
    cJSON *idx = cJSON_ParseWithLength(text, len);
    free(text);
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(idx, "weight_map");
    if (!cJSON_IsObject(wm)) {
        cJSON_Delete(idx);
        return apl_fail(APL_EFORMAT, "%s: missing \"weight_map\"", ipath);
    }
    const cJSON *it;
    char path[4096];
    cJSON_ArrayForEach(it, wm) {
        if (!cJSON_IsString(it) || strchr(it->valuestring, '/')) {
            s = apl_fail(APL_EFORMAT, "%s: weight_map[\"%s\"]: bad file name", ipath, it->string);
            break;
        }
        snprintf(path, sizeof path, "%s/%s", dir, it->valuestring);
        int seen = 0;
        for (int i = 0; i < st->nmaps && !seen; i++) seen = strcmp(st->maps[i]->path, path) == 0;
        if (!seen && (s = add_file(st, path)) != APL_OK) break;
    }
    if (s == APL_OK) s = index_names(st);
    cJSON_ArrayForEach(it, wm) {
        if (s != APL_OK) break;
        snprintf(path, sizeof path, "%s/%s", dir, it->valuestring);
        const apl_st_info *e = apl_st_find(st, it->string);
        if (!e || strcmp(e->file, path) != 0)
            s = apl_fail(APL_EFORMAT, "%s: tensor \"%s\" not found in its shard %s", ipath,
                         it->string, it->valuestring);
    }
    cJSON_Delete(idx);
    return s;
}

apl_status apl_st_open_dir(const char *dir, apl_st **out)
{
    char path[4096];
    *out = NULL;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (access(path, F_OK) == 0) return apl_st_open(path, out);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    if (access(path, F_OK) != 0)
        return apl_fail(APL_ENOTFOUND, "%s: no model.safetensors or model.safetensors.index.json",
                        dir);
    apl_st *st = calloc(1, sizeof *st);
    if (!st) return apl_fail(APL_ENOMEM, "%s: out of memory", dir);
    apl_status s = open_index(st, dir, path);
    if (s != APL_OK) {
        apl_st_close(st);
        return s;
    }
    *out = st;
    return APL_OK;
}

void apl_st_close(apl_st *st)
{
    if (!st) return;
    for (int i = 0; i < st->n; i++) free((char *)st->e[i].info.name);
    for (int i = 0; i < st->nmaps; i++) map_unref(st->maps[i]);
    free(st->e);
    free(st->by_name);
    free(st->maps);
    free(st);
}

int apl_st_count(const apl_st *st) { return st->n; }

const apl_st_info *apl_st_at(const apl_st *st, int i) { return &st->e[i].info; }

const apl_st_info *apl_st_find(const apl_st *st, const char *name)
{
    int lo = 0, hi = st->by_name ? st->n : 0;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        const apl_st_info *e = &st->e[st->by_name[mid]].info;
        int c = strcmp(e->name, name);
        if (c == 0) return e;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

apl_status apl_st_tensor(apl_st *st, const apl_st_info *info, apl_tensor **out)
{
    (void)st;
    /* info is the first member of its entry */
    const st_entry *e = (const st_entry *)info;
    *out = NULL;
    if (!info->has_dtype)
        return apl_fail(APL_EUNSUPPORTED, "%s: tensor \"%s\": dtype %s cannot be loaded",
                        info->file, info->name, info->dtype_name);
    void *p = e->map->base + e->map->data_start + e->begin;
    if ((uintptr_t)p % apl_dtype_size(info->dt) != 0) {
        /* torch kernels assume element alignment; odd writers get a copy */
        *out = apl_t_from_data(p, info->shape, info->ndim, info->dt);
        return apl_t_ok(*out);
    }
    __atomic_add_fetch(&e->map->refs, 1, __ATOMIC_ACQ_REL);
    *out = apl_t_from_blob(p, info->shape, info->ndim, info->dt, map_unref, e->map);
    if (!*out) {
        map_unref(e->map);
        return APL_ETORCH;
    }
    return APL_OK;
}

/* Whether any of n floats at p, with exponent mask `mask` in `bits`-bit words, is a NaN or an
 * infinity (exponent all ones). Branch-free within blocks, so the compiler vectorises it: the
 * scan runs at memory speed, a fraction of the time libtorch then takes to convert. */
#define NONFINITE_SCAN(T, p, n, mask, at)                                                  \
    do {                                                                                   \
        const T *w_ = (const T *)(p);                                                      \
        for (uint64_t b_ = 0; b_ < (n) && (at) < 0; b_ += 4096) {                         \
            uint64_t e_ = (n) - b_ < 4096 ? (n) : b_ + 4096;                              \
            int bad_ = 0;                                                                  \
            for (uint64_t i_ = b_; i_ < e_; i_++) bad_ |= (w_[i_] & (mask)) == (mask);    \
            for (uint64_t i_ = b_; bad_ && i_ < e_; i_++)                                  \
                if ((w_[i_] & (mask)) == (mask)) {                                         \
                    (at) = (int64_t)i_;                                                    \
                    break;                                                                 \
                }                                                                          \
        }                                                                                  \
    } while (0)

apl_status apl_st_check_finite(const apl_st *st, const apl_st_info *info)
{
    (void)st;
    const st_entry *e = (const st_entry *)info;
    const unsigned char *p = e->map->base + e->map->data_start + e->begin;
    int64_t at = -1;
    uint64_t n = info->nbytes;
    /* unaligned data (odd writers) is copied before scanning: the words are read whole */
    void *copy = NULL;
    if (info->has_dtype && (uintptr_t)p % apl_dtype_size(info->dt) != 0) {
        if (!(copy = malloc(n ? n : 1))) return apl_fail(APL_ENOMEM, "%s: out of memory", info->file);
        memcpy(copy, p, n);
        p = copy;
    }
    switch (info->has_dtype ? info->dt : APL_I64) {
    case APL_F32: NONFINITE_SCAN(uint32_t, p, n / 4, 0x7f800000u, at); break;
    case APL_F64: NONFINITE_SCAN(uint64_t, p, n / 8, 0x7ff0000000000000ull, at); break;
    case APL_F16: NONFINITE_SCAN(uint16_t, p, n / 2, 0x7c00u, at); break;
    case APL_BF16: NONFINITE_SCAN(uint16_t, p, n / 2, 0x7f80u, at); break;
    default: break; /* integers are always finite */
    }
    free(copy);
    if (at < 0) return APL_OK;
    return apl_fail(APL_EFORMAT, "%s: tensor \"%s\": element %lld is NaN or infinite", info->file,
                    info->name, (long long)at);
}

void apl_st_drop_pages(apl_st *st, const apl_st_info *info)
{
    (void)st;
    const st_entry *e = (const st_entry *)info;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t b = (uintptr_t)(e->map->base + e->map->data_start + e->begin);
    uintptr_t lo = (b + page - 1) / page * page, hi = (b + info->nbytes) / page * page;
    /* only whole pages: a neighbour sharing a boundary page may be a live view */
    if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

/* ------------------------------------------------------------------------------------------ */
/* Writing */

static const char *file_dtype(apl_dtype dt)
{
    for (size_t i = 0; i < sizeof DTYPES / sizeof *DTYPES; i++)
        if (DTYPES[i].has_dtype && DTYPES[i].dt == dt) return DTYPES[i].name;
    return NULL;
}

/* The header text, padded with spaces to a multiple of 8 so that the data is aligned. */
static char *make_header(const char *path, const char *const *names, apl_tensor *const *ts, int n,
                         size_t *len)
{
    cJSON *h = cJSON_CreateObject(), *meta = cJSON_AddObjectToObject(h, "__metadata__");
    cJSON_AddStringToObject(meta, "format", "pt");
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        const char *dn = file_dtype(apl_t_dtype(ts[i]));
        if (!dn) {
            apl_set_error("%s: tensor \"%s\": dtype %s cannot be stored", path, names[i],
                          apl_dtype_name(apl_t_dtype(ts[i])));
            cJSON_Delete(h);
            return NULL;
        }
        cJSON *e = cJSON_AddObjectToObject(h, names[i]);
        cJSON_AddStringToObject(e, "dtype", dn);
        int64_t shape[APL_MAX_DIMS];
        int nd = apl_t_shape(ts[i], shape);
        cJSON *sh = cJSON_AddArrayToObject(e, "shape");
        for (int d = 0; d < nd; d++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)shape[d]));
        uint64_t nb = (uint64_t)apl_t_numel(ts[i]) * apl_dtype_size(apl_t_dtype(ts[i]));
        cJSON *o = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)(off + nb)));
        off += nb;
    }
    char *txt = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    if (!txt) {
        apl_set_error("%s: out of memory", path);
        return NULL;
    }
    size_t l = strlen(txt), pl = (l + 7) / 8 * 8;
    char *pad = realloc(txt, pl + 1);
    if (!pad) {
        free(txt);
        apl_set_error("%s: out of memory", path);
        return NULL;
    }
    memset(pad + l, ' ', pl - l);
    pad[pl] = 0;
    *len = pl;
    return pad;
}

static apl_status write_data(FILE *f, const char *path, const char *name, apl_tensor *t)
{
    size_t nb = (size_t)apl_t_numel(t) * apl_dtype_size(apl_t_dtype(t));
    void *p = apl_t_device(t) == APL_CPU && apl_t_is_contiguous(t) ? apl_t_data(t) : NULL;
    void *buf = NULL;
    if (!p && nb) {
        buf = malloc(nb);
        if (!buf) return apl_fail(APL_ENOMEM, "%s: out of memory for \"%s\"", path, name);
        apl_status s = apl_t_read(t, apl_t_dtype(t), buf, nb);
        if (s != APL_OK) {
            free(buf);
            return s;
        }
        p = buf;
    }
    size_t w = nb ? fwrite(p, 1, nb, f) : 0;
    free(buf);
    return w == nb ? APL_OK : apl_fail(APL_EIO, "%s: %s", path, strerror(errno));
}

apl_status apl_st_write(const char *path, const char *const *names, apl_tensor *const *ts, int n)
{
    size_t hlen;
    char *hdr = make_header(path, names, ts, n, &hlen);
    if (!hdr) return APL_EINVAL;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        free(hdr);
        return apl_fail(APL_EIO, "%s: %s", tmp, strerror(errno));
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    apl_status s = fwrite(len8, 1, 8, f) == 8 && fwrite(hdr, 1, hlen, f) == hlen
                       ? APL_OK : apl_fail(APL_EIO, "%s: %s", tmp, strerror(errno));
    free(hdr);
    for (int i = 0; i < n && s == APL_OK; i++) s = write_data(f, tmp, names[i], ts[i]);
    if (fclose(f) != 0 && s == APL_OK) s = apl_fail(APL_EIO, "%s: %s", tmp, strerror(errno));
    if (s == APL_OK && rename(tmp, path) != 0)
        s = apl_fail(APL_EIO, "%s: %s", path, strerror(errno));
    if (s != APL_OK) unlink(tmp);
    return s;
}
