/* Level I on the CPU in C: K channels' biLSTMs and bin attention, forward and backward.
 *
 * Compiled at first use by deepdiff/cpu_kernel.py with the machine's C compiler (-O3 -march=native)
 * and called through ctypes on the memory of contiguous float32 torch tensors. It computes what
 * `deepdiff.model.grouped_level1` computes with torch ops, for the same parameters: per channel k a
 * bidirectional LSTM over the T bins (input size 1, hidden H per direction), bin attention
 * alpha = softmax_t(h_t . W_b_k) over the concatenated states, and m_k = sum_t alpha_t h_t. One call
 * runs a channel's two directions, its attention and, in the backward, back-propagation through time
 * with the attention's gradient formed step by step, so nothing of size (T, N, H) crosses into torch
 * and the per-step work runs with the weights in L1 cache and no dispatch overhead.
 *
 * Arrays (G = 2K groups, group g = d*K + k, d = 0 forward, 1 backward direction):
 *   x      (N, K, T)        the channels' inputs          dx    (N, K, T)       its gradient
 *   w      (G, H + 2, 4H)   rows 0..H-1: W_hh^T; row H: W_ih; row H+1: b_ih + b_hh; gate columns
 *                           i, f, g, o with the g columns doubled, so tanh(z) = 2 sigmoid(2z) - 1
 *                           (deepdiff.grouped_lstm.stack_lstm_weights)       dw    the same shape
 *   ctx    (K, 2H)          attention context W_b_k       dctx  (K, 2H)
 *   m      (N, K, 2H)       channel embeddings            dm    (N, K, 2H)
 *   alpha  (N, K, T)        bin attention                 dalpha (N, K, T) or NULL
 *   h      (G, T, N, P)     hidden states, P = H rounded up to a multiple of 16 (see below)
 *   save   (G, T, N, 6P)    per step for the backward: i, f, g, o (activated), c, tanh(c)
 *   p, dp  (G, T, N)        attention scores h_t . ctx per group, and their gradients
 *   dmp    (G, N, P)        the gradient arriving at each group's states from m (padded)
 *   dxg    (2, N, K, T)     each direction's part of dx (the caller adds the two); NULL: not needed
 * Training runs in phases so the work splits evenly over threads (2K groups, rather than K channels,
 * e.g. 15 + 15 rather than 8 + 7 for 15 channels on 2 threads): forward, the recurrences of groups
 * [g0, g1) (dd_forward_groups), then, all groups done, the attention of channels [k0, k1) (dd_attend);
 * backward, the attention's backward per channel (dd_backward_attend), then back-propagation through
 * time per group (dd_backward_groups). Evaluation (dd_infer) runs a channel's two groups and its
 * attention in one call, keeping the states of one channel at a time. The scratch of a call is
 * dd_*_scratch floats.
 *
 * SIMD: GCC/Clang vector extensions of VW floats (16 with AVX-512, 8 with AVX, else 4: the machine's
 * register width, below). The hidden units are padded to P, a multiple of 16 (a cache line):
 * the padded units have zero weights, so their gates are sigmoid(0) and tanh(0) = 0, their cell and
 * state stay exactly 0, they feed nothing into the real units and get zero gradients; one code path
 * serves every H. With AVX-512 a few steps use its instructions (a reduction tree for sums, scalef for
 * 2^n, a 14-bit reciprocal refined by a Newton step for 1 / (1 + e^-x)); other machines get the same
 * arithmetic in plain vector code. Numerics: float32; exp by range reduction and a degree-6 polynomial
 * (relative error about 2e-7); NaN and infinities propagate, so a diverging run stays visible to the
 * trainer.
 *
 * Where the time goes: `python benchmarks/bench_kernel.py --parts` times builds with one part left out
 * (DD_OMIT below) against the full one in the same process. One thread, 15 channels, H = 32: the
 * forward is about 40% recurrent product, 10-15% gate nonlinearities, the rest the cell update, gates'
 * set-up and stores; the backward about 33% dW, 35% dh_{t-1}, 20% the gate gradients from the saves;
 * the attention both ways 5-8%. The backward prefetches the saves a few genes ahead (the load of
 * c_{t-1}, from the step before, used to stall a fifth of it).
 */

#include <math.h> /* INFINITY */
#include <stdint.h>
#include <string.h>

#define INLINE static inline __attribute__((always_inline))
/* Floats per vector: the machine's own vector width (-DDD_VW=n: another, for tests and benchmarks).
 * Generic vectors wider than the machine's registers are emulated by the compiler with shuffles and
 * stack traffic: 16-float vectors on an AVX2 CPU ran the kernel ~9x slower than 8-float ones. */
#if defined(DD_VW)
#define VW DD_VW
#elif defined(__AVX512F__)
#define VW 16
#elif defined(__AVX__)
#define VW 8
#else
#define VW 4
#endif
#define MAX_P 256 /* hidden sizes up to 256 per direction */

typedef float vf __attribute__((vector_size(4 * VW)));
typedef int32_t vi __attribute__((vector_size(4 * VW)));
typedef float vfu __attribute__((vector_size(4 * VW), aligned(4), may_alias)); /* unaligned access */

#if defined(__AVX512F__) && VW == 16 /* its intrinsics take 16-float vectors */
#include <immintrin.h>
#define DD_AVX512 1
#endif

INLINE vf ld(const float *p) { return *(const vfu *)p; }
INLINE void st(float *p, vf v) { *(vfu *)p = v; }
INLINE vf splat(float x) { return (vf){0} + x; }
INLINE float hsum(vf v) {
#ifdef DD_AVX512
    return _mm512_reduce_add_ps((__m512)v); /* a tree of shuffles: no chain of 16 dependent adds */
#else
    float s = 0.0f;
    for (int i = 0; i < VW; i++) s += v[i];
    return s;
#endif
}

