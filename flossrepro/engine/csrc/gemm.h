/* Register-blocked float32 GEMM microkernels for the small products of the native loops
 * (16 x 80 by 80 x 80 per training step, 75 x 80 by 80 x 80 per tangent step, their
 * transposes in the backward passes, and the k x k products of the QR pullback).
 *
 * Row-major C[M, N] = alpha op(A) op(B) + beta C, as FN(mm) in kernels.h. The microkernel
 * keeps an MR x (NV vectors) block of C in registers and walks K once: per k it loads NV
 * vectors of one row of op(B) and broadcasts MR elements of op(A), MR * NV FMAs.
 *   AVX-512:    MR = 4 rows x NV <= 5 vectors of 16 (a 4 x 80 block: 20 accumulators)
 *   AVX2 + FMA: MR = 4 rows x NV <= 3 vectors of 8  (a 4 x 24 block: 12 accumulators)
 * The last vector of a column panel is masked, so every M, N, K is handled. op(A) is read
 * through strides (no copy); a transposed B is first copied into a row-major buffer of its
 * own (K x N; small next to the 2 M N K flops of the product).
 *
 * K is walked in chunks of KC rows so that a chunk of op(B) stays in L2 (dW over 4800 rows).
 *
 * Chosen at run time (fr_set_gemm): the widest kind this CPU supports, unless overridden;
 * BLAS (sgemm_ of PyTorch's library) is the fallback for other CPUs and compilers, and always
 * for float64. Compiled for x86-64 with GCC or Clang only (target attributes), else absent.
 *
 * With the AVX-512 kind, the other float32 inner loops of kernels.h take 16-wide versions from
 * here through hooks (FAST_REFLECT, FAST_TRSM, FAST_SYM; kernels.c also switches its tanh loop):
 * the Householder reflector, the QR pullback's triangular solve and its symmetric matrix.
 * Masked loads and stores are used only on ragged edges (they are slow on AMD cores).
 * fr_fma_peak is the benchmark's FMA-throughput ceiling.
 */
#include <stdlib.h>

enum { GEMM_BLAS = 0, GEMM_AVX2 = 1, GEMM_AVX512 = 2 };
static int gemm_kind = GEMM_BLAS;

/* A transposed B copied row-major (per thread, grown as needed) */
static __thread float *pack_buf;
static __thread size_t pack_cap;

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
/* out [K, N] row-major = B^T for B [N, K] (ldb): 8 x 8 blocks transposed in AVX registers,
 * the edges element by element */
__attribute__((target("avx2,fma")))
static void transpose8(int K, int N, const float *B, long ldb, float *out) {
    int j0 = 0;
    for (; j0 + 8 <= N; j0 += 8) {
        const float *b = B + (long)j0 * ldb;
        int k0 = 0;
        for (; k0 + 8 <= K; k0 += 8) {
            __m256 r0 = _mm256_loadu_ps(b + k0), r1 = _mm256_loadu_ps(b + ldb + k0);
            __m256 r2 = _mm256_loadu_ps(b + 2 * ldb + k0), r3 = _mm256_loadu_ps(b + 3 * ldb + k0);
            __m256 r4 = _mm256_loadu_ps(b + 4 * ldb + k0), r5 = _mm256_loadu_ps(b + 5 * ldb + k0);
            __m256 r6 = _mm256_loadu_ps(b + 6 * ldb + k0), r7 = _mm256_loadu_ps(b + 7 * ldb + k0);
            __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
            __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
            __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
            __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
            __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
            __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
            __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
            __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
            float *o = out + (long)k0 * N + j0;
            _mm256_storeu_ps(o, _mm256_permute2f128_ps(u0, u4, 0x20));
            _mm256_storeu_ps(o + N, _mm256_permute2f128_ps(u1, u5, 0x20));
            _mm256_storeu_ps(o + 2 * N, _mm256_permute2f128_ps(u2, u6, 0x20));
            _mm256_storeu_ps(o + 3 * N, _mm256_permute2f128_ps(u3, u7, 0x20));
            _mm256_storeu_ps(o + 4 * N, _mm256_permute2f128_ps(u0, u4, 0x31));
            _mm256_storeu_ps(o + 5 * N, _mm256_permute2f128_ps(u1, u5, 0x31));
            _mm256_storeu_ps(o + 6 * N, _mm256_permute2f128_ps(u2, u6, 0x31));
            _mm256_storeu_ps(o + 7 * N, _mm256_permute2f128_ps(u3, u7, 0x31));
        }
        for (; k0 < K; k0++)
            for (int j = 0; j < 8; j++) out[(long)k0 * N + j0 + j] = b[(long)j * ldb + k0];
    }
    for (; j0 < N; j0++)
        for (int k = 0; k < K; k++) out[(long)k * N + j0] = B[(long)j0 * ldb + k];
}
#endif

