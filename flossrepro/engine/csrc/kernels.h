/* Native loops of flossrepro, written once for REAL = float and REAL = double.
 *
 * kernels.c includes this file twice, with
 *   REAL    the scalar type,
 *   FN(x)   the function name for that type (x_s, x_d),
 *   GEMM / TRSM / TANH  the BLAS and vector-math entry points for that type.
 *
 * Every matrix is row-major unless said otherwise. The BLAS is the Fortran interface
 * (column-major) of the BLAS that PyTorch itself links; a row-major C = op(A) op(B) is the
 * column-major C^T = op(B)^T op(A)^T, see mm() below. Members are independent: each
 * function loops over them, and one member's buffers are contiguous ("member-major").
 */

/* row-major C[M, N] = alpha op(A) op(B) + beta C; ta/tb = 'N' or 'T' (op of the row-major operand) */
static void FN(mm)(char ta, char tb, int M, int N, int K, REAL alpha, const REAL *A, int lda,
                   const REAL *B, int ldb, REAL beta, REAL *C, int ldc) {
#ifdef FAST_MM
    FAST_MM(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);  /* gemm.h: own kernels or BLAS */
#else
    GEMM(&tb, &ta, &N, &M, &K, &alpha, B, &ldb, A, &lda, &beta, C, &ldc);
#endif
}

static void FN(phi)(int nl, int n, const REAL *h, REAL *out) {
    if (nl == NL_TANH) {
        TANH(n, h, out);
    } else if (nl == NL_RELU) {
        for (int i = 0; i < n; i++) out[i] = h[i] < 0 ? 0 : h[i];  /* NaN stays NaN, as torch.relu */
    } else {
        for (int i = 0; i < n; i++) out[i] = h[i];
    }
}

/* phi'(h) from p = phi(h) */
static void FN(dphi)(int nl, int n, const REAL *p, REAL *out) {
    if (nl == NL_TANH) { for (int i = 0; i < n; i++) out[i] = 1 - p[i] * p[i]; }
    else if (nl == NL_RELU) { for (int i = 0; i < n; i++) out[i] = p[i] > 0 ? 1 : 0; }
    else { for (int i = 0; i < n; i++) out[i] = 1; }
}

/* State trajectory P[t] = phi(H[t-1]), H[t] = leak H[t-1] + P[t] W^T + drive[t], H[-1] = h0
 * (leak = 0: the vanilla network; the rate network passes leak = 1 - dt and dt W for W).
 * h0 [R,B,N]; Wt = W^T [R,N,N]; drive [R,T,B,N]; H, P [R,T,B,N] out (H may be drive). */
EXPORT void FN(run_states)(int R, int T, int B, int N, int nl, double leak, const REAL *h0, const REAL *Wt,
                           const REAL *drive, REAL *H, REAL *P) {
    const REAL a = (REAL)leak;
    const long BN = (long)B * N;
    for (int r = 0; r < R; r++) {
        const REAL *h = h0 + r * BN, *wt = Wt + (long)r * N * N, *Dr = drive + (long)r * T * BN;
        REAL *Hr = H + (long)r * T * BN, *Pr = P + (long)r * T * BN;
        for (int t = 0; t < T; t++) {
            FN(phi)(nl, (int)BN, h, Pr + t * BN);
            if (Hr != Dr) memcpy(Hr + t * BN, Dr + t * BN, BN * sizeof(REAL));
            if (a != 0) {
                REAL *ht = Hr + t * BN;
#pragma omp simd
                for (long i = 0; i < BN; i++) ht[i] += a * h[i];
            }
            FN(mm)('N', 'N', B, N, N, 1, Pr + t * BN, N, wt, N, 1, Hr + t * BN, N);
            h = Hr + t * BN;
        }
    }
}

/* Backward of run_states: G[T-1] = dH[T-1], G[t-1] = dH[t-1] + leak G[t] + (G[t] W) * phi'(H[t-1]),
 * dh0 = leak G[0] + (G[0] W) * phi'(h0), with phi'(H[t-1]) computed from P[t].
 * W [R,N,N]; P [R,T,B,N]; dH [R,T,B,N]; G [R,T,B,N] out (may be dH); dh0 [R,B,N] out;
 * work: 2*B*N. */