/* e^x = 2^n e^r with n = round(x log2 e), |r| <= ln2 / 2. x is clamped to [-87, 87] by comparisons,
 * which leave NaN as it is (it then propagates through the polynomial). */
INLINE vf vexp(vf x) {
#ifdef DD_AVX512 /* min/max return their second operand when either is NaN: NaN stays */
    x = (vf)_mm512_max_ps((__m512)splat(-87.0f), _mm512_min_ps((__m512)splat(87.0f), (__m512)x));
#else
    const vi lo = x < -87.0f, hi = x > 87.0f;
    x = (vf)((lo & (vi)splat(-87.0f)) | (~lo & (vi)x));
    x = (vf)((hi & (vi)splat(87.0f)) | (~hi & (vi)x));
#endif
    const vf magic = splat(12582912.0f); /* 1.5 * 2^23: adding it rounds to an integer */
    const vf n = (x * 1.44269504088896341f + magic) - magic;
    vf r = x - n * 0.693145751953125f;
    r = r - n * 1.428606765330187e-06f;
    vf p = splat(1.0f / 720.0f);
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
#ifdef DD_AVX512
    return (vf)_mm512_scalef_ps((__m512)p, (__m512)n); /* p 2^n in one instruction */
#else
    const vi bits = (__builtin_convertvector(n, vi) + 127) << 23;
    return p * (vf)bits;
#endif
}

/* 1 / d for d >= 1 (a sigmoid's denominator): AVX-512's 14-bit reciprocal and one Newton step
 * (relative error about 1e-7, several times cheaper than a division); a division elsewhere. */
INLINE vf vrecip(vf d) {
#ifdef DD_AVX512
    const vf r = (vf)_mm512_rcp14_ps((__m512)d);
    return r * (2.0f - d * r);
#else
    return 1.0f / d;
#endif
}

INLINE vf vsigmoid(vf x) { return vrecip(1.0f + vexp(-x)); }

/* n rounded up to whole cache lines of 16 floats (64 bytes): a whole number of vectors at any VW. */
#define LINE 16
INLINE int64_t whole_lines(int64_t n) { return (n + LINE - 1) / LINE * LINE; }
INLINE int padded(int H) { return (int)whole_lines(H); }

#define PF_AHEAD 8 /* the backward prefetches the saves this many gene-iterations ahead */

/* Profiling builds only (benchmarks/bench_kernel.py --parts): -DDD_OMIT=<sum of the parts below> leaves
 * those parts out, or puts a cheap stand-in in their place, so that timing the build against the full
 * one (in the same process) says what each part costs. The results of such a build are wrong: only
 * `cpu_kernel.profiling_build` makes one, for the benchmark; the package's own build leaves DD_OMIT 0,
 * so every OMITTED(...) is a constant false. */
#ifndef DD_OMIT
#define DD_OMIT 0
#endif
#define OMIT_FWD_PRODUCT 1 /* forward: h_{t-1} @ W_hh */
#define OMIT_FWD_NONLIN 2  /* forward: the gates' sigmoids and tanh(c) (a linear stand-in) */
#define OMIT_FWD_SAVES 4   /* forward: the stores of what the backward reads */
#define OMIT_BWD_GATES 8   /* backward: the gate gradients from the saves (a stand-in reading none) */
#define OMIT_BWD_DW 16     /* backward: dW += [h_{t-1}, x_t, 1]^T da */
#define OMIT_BWD_DH 32     /* backward: dh_{t-1} = da @ W_hh */
#define OMIT_ATTENTION 64  /* both ways: the bin attention (softmax over bins, m; their gradients) */
#define OMITTED(part) ((DD_OMIT & (part)) != 0)

/* Genes per chunk of the dW_hh accumulation: their da (NC x 4P floats) stays within 16 KB of L1. */
INLINE int gene_chunk(int P) { return 1024 / P < 4 ? 4 : 1024 / P; }

/* The weights of group g padded to P units: wp (P + 2, 4P), zeros where no real unit is. */
static void pad_weights(int H, int P, const float *restrict w, float *restrict wp) {
    memset(wp, 0, sizeof(float) * (size_t)(P + 2) * 4 * P);
    for (int r = 0; r < H + 2; r++) {
        const int rp = r < H ? r : P + (r - H);
        for (int q = 0; q < 4; q++) memcpy(wp + (int64_t)rp * 4 * P + q * P, w + (int64_t)r * 4 * H + q * H, sizeof(float) * H);
    }
}

static void unpad_weights(int H, int P, const float *restrict wp, float *restrict w) {
    for (int r = 0; r < H + 2; r++) {
        const int rp = r < H ? r : P + (r - H);
        for (int q = 0; q < 4; q++) memcpy(w + (int64_t)r * 4 * H + q * H, wp + (int64_t)rp * 4 * P + q * P, sizeof(float) * H);
    }
}

/* x of channel k, direction d, at step t of that direction, gene n. */
#define XAT(n, t) (((int64_t)(n) * K + k) * T + (d ? T - 1 - (t) : (t)))

/* ---- forward ---------------------------------------------------------------------------------- */

/* One gene's gate pre-activations at a step: bias + x W_ih + h_{t-1} W_hh (hp NULL at the first). */
INLINE void gates(int H, const int P, const float *restrict wp, float xv, const float *restrict hp, vf *restrict a) {
    const int NV = 4 * P / VW;
    const float *restrict wih = wp + (int64_t)P * 4 * P;
    const float *restrict bias = wih + 4 * P;
    for (int j = 0; j < NV; j++) a[j] = ld(bias + j * VW) + xv * ld(wih + j * VW);
    if (hp && !OMITTED(OMIT_FWD_PRODUCT))
        for (int u = 0; u < H; u++) { /* padded units are 0: only the real ones */
            const float hu = hp[u];
            const float *restrict row = wp + (int64_t)u * 4 * P;
            for (int j = 0; j < NV; j++) a[j] += hu * ld(row + j * VW);
        }
}

