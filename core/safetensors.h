/* safetensors.h — reading and writing Hugging Face's safetensors files, one file or a sharded
 * checkpoint (model.safetensors.index.json).
 *
 *   apl_st *st;
 *   if (apl_st_open_dir("gpt2/", &st) != APL_OK) die(apl_last_error());
 *   const apl_st_info *e = apl_st_find(st, "wte.weight");
 *   apl_tensor *w;
 *   if (e && apl_st_tensor(st, e, &w) == APL_OK) ...   // no copy: a view of the mapped file
 *   apl_st_close(st);                                   // w stays valid
 *
 *   apl_st_write("out/model.safetensors", names, tensors, n);
 *
 * Ownership. Files are mapped with MAP_PRIVATE: tensors made by apl_st_tensor point into the
 * mapping, may be written in place (copy-on-write, the file never changes) and keep the mapping
 * alive by a reference count; it is unmapped when apl_st_close has run and the last such tensor
 * has died. Infos are borrowed from the apl_st and die with apl_st_close.
 *
 * Every header is checked when opened: dtype known, shape non-negative integers, data_offsets
 * inside the file, sizes agreeing with dtype x shape, no two tensors overlapping (zero-size ones
 * included), no name given twice (in one file or across shards). A path that is not a regular
 * file (a FIFO, a folder) is refused before it is read.
 * Statuses: APL_EIO (cannot open/read/map), APL_EFORMAT (malformed file: the message names the
 * file and the tensor or field), APL_ENOTFOUND (no checkpoint in the folder), APL_EUNSUPPORTED
 * (a valid dtype apl cannot hold, e.g. I16), APL_ETORCH.
 */
#ifndef APL_SAFETENSORS_H
#define APL_SAFETENSORS_H

#include "torch_shim.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct apl_st apl_st;

typedef struct {
    const char *name;
    const char *dtype_name;  /* as in the file: "F32", "BF16", "I16", ... */
    int has_dtype;           /* 1 when dt holds an apl dtype for dtype_name */
    apl_dtype dt;
    int ndim;
    int64_t shape[APL_MAX_DIMS];
    uint64_t nbytes;
    const char *file;        /* the path of the file holding it */
} apl_st_info;

apl_status apl_st_open(const char *path, apl_st **out);
/* dir/model.safetensors, else the shards named by dir/model.safetensors.index.json. */
apl_status apl_st_open_dir(const char *dir, apl_st **out);
void apl_st_close(apl_st *st); /* NULL-safe */

int apl_st_count(const apl_st *st);
const apl_st_info *apl_st_at(const apl_st *st, int i);
const apl_st_info *apl_st_find(const apl_st *st, const char *name); /* NULL when absent */
/* A new CPU tensor over the mapped bytes (copied only when misaligned for its dtype). */
apl_status apl_st_tensor(apl_st *st, const apl_st_info *e, apl_tensor **out);

/* APL_EFORMAT naming the first element that is a NaN or an infinity (float dtypes; other dtypes
 * pass). Reads every byte of the tensor once: memory speed, ~0.1 s per GB. */
apl_status apl_st_check_finite(const apl_st *st, const apl_st_info *e);

/* Hands the pages wholly inside e's bytes back to the kernel (they are re-read from the file if
 * touched again): for a caller that has converted e into a copy and dropped every view of it. */
void apl_st_drop_pages(apl_st *st, const apl_st_info *e);

/* Writes n named tensors (any device, stored in their own dtype) with a {"format":"pt"} metadata
 * entry, through a temporary file renamed into place. */
apl_status apl_st_write(const char *path, const char *const *names, apl_tensor *const *ts, int n);

#ifdef __cplusplus
}
#endif
#endif