EXPORT void FN(bptt)(int R, int T, int B, int N, int nl, double leak, const REAL *W, const REAL *P, const REAL *dH,
                     REAL *G, REAL *dh0, REAL *work) {
    const REAL a = (REAL)leak;
    const long BN = (long)B * N;
    REAL *tmp = work, *d = work + BN;
    for (int r = 0; r < R; r++) {
        const REAL *w = W + (long)r * N * N, *Pr = P + (long)r * T * BN, *dHr = dH + (long)r * T * BN;
        REAL *Gr = G + (long)r * T * BN;
        if (Gr != dHr) memcpy(Gr + (T - 1) * BN, dHr + (T - 1) * BN, BN * sizeof(REAL));
        for (int t = T - 1; t >= 0; t--) {
            FN(mm)('N', 'N', B, N, N, 1, Gr + t * BN, N, w, N, 0, tmp, N);
            FN(dphi)(nl, (int)BN, Pr + t * BN, d);
            const REAL *g = Gr + t * BN;
            if (t > 0) {
                REAL *out = Gr + (t - 1) * BN;
                const REAL *in = dHr + (t - 1) * BN;
#pragma omp simd
                for (long i = 0; i < BN; i++) out[i] = in[i] + a * g[i] + tmp[i] * d[i];
            } else {
                REAL *out = dh0 + r * BN;
#pragma omp simd
                for (long i = 0; i < BN; i++) out[i] = a * g[i] + tmp[i] * d[i];
            }
        }
    }
}

/* The whole training network, input and readout included (vanilla RNN, small S and O):
 *   P[t] = phi(H[t-1]),  H[t] = P[t] W^T + x[t] Vg^T + b,  y[t] = H[t] w_r^T + c,  H[-1] = h0.
 * h0 [R,B,N]; Wt = W^T [R,N,N]; VgT = (gain V)^T [R,S,N]; b [R,N]; wrT = w_r^T [R,N,O];
 * c [R,O]; x [R,T,B,S]; H, P [R,T,B,N] out; y [R,T,B,O] out. */
EXPORT void FN(rnn_io_fwd)(int R, int T, int B, int N, int S, int O, int nl, const REAL *h0,
                           const REAL *Wt, const REAL *VgT, const REAL *b, const REAL *wrT,
                           const REAL *c, const REAL *x, REAL *H, REAL *P, REAL *y) {
    const long BN = (long)B * N;
    for (int r = 0; r < R; r++) {
        const REAL *h = h0 + r * BN, *wt = Wt + (long)r * N * N, *vt = VgT + (long)r * S * N;
        const REAL *br = b + (long)r * N, *wr = wrT + (long)r * N * O, *cr = c + (long)r * O;
        const REAL *xr = x + (long)r * T * B * S;
        REAL *Hr = H + (long)r * T * BN, *Pr = P + (long)r * T * BN, *yr = y + (long)r * T * B * O;
        for (int t = 0; t < T; t++) {
            REAL *ht = Hr + t * BN;
            FN(phi)(nl, (int)BN, h, Pr + t * BN);
            for (int bb = 0; bb < B; bb++) {
                REAL *hb = ht + (long)bb * N;
                const REAL *xb = xr + ((long)t * B + bb) * S;
#pragma omp simd
                for (int i = 0; i < N; i++) hb[i] = br[i];
                for (int s = 0; s < S; s++) {
                    const REAL xs = xb[s], *v = vt + (long)s * N;
#pragma omp simd
                    for (int i = 0; i < N; i++) hb[i] += xs * v[i];
                }
            }
            FN(mm)('N', 'N', B, N, N, 1, Pr + t * BN, N, wt, N, 1, ht, N);
            for (int bb = 0; bb < B; bb++) {
                const REAL *hb = ht + (long)bb * N;
                REAL *yb = yr + ((long)t * B + bb) * O;
                for (int o = 0; o < O; o++) {
                    REAL acc = 0;
#pragma omp simd reduction(+:acc)
                    for (int i = 0; i < N; i++) acc += hb[i] * wr[(long)i * O + o];
                    yb[o] = cr[o] + acc;
                }
            }
            h = ht;
        }
    }
}

/* Backward of rnn_io_fwd to the states: with dH[t] = dy[t] w_r,
 *   G[T-1] = dH[T-1],  G[t-1] = dH[t-1] + (G[t] W) * phi'(H[t-1]),  dh0 = (G[0] W) * phi'(h0).
 * W [R,N,N]; wr [R,O,N]; P [R,T,B,N]; dy [R,T,B,O]; G [R,T,B,N] out; dh0 [R,B,N] out;
 * work: 2*B*N. (dW, dV, db, dw_r, dc are sums over G, P, x, H, dy: one bmm each, in PyTorch.) */