static const float *pack_bt(int K, int N, const float *B, int ldb) {
    /* op(B) = B^T with B [N, K] row-major (ldb): returns op(B) as a [K, N] row-major buffer */
    const size_t need = (size_t)K * N;
    if (need > pack_cap) {
        float *p = realloc(pack_buf, need * sizeof(float));
        if (!p) return NULL;
        pack_buf = p;
        pack_cap = need;
    }
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (gemm_kind != GEMM_BLAS) {
        transpose8(K, N, B, ldb, pack_buf);
        return pack_buf;
    }
#endif
    for (int j = 0; j < N; j++) {
        const float *src = B + (long)j * ldb;
        for (int k = 0; k < K; k++) pack_buf[(long)k * N + j] = src[k];
    }
    return pack_buf;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_GEMM_KERNELS 1

/* ---------------------------------------------------------------- AVX-512 */
#define T512 __attribute__((target("avx512f,fma"), always_inline)) static inline

T512 void mk512(const int mr, const int nv, __mmask16 last, int K, const float *A, long rsa, long csa,
                const float *B, long ldb, float *C, long ldc, float alpha, float beta) {
    __m512 acc[4][5];
    const int ragged = last != (__mmask16)0xFFFF;  /* masked loads and stores only where needed: they are slow on AMD */
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nv; j++) acc[i][j] = _mm512_setzero_ps();
    for (int k = 0; k < K; k++) {
        const float *b = B + (long)k * ldb;
        const float *a = A + (long)k * csa;
        __m512 bv[5];
        for (int j = 0; j < nv; j++)
            bv[j] = j == nv - 1 && ragged ? _mm512_maskz_loadu_ps(last, b + 16 * j) : _mm512_loadu_ps(b + 16 * j);
        for (int i = 0; i < mr; i++) {
            const __m512 av = _mm512_set1_ps(a[i * rsa]);
            for (int j = 0; j < nv; j++) acc[i][j] = _mm512_fmadd_ps(av, bv[j], acc[i][j]);
        }
    }
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    for (int i = 0; i < mr; i++) {
        float *c = C + i * ldc;
        for (int j = 0; j < nv; j++) {
            __m512 v = _mm512_mul_ps(va, acc[i][j]);
            if (j == nv - 1 && ragged) {
                if (beta != 0) v = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(last, c + 16 * j), v);
                _mm512_mask_storeu_ps(c + 16 * j, last, v);
            } else {
                if (beta != 0) v = _mm512_fmadd_ps(vb, _mm512_loadu_ps(c + 16 * j), v);
                _mm512_storeu_ps(c + 16 * j, v);
            }
        }
    }
}

/* one call per (mr, nv): constant arguments, so each copy is unrolled into registers */
#define MK512(mr, nv) mk512(mr, nv, last, K, a, rsa, csa, b, ldb, c, ldc, alpha, beta)
#define MK512_NV(mr) switch (nv) { case 1: MK512(mr, 1); break; case 2: MK512(mr, 2); break; \
    case 3: MK512(mr, 3); break; case 4: MK512(mr, 4); break; default: MK512(mr, 5); }

