/*
 * The fused E-step of distgmm as one compiled loop: distgmm.numerics._estep.
 *
 * Same arithmetic as suffstats.chunk_stats's numpy tiles (see features.py for the
 * feature matrix F and the natural parameters W), but over sub-tiles of a few hundred
 * rows that stay in L2 cache, with the two small-K products written as register-blocked
 * loops (no packing), and a vectorised exp. Per sub-tile of t rows:
 *
 *     F = [x - c; 1; quadratic rows]          (nf x t, feature-major)
 *     L = W @ F                               (K x t)        score
 *     L -= |P^T x|^2 / 2                      (tied only)
 *     L = w * softmax(L) over components      log-sum-exp, floored at exp(-700)
 *     acc += L @ F^T                          (K x nf)       moments
 *     xx += (w x) @ x^T                       (tied only)
 *
 * The loops are written once with GCC/Clang vector extensions (4 doubles); the compiler
 * lowers them to what the target has. setup.py builds this file twice on x86-64: as
 * _estep for any CPU, and with -mavx2 -mfma as _estep_avx2, which suffstats.py imports
 * when _estep.cpu_has_avx2_fma() says the CPU runs it. (A run-time dispatch inside one
 * module was 10-15 % slower: GCC's per-function target attribute keeps generic code
 * generation for the broadcasts.) Results do not depend on the chunking into sub-tiles
 * beyond floating-point summation order.
 *
 * Python API: estep(X, w, center, W, tied_factor, covariance_type, tile, acc, xx)
 *   -> (loglik, wsum, bad_row); n_feature_rows(covariance_type, d); COVARIANCE_TYPES
 * (the type names in code order); TARGET ("avx2-fma" or "generic"); cpu_has_avx2_fma();
 * estep_rows(X, w, offsets, center, W, tied_factor, covariance_type, tile, rows) ->
 * (bad_leaf, bad_row): estep over each leaf X[offsets[i] : offsets[i + 1]] (offsets from
 * 0 to n) into row i of rows, [n_rows, wsum, loglik, acc, xx (tied only)]
 * (suffstats.chunk_stats_row's row); bad_row counts from the start of leaf bad_leaf.
 * X: float64 or float32, C-contiguous (n, d); w: float64 (n,) or None; center (d,);
 * W (K, nf); tied_factor (d, d) or None; acc (K, nf) and xx (d, d) or None are
 * float64 outputs (overwritten). bad_row is -1, or the first row of a sub-tile whose
 * log-likelihood is not finite.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef double v4d __attribute__((vector_size(32)));
typedef int64_t v4i __attribute__((vector_size(32)));

#define AI static inline __attribute__((always_inline))

/* every vector access is 32-byte aligned: the workspace is 64-byte aligned and every
 * row and offset in it is a multiple of 4 doubles */
AI v4d ld(const double *p) { return *(const v4d *)p; }
AI void st(double *p, v4d v) { *(v4d *)p = v; }
AI v4d bc(double x) { return (v4d){x, x, x, x}; }
AI v4d sel(v4i m, v4d a, v4d b) { return (v4d)((m & (v4i)a) | (~m & (v4i)b)); }

#define EXP_FLOOR (-700.0)

/* exp(x) for x in [EXP_FLOOR, 0]: x = n ln2 + r, |r| <= ln2/2, degree-13 Taylor
 * polynomial in r (truncation error below 1e-17), times 2^n built in the exponent bits.
 * A NaN in gives a NaN or garbage out; callers detect it through the log-likelihood. */
AI v4d vexp(v4d x) {
    const v4d shifter = bc(0x1.8p52);
    v4d t = x * bc(0x1.71547652b82fep0) + shifter; /* round(x / ln2) in the low bits */
    v4d n = t - shifter;
    v4d r = x - n * bc(0x1.62e42fefa3800p-1); /* ln2, Cody-Waite high part */
    r = r - n * bc(0x1.ef35793c76730p-45);     /* and low part */
    v4d p = bc(1.0 / 6227020800.0);
    p = p * r + bc(1.0 / 479001600.0);
    p = p * r + bc(1.0 / 39916800.0);
    p = p * r + bc(1.0 / 3628800.0);
    p = p * r + bc(1.0 / 362880.0);
    p = p * r + bc(1.0 / 40320.0);
    p = p * r + bc(1.0 / 5040.0);
    p = p * r + bc(1.0 / 720.0);
    p = p * r + bc(1.0 / 120.0);
    p = p * r + bc(1.0 / 24.0);
    p = p * r + bc(1.0 / 6.0);
    p = p * r + bc(0.5);
    p = p * r + bc(1.0);
    p = p * r + bc(1.0);
    v4i e = ((v4i)t - (v4i)shifter + 1023) << 52;
    return p * (v4d)e;
}