EXPORT void FN(rnn_io_bwd)(int R, int T, int B, int N, int O, int nl, const REAL *W, const REAL *wr,
                           const REAL *P, const REAL *dy, REAL *G, REAL *dh0, REAL *work) {
    const long BN = (long)B * N;
    REAL *tmp = work, *d = work + BN;
    for (int r = 0; r < R; r++) {
        const REAL *w = W + (long)r * N * N, *Pr = P + (long)r * T * BN, *wrr = wr + (long)r * O * N;
        const REAL *dyr = dy + (long)r * T * B * O;
        REAL *Gr = G + (long)r * T * BN;
        /* G[T-1] = dy[T-1] w_r */
        for (int bb = 0; bb < B; bb++) {
            REAL *gb = Gr + (long)(T - 1) * BN + (long)bb * N;
            const REAL *dyb = dyr + ((long)(T - 1) * B + bb) * O;
            for (int i = 0; i < N; i++) gb[i] = 0;
            for (int o = 0; o < O; o++) {
                const REAL g = dyb[o], *wo = wrr + (long)o * N;
#pragma omp simd
                for (int i = 0; i < N; i++) gb[i] += g * wo[i];
            }
        }
        for (int t = T - 1; t >= 0; t--) {
            FN(mm)('N', 'N', B, N, N, 1, Gr + t * BN, N, w, N, 0, tmp, N);
            FN(dphi)(nl, (int)BN, Pr + t * BN, d);
            REAL *out = t > 0 ? Gr + (t - 1) * BN : dh0 + r * BN;
#pragma omp simd
            for (long i = 0; i < BN; i++) out[i] = tmp[i] * d[i];
            if (t > 0) {
                for (int bb = 0; bb < B; bb++) {
                    REAL *gb = out + (long)bb * N;
                    const REAL *dyb = dyr + ((long)(t - 1) * B + bb) * O;
                    for (int o = 0; o < O; o++) {
                        const REAL g = dyb[o], *wo = wrr + (long)o * N;
#pragma omp simd
                        for (int i = 0; i < N; i++) gb[i] += g * wo[i];
                    }
                }
            }
        }
    }
}

/* 32-byte vectors of REAL (GCC vector extensions; AVX registers where built with -mavx2) */
typedef REAL FN(vec) __attribute__((vector_size(32)));
#define VL ((int)(32 / sizeof(REAL)))
static inline FN(vec) FN(vload)(const REAL *p) { FN(vec) v; memcpy(&v, p, sizeof v); return v; }
static inline void FN(vstore)(REAL *p, FN(vec) v) { memcpy(p, &v, sizeof v); }

/* X <- R^{-1} X for X [k, N] row-major and R upper triangular given as rt = R^T [k, k]
 * (row-major, lower triangle read): block back substitution, four rows at a time over
 * column panels of two vectors held in registers (BLAS trsm is slow for these sizes). */