__attribute__((target("avx512f,fma")))
static void gemm512(int M, int N, int K, float alpha, const float *A, long rsa, long csa,
                    const float *B, long ldb, float beta, float *C, long ldc) {
    for (int j0 = 0; j0 < N; j0 += 80) {
        const int w = N - j0 < 80 ? N - j0 : 80, nv = (w + 15) / 16, rem = w - 16 * (nv - 1);
        const __mmask16 last = (__mmask16)((1u << rem) - 1);
        const float *b = B + j0;
        for (int i0 = 0; i0 < M; i0 += 4) {
            const float *a = A + i0 * rsa;
            float *c = C + (long)i0 * ldc + j0;
            switch (M - i0 < 4 ? M - i0 : 4) {
                case 1: MK512_NV(1) break;
                case 2: MK512_NV(2) break;
                case 3: MK512_NV(3) break;
                default: MK512_NV(4)
            }
        }
    }
}

/* C = alpha op(A) op(B) + beta C over chunks of KC rows of op(B) (C += alpha op(A)_chunk
 * op(B)_chunk after the first): a chunk of B stays in L2 while every row block of C walks it */
enum { KC = 256 };
typedef void (*gemm_fn)(int, int, int, float, const float *, long, long, const float *, long, float, float *, long);
static void gemm_kchunks(gemm_fn f, int M, int N, int K, float alpha, const float *A, long rsa, long csa,
                         const float *B, long ldb, float beta, float *C, long ldc) {
    for (int k0 = 0; k0 < K; k0 += KC) {
        const int kc = K - k0 < KC ? K - k0 : KC;
        f(M, N, kc, alpha, A + k0 * csa, rsa, csa, B + (long)k0 * ldb, ldb, k0 == 0 ? beta : 1.0f, C, ldc);
    }
}

/* ---------------------------------------------------------------- AVX2 + FMA */
#define T256 __attribute__((target("avx2,fma"), always_inline)) static inline

T256 void mk256(const int mr, const int nv, __m256i last, int K, const float *A, long rsa, long csa,
                const float *B, long ldb, float *C, long ldc, float alpha, float beta) {
    __m256 acc[4][3];
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nv; j++) acc[i][j] = _mm256_setzero_ps();
    for (int k = 0; k < K; k++) {
        const float *b = B + (long)k * ldb;
        const float *a = A + (long)k * csa;
        __m256 bv[3];
        for (int j = 0; j < nv; j++)
            bv[j] = j == nv - 1 ? _mm256_maskload_ps(b + 8 * j, last) : _mm256_loadu_ps(b + 8 * j);
        for (int i = 0; i < mr; i++) {
            const __m256 av = _mm256_broadcast_ss(a + i * rsa);
            for (int j = 0; j < nv; j++) acc[i][j] = _mm256_fmadd_ps(av, bv[j], acc[i][j]);
        }
    }
    const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    for (int i = 0; i < mr; i++) {
        float *c = C + i * ldc;
        for (int j = 0; j < nv; j++) {
            __m256 v = _mm256_mul_ps(va, acc[i][j]);
            if (j == nv - 1) {
                if (beta != 0) v = _mm256_fmadd_ps(vb, _mm256_maskload_ps(c + 8 * j, last), v);
                _mm256_maskstore_ps(c + 8 * j, last, v);
            } else {
                if (beta != 0) v = _mm256_fmadd_ps(vb, _mm256_loadu_ps(c + 8 * j), v);
                _mm256_storeu_ps(c + 8 * j, v);
            }
        }
    }
}

#define MK256(mr, nv) mk256(mr, nv, last, K, a, rsa, csa, b, ldb, c, ldc, alpha, beta)
#define MK256_NV(mr) switch (nv) { case 1: MK256(mr, 1); break; case 2: MK256(mr, 2); break; \
    default: MK256(mr, 3); }

