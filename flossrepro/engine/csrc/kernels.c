/* flossrepro native kernels: whole-sequence loops of the training forward/backward and of the
 * Lyapunov tangent loop (Householder QR and its pullback), for float32 and float64.
 *
 * Built and loaded by flossrepro/native.py (plain C, no PyTorch headers). The matrix products
 * are register-blocked float32 microkernels of our own on x86-64 with AVX-512 or AVX2 + FMA
 * (gemm.h, chosen at run time); otherwise, and always in float64, they call the BLAS that
 * PyTorch links (MKL on x86 builds): native.py looks the Fortran symbols up in PyTorch's own
 * library and hands them to fr_set_blas(); without them the native path is not used at all. The Householder QR and the float32 tanh are our own: LAPACK's QR and
 * the vector-math tanh are slow for these small sizes on the CPUs we measured, and so is the
 * per-call overhead of going through PyTorch.
 */
#define EXPORT __attribute__((visibility("default")))
#include <math.h>
#include <stddef.h>
#include <string.h>


enum { NL_TANH = 0, NL_RELU = 1, NL_IDENTITY = 2 };
enum { TANGENT_CHUNK = 16 };  /* steps per dW gemm in the tangent backward (its buffers stay in cache) */

typedef void (*gemm_s_t)(const char *, const char *, const int *, const int *, const int *,
                         const float *, const float *, const int *, const float *, const int *,
                         const float *, float *, const int *);
typedef void (*gemm_d_t)(const char *, const char *, const int *, const int *, const int *,
                         const double *, const double *, const int *, const double *, const int *,
                         const double *, double *, const int *);
typedef void (*trsm_s_t)(const char *, const char *, const char *, const char *, const int *,
                         const int *, const float *, const float *, const int *, float *, const int *);
typedef void (*trsm_d_t)(const char *, const char *, const char *, const char *, const int *,
                         const int *, const double *, const double *, const int *, double *, const int *);
typedef void (*vtanh_d_t)(int, const double *, double *);  /* MKL VML C interface: n by value */

static gemm_s_t sgemm_p;
static gemm_d_t dgemm_p;
static trsm_s_t strsm_p;
static trsm_d_t dtrsm_p;
static vtanh_d_t vdtanh_p;

/* Version of the C interface; native.py refuses a library with another one. */
EXPORT int fr_abi_version(void) { return 3; }

/* BLAS entry points (required) and MKL's float64 vector tanh (optional: NULL uses libm). */
EXPORT void fr_set_blas(void *sgemm, void *dgemm, void *strsm, void *dtrsm, void *vdtanh) {
    sgemm_p = (gemm_s_t)sgemm; dgemm_p = (gemm_d_t)dgemm;
    strsm_p = (trsm_s_t)strsm; dtrsm_p = (trsm_d_t)dtrsm;
    vdtanh_p = (vtanh_d_t)vdtanh;
}

/* float32 tanh, vectorizable (the loop in fr_tanh_s becomes AVX2 code), max rel. error ~1 ulp
 * (tests/test_native.py checks it against float64 tanh):
 *   |x| < 0.55:  x + x^3 P(x^2), P a degree-4 least-squares fit of (tanh x - x)/x^3 on
 *                [0, 0.55] (relative error 1.1e-9 in float64);
 *   otherwise:   1 - 2 / (exp(2|x|) + 1), exp by 2^n e^r with |r| <= ln2/2 and a degree-7 Taylor
 *                polynomial (truncation 5e-9), |x| clamped at 10 (1 - 2/(e^20 + 1) rounds to 1 in
 *                float32, as torch.tanh does from |x| ~ 9.01 on).
 * NaN stays NaN (divergence detection relies on it). */
static inline float fr_tanhf(float x) {
    const float a = fabsf(x), a2 = a * a;
    const float p = a + a * a2 * (-0.3333331865208117f + a2 * (0.13332616866545022f + a2 * (
        -0.05385511984913024f + a2 * (0.021082059476615487f + a2 * -0.006287662852435487f))));
    const float y = 2.0f * (a > 10.0f ? 10.0f : a);
    const float n = floorf(y * 1.4426950408889634f + 0.5f);
    const float r = (y - n * 0.693359375f) - n * -2.12194440e-4f;  /* ln 2 = 0.693359375 - 2.12194440e-4 */
    const float er = 1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 + r * (
        1.0f / 720 + r * (1.0f / 5040)))))));
    union { int i; float f; } sc;
    sc.i = ((int)n + 127) << 23;  /* 2^n, 0 <= n <= 29 */
    const float t = 1.0f - 2.0f / (er * sc.f + 1.0f);
    const float res = copysignf(a < 0.55f ? p : t, x);
    return x != x ? x : res;
}

static int tanh512;  /* set with the GEMM kind (gemm.h): the AVX-512 loop below */

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("avx512f,avx512dq,avx512vl,avx2,fma")))
static void fr_tanh_s512(int n, const float *x, float *out) {
#pragma omp simd simdlen(16)
    for (int i = 0; i < n; i++) out[i] = fr_tanhf(x[i]);
}
#endif

static void fr_tanh_s(int n, const float *x, float *out) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (tanh512) { fr_tanh_s512(n, x, out); return; }
#endif
#pragma omp simd
    for (int i = 0; i < n; i++) out[i] = fr_tanhf(x[i]);
}

EXPORT void fr_tanh_f32(int n, const float *x, float *out) { fr_tanh_s(n, x, out); }

static void fr_tanh_d(int n, const double *x, double *out) {
    if (vdtanh_p) { vdtanh_p(n, x, out); return; }
    for (int i = 0; i < n; i++) out[i] = tanh(x[i]);
}

#include "gemm.h"

#define REAL float
#define FN(x) x##_s
#define FAST_MM mm_s_fast
#define FAST_REFLECT reflect_s_fast
#define FAST_SYM sym_lower_s_fast
#define FAST_TRSM trsm_s_fast
#define GEMM sgemm_p
#define TRSM strsm_p
#define TANH fr_tanh_s
#define SQRT sqrtf
#include "kernels.h"
#undef REAL
#undef FN
#undef GEMM
#undef TRSM
#undef TANH
#undef SQRT
#undef FAST_MM
#undef FAST_REFLECT
#undef FAST_SYM
#undef FAST_TRSM

#define REAL double
#define FN(x) x##_d
#define GEMM dgemm_p
#define TRSM dtrsm_p
#define TANH fr_tanh_d
#define SQRT sqrt
#include "kernels.h"