static void FN(trsm_rows)(int k, int N, const REAL *rt, REAL *X) {
#ifdef FAST_TRSM
    if (FAST_TRSM(k, N, rt, X)) return;  /* gemm.h: AVX-512 */
#endif
    typedef FN(vec) V;
#define RIJ(i, j) rt[(long)(j) * k + (i)]
    const int PW = 2 * VL;
    int c0 = 0;
    for (; c0 + PW <= N; c0 += PW) {
        for (int i1 = k; i1 > 0; i1 -= 4) {
            const int i0 = i1 - 4 > 0 ? i1 - 4 : 0, nb = i1 - i0;
            V a00 = {0}, a01 = {0}, a10 = {0}, a11 = {0}, a20 = {0}, a21 = {0}, a30 = {0}, a31 = {0};
            REAL *x0 = X + (long)i0 * N + c0;
            a00 = FN(vload)(x0); a01 = FN(vload)(x0 + VL);
            if (nb > 1) { a10 = FN(vload)(x0 + N); a11 = FN(vload)(x0 + N + VL); }
            if (nb > 2) { a20 = FN(vload)(x0 + 2 * N); a21 = FN(vload)(x0 + 2 * N + VL); }
            if (nb > 3) { a30 = FN(vload)(x0 + 3 * N); a31 = FN(vload)(x0 + 3 * N + VL); }
            if (nb == 4) {
                for (int j = i1; j < k; j++) {
                    const REAL *xj = X + (long)j * N + c0;
                    const V y0 = FN(vload)(xj), y1 = FN(vload)(xj + VL);
                    const REAL *rj = rt + (long)j * k + i0;  /* R[i0..i0+3][j] */
                    a00 -= rj[0] * y0; a01 -= rj[0] * y1;
                    a10 -= rj[1] * y0; a11 -= rj[1] * y1;
                    a20 -= rj[2] * y0; a21 -= rj[2] * y1;
                    a30 -= rj[3] * y0; a31 -= rj[3] * y1;
                }
            } else {
                for (int j = i1; j < k; j++) {
                    const REAL *xj = X + (long)j * N + c0;
                    const V y0 = FN(vload)(xj), y1 = FN(vload)(xj + VL);
                    const REAL *rj = rt + (long)j * k + i0;
                    a00 -= rj[0] * y0; a01 -= rj[0] * y1;
                    if (nb > 1) { a10 -= rj[1] * y0; a11 -= rj[1] * y1; }
                    if (nb > 2) { a20 -= rj[2] * y0; a21 -= rj[2] * y1; }
                }
            }
            /* the block's own triangle, bottom row first */
            if (nb > 3) {
                const REAL d = 1 / RIJ(i0 + 3, i0 + 3);
                a30 *= d; a31 *= d;
                FN(vstore)(x0 + 3 * N, a30); FN(vstore)(x0 + 3 * N + VL, a31);
                const REAL r0 = RIJ(i0, i0 + 3), r1 = RIJ(i0 + 1, i0 + 3), r2 = RIJ(i0 + 2, i0 + 3);
                a00 -= r0 * a30; a01 -= r0 * a31; a10 -= r1 * a30; a11 -= r1 * a31; a20 -= r2 * a30; a21 -= r2 * a31;
            }
            if (nb > 2) {
                const REAL d = 1 / RIJ(i0 + 2, i0 + 2);
                a20 *= d; a21 *= d;
                FN(vstore)(x0 + 2 * N, a20); FN(vstore)(x0 + 2 * N + VL, a21);
                const REAL r0 = RIJ(i0, i0 + 2), r1 = RIJ(i0 + 1, i0 + 2);
                a00 -= r0 * a20; a01 -= r0 * a21; a10 -= r1 * a20; a11 -= r1 * a21;
            }
            if (nb > 1) {
                const REAL d = 1 / RIJ(i0 + 1, i0 + 1);
                a10 *= d; a11 *= d;
                FN(vstore)(x0 + N, a10); FN(vstore)(x0 + N + VL, a11);
                const REAL r0 = RIJ(i0, i0 + 1);
                a00 -= r0 * a10; a01 -= r0 * a11;
            }
            const REAL d = 1 / RIJ(i0, i0);
            a00 *= d; a01 *= d;
            FN(vstore)(x0, a00); FN(vstore)(x0 + VL, a01);
        }
    }
    if (c0 < N) {  /* the last columns, plain back substitution */
        const int w = N - c0;
        for (int i = k - 1; i >= 0; i--) {
            REAL *xi = X + (long)i * N + c0;
            for (int j = i + 1; j < k; j++) {
                const REAL rij = RIJ(i, j);
                const REAL *xj = X + (long)j * N + c0;
                for (int l = 0; l < w; l++) xi[l] -= rij * xj[l];
            }
            const REAL rinv = 1 / RIJ(i, i);
            for (int l = 0; l < w; l++) xi[l] *= rinv;
        }
    }
#undef RIJ
}
#undef VL

/* Apply the reflector I - tau v v^T to ncols columns x (stride ld) of length m. vf is v in
 * full (vf[i] = 0 for i < j, vf[j] = 1): the loops run over rows a0..m-1 from a0 = j rounded
 * down to a multiple of 8, so that they are whole aligned vectors (rows below j see a zero
 * coefficient and are unchanged); four columns per pass over vf, then one at a time. */