/* One gene's step from its gate pre-activations a: state hn, cell c (updated in place; NULL-free),
 * saves s (or NULL), and its attention score. */
INLINE float cell_step(const int P, vf *restrict a, int first, float *c, float *restrict hn, float *restrict s,
                       const float *restrict cx) {
    const int NV = 4 * P / VW, HV = P / VW;
    for (int j = 0; j < NV; j++) a[j] = OMITTED(OMIT_FWD_NONLIN) ? a[j] * 0.25f + 0.5f : vsigmoid(a[j]);
    vf score = splat(0.0f);
    for (int q = 0; q < HV; q++) {
        const vf i = a[q], f = a[HV + q], gg = 2.0f * a[2 * HV + q] - 1.0f, o = a[3 * HV + q];
        const vf cp = first ? splat(0.0f) : ld(c + q * VW);
        const vf cn = f * cp + i * gg;
        const vf tc = OMITTED(OMIT_FWD_NONLIN) ? 0.5f * cn : 2.0f * vsigmoid(2.0f * cn) - 1.0f;
        const vf hv = o * tc;
        st(hn + q * VW, hv);
        st(c + q * VW, cn);
        score += hv * ld(cx + q * VW);
        if (s && !OMITTED(OMIT_FWD_SAVES)) {
            st(s + q * VW, i);
            st(s + P + q * VW, f);
            st(s + 2 * P + q * VW, gg);
            st(s + 3 * P + q * VW, o);
            st(s + 4 * P + q * VW, cn);
            st(s + 5 * P + q * VW, tc);
        }
    }
    return hsum(score);
}

/* One group (channel k, direction d) over all steps: states hg (T, N, P), saves sg (T, N, 6P) or
 * NULL, attention scores pg (T, N); the cell states live in cs (N, P), in cache. */
INLINE void forward_group(int T, int K, int N, int H, const int P, int k, int d, const float *restrict x,
                          const float *restrict wp, const float *restrict cx, float *restrict hg,
                          float *restrict sg, float *restrict cs, float *restrict pg) {
    vf a[4 * MAX_P / VW];
    for (int t = 0; t < T; t++)
        for (int n = 0; n < N; n++) {
            gates(H, P, wp, x[XAT(n, t)], t ? hg + ((int64_t)(t - 1) * N + n) * P : NULL, a);
            pg[(int64_t)t * N + n] = cell_step(P, a, !t, cs + (int64_t)n * P, hg + ((int64_t)t * N + n) * P,
                                               sg ? sg + ((int64_t)t * N + n) * 6 * P : NULL, cx);
        }
}

/* exp of e[0..T) in place, vectorised. */
static void exp_inplace(int T, float *restrict e) {
    int t = 0;
    for (; t + VW <= T; t += VW) st(e + t, vexp(ld(e + t)));
    for (; t < T; t++) e[t] = vexp(splat(e[t]))[0];
}

/* The attention walks a block of ATT_BLOCK genes at a time through the steps in memory order: at step t
 * the block's states are contiguous in h (G, T, N, P), where one gene's states are N P floats apart
 * from step to step (32 KB at batch 256, a stride the prefetchers do not follow across pages: going
 * gene by gene the attention took 11% of the kernel at batch 256, this way 8%). Its scratch:
 * dd_attend_scratch floats. */
#define ATT_BLOCK 32
INLINE int64_t attend_scratch(int T, int P) { return whole_lines((int64_t)ATT_BLOCK * T) + (int64_t)ATT_BLOCK * 2 * P; }

/* Channel k's attention from its two groups' scores and states: alpha, m. e: attend_scratch floats. */
INLINE void attend(int T, int K, int N, int H, const int P, int k, const float *restrict hf,
                   const float *restrict hb, const float *restrict pf, const float *restrict pb,
                   float *restrict alpha, float *restrict m, float *restrict e) {
    const int HV = P / VW;
    float *restrict acc = e + whole_lines((int64_t)ATT_BLOCK * T); /* (ATT_BLOCK, 2P): m's two halves */
    for (int n0 = 0; n0 < N && !OMITTED(OMIT_ATTENTION); n0 += ATT_BLOCK) {
        const int nb = N - n0 < ATT_BLOCK ? N - n0 : ATT_BLOCK;
        for (int t = 0; t < T; t++) /* e (nb, T): the scores of the block's genes */
            for (int i = 0; i < nb; i++) e[(int64_t)i * T + t] = pf[(int64_t)t * N + n0 + i] + pb[(int64_t)(T - 1 - t) * N + n0 + i];
        for (int i = 0; i < nb; i++) {
            float *restrict ei = e + (int64_t)i * T;
            float top = -INFINITY;
            for (int t = 0; t < T; t++) top = ei[t] > top ? ei[t] : top;
            if (top == -INFINITY || top != top) top = 0.0f; /* all -inf or NaN: let NaN/inf show */
            for (int t = 0; t < T; t++) ei[t] -= top;
            exp_inplace(T, ei);
            float sum = 0.0f;
            for (int t = 0; t < T; t++) sum += ei[t];
            float *restrict al = alpha + ((int64_t)(n0 + i) * K + k) * T;
            for (int t = 0; t < T; t++) al[t] = ei[t] / sum;
        }
        memset(acc, 0, sizeof(float) * (size_t)nb * 2 * P);
        for (int t = 0; t < T; t++) {
            const float *restrict a = hf + ((int64_t)t * N + n0) * P;
            const float *restrict b = hb + ((int64_t)(T - 1 - t) * N + n0) * P;
            for (int i = 0; i < nb; i++) {
                const float at = alpha[((int64_t)(n0 + i) * K + k) * T + t];
                float *restrict mi = acc + (int64_t)i * 2 * P;
                for (int q = 0; q < HV; q++) {
                    st(mi + q * VW, ld(mi + q * VW) + at * ld(a + (int64_t)i * P + q * VW));
                    st(mi + P + q * VW, ld(mi + P + q * VW) + at * ld(b + (int64_t)i * P + q * VW));
                }
            }
        }
        for (int i = 0; i < nb; i++) {
            float *restrict out = m + ((int64_t)(n0 + i) * K + k) * 2 * H;
            memcpy(out, acc + (int64_t)i * 2 * P, sizeof(float) * H);
            memcpy(out + H, acc + (int64_t)i * 2 * P + P, sizeof(float) * H);
        }
    }
}