/* Register-blocked products of a K x t block of scores (or responsibilities) L with a
 * feature-major tile: ``cb`` rows of W or L at a time (the compile-time constants of the
 * switches below), 10-12 vector accumulators so both FMA pipes stay busy. */

/* L[c, j] = sum_{f < nrows} W[c * ldw + f] F[f, j], j < t (t a multiple of 8), cb <= 6 */
AI void score_rows(const double *W, long ldw, long nrows, const double *F, long ldf,
                   long t, double *L, long ldl, int cb) {
    for (long j = 0; j < t; j += 8) {
        v4d a0[6], a1[6];
        for (int c = 0; c < cb; c++) a0[c] = a1[c] = bc(0.0);
        const double *fp = F + j;
        for (long f = 0; f < nrows; f++, fp += ldf) {
            v4d x0 = ld(fp), x1 = ld(fp + 4);
            for (int c = 0; c < cb; c++) {
                v4d wv = bc(W[c * ldw + f]);
                a0[c] += wv * x0;
                a1[c] += wv * x1;
            }
        }
        for (int c = 0; c < cb; c++) {
            st(L + c * ldl + j, a0[c]);
            st(L + c * ldl + j + 4, a1[c]);
        }
    }
}

/* L[c, j] += sum over the pairs p = (a, b), a <= b < d in row-major order, of
 * W[c * ldw + p] x_a[j] x_b[j]: the quadratic rows of F made in registers, cb <= 5 */
AI void score_pairs_rows(const double *W, long ldw, long d, const double *X, long ldx,
                         long t, double *L, long ldl, int cb) {
    for (long j = 0; j < t; j += 8) {
        v4d a0[5], a1[5];
        for (int c = 0; c < cb; c++) {
            a0[c] = ld(L + c * ldl + j);
            a1[c] = ld(L + c * ldl + j + 4);
        }
        long p = 0;
        for (long a = 0; a < d; a++) {
            v4d xa0 = ld(X + a * ldx + j), xa1 = ld(X + a * ldx + j + 4);
            for (long b = a; b < d; b++, p++) {
                v4d f0 = xa0 * ld(X + b * ldx + j), f1 = xa1 * ld(X + b * ldx + j + 4);
                for (int c = 0; c < cb; c++) {
                    v4d wv = bc(W[c * ldw + p]);
                    a0[c] += wv * f0;
                    a1[c] += wv * f1;
                }
            }
        }
        for (int c = 0; c < cb; c++) {
            st(L + c * ldl + j, a0[c]);
            st(L + c * ldl + j + 4, a1[c]);
        }
    }
}

/* L = W[:, :nrows] @ F[:nrows], W (k, ldw) row-major */
AI void score(const double *W, long k, long ldw, long nrows, const double *F, long ldf,
              long t, double *L, long ldl) {
#define SCORE(cb) score_rows(W + c * ldw, ldw, nrows, F, ldf, t, L + c * ldl, ldl, cb)
    long c = 0;
    for (; c + 6 <= k; c += 6) SCORE(6);
    switch (k - c) {
    case 5: SCORE(5); break;
    case 4: SCORE(4); break;
    case 3: SCORE(3); break;
    case 2: SCORE(2); break;
    case 1: SCORE(1); break;
    }
#undef SCORE
}

/* L += the quadratic part of the full-covariance scores; Wq = W + d + 1 (k, ldw) */
AI void score_pairs(const double *Wq, long k, long ldw, long d, const double *X, long ldx,
                    long t, double *L, long ldl) {
#define PAIRS(cb) score_pairs_rows(Wq + c * ldw, ldw, d, X, ldx, t, L + c * ldl, ldl, cb)
    long c = 0;
    for (; c + 5 <= k; c += 5) PAIRS(5);
    switch (k - c) {
    case 4: PAIRS(4); break;
    case 3: PAIRS(3); break;
    case 2: PAIRS(2); break;
    case 1: PAIRS(1); break;
    }
#undef PAIRS
}

/* acc4[(c * lda + f + g) * 4 + lane] += sum_{j = lane mod 4} L[c, j] F[f + g, j] for
 * c < cb <= 4, g < fb <= 3 */