static void FN(reflect)(const REAL *vf, int a0, int m, REAL tj, REAL *x, int ncols, long ld) {
#ifdef FAST_REFLECT
    if (FAST_REFLECT(vf, a0, m, tj, x, ncols, ld)) return;  /* gemm.h: AVX-512 */
#endif
    int c = 0;
    for (; c + 7 < ncols; c += 8) {
        REAL *x0 = x + c * ld, *x1 = x0 + ld, *x2 = x1 + ld, *x3 = x2 + ld;
        REAL *x4 = x3 + ld, *x5 = x4 + ld, *x6 = x5 + ld, *x7 = x6 + ld;
        REAL w0 = 0, w1 = 0, w2 = 0, w3 = 0, w4 = 0, w5 = 0, w6 = 0, w7 = 0;
#pragma omp simd reduction(+:w0, w1, w2, w3, w4, w5, w6, w7)
        for (int i = a0; i < m; i++) {
            const REAL vi = vf[i];
            w0 += vi * x0[i]; w1 += vi * x1[i]; w2 += vi * x2[i]; w3 += vi * x3[i];
            w4 += vi * x4[i]; w5 += vi * x5[i]; w6 += vi * x6[i]; w7 += vi * x7[i];
        }
        w0 *= tj; w1 *= tj; w2 *= tj; w3 *= tj; w4 *= tj; w5 *= tj; w6 *= tj; w7 *= tj;
#pragma omp simd
        for (int i = a0; i < m; i++) {
            const REAL vi = vf[i];
            x0[i] -= w0 * vi; x1[i] -= w1 * vi; x2[i] -= w2 * vi; x3[i] -= w3 * vi;
            x4[i] -= w4 * vi; x5[i] -= w5 * vi; x6[i] -= w6 * vi; x7[i] -= w7 * vi;
        }
    }
    for (; c + 3 < ncols; c += 4) {
        REAL *x0 = x + c * ld, *x1 = x0 + ld, *x2 = x1 + ld, *x3 = x2 + ld;
        REAL w0 = 0, w1 = 0, w2 = 0, w3 = 0;
#pragma omp simd reduction(+:w0, w1, w2, w3)
        for (int i = a0; i < m; i++) {
            const REAL vi = vf[i];
            w0 += vi * x0[i]; w1 += vi * x1[i]; w2 += vi * x2[i]; w3 += vi * x3[i];
        }
        w0 *= tj; w1 *= tj; w2 *= tj; w3 *= tj;
#pragma omp simd
        for (int i = a0; i < m; i++) {
            const REAL vi = vf[i];
            x0[i] -= w0 * vi; x1[i] -= w1 * vi; x2[i] -= w2 * vi; x3[i] -= w3 * vi;
        }
    }
    for (; c < ncols; c++) {
        REAL *x0 = x + c * ld;
        REAL w0 = 0;
#pragma omp simd reduction(+:w0)
        for (int i = a0; i < m; i++) w0 += vf[i] * x0[i];
        w0 *= tj;
#pragma omp simd
        for (int i = a0; i < m; i++) x0[i] -= w0 * vf[i];
    }
}

/* vf = v of reflector j in full, from column col (rows > j hold v): returns a0 = j rounded
 * down to 8 (rows from j rounded down to 16 are written, for 16-wide vectors) */
static int FN(full_v)(const REAL *col, int j, int m, REAL *vf) {
    const int a0 = j & ~7;
    for (int i = j & ~15; i < j; i++) vf[i] = 0;
    vf[j] = 1;
    for (int i = j + 1; i < m; i++) vf[i] = col[i];
    return a0;
}

/* Householder QR of an m x n matrix (n <= m) stored column by column: column j is the
 * contiguous row a[j*m .. j*m+m-1] of the row-major [n, m] buffer a (i.e. a = A^T).
 * LAPACK's conventions (geqr2 + org2r: the same Q and R as torch.linalg.qr). On exit a holds
 * Q^T (thin Q, column j of Q in row j) and rt [n, n] holds R^T in its lower triangle
 * (the strict upper triangle is zeroed). work: n + m scratch. */