/* Group g's padded weights wp (P + 2, 4P) and attention context cx (P). */
static void group_inputs(int K, int H, int P, int g, const float *w, const float *ctx, float *wp, float *cx) {
    pad_weights(H, P, w + (int64_t)g * (H + 2) * 4 * H, wp);
    memset(cx, 0, sizeof(float) * P);
    memcpy(cx, ctx + (int64_t)(g % K) * 2 * H + (g / K) * H, sizeof(float) * H);
}

/* Training forward, phase 1: the recurrences of groups [g0, g1): states h (G, T, N, P), saves, scores
 * p (G, T, N). Phase 2 (`attend_channels`) needs both groups of a channel, so it runs after all of
 * phase 1; splitting groups rather than channels over threads keeps them evenly loaded (2K groups). */
INLINE void forward_groups(int T, int K, int N, int H, const int P, int g0, int g1, const float *x, const float *w,
                           const float *ctx, float *h, float *save, float *p, float *scratch) {
    float *wp = scratch;                      /* (P + 2, 4P) */
    float *cx = wp + (int64_t)(P + 2) * 4 * P; /* (P) */
    float *cs = cx + P;                        /* (N, P) */
    for (int g = g0; g < g1; g++) {
        group_inputs(K, H, P, g, w, ctx, wp, cx);
        forward_group(T, K, N, H, P, g % K, g / K, x, wp, cx, h + (int64_t)g * T * N * P,
                      save + (int64_t)g * T * N * 6 * P, cs, p + (int64_t)g * T * N);
    }
}

INLINE void attend_channels(int T, int K, int N, int H, const int P, int k0, int k1, const float *h,
                            const float *p, float *m, float *alpha, float *e) {
    for (int k = k0; k < k1; k++)
        attend(T, K, N, H, P, k, h + (int64_t)k * T * N * P, h + (int64_t)(K + k) * T * N * P, p + (int64_t)k * T * N,
               p + (int64_t)(K + k) * T * N, alpha, m, e);
}

/* Evaluation forward over channels [k0, k1): both groups of a channel then its attention, the states
 * of one channel at a time in the scratch (nothing is kept for a backward). */
INLINE void infer_channels(int T, int K, int N, int H, const int P, int k0, int k1, const float *x, const float *w,
                           const float *ctx, float *m, float *alpha, float *scratch) {
    float *wp = scratch;                      /* (P + 2, 4P) */
    float *cx = wp + (int64_t)(P + 2) * 4 * P; /* (P) */
    float *cs = cx + P;                        /* (N, P) */
    float *hs = cs + (int64_t)N * P;           /* (2, T, N, P) */
    float *e = hs + 2 * (int64_t)T * N * P;    /* attend_scratch(T, P) (on a cache line) */
    float *p = e + attend_scratch(T, P);       /* (2, T, N) */
    for (int k = k0; k < k1; k++) {
        for (int d = 0; d < 2; d++) {
            group_inputs(K, H, P, d * K + k, w, ctx, wp, cx);
            forward_group(T, K, N, H, P, k, d, x, wp, cx, hs + (int64_t)d * T * N * P, NULL, cs, p + (int64_t)d * T * N);
        }
        attend(T, K, N, H, P, k, hs, hs + (int64_t)T * N * P, p, p + (int64_t)T * N, alpha, m, e);
    }
}

/* ---- backward --------------------------------------------------------------------------------- */

/* The attention's backward for channels [k0, k1): per group g of channel k, the gradient arriving at
 * its states from m (dmp (G, N, P), padded) and from the scores (dp (G, T, N)); d ctx. dat:
 * attend_scratch floats (a block of genes at a time, as in attend). */