__attribute__((target("avx2,fma")))
static void gemm256(int M, int N, int K, float alpha, const float *A, long rsa, long csa,
                    const float *B, long ldb, float beta, float *C, long ldc) {
    for (int j0 = 0; j0 < N; j0 += 24) {
        const int w = N - j0 < 24 ? N - j0 : 24, nv = (w + 7) / 8, rem = w - 8 * (nv - 1);
        const __m256i last = _mm256_cmpgt_epi32(_mm256_set1_epi32(rem), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        const float *b = B + j0;
        for (int i0 = 0; i0 < M; i0 += 4) {
            const float *a = A + i0 * rsa;
            float *c = C + (long)i0 * ldc + j0;
            switch (M - i0 < 4 ? M - i0 : 4) {
                case 1: MK256_NV(1) break;
                case 2: MK256_NV(2) break;
                case 3: MK256_NV(3) break;
                default: MK256_NV(4)
            }
        }
    }
}

/* fp32 FMA throughput: `iters` rounds of 12 independent vector FMAs (no loads); returns a
 * sum of the accumulators so that nothing is optimised away. flops = iters * 12 * lanes * 2. */
__attribute__((target("avx512f,fma")))
static float fma_peak512(long iters) {
    __m512 x[12], m = _mm512_set1_ps(0.999999f), s = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++) x[i] = _mm512_set1_ps((float)i);
    for (long it = 0; it < iters; it++)
        for (int i = 0; i < 12; i++) x[i] = _mm512_fmadd_ps(x[i], m, s);
    __m512 t = x[0];
    for (int i = 1; i < 12; i++) t = _mm512_add_ps(t, x[i]);
    return _mm512_reduce_add_ps(t);
}

__attribute__((target("avx2,fma")))
static float fma_peak256(long iters) {
    __m256 x[12], m = _mm256_set1_ps(0.999999f), s = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++) x[i] = _mm256_set1_ps((float)i);
    for (long it = 0; it < iters; it++)
        for (int i = 0; i < 12; i++) x[i] = _mm256_fmadd_ps(x[i], m, s);
    __m256 t = x[0];
    for (int i = 1; i < 12; i++) t = _mm256_add_ps(t, x[i]);
    float o[8];
    _mm256_storeu_ps(o, t);
    return o[0] + o[1] + o[2] + o[3] + o[4] + o[5] + o[6] + o[7];
}

/* Householder reflector I - tau v v^T applied to ncols columns of length m (stride ld), as
 * FN(reflect) in kernels.h, with 16-wide vectors over rows s..m-1, s = a0 rounded down to 16
 * (vf is zero below the reflector's row), the last vector masked; four columns per pass. */