static void FN(hqr)(int m, int n, REAL *a, REAL *rt, REAL *work) {
    REAL *tau = work, *vf = work + n;
    for (int j = 0; j < n; j++) {
        REAL *v = a + (long)j * m;
        REAL alpha = v[j], xn = 0;
#pragma omp simd reduction(+:xn)
        for (int i = j + 1; i < m; i++) xn += v[i] * v[i];
        if (xn == 0) { tau[j] = 0; continue; }
        REAL beta = SQRT(alpha * alpha + xn);
        if (alpha >= 0) beta = -beta;
        tau[j] = (beta - alpha) / beta;
        REAL sc = 1 / (alpha - beta);
#pragma omp simd
        for (int i = j + 1; i < m; i++) v[i] *= sc;
        v[j] = beta;
        if (j + 1 < n) {
            const int a0 = FN(full_v)(v, j, m, vf);
            FN(reflect)(vf, a0, m, tau[j], v + m, n - j - 1, m);
        }
    }
    for (int c = 0; c < n; c++) {
        const REAL *x = a + (long)c * m;
        REAL *row = rt + (long)c * n;
        for (int j = 0; j <= c; j++) row[j] = x[j];
        for (int j = c + 1; j < n; j++) row[j] = 0;
    }
    /* Q = H_0 ... H_{n-1} [I; 0], accumulated backwards in place (org2r) */
    for (int j = n - 1; j >= 0; j--) {
        REAL *q = a + (long)j * m;
        const REAL tj = tau[j];
        if (tj != 0 && j + 1 < n) {
            const int a0 = FN(full_v)(q, j, m, vf);
            FN(reflect)(vf, a0, m, tj, q + m, n - j - 1, m);
        }
#pragma omp simd
        for (int i = j + 1; i < m; i++) q[i] *= -tj;
        q[j] = 1 - tj;
        for (int i = 0; i < j; i++) q[i] = 0;
    }
}

EXPORT void FN(qr)(int batch, int m, int n, REAL *a, REAL *rt, REAL *work) {
    for (int b = 0; b < batch; b++) FN(hqr)(m, n, a + (long)b * n * m, rt + (long)b * n * n, work);
}

/* Y^T = Q_in^T diag(d): the Jacobian's diagonal factor applied to the k x N tangent system */
static void FN(scale_cols)(int k, int N, const REAL *qT, const REAL *d, REAL *yT) {
    for (int j = 0; j < k; j++) {
#pragma omp simd
        for (int i = 0; i < N; i++) yT[(long)j * N + i] = qT[(long)j * N + i] * d[i];
    }
}

/* Tangent (Q) loop of the Lyapunov spectrum, forward, for s = 0..Tq-1:
 *   Y^T = Q_in^T diag(phi'),  A^T = leak Q_in^T + Y^T W^T,  and on QR steps (flags[s]) A = Q R
 * (leak = 0: the vanilla network; the rate network passes 1 - dt and dt W).
 * Wt = W^T [R,N,N]; Dq [R,Tq,N] phi' of each tangent step; Q0T [R,k,N];
 * QT [R,Tq,k,N] out (Q^T; A^T on steps without QR); RT [R,Tq,k,k] out (R^T, lower);
 * work: k*N + k + N. Y is not stored: the backward recomputes it from QT. */
EXPORT void FN(tangent_fwd)(int R, int Tq, int N, int k, double leak, const REAL *Wt, const REAL *Dq,
                            const REAL *Q0T, const unsigned char *flags, REAL *QT, REAL *RT,
                            REAL *work) {
    const REAL a = (REAL)leak;
    const long kN = (long)k * N, kk = (long)k * k;
    REAL *yT = work, *qr_work = work + kN;
    for (int r = 0; r < R; r++) {
        const REAL *wt = Wt + (long)r * N * N, *qT = Q0T + r * kN;
        for (int s = 0; s < Tq; s++) {
            const long o = (long)r * Tq + s;
            REAL *aT = QT + o * kN;
            FN(scale_cols)(k, N, qT, Dq + o * N, yT);
            if (a != 0) {
#pragma omp simd
                for (long i = 0; i < kN; i++) aT[i] = a * qT[i];
            }
            FN(mm)('N', 'N', k, N, N, 1, yT, N, wt, N, a != 0 ? 1 : 0, aT, N);
            if (flags[s]) FN(hqr)(N, k, aT, RT + o * kk, qr_work);
            qT = aT;
        }
    }
}