INLINE void attend_backward(int T, int K, int N, int H, const int P, int k0, int k1, const float *alpha,
                            const float *h, const float *dm, const float *dalpha, float *dmp, float *dp,
                            float *dctx, float *dat) {
    const int HV = P / VW;
    for (int k = k0; k < k1; k++) {
        const float *hg[2];
        float *dmg[2], *dpg[2];
        for (int d = 0; d < 2; d++) {
            const int g = d * K + k;
            hg[d] = h + (int64_t)g * T * N * P;
            dmg[d] = dmp + (int64_t)g * N * P;
            dpg[d] = dp + (int64_t)g * T * N;
            for (int n = 0; n < N; n++) {
                float *dst = dmg[d] + (int64_t)n * P;
                memset(dst, 0, sizeof(float) * P);
                memcpy(dst, dm + ((int64_t)n * K + k) * 2 * H + d * H, sizeof(float) * H);
            }
        }
        vf dcf[MAX_P / VW], dcb[MAX_P / VW];
        for (int q = 0; q < HV; q++) dcf[q] = dcb[q] = splat(0.0f);
        if (OMITTED(OMIT_ATTENTION))
            for (int d = 0; d < 2; d++) memset(dpg[d], 0, sizeof(float) * (size_t)T * N);
        for (int n0 = 0; n0 < N && !OMITTED(OMIT_ATTENTION); n0 += ATT_BLOCK) { /* see attend */
            const int nb = N - n0 < ATT_BLOCK ? N - n0 : ATT_BLOCK;
            for (int t = 0; t < T; t++) { /* dat (nb, T): the gradient at each score from alpha and m */
                const float *restrict a = hg[0] + ((int64_t)t * N + n0) * P;
                const float *restrict b = hg[1] + ((int64_t)(T - 1 - t) * N + n0) * P;
                for (int i = 0; i < nb; i++) {
                    const int64_t at = ((int64_t)(n0 + i) * K + k) * T + t;
                    const float *restrict dmf = dmg[0] + (int64_t)(n0 + i) * P, *restrict dmb = dmg[1] + (int64_t)(n0 + i) * P;
                    vf acc = splat(0.0f);
                    for (int q = 0; q < HV; q++)
                        acc += ld(a + (int64_t)i * P + q * VW) * ld(dmf + q * VW) + ld(b + (int64_t)i * P + q * VW) * ld(dmb + q * VW);
                    dat[(int64_t)i * T + t] = (dalpha ? dalpha[at] : 0.0f) + hsum(acc);
                }
            }
            for (int i = 0; i < nb; i++) { /* dat becomes d score = alpha (dat - sum_t alpha dat) */
                const float *restrict al = alpha + ((int64_t)(n0 + i) * K + k) * T;
                float *restrict di = dat + (int64_t)i * T;
                float total = 0.0f;
                for (int t = 0; t < T; t++) total += al[t] * di[t];
                for (int t = 0; t < T; t++) di[t] = al[t] * (di[t] - total);
            }
            for (int t = 0; t < T; t++) {
                const float *restrict a = hg[0] + ((int64_t)t * N + n0) * P;
                const float *restrict b = hg[1] + ((int64_t)(T - 1 - t) * N + n0) * P;
                for (int i = 0; i < nb; i++) {
                    const float ds = dat[(int64_t)i * T + t];
                    dpg[0][(int64_t)t * N + n0 + i] = ds;
                    dpg[1][(int64_t)(T - 1 - t) * N + n0 + i] = ds;
                    for (int q = 0; q < HV; q++) {
                        dcf[q] += ds * ld(a + (int64_t)i * P + q * VW);
                        dcb[q] += ds * ld(b + (int64_t)i * P + q * VW);
                    }
                }
            }
        }
        for (int u = 0; u < H; u++) {
            dctx[(int64_t)k * 2 * H + u] = dcf[u / VW][u % VW];
            dctx[(int64_t)k * 2 * H + H + u] = dcb[u / VW][u % VW];
        }
    }
}

/* Where row r of ext = [h_{t-1}, x_t, 1] comes from for one step's genes: element n of it is
 * src[n * stride]. hprev NULL (t = 0: h_{-1} is zero) reads zeros. */
INLINE const float *row_source(int H, const int P, int r, const float *hprev, const float *xs, const float *ones,
                               const float *zeros, int *stride) {
    if (r < H) {
        *stride = hprev ? P : 1;
        return hprev ? hprev + r : zeros;
    }
    *stride = 1;
    return r == H ? xs : ones;
}

/* dW rows += ext^T @ da over the genes of a block of nb steps, ext = [h_{t-1}, x_t, 1]: hprev[b] (N, P)
 * the states before the block's b-th step (NULL at t = 0), xs (nb, N) its inputs, da (nb, N, 4P) its
 * gate gradients. Rows two at a time, so each da vector loaded feeds two multiply-adds; the 16
 * accumulators are loaded and stored once per row pair and chunk of genes whose da stays in L1
 * (gene_chunk): a chunk is one step's genes in blocks of NC, or, when N is smaller than that, all genes
 * of the block's steps (backward_group makes nb N <= NC), so at batch 10 the accumulators' loads and
 * stores are spread over several steps' multiply-adds. ones, zeros: N floats each. */
INLINE void dw_block(int N, int H, const int P, int nb, const float *const *hprev, const float *restrict xs,
                     const float *restrict da_all, float *restrict dwp, const float *restrict ones,
                     const float *restrict zeros, float *restrict spare) {
    const int NV = 4 * P / VW, R = H + 2, chunk = nb > 1 ? N : gene_chunk(P);
    for (int n0 = 0; n0 < N; n0 += chunk) {
        const int n1 = N - n0 < chunk ? N : n0 + chunk;
        for (int r = 0; r < R; r += 2) {
            const int two = r + 1 < R;
            float *restrict ra = dwp + (int64_t)(r < H ? r : P + r - H) * 4 * P;
            float *restrict rb = two ? dwp + (int64_t)(r + 1 < H ? r + 1 : P + r + 1 - H) * 4 * P : spare;
            for (int j0 = 0; j0 < NV; j0 += 8) { /* at most 16 accumulators */
                const int nj = NV - j0 < 8 ? NV - j0 : 8;
                vf acc_a[8], acc_b[8];
                for (int j = 0; j < nj; j++) {
                    acc_a[j] = ld(ra + (j0 + j) * VW);
                    acc_b[j] = ld(rb + (j0 + j) * VW);
                }
                for (int b = 0; b < nb; b++) {
                    int sa, sb = 1;
                    const float *restrict ea = row_source(H, P, r, hprev[b], xs + (int64_t)b * N, ones, zeros, &sa);
                    const float *restrict eb = two ? row_source(H, P, r + 1, hprev[b], xs + (int64_t)b * N, ones, zeros, &sb)
                                                   : zeros;
                    const float *restrict dab = da_all + (int64_t)b * N * 4 * P + j0 * VW;
                    for (int n = n0; n < n1; n++) {
                        const float va = ea[(int64_t)n * sa], vb = eb[(int64_t)n * sb];
                        const float *restrict da = dab + (int64_t)n * 4 * P;
                        for (int j = 0; j < nj; j++) {
                            const vf v = ld(da + j * VW);
                            acc_a[j] += va * v;
                            acc_b[j] += vb * v;
                        }
                    }
                }
                for (int j = 0; j < nj; j++) {
                    st(ra + (j0 + j) * VW, acc_a[j]);
                    st(rb + (j0 + j) * VW, acc_b[j]);
                }
            }
        }
    }
}