#define LD16(mk, p) (mk == (__mmask16)0xFFFF ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(mk, p))
#define ST16(mk, p, v) do { if (mk == (__mmask16)0xFFFF) _mm512_storeu_ps(p, v); else _mm512_mask_storeu_ps(p, mk, v); } while (0)
__attribute__((target("avx512f,fma")))
static void reflect512(const float *vf, int a0, int m, float tj, float *x, int ncols, long ld) {
    const int s = a0 & ~15, len = m - s, nv = (len + 15) / 16, rem = len - 16 * (nv - 1);
    const __mmask16 last = (__mmask16)((1u << rem) - 1), full = (__mmask16)0xFFFF;
    const float *v = vf + s;
    int c = 0;
    for (; c + 3 < ncols; c += 4) {
        float *x0 = x + c * ld + s, *x1 = x0 + ld, *x2 = x1 + ld, *x3 = x2 + ld;
        __m512 d0 = _mm512_setzero_ps(), d1 = d0, d2 = d0, d3 = d0;
        for (int iv = 0; iv < nv; iv++) {
            const __mmask16 mk = iv == nv - 1 ? last : full;
            const int o = 16 * iv;
            const __m512 vv = LD16(mk, v + o);
            d0 = _mm512_fmadd_ps(vv, LD16(mk, x0 + o), d0);
            d1 = _mm512_fmadd_ps(vv, LD16(mk, x1 + o), d1);
            d2 = _mm512_fmadd_ps(vv, LD16(mk, x2 + o), d2);
            d3 = _mm512_fmadd_ps(vv, LD16(mk, x3 + o), d3);
        }
        const __m512 w0 = _mm512_set1_ps(_mm512_reduce_add_ps(d0) * tj), w1 = _mm512_set1_ps(_mm512_reduce_add_ps(d1) * tj);
        const __m512 w2 = _mm512_set1_ps(_mm512_reduce_add_ps(d2) * tj), w3 = _mm512_set1_ps(_mm512_reduce_add_ps(d3) * tj);
        for (int iv = 0; iv < nv; iv++) {
            const __mmask16 mk = iv == nv - 1 ? last : full;
            const int o = 16 * iv;
            const __m512 vv = LD16(mk, v + o);
            ST16(mk, x0 + o, _mm512_fnmadd_ps(w0, vv, LD16(mk, x0 + o)));
            ST16(mk, x1 + o, _mm512_fnmadd_ps(w1, vv, LD16(mk, x1 + o)));
            ST16(mk, x2 + o, _mm512_fnmadd_ps(w2, vv, LD16(mk, x2 + o)));
            ST16(mk, x3 + o, _mm512_fnmadd_ps(w3, vv, LD16(mk, x3 + o)));
        }
    }
    for (; c < ncols; c++) {
        float *x0 = x + c * ld + s;
        __m512 d0 = _mm512_setzero_ps();
        for (int iv = 0; iv < nv; iv++) {
            const __mmask16 mk = iv == nv - 1 ? last : full;
            d0 = _mm512_fmadd_ps(LD16(mk, v + 16 * iv), LD16(mk, x0 + 16 * iv), d0);
        }
        const __m512 w0 = _mm512_set1_ps(_mm512_reduce_add_ps(d0) * tj);
        for (int iv = 0; iv < nv; iv++) {
            const __mmask16 mk = iv == nv - 1 ? last : full;
            const int o = 16 * iv;
            ST16(mk, x0 + o, _mm512_fnmadd_ps(w0, LD16(mk, v + o), LD16(mk, x0 + o)));
        }
    }
}
#undef LD16
#undef ST16