AI void moments_block(const double *L, long ldl, const double *F, long ldf, long t,
                      double *acc4, long lda, int cb, long f, int fb) {
    v4d a[4][3];
    for (int c = 0; c < cb; c++)
        for (int g = 0; g < fb; g++) a[c][g] = ld(acc4 + (c * lda + f + g) * 4);
    const double *f0 = F + f * ldf;
    for (long j = 0; j < t; j += 4) {
        v4d x[3];
        for (int g = 0; g < fb; g++) x[g] = ld(f0 + g * ldf + j);
        for (int c = 0; c < cb; c++) {
            v4d l = ld(L + c * ldl + j);
            for (int g = 0; g < fb; g++) a[c][g] += l * x[g];
        }
    }
    for (int c = 0; c < cb; c++)
        for (int g = 0; g < fb; g++) st(acc4 + (c * lda + f + g) * 4, a[c][g]);
}

/* the same for the pairs (a, b0 + g), g < fb <= 3, whose products are made here; their
 * columns start at p0 */
AI void moments_pairs_block(const double *L, long ldl, const double *X, long ldx, long t,
                            double *acc4, long lda, int cb, long a, long b0, long p0,
                            int fb) {
    v4d s[4][3];
    for (int c = 0; c < cb; c++)
        for (int g = 0; g < fb; g++) s[c][g] = ld(acc4 + (c * lda + p0 + g) * 4);
    const double *xa = X + a * ldx, *xb = X + b0 * ldx;
    for (long j = 0; j < t; j += 4) {
        v4d xav = ld(xa + j), x[3];
        for (int g = 0; g < fb; g++) x[g] = xav * ld(xb + g * ldx + j);
        for (int c = 0; c < cb; c++) {
            v4d l = ld(L + c * ldl + j);
            for (int g = 0; g < fb; g++) s[c][g] += l * x[g];
        }
    }
    for (int c = 0; c < cb; c++)
        for (int g = 0; g < fb; g++) st(acc4 + (c * lda + p0 + g) * 4, s[c][g]);
}

AI void moments_rows(const double *L, long ldl, const double *F, long ldf, long nrows,
                     long t, double *acc4, long lda, int cb) {
    long f = 0;
    for (; f + 3 <= nrows; f += 3) moments_block(L, ldl, F, ldf, t, acc4, lda, cb, f, 3);
    if (nrows - f == 2) moments_block(L, ldl, F, ldf, t, acc4, lda, cb, f, 2);
    if (nrows - f == 1) moments_block(L, ldl, F, ldf, t, acc4, lda, cb, f, 1);
}

AI void moments_pairs_rows(const double *L, long ldl, const double *X, long ldx, long d,
                           long t, double *acc4, long lda, int cb) {
    long p = 0;
    for (long a = 0; a < d; a++) {
        long b = a;
        for (; b + 3 <= d; b += 3, p += 3)
            moments_pairs_block(L, ldl, X, ldx, t, acc4, lda, cb, a, b, p, 3);
        if (d - b == 2) moments_pairs_block(L, ldl, X, ldx, t, acc4, lda, cb, a, b, p, 2);
        if (d - b == 1) moments_pairs_block(L, ldl, X, ldx, t, acc4, lda, cb, a, b, p, 1);
        p += d - b;
    }
}

/* acc4 += L @ F[:nrows]^T in four lanes; L (k, t), acc4 rows lda features apart */
AI void moments(const double *L, long k, long ldl, const double *F, long ldf, long nrows,
                long t, double *acc4, long lda) {
#define MOMENTS(cb) moments_rows(L + c * ldl, ldl, F, ldf, nrows, t, acc4 + c * lda * 4, lda, cb)
    long c = 0;
    for (; c + 4 <= k; c += 4) MOMENTS(4);
    switch (k - c) {
    case 3: MOMENTS(3); break;
    case 2: MOMENTS(2); break;
    case 1: MOMENTS(1); break;
    }
#undef MOMENTS
}

/* acc4q += the full-covariance second moments; acc4q = acc4 + (d + 1) * 4 */
AI void moments_pairs(const double *L, long k, long ldl, const double *X, long ldx, long d,
                      long t, double *acc4q, long lda) {
#define PAIRS(cb) moments_pairs_rows(L + c * ldl, ldl, X, ldx, d, t, acc4q + c * lda * 4, lda, cb)
    long c = 0;
    for (; c + 4 <= k; c += 4) PAIRS(4);
    switch (k - c) {
    case 3: PAIRS(3); break;
    case 2: PAIRS(2); break;
    case 1: PAIRS(1); break;
    }
#undef PAIRS
}