/* Steps per dW block: enough that a block holds about gene_chunk(P) gene-steps when N is smaller. */
INLINE int dw_steps(int T, int N, const int P) {
    const int S = N >= gene_chunk(P) ? 1 : gene_chunk(P) / N;
    return S < T ? S : T;
}

/* The recurrent part of dh_{t-1} = da @ W_hh for GB genes (1, 2 or 4) at once: each column of W_hh
 * loaded feeds GB multiply-adds. The four gates accumulate apart when GB x P/16 chains would be too few
 * to hide the multiply-add latency, else into one sum per gene (fewer registers). */
INLINE void dh_block(const int GB, int H, const int P, const float *restrict whh, const float *restrict *da,
                     float *restrict *dh) {
    const int HV = P / VW, APART = GB * HV < 8;
    vf acc[4][4][MAX_P / VW];
    for (int b = 0; b < GB; b++)
        for (int gate = 0; gate < 4; gate++)
            for (int q = 0; q < HV; q++) acc[b][gate][q] = splat(0.0f);
    for (int u = 0; u < H; u++) /* padded gate columns have zero gradient */
        for (int gate = 0; gate < 4; gate++) {
            const int j = gate * P + u, a = APART ? gate : 0;
            const float *restrict col = whh + (int64_t)j * P;
            for (int q = 0; q < HV; q++) {
                const vf c = ld(col + q * VW);
                for (int b = 0; b < GB; b++) acc[b][a][q] += da[b][j] * c;
            }
        }
    for (int b = 0; b < GB; b++)
        for (int q = 0; q < HV; q++)
            st(dh[b] + q * VW, APART ? (acc[b][0][q] + acc[b][1][q]) + (acc[b][2][q] + acc[b][3][q]) : acc[b][0][q]);
}

/* Back-propagation through time of one group (channel k, direction d). The gradient arriving at h_t
 * of gene n is alpha(t) dm_n + dp(t, n) ctx (the attention's, formed here step by step). dwp: the
 * group's padded weight gradient (accumulated); whh (4P, P): W_hh for dh_{t-1} = da @ W_hh; dxg
 * (N, K, T): this direction's part of dx. */
INLINE void backward_group(int T, int K, int N, int H, const int P, int k, int d, const float *restrict x,
                           const float *restrict wp, const float *restrict whh, const float *restrict cx,
                           const float *restrict alpha, const float *restrict dmp, const float *restrict dp,
                           const float *restrict hg, const float *restrict sg, float *restrict dxg,
                           float *restrict dwp, float *restrict dh_next, float *restrict dc_next,
                           float *restrict da_blk, float *restrict xs_blk, const float *restrict ones,
                           const float *restrict zeros, float *restrict spare) {
    const int NV = 4 * P / VW, HV = P / VW, GB = (P / VW) <= 2 ? 4 : 1, S = dw_steps(T, N, P);
    const float *hprev[64]; /* S <= gene_chunk(P) <= 64 */
    int b = 0;              /* steps in the current dW block */
    const float *restrict wih = wp + (int64_t)P * 4 * P;
    memset(dh_next, 0, sizeof(float) * 2 * (size_t)N * P); /* dh_next and dc_next are adjacent */
    for (int t = T - 1; t >= 0; t--) {
        float *restrict da_all = da_blk + (int64_t)b * N * 4 * P; /* this step's slot in the block */
        float *restrict xs = xs_blk + (int64_t)b * N;
        for (int n = 0; n < N; n++) {
            const float *restrict s = sg + ((int64_t)t * N + n) * 6 * P;
            const float *restrict cp = t ? sg + ((int64_t)(t - 1) * N + n) * 6 * P + 4 * P : NULL;
            if (!OMITTED(OMIT_BWD_GATES)) { /* what the gene-iteration PF_AHEAD later reads: its saves, and c_{t-1} from the step before */
                const int ahead = n + PF_AHEAD, tp = t - ahead / N, np = ahead % N;
                const float *restrict sp = sg + ((int64_t)tp * N + np) * 6 * P;
                if (tp >= 0)
                    for (int l = 0; l < 6 * P; l += VW) __builtin_prefetch(sp + l, 0, 2);
                if (tp >= 1)
                    for (int l = 0; l < P; l += VW) {
                        __builtin_prefetch(sp - 6 * P * (int64_t)N + 4 * P + l, 0, 2);
                        __builtin_prefetch(hg + ((int64_t)(tp - 1) * N + np) * P + l, 0, 2); /* h_{t-1} for dW */
                    }
            }
            const float at = alpha[((int64_t)n * K + k) * T + (d ? T - 1 - t : t)];
            const float dpt = dp[(int64_t)t * N + n];
            float *restrict dhn = dh_next + (int64_t)n * P;
            float *restrict dcn = dc_next + (int64_t)n * P;
            float *restrict da = da_all + (int64_t)n * 4 * P;
            for (int q = 0; q < HV && OMITTED(OMIT_BWD_GATES); q++) { /* the stand-in: no saves read */
                const int o_ = q * VW;
                const vf dh = at * ld(dmp + (int64_t)n * P + o_) + dpt * ld(cx + o_) + ld(dhn + o_);
                for (int gate = 0; gate < 4; gate++) st(da + gate * P + o_, dh);
                st(dcn + o_, 0.5f * dh);
            }
            for (int q = 0; q < HV && !OMITTED(OMIT_BWD_GATES); q++) {
                const int o_ = q * VW;
                const vf i = ld(s + o_), f = ld(s + P + o_), gg = ld(s + 2 * P + o_), o = ld(s + 3 * P + o_);
                const vf tc = ld(s + 5 * P + o_);
                const vf dh = at * ld(dmp + (int64_t)n * P + o_) + dpt * ld(cx + o_) + ld(dhn + o_);
                const vf dc = ld(dcn + o_) + dh * o * (1.0f - tc * tc);
                st(da + o_, dc * gg * i * (1.0f - i));
                st(da + P + o_, cp ? dc * ld(cp + o_) * f * (1.0f - f) : splat(0.0f));
                st(da + 2 * P + o_, dc * i * 0.5f * (1.0f - gg * gg)); /* the g columns are doubled */
                st(da + 3 * P + o_, dh * tc * o * (1.0f - o));
                st(dcn + o_, dc * f);
            }
            xs[n] = x[XAT(n, t)];
            if (dxg) { /* NULL: the input needs no gradient (data) */
                vf dxv = splat(0.0f);
                for (int j = 0; j < NV; j++) dxv += ld(da + j * VW) * ld(wih + j * VW);
                dxg[XAT(n, t)] = hsum(dxv);
            }
        }
        hprev[b++] = t ? hg + (int64_t)(t - 1) * N * P : NULL;
        if (b == S || !t) {
            if (!OMITTED(OMIT_BWD_DW)) dw_block(N, H, P, b, hprev, xs_blk, da_blk, dwp, ones, zeros, spare);
            b = 0;
        }
        if (!t) break;
        if (OMITTED(OMIT_BWD_DH)) continue;
        int n = 0;
        for (; GB == 4 && n + 3 < N; n += 4) {
            const float *da[4];
            float *dh[4];
            for (int i = 0; i < 4; i++) {
                da[i] = da_all + (int64_t)(n + i) * 4 * P;
                dh[i] = dh_next + (int64_t)(n + i) * P;
            }
            dh_block(4, H, P, whh, da, dh);
        }
        for (; n < N; n++) {
            const float *da[1] = {da_all + (int64_t)n * 4 * P};
            float *dh[1] = {dh_next + (int64_t)n * P};
            dh_block(1, H, P, whh, da, dh);
        }
    }
}