static int cpu_has(int kind) {
    __builtin_cpu_init();
    if (kind == GEMM_AVX512) return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
    if (kind == GEMM_AVX2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return kind == GEMM_BLAS;
}
#else
#define HAVE_GEMM_KERNELS 0
static int cpu_has(int kind) { return kind == GEMM_BLAS; }
#endif

/* Select the float32 GEMM: -1 = the best this CPU has, else GEMM_BLAS / GEMM_AVX2 / GEMM_AVX512.
 * Returns the kind in use (a kind this CPU lacks leaves the selection unchanged: -2). */
EXPORT int fr_set_gemm(int kind) {
    if (kind < 0) kind = cpu_has(GEMM_AVX512) ? GEMM_AVX512 : cpu_has(GEMM_AVX2) ? GEMM_AVX2 : GEMM_BLAS;
    if (!cpu_has(kind)) return -2;
    gemm_kind = kind;
    tanh512 = kind == GEMM_AVX512;  /* kernels.c: the float32 tanh loop at the same width */
    return kind;
}

EXPORT int fr_gemm_kind(void) { return gemm_kind; }

/* 1 if this CPU and build can run the float32 GEMM `kind`, else 0 */
EXPORT int fr_gemm_supported(int kind) { return cpu_has(kind); }

/* X <- R^{-1} X for X [k, N] row-major and R upper triangular given as rt = R^T [k, k] (as
 * FN(trsm_rows) in kernels.h): block back substitution, four rows at a time, over column panels
 * of NV vectors of 16 held in registers (the panel's last vector masked where N is ragged). */
__attribute__((target("avx512f,fma"), always_inline))
static inline void trsm512_panel(int k, int N, const float *rt, float *X, int c0, const int nv, __mmask16 last) {
#define RIJ(i, j) rt[(long)(j) * k + (i)]
#define LDV(p, v) (v == nv - 1 && last != (__mmask16)0xFFFF ? _mm512_maskz_loadu_ps(last, p) : _mm512_loadu_ps(p))
#define STV(p, v, x) do { if (v == nv - 1 && last != (__mmask16)0xFFFF) _mm512_mask_storeu_ps(p, last, x); \
                          else _mm512_storeu_ps(p, x); } while (0)
    for (int i1 = k; i1 > 0; i1 -= 4) {
        const int i0 = i1 - 4 > 0 ? i1 - 4 : 0, nb = i1 - i0;
        __m512 a[4][2];
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++)
            for (int v = 0; v < nv; v++) a[r][v] = r < nb ? LDV(X + (long)(i0 + r) * N + c0 + 16 * v, v) : _mm512_setzero_ps();
        /* a top block of nb < 4 rows (i0 = 0) also updates rows nb..3 of its registers with
         * R[nb..3][j] (entries of rt that exist, j >= i1 > 3); those rows are never stored */
        for (int j = i1; j < k; j++) {
            const float *xj = X + (long)j * N + c0;
            const float *rj = rt + (long)j * k + i0;  /* R[i0..i0+3][j] */
            __m512 y[2];
            for (int v = 0; v < nv; v++) y[v] = LDV(xj + 16 * v, v);
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++) {
                const __m512 rr = _mm512_set1_ps(rj[r]);
                for (int v = 0; v < nv; v++) a[r][v] = _mm512_fnmadd_ps(rr, y[v], a[r][v]);
            }
        }
#pragma GCC unroll 4
        for (int r = 3; r >= 0; r--) {  /* the block's own triangle, bottom row first */
            if (r >= nb) continue;
            const __m512 d = _mm512_set1_ps(1 / RIJ(i0 + r, i0 + r));
            for (int v = 0; v < nv; v++) {
                a[r][v] = _mm512_mul_ps(a[r][v], d);
                STV(X + (long)(i0 + r) * N + c0 + 16 * v, v, a[r][v]);
            }
#pragma GCC unroll 4
            for (int q = 0; q < r; q++) {
                const __m512 rr = _mm512_set1_ps(RIJ(i0 + q, i0 + r));
                for (int v = 0; v < nv; v++) a[q][v] = _mm512_fnmadd_ps(rr, a[r][v], a[q][v]);
            }
        }
    }
#undef LDV
#undef STV
#undef RIJ
}

__attribute__((target("avx512f,fma")))
static void trsm512(int k, int N, const float *rt, float *X) {
    for (int c0 = 0; c0 < N; c0 += 32) {
        const int w = N - c0 < 32 ? N - c0 : 32, nv = (w + 15) / 16, rem = w - 16 * (nv - 1);
        const __mmask16 last = (__mmask16)((1u << rem) - 1);
        if (nv == 2) trsm512_panel(k, N, rt, X, c0, 2, last);
        else trsm512_panel(k, N, rt, X, c0, 1, last);
    }
}

/* float32 X <- R^{-1} X of the QR pullback: the AVX-512 one where that kind is selected;
 * returns 0 where the caller's own loop is to run */
static int trsm_s_fast(int k, int N, const float *rt, float *X) {
#if HAVE_GEMM_KERNELS
    if (gemm_kind == GEMM_AVX512 && k >= 4) { trsm512(k, N, rt, X); return 1; }  /* k >= 4: see the top block */
#endif
    (void)k; (void)N; (void)rt; (void)X;
    return 0;
}

/* C = the lower triangle of S [k, k] mirrored into the upper (C[i][j] = S[max(i,j)][min(i,j)]),
 * by one blocked transpose and a copy of each row's lower part; returns 0 where the caller's
 * own element loop is to run */