/* The covariance types by code: the order of distgmm.options.COVARIANCE_TYPES. The
 * module exports type_names as COVARIANCE_TYPES and feature_rows as n_feature_rows, and
 * suffstats.py refuses to import a build whose table differs from options.py and
 * features.n_feature_rows (a stale or foreign build would score the wrong type). */
enum { FULL = 0, TIED = 1, DIAG = 2, SPHERICAL = 3, N_TYPES = 4 };
static const char *const type_names[N_TYPES] = {"full", "tied", "diag", "spherical"};

/* Rows of F: d linear, one of ones, then the quadratic ones; -1 for an unknown code */
static long feature_rows(int ct, long d) {
    switch (ct) {
    case FULL: return d + 1 + d * (d + 1) / 2;
    case TIED: return d + 1;
    case DIAG: return 2 * d + 1;
    case SPHERICAL: return d + 2;
    default: return -1;
    }
}

/* F's linear rows (x - c, zero-padded to t8 columns), row of ones, quadratic rows (not
 * for full: score_pairs and moments_pairs make those in registers) */
#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12)
#define HAVE_SHUFFLEVECTOR 1
typedef double v4du __attribute__((vector_size(32), aligned(8)));

/* F[i + g, j + r] = X[j + r, i + g] - center[i + g] for r, g < 4: a 4 x 4 transpose in
 * registers (rows of X need not be aligned) */
AI void transpose4(const double *X, long d, long j, long i, const double *center,
                   double *F, long ldf) {
    v4d r0 = *(const v4du *)(X + j * d + i), r1 = *(const v4du *)(X + (j + 1) * d + i);
    v4d r2 = *(const v4du *)(X + (j + 2) * d + i), r3 = *(const v4du *)(X + (j + 3) * d + i);
    v4d t0 = __builtin_shufflevector(r0, r1, 0, 4, 2, 6);
    v4d t1 = __builtin_shufflevector(r0, r1, 1, 5, 3, 7);
    v4d t2 = __builtin_shufflevector(r2, r3, 0, 4, 2, 6);
    v4d t3 = __builtin_shufflevector(r2, r3, 1, 5, 3, 7);
    st(F + i * ldf + j, __builtin_shufflevector(t0, t2, 0, 1, 4, 5) - bc(center[i]));
    st(F + (i + 1) * ldf + j, __builtin_shufflevector(t1, t3, 0, 1, 4, 5) - bc(center[i + 1]));
    st(F + (i + 2) * ldf + j, __builtin_shufflevector(t0, t2, 2, 3, 6, 7) - bc(center[i + 2]));
    st(F + (i + 3) * ldf + j, __builtin_shufflevector(t1, t3, 2, 3, 6, 7) - bc(center[i + 3]));
}
#endif

/* F's linear rows (x - c, zero-padded to t8 columns), row of ones, quadratic rows (not
 * for full: score_pairs and moments_pairs make those in registers) */
AI void build_features(const void *X, int x32, long a, long t, long t8, long d,
                       const double *center, int ct, double *F, long ldf) {
    for (long j0 = 0; j0 < t8; j0 += 8) { /* transpose 8 rows at a time: reads stay in L1 */
        long jn = t - j0 < 8 ? t - j0 : 8, i = 0;
#ifdef HAVE_SHUFFLEVECTOR
        if (!x32 && jn == 8) { /* the shifted rows j0 .. j0 + 7 in 4 x 4 blocks */
            const double *X8 = (const double *)X + a * d;
            for (; i + 4 <= d; i += 4) {
                transpose4(X8, d, j0, i, center, F, ldf);
                transpose4(X8, d, j0 + 4, i, center, F, ldf);
            }
        }
#endif
        for (; i < d; i++) {
            double *fi = F + i * ldf + j0, ci = center[i];
            long j = 0;
            if (x32)
                for (const float *xi = (const float *)X + (a + j0) * d + i; j < jn; j++)
                    fi[j] = (double)xi[j * d] - ci;
            else
                for (const double *xi = (const double *)X + (a + j0) * d + i; j < jn; j++)
                    fi[j] = xi[j * d] - ci;
            for (; j < 8; j++) fi[j] = 0.0;
        }
    }
    for (long j = 0; j < t8; j++) F[d * ldf + j] = 1.0;
    double *q = F + (d + 1) * ldf;
    if (ct == DIAG) {
        for (long i = 0; i < d; i++, q += ldf) {
            const double *xi = F + i * ldf;
            for (long j = 0; j < t8; j++) q[j] = xi[j] * xi[j];
        }
    } else if (ct == SPHERICAL) {
        for (long j = 0; j < t8; j++) q[j] = 0.0;
        for (long i = 0; i < d; i++) {
            const double *xi = F + i * ldf;
            for (long j = 0; j < t8; j++) q[j] += xi[j] * xi[j];
        }
    }
}

