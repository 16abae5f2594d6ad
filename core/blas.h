/* blas.h — which BLAS libtorch is really calling, so that a slow one is noticed at once.
 *
 *   apl_blas_info b;
 *   if (apl_blas_detect(&b) == APL_OK && b.kind == APL_BLAS_REFERENCE)
 *       fputs(apl_blas_warning(&b), stderr);
 *   printf("BLAS: %s %s\n", apl_blas_kind_name(b.kind), b.path);
 *
 * Why: Debian's libtorch calls the system libblas.so.3, chosen by update-alternatives. With the
 * reference (Netlib) BLAS a GPT-2 124M training step took 72 s; with OpenBLAS, 2.8 s.
 *
 * Detection asks the dynamic linker which loaded file provides `sgemm_` (the symbol libtorch
 * binds to), resolves symlinks to the real file, and probes that library and its dependencies
 * for vendor symbols (openblas_get_config, MKL_Get_Version_String, bli_info_get_version_str).
 * Nothing is loaded that the process did not already load, except by apl_blas_identify_file.
 *
 * Statuses: APL_OK (also when no BLAS is loaded: kind APL_BLAS_NONE), APL_EINVAL, APL_EIO
 * (apl_blas_identify_file could not open the file).
 */
#ifndef APL_BLAS_H
#define APL_BLAS_H

#include <limits.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    APL_BLAS_NONE,      /* no library exports sgemm_ (e.g. a libtorch with MKL linked in) */
    APL_BLAS_UNKNOWN,   /* some library exports sgemm_, and nothing says which */
    APL_BLAS_REFERENCE, /* Netlib reference BLAS: correct but 10-30x slower */
    APL_BLAS_OPENBLAS,
    APL_BLAS_MKL,
    APL_BLAS_BLIS,
    APL_BLAS_ATLAS
} apl_blas_kind;

typedef struct {
    apl_blas_kind kind;
    char path[PATH_MAX]; /* the real file (symlinks resolved), "" when kind is APL_BLAS_NONE */
    char detail[256];    /* vendor's own description ("OpenBLAS 0.3.21 ... Haswell"), or "" */
} apl_blas_info;

/* Describes the BLAS the current process calls. */
apl_status apl_blas_detect(apl_blas_info *out);
/* Describes the BLAS in the shared library at `path` (loads it privately, then unloads it). */
apl_status apl_blas_identify_file(const char *path, apl_blas_info *out);
/* The kind a file's location and name suggest, for libraries without vendor symbols. */
apl_blas_kind apl_blas_kind_from_path(const char *path);
const char *apl_blas_kind_name(apl_blas_kind kind); /* "reference", "OpenBLAS", ... */
/* The OPENBLAS_CORETYPE this CPU should run ("Cooperlake", "SkylakeX", "Haswell"), or NULL
 * (not x86-64, or no AVX2). OpenBLAS picks kernels by CPU model number, and a release older
 * than the CPU falls back to "Prescott" (SSE3): Debian 12's 0.3.21 on Emerald Rapids runs sgemm
 * 4-6x slower than with the AVX-512 kernels it ships. Choosing by feature flags avoids that.
 * Safe to call before constructors run (apl calls it from .preinit_array). */
const char *apl_blas_openblas_coretype(void);
/* A loud multi-line warning with the fix when `b` is the reference BLAS, else NULL. */
const char *apl_blas_warning(const apl_blas_info *b);

#ifdef __cplusplus
}
#endif
#endif
