/* test_blas.c — core/blas.c: classification by path, probing real Debian libraries, and
 * detection of the BLAS this (libtorch-linked) test binary calls. Ends "N passed, N failed". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blas.h"
#include "check.h"
#include "torch_shim.h"

#define LIBDIR "/usr/lib/x86_64-linux-gnu"

static void test_kind_from_path(void)
{
    static const struct { const char *path; apl_blas_kind want; } rows[] = {
        { LIBDIR "/blas/libblas.so.3.11.0", APL_BLAS_REFERENCE },
        { LIBDIR "/openblas-pthread/libblas.so.3", APL_BLAS_OPENBLAS },
        { LIBDIR "/openblas-openmp/libopenblasp-r0.3.21.so", APL_BLAS_OPENBLAS },
        { LIBDIR "/blis-openmp/libblas.so.3", APL_BLAS_BLIS },
        { LIBDIR "/atlas/libblas.so.3", APL_BLAS_ATLAS },
        { "/opt/intel/oneapi/mkl/lib/libmkl_rt.so.2", APL_BLAS_MKL },
        { "/usr/local/lib/libblas.so", APL_BLAS_REFERENCE },
        { "/opt/x/libfastmath.so", APL_BLAS_UNKNOWN },
        { "", APL_BLAS_NONE },
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        apl_blas_kind k = apl_blas_kind_from_path(rows[i].path);
        CHECK(k == rows[i].want, "kind_from_path(%s) = %s, want %s", rows[i].path,
              apl_blas_kind_name(k), apl_blas_kind_name(rows[i].want));
    }
}

static void test_identify_installed(void)
{
    apl_blas_info b;
    const char *ref = LIBDIR "/blas/libblas.so.3";
    if (access(ref, R_OK) == 0) {
        CHECK(apl_blas_identify_file(ref, &b) == APL_OK, "identify %s: %s", ref, apl_last_error());
        CHECK(b.kind == APL_BLAS_REFERENCE, "%s is %s", ref, apl_blas_kind_name(b.kind));
        CHECK(strstr(b.path, "/blas/libblas.so.3.") != NULL, "symlink resolved: %s", b.path);
    } else {
        printf("skipped reference BLAS probe: %s not installed\n", ref);
    }
    const char *ob = LIBDIR "/openblas-pthread/libblas.so.3";
    if (access(ob, R_OK) == 0) {
        CHECK(apl_blas_identify_file(ob, &b) == APL_OK, "identify %s: %s", ob, apl_last_error());
        CHECK(b.kind == APL_BLAS_OPENBLAS, "%s is %s", ob, apl_blas_kind_name(b.kind));
        CHECK(strstr(b.detail, "OpenBLAS") != NULL, "OpenBLAS detail: '%s'", b.detail);
    } else {
        printf("skipped OpenBLAS probe: %s not installed\n", ob);
    }
    CHECK(apl_blas_identify_file("/nonexistent/libblas.so.3", &b) == APL_EIO, "missing file is EIO");
    CHECK(strstr(apl_last_error(), "/nonexistent/libblas.so.3") != NULL, "message names the file");
}

/* Loading libtorch (this test calls into it) loads the system libblas.so.3: the alternative's
 * target. */
static void test_detect_matches_alternative(void)
{
    printf("libtorch %s\n", apl_torch_version());
    apl_blas_info b;
    CHECK(apl_blas_detect(&b) == APL_OK, "detect: %s", apl_last_error());
    char want[PATH_MAX];
    if (!realpath("/etc/alternatives/libblas.so.3-x86_64-linux-gnu", want)) {
        printf("skipped alternatives check: no libblas.so.3 alternative\n");
        return;
    }
    CHECK(strcmp(b.path, want) == 0, "detected %s, alternative is %s", b.path, want);
    CHECK(b.kind == apl_blas_kind_from_path(want), "detected kind %s for %s",
          apl_blas_kind_name(b.kind), want);
}

static void test_warning(void)
{
    apl_blas_info b = { .kind = APL_BLAS_REFERENCE };
    strcpy(b.path, LIBDIR "/blas/libblas.so.3.11.0");
    const char *w = apl_blas_warning(&b);
    CHECK(w && strstr(w, b.path), "warning names the file");
    CHECK(w && strstr(w, "update-alternatives --config libblas.so.3-x86_64-linux-gnu"),
          "warning gives the command for this arch: %s", w ? w : "(null)");
    CHECK(w && strstr(w, "APL_QUIET_BLAS=1"), "warning says how to silence it");
    b.kind = APL_BLAS_OPENBLAS;
    CHECK(apl_blas_warning(&b) == NULL, "no warning for OpenBLAS");
}

/* The choice follows the CPU flags the kernel reports. */
static void test_openblas_coretype(void)
{
#if !defined(__x86_64__)
    /* apl picks a core type on x86-64 only; elsewhere OpenBLAS's own detection stands (and under
     * qemu-user /proc/cpuinfo describes the x86 host, not this CPU) */
    CHECK(apl_blas_openblas_coretype() == NULL, "no coretype chosen off x86-64");
    return;
#endif
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) {
        printf("skipped coretype check: no /proc/cpuinfo\n");
        return;
    }
    static char line[8192];
    char flags[8192] = "";
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "flags", 5) == 0) {
            snprintf(flags, sizeof flags, " %s", strchr(line, ':') + 1);
            break;
        }
    fclose(f);
    const char *want = NULL;
    if (strstr(flags, " avx512f ") && strstr(flags, " avx512bw ") && strstr(flags, " avx512vl ") &&
        strstr(flags, " avx512dq "))
        want = strstr(flags, " avx512_bf16") ? "Cooperlake" : "SkylakeX";
    else if (strstr(flags, " avx2 ") && strstr(flags, " fma "))
        want = "Haswell";
    const char *got = apl_blas_openblas_coretype();
    CHECK((want == NULL) == (got == NULL) && (!want || strcmp(want, got) == 0), "coretype %s, want %s",
          got ? got : "(none)", want ? want : "(none)");
}

int main(void)
{
    test_kind_from_path();
    test_identify_installed();
    test_detect_matches_alternative();
    test_warning();
    test_openblas_coretype();
    DONE();
}