/* Columns of L become responsibilities times the row weight (wt, written here; ones
 * when unweighted); lpn[j] = log sum_c exp(L[c, j]) */
AI void normalise(double *L, long k, long ldl, long t8, const double *w, long a, long t,
                  double *wt, double *lpn) {
    for (long j = 0; j < t8; j += 4) {
        v4d m = ld(L + j);
        for (long c = 1; c < k; c++) {
            v4d v = ld(L + c * ldl + j);
            m = sel(v > m, v, m);
        }
        v4d s = bc(0.0);
        for (long c = 0; c < k; c++) {
            v4d v = ld(L + c * ldl + j) - m;
            v = vexp(sel(v < bc(EXP_FLOOR), bc(EXP_FLOOR), v));
            st(L + c * ldl + j, v);
            s += v;
        }
        v4d wv = bc(1.0);
        if (w)
            for (int u = 0; u < 4; u++) wv[u] = j + u < t ? w[a + j + u] : 0.0;
        st(wt + j, wv);
        v4d sc = wv / s;
        for (long c = 0; c < k; c++) st(L + c * ldl + j, ld(L + c * ldl + j) * sc);
        for (int u = 0; u < 4; u++) lpn[j + u] = log(s[u]) + m[u];
    }
    for (long c = 0; c < k; c++) /* padding columns carry no responsibility */
        for (long j = t; j < t8; j++) L[c * ldl + j] = 0.0;
}

/* Kept for the thread's later calls and never freed; its size follows the sub-tile and
 * K x feature rows (0.6 MiB for d = 50, K = 10, full), per thread that ran the kernel */
static __thread double *ws_buf = NULL;
static __thread size_t ws_len = 0;

/* This thread's workspace of at least n doubles (kept for the thread's next calls) */
static double *workspace(size_t n) {
    if (n > ws_len) {
        free(ws_buf);
        ws_buf = NULL;
        ws_len = 0;
        if (posix_memalign((void **)&ws_buf, 64, n * sizeof(double))) return NULL;
        ws_len = n;
    }
    return ws_buf;
}

/* Returns -2 when out of memory, else as bad_row in the module comment. */
static long estep_kernel(const void *X, int x32, long n, long d, const double *w,
                         const double *center, const double *W, long k, long nf,
                         const double *tf, int ct, long tile, double *acc, double *xx,
                         double *sums) {
    long tp = (tile + 7) / 8 * 8;
    long nfm = ct == FULL ? d + 1 : nf; /* rows of F kept in memory */
    size_t need = (size_t)nfm * tp + (size_t)k * tp + 2 * (size_t)tp + (size_t)k * nf * 4 +
                  (tf ? (size_t)d * tp + (size_t)d * d * 4 : 0);
    double *F = workspace(need);
    if (!F) return -2;
    double *L = F + nfm * tp, *lpn = L + k * tp, *wt = lpn + tp, *acc4 = wt + tp;
    double *Y = acc4 + k * nf * 4, *xx4 = Y + (tf ? d * tp : 0);
    memset(acc4, 0, sizeof(double) * k * nf * 4);
    if (tf) memset(xx4, 0, sizeof(double) * d * d * 4);
    double ll = 0.0, wsum = 0.0;
    long bad = -1;
    for (long a = 0; a < n; a += tile) {
        long t = n - a < tile ? n - a : tile, t8 = (t + 7) / 8 * 8;
        build_features(X, x32, a, t, t8, d, center, ct, F, tp);
        score(W, k, nf, nfm, F, tp, t8, L, tp);
        if (ct == FULL) score_pairs(W + d + 1, k, nf, d, F, tp, t8, L, tp);
        if (tf) { /* the shared quadratic term -|P^T x|^2 / 2 */
            score(tf, d, d, d, F, tp, t8, Y, tp);
            for (long j = 0; j < t8; j += 4) {
                v4d s = bc(0.0);
                for (long i = 0; i < d; i++) {
                    v4d y = ld(Y + i * tp + j);
                    s += y * y;
                }
                s *= bc(0.5);
                for (long c = 0; c < k; c++) st(L + c * tp + j, ld(L + c * tp + j) - s);
            }
        }
        normalise(L, k, tp, t8, w, a, t, wt, lpn);
        double tll = 0.0, tw = 0.0;
        for (long j = 0; j < t; j++) {
            tll += wt[j] * lpn[j];
            tw += wt[j];
        }
        if (!isfinite(tll) && bad < 0) bad = a;
        ll += tll;
        wsum += tw;
        moments(L, k, tp, F, tp, nfm, t8, acc4, nf);
        if (ct == FULL) moments_pairs(L, k, tp, F, tp, d, t8, acc4 + (d + 1) * 4, nf);
        if (tf) { /* the tied second moment does not depend on the responsibilities */
            const double *xw = F;
            if (w) {
                for (long i = 0; i < d; i++)
                    for (long j = 0; j < t8; j++) Y[i * tp + j] = F[i * tp + j] * wt[j];
                xw = Y;
            }
            moments(xw, d, tp, F, tp, d, t8, xx4, d);
        }
    }
    for (long i = 0; i < k * nf; i++)
        acc[i] = (acc4[4 * i] + acc4[4 * i + 1]) + (acc4[4 * i + 2] + acc4[4 * i + 3]);
    if (tf)
        for (long i = 0; i < d * d; i++)
            xx[i] = (xx4[4 * i] + xx4[4 * i + 1]) + (xx4[4 * i + 2] + xx4[4 * i + 3]);
    sums[0] = ll;
    sums[1] = wsum;
    return bad;
}