/* Backward, phase 2 (after `attend_backward` of every channel): BPTT of groups [g0, g1). dxg
 * (2, N, K, T): each direction's part of dx (the caller adds the two), so groups of one channel can run
 * on different threads. */
INLINE void backward_groups(int T, int K, int N, int H, const int P, int g0, int g1, const float *x, const float *w,
                            const float *ctx, const float *alpha, const float *h, const float *save,
                            const float *dmp, const float *dp, float *dxg, float *dw, float *scratch) {
    float *wp = scratch;                         /* (P + 2, 4P) */
    float *dwp = wp + (int64_t)(P + 2) * 4 * P;   /* (P + 2, 4P) */
    float *whh = dwp + (int64_t)(P + 2) * 4 * P;  /* (4P, P) */
    float *cx = whh + (int64_t)4 * P * P;         /* (P) */
    float *dh_next = cx + P;                      /* (N, P), then dc_next (N, P) */
    const int64_t NB = (int64_t)dw_steps(T, N, P) * N;  /* gene-steps of a dW block */
    float *da_blk = dh_next + 2 * (int64_t)N * P; /* (S, N, 4P) */
    float *spare = da_blk + NB * 4 * P;           /* (4P) */
    float *xs_blk = spare + 4 * P;                /* (S, N) */
    float *ones = xs_blk + NB;                    /* (N) */
    float *zeros = ones + N;                      /* (N) */
    for (int n = 0; n < N; n++) {
        ones[n] = 1.0f;
        zeros[n] = 0.0f;
    }
    for (int g = g1 - 1; g >= g0; g--) { /* the newest saves first: they may still be in cache */
        const int k = g % K, d = g / K;
        group_inputs(K, H, P, g, w, ctx, wp, cx);
        for (int u = 0; u < P; u++)
            for (int j = 0; j < 4 * P; j++) whh[(int64_t)j * P + u] = wp[(int64_t)u * 4 * P + j];
        memset(dwp, 0, sizeof(float) * (size_t)(P + 2) * 4 * P);
        float *dxd = dxg ? dxg + (int64_t)d * N * K * T : NULL;
        for (int n = 0; dxd && n < N; n++) memset(dxd + ((int64_t)n * K + k) * T, 0, sizeof(float) * T);
        backward_group(T, K, N, H, P, k, d, x, wp, whh, cx, alpha, dmp + (int64_t)g * N * P, dp + (int64_t)g * T * N,
                       h + (int64_t)g * T * N * P, save + (int64_t)g * T * N * 6 * P, dxd, dwp, dh_next,
                       dh_next + (int64_t)N * P, da_blk, xs_blk, ones, zeros, spare);
        unpad_weights(H, P, dwp, dw + (int64_t)g * (H + 2) * 4 * H);
    }
}

/* ---- entry points ----------------------------------------------------------------------------- */

/* The usual padded sizes get copies with P a constant (loops unrolled, accumulators in registers). */
#define FOR_P(CALL)                         \
    switch (P) {                            \
    case 16: { const int P_ = 16; CALL; break; } \
    case 32: { const int P_ = 32; CALL; break; } \
    case 48: { const int P_ = 48; CALL; break; } \
    case 64: { const int P_ = 64; CALL; break; } \
    default: { const int P_ = P; CALL; }    \
    }

int dd_max_hidden(void) { return MAX_P; }
int dd_vector_width(void) { return VW; } /* floats per vector in this build */

/* Floats of each array and of one call's scratch, for H hidden units. */
int64_t dd_state_floats(int T, int K, int N, int H) { return 2 * (int64_t)K * T * N * padded(H); }
int64_t dd_save_floats(int T, int K, int N, int H) { return 2 * (int64_t)K * T * N * 6 * padded(H); }
int64_t dd_grad_floats(int K, int N, int H) { return 2 * (int64_t)K * N * padded(H); } /* dmp */
/* Each thread's part of a scratch starts on a 64-byte boundary (the vectors in it are aligned; an odd
 * size put every vector of the second thread's part across two cache lines, which cost a third of the
 * backward at batch 10 on two threads): the sizes are whole_lines. */