static int sym_lower_s_fast(int k, const float *S, float *C) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (gemm_kind != GEMM_BLAS) {
        transpose8(k, k, S, k, C);
        for (int i = 0; i < k; i++) memcpy(C + (long)i * k, S + (long)i * k, (size_t)(i + 1) * sizeof(float));
        return 1;
    }
#endif
    (void)k; (void)S; (void)C;
    return 0;
}

/* float32 reflector of the Householder QR: the AVX-512 one where that kind is selected;
 * returns 0 where the caller's own loop is to run */
static int reflect_s_fast(const float *vf, int a0, int m, float tj, float *x, int ncols, long ld) {
#if HAVE_GEMM_KERNELS
    if (gemm_kind == GEMM_AVX512) { reflect512(vf, a0, m, tj, x, ncols, ld); return 1; }
#endif
    (void)vf; (void)a0; (void)m; (void)tj; (void)x; (void)ncols; (void)ld;
    return 0;
}

/* Row-major float32 C = alpha op(A) op(B) + beta C through the selected kernel. */
static void mm_s_fast(char ta, char tb, int M, int N, int K, float alpha, const float *A, int lda,
                      const float *B, int ldb, float beta, float *C, int ldc) {
#if HAVE_GEMM_KERNELS
    if (gemm_kind != GEMM_BLAS && M > 0 && N > 0) {
        if (K <= 0) {  /* C = beta C (BLAS semantics: beta = 0 writes zeros) */
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++) C[(long)i * ldc + j] = beta == 0 ? 0 : beta * C[(long)i * ldc + j];
            return;
        }
        const long rsa = ta == 'N' ? lda : 1, csa = ta == 'N' ? 1 : lda;
        long ldb_eff = ldb;
        if (tb != 'N') {
            B = pack_bt(K, N, B, ldb);
            ldb_eff = N;
        }
        if (B) {
            gemm_kchunks(gemm_kind == GEMM_AVX512 ? gemm512 : gemm256, M, N, K, alpha, A, rsa, csa, B, ldb_eff,
                         beta, C, ldc);
            return;
        }
        /* out of memory for the copy: BLAS below reads B in place */
    }
#endif
    sgemm_p(&tb, &ta, &N, &M, &K, &alpha, B, &ldb, A, &lda, &beta, C, &ldc);
}

EXPORT void fr_sgemm(char ta, char tb, int M, int N, int K, float alpha, const float *A, int lda,
                     const float *B, int ldb, float beta, float *C, int ldc) {
    mm_s_fast(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* R independent products, member r at A + r sa, B + r sb, C + r sc (strides in elements) */
EXPORT void fr_sgemm_batched(int R, char ta, char tb, int M, int N, int K, float alpha, const float *A, int lda,
                             long sa, const float *B, int ldb, long sb, float beta, float *C, int ldc, long sc) {
    for (int r = 0; r < R; r++)
        mm_s_fast(ta, tb, M, N, K, alpha, A + r * sa, lda, B + r * sb, ldb, beta, C + r * sc, ldc);
}

/* `reps` calls of the same product (for the benchmark: no per-call overhead of Python) */
EXPORT void fr_sgemm_repeat(int reps, char ta, char tb, int M, int N, int K, const float *A, int lda,
                            const float *B, int ldb, float *C, int ldc) {
    for (int r = 0; r < reps; r++) mm_s_fast(ta, tb, M, N, K, 1, A, lda, B, ldb, 0, C, ldc);
}

/* FMA throughput kernel of the widest kind this CPU has; returns the flops done (0: none) */
EXPORT double fr_fma_peak(long iters, float *sink) {
#if HAVE_GEMM_KERNELS
    if (cpu_has(GEMM_AVX512)) { *sink = fma_peak512(iters); return (double)iters * 12 * 16 * 2; }
    if (cpu_has(GEMM_AVX2)) { *sink = fma_peak256(iters); return (double)iters * 12 * 8 * 2; }
#endif
    (void)iters; (void)sink;
    return 0;
}