/* ---- Python binding ----------------------------------------------------------------- */

/* The type code of a buffer format in native byte order ("d", "=d", "<d" here), or "" */
static const char *native_code(const char *format) {
    const char *native_order = (PY_LITTLE_ENDIAN ? "@=<" : "@=>!");
    if (format[0] && strchr(native_order, format[0])) format++;
    return strlen(format) == 1 ? format : "";
}

/* A C-contiguous buffer of `items` items of `format` */
static int get_buffer(PyObject *obj, Py_buffer *view, int writable, const char *name,
                      const char *format, Py_ssize_t items) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) return -1;
    if (strcmp(native_code(view->format), format) != 0 || view->len != items * view->itemsize) {
        PyErr_Format(PyExc_ValueError, "%s: expected %zd contiguous items of format '%s'",
                     name, items, format);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* The inputs estep and estep_rows share: X and its weights, the parameters */
typedef struct {
    Py_buffer x, w, c, W, tf;
    int x32, ct;
    long n, d, k, nf, tile;
} Inputs;

static void release_inputs(Inputs *in) {
    Py_buffer *views[] = {&in->x, &in->w, &in->c, &in->W, &in->tf};
    for (int i = 0; i < 5; i++)
        if (views[i]->obj) PyBuffer_Release(views[i]);
}

/* Fills `in` (zeroed by the caller) from the Python objects; -1 with an exception set
 * (the caller releases what was taken) */
static int get_inputs(Inputs *in, PyObject *ox, PyObject *ow, PyObject *oc, PyObject *oW,
                      PyObject *otf, int ct, long tile) {
    if (PyObject_GetBuffer(ox, &in->x, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_ND) < 0)
        return -1;
    in->x32 = strcmp(native_code(in->x.format), "f") == 0;
    if ((!in->x32 && strcmp(native_code(in->x.format), "d") != 0) || in->x.ndim != 2) {
        PyErr_Format(PyExc_ValueError,
                     "X: expected a 2-D float64 or float32 array, got %d-D of format '%s'",
                     in->x.ndim, in->x.format);
        return -1;
    }
    in->n = (long)in->x.shape[0];
    in->d = (long)in->x.shape[1];
    in->ct = ct;
    in->tile = tile;
    if (get_buffer(oc, &in->c, 0, "center", "d", in->d) < 0) return -1;
    in->nf = feature_rows(ct, in->d);
    if (PyObject_GetBuffer(oW, &in->W, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_ND) < 0)
        return -1;
    in->k = in->W.ndim == 2 ? (long)in->W.shape[0] : 0;
    if (ct < 0 || ct > 3 || tile < 1 || in->k < 1 || in->W.shape[1] != in->nf ||
        strcmp(native_code(in->W.format), "d") != 0) {
        PyErr_SetString(PyExc_ValueError,
                        "W (float64, K x feature rows), covariance_type or tile do not fit X");
        return -1;
    }
    if (ow != Py_None && get_buffer(ow, &in->w, 0, "w", "d", in->n) < 0) return -1;
    if ((ct == TIED) != (otf != Py_None)) {
        PyErr_SetString(PyExc_ValueError, "tied_factor is given for tied only");
        return -1;
    }
    if (otf != Py_None && get_buffer(otf, &in->tf, 0, "tied_factor", "d", in->d * in->d) < 0)
        return -1;
    return 0;
}

static PyObject *py_estep(PyObject *self, PyObject *args) {
    PyObject *ox, *ow, *oc, *oW, *otf, *oacc, *oxx;
    int ct;
    long tile;
    if (!PyArg_ParseTuple(args, "OOOOOilOO", &ox, &ow, &oc, &oW, &otf, &ct, &tile, &oacc,
                          &oxx))
        return NULL;
    Inputs in = {0};
    Py_buffer bacc = {0}, bxx = {0};
    PyObject *result = NULL;
    if (get_inputs(&in, ox, ow, oc, oW, otf, ct, tile) < 0) goto done;
    long n = in.n, d = in.d;
    if (tile > n) tile = n > 0 ? n : 1; /* the workspace never outgrows the chunk */
    if ((ct == TIED) != (oxx != Py_None)) {
        PyErr_SetString(PyExc_ValueError, "xx is given for tied only");
        goto done;
    }
    if (oxx != Py_None && get_buffer(oxx, &bxx, 1, "xx", "d", d * d) < 0) goto done;
    if (get_buffer(oacc, &bacc, 1, "acc", "d", in.k * in.nf) < 0) goto done;
    double sums[2];
    long bad;
    Py_BEGIN_ALLOW_THREADS
    bad = estep_kernel(in.x.buf, in.x32, n, d, in.w.buf, in.c.buf, in.W.buf, in.k, in.nf,
                       in.tf.buf, ct, tile, bacc.buf, bxx.buf, sums);
    Py_END_ALLOW_THREADS
    if (bad == -2)
        PyErr_NoMemory();
    else
        result = Py_BuildValue("ddl", sums[0], sums[1], bad);
done:
    release_inputs(&in);
    if (bacc.obj) PyBuffer_Release(&bacc);
    if (bxx.obj) PyBuffer_Release(&bxx);
    return result;
}

/* estep_rows: estep over each leaf X[offsets[i] : offsets[i + 1]] of one block, its
 * results as row i of `rows`: [n_rows, wsum, loglik, acc (K x nf), xx (tied only)].
 * Each leaf is one estep call's arithmetic (the same sub-tiles, the same bits); one
 * call for a block of many small leaves saves the Python per leaf. */
static PyObject *py_estep_rows(PyObject *self, PyObject *args) {
    PyObject *ox, *ow, *ooff, *oc, *oW, *otf, *orows;
    int ct;
    long tile;
    if (!PyArg_ParseTuple(args, "OOOOOOilO", &ox, &ow, &ooff, &oc, &oW, &otf, &ct, &tile,
                          &orows))
        return NULL;
    Inputs in = {0};
    Py_buffer boff = {0}, brows = {0};
    PyObject *result = NULL;
    if (get_inputs(&in, ox, ow, oc, oW, otf, ct, tile) < 0) goto done;
    long n = in.n, d = in.d, k = in.k, nf = in.nf;
    if (PyObject_GetBuffer(ooff, &boff, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_ND) < 0)
        goto done;
    const char *oc_ = native_code(boff.format); /* int64 is "l" or "q" by platform */
    if (boff.itemsize != 8 || (strcmp(oc_, "q") != 0 && strcmp(oc_, "l") != 0) ||
        boff.ndim != 1 || boff.shape[0] < 1) {
        PyErr_SetString(PyExc_ValueError, "offsets: expected a 1-D int64 array of m + 1 items");
        goto done;
    }
    long m = (long)boff.shape[0] - 1;
    const int64_t *off = boff.buf;
    int ok = off[0] == 0 && off[m] == n; /* the leaves make up X */
    for (long i = 0; i < m; i++) ok = ok && off[i] <= off[i + 1];
    if (!ok) {
        PyErr_SetString(PyExc_ValueError,
                        "offsets: expected non-decreasing row offsets from 0 to X's rows");
        goto done;
    }
    long width = 3 + k * nf + (ct == TIED ? d * d : 0);
    if (get_buffer(orows, &brows, 1, "rows", "d", m * width) < 0) goto done;
    long bad_leaf = -1, bad = -1;
    Py_BEGIN_ALLOW_THREADS
    for (long i = 0; i < m; i++) {
        long a = (long)off[i], ni = (long)off[i + 1] - a;
        long ti = tile > ni ? (ni > 0 ? ni : 1) : tile; /* as estep clamps it */
        const void *xi = in.x32 ? (const void *)((const float *)in.x.buf + a * d)
                                : (const void *)((const double *)in.x.buf + a * d);
        double *row = (double *)brows.buf + i * width, sums[2];
        bad = estep_kernel(xi, in.x32, ni, d, in.w.buf ? (const double *)in.w.buf + a : NULL,
                           in.c.buf, in.W.buf, k, nf, in.tf.buf, ct, ti, row + 3,
                           ct == TIED ? row + 3 + k * nf : NULL, sums);
        row[0] = (double)ni;
        row[1] = sums[1];
        row[2] = sums[0];
        if (bad != -1) {
            bad_leaf = i;
            break;
        }
    }
    Py_END_ALLOW_THREADS
    if (bad == -2)
        PyErr_NoMemory();
    else
        result = Py_BuildValue("ll", bad_leaf, bad);
done:
    release_inputs(&in);
    if (boff.obj) PyBuffer_Release(&boff);
    if (brows.obj) PyBuffer_Release(&brows);
    return result;
}

static PyObject *py_cpu_has_avx2_fma(PyObject *self, PyObject *args) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    return PyBool_FromLong(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"));
#else
    Py_RETURN_FALSE;
#endif
}

static PyObject *py_n_feature_rows(PyObject *self, PyObject *args) {
    int ct;
    long d;
    if (!PyArg_ParseTuple(args, "il", &ct, &d)) return NULL;
    if (ct < 0 || ct >= N_TYPES || d < 0) {
        PyErr_Format(PyExc_ValueError, "unknown covariance type code %d or n_features %ld",
                     ct, d);
        return NULL;
    }
    return PyLong_FromLong(feature_rows(ct, d));
}

static PyMethodDef methods[] = {
    {"cpu_has_avx2_fma", py_cpu_has_avx2_fma, METH_NOARGS,
     "Whether this CPU runs the _estep_avx2 build (AVX2 and FMA)."},
    {"n_feature_rows", py_n_feature_rows, METH_VARARGS,
     "n_feature_rows(covariance_type_code, n_features) -> rows of F (width of W)."},
    {"estep", py_estep, METH_VARARGS,
     "estep(X, w, center, W, tied_factor, covariance_type, tile, acc, xx) -> "
     "(loglik, wsum, bad_row): the fused E-step over one chunk (see _estep.c)."},
    {"estep_rows", py_estep_rows, METH_VARARGS,
     "estep_rows(X, w, offsets, center, W, tied_factor, covariance_type, tile, rows) -> "
     "(bad_leaf, bad_row): estep over each leaf X[offsets[i]:offsets[i + 1]], its "
     "results as row i of rows (see _estep.c)."},
    {NULL, NULL, 0, NULL}};

#ifndef ESTEP_MODULE /* setup.py names the AVX2 build _estep_avx2 */
#define ESTEP_MODULE _estep
#endif
#define STR_(x) #x
#define STR(x) STR_(x)
#define INIT_(x) PyInit_##x
#define INIT(x) INIT_(x)

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, STR(ESTEP_MODULE),
                                    "Compiled fused E-step of distgmm.", -1, methods};

/* What this build was compiled for: the AVX2 + FMA build, or any CPU of its kind */
#if defined(__AVX2__) && defined(__FMA__)
#define TARGET "avx2-fma"
#else
#define TARGET "generic"
#endif

PyMODINIT_FUNC INIT(ESTEP_MODULE)(void) {
    PyObject *m = PyModule_Create(&module);
    PyObject *types = m ? PyTuple_New(N_TYPES) : NULL;
    if (!types) goto fail;
    for (int i = 0; i < N_TYPES; i++) {
        PyObject *name = PyUnicode_FromString(type_names[i]);
        if (!name) goto fail;
        PyTuple_SET_ITEM(types, i, name);
    }
    if (PyModule_AddObjectRef(m, "COVARIANCE_TYPES", types) < 0 ||
        PyModule_AddStringConstant(m, "TARGET", TARGET) < 0)
        goto fail;
    Py_DECREF(types);
    return m;
fail:
    Py_XDECREF(types);
    Py_XDECREF(m);
    return NULL;
}