int64_t dd_forward_scratch(int T, int N, int H) {
    const int64_t P = padded(H);
    return whole_lines((P + 2) * 4 * P + P + N * P);
}
int64_t dd_infer_scratch(int T, int N, int H) {
    const int64_t P = padded(H);
    return whole_lines((P + 2) * 4 * P + P + N * P + 2 * (int64_t)T * N * P + attend_scratch(T, P) + 2 * (int64_t)T * N);
}
int64_t dd_attend_scratch(int T, int H) { return attend_scratch(T, padded(H)); } /* dd_attend, dd_backward_attend */
int64_t dd_backward_scratch(int T, int N, int H) {
    const int64_t P = padded(H), NB = (int64_t)dw_steps(T, N, padded(H)) * N;
    return whole_lines(2 * (P + 2) * 4 * P + 4 * P * P + P + 2 * N * P + NB * 4 * P + 4 * P + NB + 2 * N);
}

/* Threads. Each entry point runs its range [i0, i1) (groups or channels) in `threads` contiguous
 * parts, each with its own slice of `scratch` (threads x the dd_*_scratch floats). Built with OpenMP
 * (-fopenmp; deepdiff/cpu_kernel.py tries that first), the parts run on the OpenMP threads torch itself
 * uses (this library's libgomp.so.1 is the one torch loaded), which wait spinning right after torch's
 * own parallel work: a second pool of threads would fight them for the cores. Without OpenMP the
 * caller splits the range over threads of its own and passes threads = 1. */
#ifdef _OPENMP
#include <omp.h>
#define PARALLEL_RANGE(i0, i1, threads, per, scratch, STATEMENT)                       \
    do {                                                                              \
        const int nt_ = (threads) < (i1) - (i0) ? (threads) : (i1) - (i0);            \
        if (nt_ > 1) {                                                                \
            _Pragma("omp parallel num_threads(nt_)")                                  \
            {                                                                         \
                const int id_ = omp_get_thread_num(), of_ = omp_get_num_threads();    \
                const int lo = (i0) + (int)((int64_t)((i1) - (i0)) * id_ / of_);       \
                const int hi = (i0) + (int)((int64_t)((i1) - (i0)) * (id_ + 1) / of_); \
                float *sc = (scratch) + (int64_t)id_ * (per);                          \
                STATEMENT;                                                            \
            }                                                                         \
        } else {                                                                      \
            const int lo = (i0), hi = (i1);                                           \
            float *sc = (scratch);                                                    \
            STATEMENT;                                                                \
        }                                                                             \
    } while (0)
int dd_openmp(void) { return 1; }
#else
#define PARALLEL_RANGE(i0, i1, threads, per, scratch, STATEMENT) \
    do {                                                        \
        const int lo = (i0), hi = (i1);                         \
        float *sc = (scratch);                                  \
        (void)(threads);                                        \
        STATEMENT;                                              \
    } while (0)
int dd_openmp(void) { return 0; }
#endif

/* Training forward: phase 1 over groups [g0, g1), then (all groups done) phase 2 over channels. */
void dd_forward_groups(int T, int K, int N, int H, int g0, int g1, int threads, const float *x, const float *w,
                       const float *ctx, float *h, float *save, float *p, float *scratch) {
    const int P = padded(H);
    PARALLEL_RANGE(g0, g1, threads, dd_forward_scratch(T, N, H), scratch,
                   FOR_P(forward_groups(T, K, N, H, P_, lo, hi, x, w, ctx, h, save, p, sc)));
}

void dd_attend(int T, int K, int N, int H, int k0, int k1, int threads, const float *h, const float *p, float *m,
               float *alpha, float *scratch) { /* scratch: dd_attend_scratch(T, H) floats a thread */
    const int P = padded(H);
    PARALLEL_RANGE(k0, k1, threads, dd_attend_scratch(T, H), scratch, FOR_P(attend_channels(T, K, N, H, P_, lo, hi, h, p, m, alpha, sc)));
}

void dd_infer(int T, int K, int N, int H, int k0, int k1, int threads, const float *x, const float *w, const float *ctx,
              float *m, float *alpha, float *scratch) {
    const int P = padded(H);
    PARALLEL_RANGE(k0, k1, threads, dd_infer_scratch(T, N, H), scratch,
                   FOR_P(infer_channels(T, K, N, H, P_, lo, hi, x, w, ctx, m, alpha, sc)));
}

/* Backward: phase 1 over channels (scratch: dd_attend_scratch(T, H) floats a thread), then phase 2 over groups. */
void dd_backward_attend(int T, int K, int N, int H, int k0, int k1, int threads, const float *alpha, const float *h,
                        const float *dm, const float *dalpha, float *dmp, float *dp, float *dctx, float *scratch) {
    const int P = padded(H);
    PARALLEL_RANGE(k0, k1, threads, dd_attend_scratch(T, H), scratch,
                   FOR_P(attend_backward(T, K, N, H, P_, lo, hi, alpha, h, dm, dalpha, dmp, dp, dctx, sc)));
}

void dd_backward_groups(int T, int K, int N, int H, int g0, int g1, int threads, const float *x, const float *w,
                        const float *ctx, const float *alpha, const float *h, const float *save, const float *dmp,
                        const float *dp, float *dxg, float *dw, float *scratch) {
    const int P = padded(H);
    PARALLEL_RANGE(g0, g1, threads, dd_backward_scratch(T, N, H), scratch,
                   FOR_P(backward_groups(T, K, N, H, P_, lo, hi, x, w, ctx, alpha, h, save, dmp, dp, dxg, dw, sc)));
}