/* Tangent loop, backward (see flossrepro.lyapunov._RNNLyapunov), per step in reverse:
 *   QR steps: Abar^T = R^{-1} (Qbar^T - C' Q^T), C' the symmetric matrix made of the lower
 *             triangle of S = Qbar^T Q - diag(c) (c only for s >= transient_q);
 *   other steps: Abar^T = Qbar^T;
 *   Ybar^T = Abar^T W, Qbar^T <- leak Abar^T + Ybar^T diag(phi').
 * Y^T[s] = Q_in^T[s] diag(phi'[s]) is recomputed (Q_in = QT[s-1], or Q0 at s = 0);
 * dW = sum_s Abar[s] Y[s]^T, one gemm per TANGENT_CHUNK steps; when yq != NULL,
 * yq[s] = sum_j Ybar^T[s][j] * Y^T[s][j] (the tanh second-order term).
 * W [R,N,N]; Dq [R,Tq,N]; Q0T [R,k,N]; QT [R,Tq,k,N]; RT [R,Tq,k,k]; c [R,k];
 * QbarT [R,k,N] in: gradient of the last Q (zeros), out: gradient of Q0^T;
 * dW [R,N,N] out; yq [R,Tq,N] out or NULL; work: 2*TANGENT_CHUNK*k*N + k*N + 2*k*k. */
EXPORT void FN(tangent_bwd)(int R, int Tq, int N, int k, int transient_q, double leak, const REAL *W,
                            const REAL *Dq, const REAL *Q0T, const REAL *QT, const REAL *RT,
                            const unsigned char *flags, const REAL *c, REAL *QbarT, REAL *dW,
                            REAL *yq, REAL *work) {
    const long kN = (long)k * N, kk = (long)k * k;
    const REAL a = (REAL)leak;
    REAL *AbarC = work, *YC = work + (long)TANGENT_CHUNK * kN, *ybT = YC + (long)TANGENT_CHUNK * kN;
    REAL *S = ybT + kN, *C = S + kk;
    for (int r = 0; r < R; r++) {
        const REAL *w = W + (long)r * N * N, *cr = c + (long)r * k;
        REAL *qbT = QbarT + r * kN, *dWr = dW + (long)r * N * N;
        int fill = 0, flushed = 0;
        for (int s = Tq - 1; s >= 0; s--) {
            const long o = (long)r * Tq + s;
            const REAL *qT = QT + o * kN, *d = Dq + o * N;
            const REAL *qinT = s > 0 ? QT + (o - 1) * kN : Q0T + r * kN;
            REAL *abT = AbarC + (long)fill * kN, *yT = YC + (long)fill * kN;
            FN(scale_cols)(k, N, qinT, d, yT);
            if (flags[s]) {
                FN(mm)('N', 'T', k, k, N, 1, qbT, N, qT, N, 0, S, k);
                if (s >= transient_q) { for (int i = 0; i < k; i++) S[(long)i * k + i] -= cr[i]; }
#ifdef FAST_SYM
                if (!FAST_SYM(k, S, C))
#endif
                for (int i = 0; i < k; i++)
                    for (int j = 0; j < k; j++)
                        C[(long)i * k + j] = i >= j ? S[(long)i * k + j] : S[(long)j * k + i];
                memcpy(abT, qbT, kN * sizeof(REAL));
                FN(mm)('N', 'N', k, N, k, -1, C, k, qT, N, 1, abT, N);
                FN(trsm_rows)(k, N, RT + o * kk, abT);
            } else {
                memcpy(abT, qbT, kN * sizeof(REAL));
            }
            FN(mm)('N', 'N', k, N, N, 1, abT, N, w, N, 0, ybT, N);
            if (yq) {
                REAL *out = yq + o * N;
                for (int i = 0; i < N; i++) out[i] = 0;
                for (int j = 0; j < k; j++) {
#pragma omp simd
                    for (int i = 0; i < N; i++) out[i] += ybT[(long)j * N + i] * yT[(long)j * N + i];
                }
            }
            FN(scale_cols)(k, N, ybT, d, qbT);
            if (a != 0) {
#pragma omp simd
                for (long i = 0; i < kN; i++) qbT[i] += a * abT[i];
            }
            /* dW += sum over the chunk of Abar[s] Y[s]^T = AbarC^T YC over its fill*k rows */
            if (++fill == TANGENT_CHUNK || s == 0) {
                FN(mm)('T', 'N', N, N, fill * k, 1, AbarC, N, YC, N, flushed ? 1 : 0, dWr, N);
                fill = 0;
                flushed = 1;
            }
        }
        if (!flushed) { for (long i = 0; i < (long)N * N; i++) dWr[i] = 0; }
    }
}
