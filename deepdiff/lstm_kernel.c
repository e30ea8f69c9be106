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
 *   save   (G, T, N, 6P)    per step for the backward: i, f, g, o (activated), c, tanh(c); NULL when
 *                           only the forward is wanted (then h may be NULL too: a scratch holds it)
 * A call handles channels [k0, k1) (callers split the channels over threads); the scratch of a call
 * is dd_forward_scratch / dd_backward_scratch floats.
 *
 * SIMD: GCC/Clang vector extensions of 16 floats. The hidden units are padded to P, a multiple of 16:
 * the padded units have zero weights, so their gates are sigmoid(0) and tanh(0) = 0, their cell and
 * state stay exactly 0, they feed nothing into the real units and get zero gradients; one code path
 * serves every H. Numerics: float32; exp by range reduction and a degree-6 polynomial (relative
 * error about 2e-7); NaN and infinities propagate, so a diverging run stays visible to the trainer.
 */

#include <math.h> /* INFINITY */
#include <stdint.h>
#include <string.h>

#define INLINE static inline __attribute__((always_inline))
#define VW 16
#define MAX_P 256 /* hidden sizes up to 256 per direction */

typedef float vf __attribute__((vector_size(4 * VW)));
typedef int32_t vi __attribute__((vector_size(4 * VW)));
typedef float vfu __attribute__((vector_size(4 * VW), aligned(4), may_alias)); /* unaligned access */

INLINE vf ld(const float *p) { return *(const vfu *)p; }
INLINE void st(float *p, vf v) { *(vfu *)p = v; }
INLINE vf splat(float x) { return (vf){0} + x; }
INLINE float hsum(vf v) {
    float s = 0.0f;
    for (int i = 0; i < VW; i++) s += v[i];
    return s;
}

/* e^x = 2^n e^r with n = round(x log2 e), |r| <= ln2 / 2. x is clamped to [-87, 87] by comparisons,
 * which leave NaN as it is (it then propagates through the polynomial). */
INLINE vf vexp(vf x) {
    const vi lo = x < -87.0f, hi = x > 87.0f;
    x = (vf)((lo & (vi)splat(-87.0f)) | (~lo & (vi)x));
    x = (vf)((hi & (vi)splat(87.0f)) | (~hi & (vi)x));
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
    const vi bits = (__builtin_convertvector(n, vi) + 127) << 23;
    return p * (vf)bits;
}

INLINE vf vsigmoid(vf x) { return 1.0f / (1.0f + vexp(-x)); }

INLINE int padded(int H) { return (H + VW - 1) / VW * VW; }

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

/* One group (channel k, direction d) over all steps: states hg (T, N, P), saves sg (T, N, 6P) or
 * NULL (then the cell state lives in cs (N, P)), attention scores pg (T, N). */
INLINE void forward_group(int T, int K, int N, int H, const int P, int k, int d, const float *restrict x,
                          const float *restrict wp, const float *restrict cx, float *restrict hg,
                          float *restrict sg, float *restrict cs, float *restrict pg) {
    const int NV = 4 * P / VW, HV = P / VW;
    const float *restrict wih = wp + (int64_t)P * 4 * P;
    const float *restrict bias = wih + 4 * P;
    vf a[4 * MAX_P / VW];
    for (int t = 0; t < T; t++) {
        for (int n = 0; n < N; n++) {
            const float xv = x[XAT(n, t)];
            for (int j = 0; j < NV; j++) a[j] = ld(bias + j * VW) + xv * ld(wih + j * VW);
            if (t) {
                const float *restrict hp = hg + ((int64_t)(t - 1) * N + n) * P;
                for (int u = 0; u < H; u++) { /* padded units are 0: only the real ones */
                    const float hu = hp[u];
                    const float *restrict row = wp + (int64_t)u * 4 * P;
                    for (int j = 0; j < NV; j++) a[j] += hu * ld(row + j * VW);
                }
            }
            for (int j = 0; j < NV; j++) a[j] = vsigmoid(a[j]);
            float *restrict hn = hg + ((int64_t)t * N + n) * P;
            float *restrict s = sg ? sg + ((int64_t)t * N + n) * 6 * P : NULL;
            const float *restrict cp = !t ? NULL : s ? sg + ((int64_t)(t - 1) * N + n) * 6 * P + 4 * P : cs + (int64_t)n * P;
            float *restrict cn = s ? s + 4 * P : cs + (int64_t)n * P;
            vf score = splat(0.0f);
            for (int q = 0; q < HV; q++) {
                const vf i = a[q], f = a[HV + q], gg = 2.0f * a[2 * HV + q] - 1.0f, o = a[3 * HV + q];
                const vf c = (cp ? f * ld(cp + q * VW) : splat(0.0f)) + i * gg;
                const vf tc = 2.0f * vsigmoid(2.0f * c) - 1.0f;
                const vf hv = o * tc;
                st(hn + q * VW, hv);
                st(cn + q * VW, c);
                score += hv * ld(cx + q * VW);
                if (s) {
                    st(s + q * VW, i);
                    st(s + P + q * VW, f);
                    st(s + 2 * P + q * VW, gg);
                    st(s + 3 * P + q * VW, o);
                    st(s + 5 * P + q * VW, tc);
                }
            }
            pg[(int64_t)t * N + n] = hsum(score);
        }
    }
}

/* exp of e[0..T) in place, vectorised. */
static void exp_inplace(int T, float *restrict e) {
    int t = 0;
    for (; t + VW <= T; t += VW) st(e + t, vexp(ld(e + t)));
    for (; t < T; t++) e[t] = vexp(splat(e[t]))[0];
}

/* Channel k's attention from its two groups' scores and states: alpha, m. e: T floats. */
INLINE void attend(int T, int K, int N, int H, const int P, int k, const float *restrict hf,
                   const float *restrict hb, const float *restrict pf, const float *restrict pb,
                   float *restrict alpha, float *restrict m, float *restrict e) {
    const int HV = P / VW;
    for (int n = 0; n < N; n++) {
        float top = -INFINITY;
        for (int t = 0; t < T; t++) {
            e[t] = pf[(int64_t)t * N + n] + pb[(int64_t)(T - 1 - t) * N + n];
            top = e[t] > top ? e[t] : top;
        }
        if (top == -INFINITY || top != top) top = 0.0f; /* all -inf or NaN: let NaN/inf show */
        for (int t = 0; t < T; t++) e[t] -= top;
        exp_inplace(T, e);
        float sum = 0.0f;
        for (int t = 0; t < T; t++) sum += e[t];
        float *restrict al = alpha + ((int64_t)n * K + k) * T;
        for (int t = 0; t < T; t++) al[t] = e[t] / sum;
        vf mf[MAX_P / VW], mb[MAX_P / VW];
        for (int q = 0; q < HV; q++) mf[q] = mb[q] = splat(0.0f);
        for (int t = 0; t < T; t++) {
            const float *restrict a = hf + ((int64_t)t * N + n) * P;
            const float *restrict b = hb + ((int64_t)(T - 1 - t) * N + n) * P;
            for (int q = 0; q < HV; q++) {
                mf[q] += al[t] * ld(a + q * VW);
                mb[q] += al[t] * ld(b + q * VW);
            }
        }
        float *restrict out = m + ((int64_t)n * K + k) * 2 * H;
        for (int u = 0; u < H; u++) {
            out[u] = mf[u / VW][u % VW];
            out[H + u] = mb[u / VW][u % VW];
        }
    }
}

INLINE void forward_channels(int T, int K, int N, int H, const int P, int k0, int k1, const float *x,
                             const float *w, const float *ctx, float *m, float *alpha, float *h, float *save,
                             float *scratch) {
    float *wp = scratch;                               /* (P + 2, 4P) */
    float *cx = wp + (int64_t)(P + 2) * 4 * P;          /* (2, P) */
    float *cs = cx + 2 * P;                             /* (N, P) */
    float *p = cs + (int64_t)N * P;                     /* (2, T, N) */
    float *e = p + 2 * (int64_t)T * N;                  /* (T) */
    float *hs = e + T;                                  /* (2, T, N, P) when h is NULL */
    for (int k = k0; k < k1; k++) {
        float *hg[2];
        for (int d = 0; d < 2; d++) {
            const int g = d * K + k;
            hg[d] = h ? h + (int64_t)g * T * N * P : hs + (int64_t)d * T * N * P;
            pad_weights(H, P, w + (int64_t)g * (H + 2) * 4 * H, wp);
            memset(cx + d * P, 0, sizeof(float) * P);
            memcpy(cx + d * P, ctx + (int64_t)k * 2 * H + d * H, sizeof(float) * H);
            forward_group(T, K, N, H, P, k, d, x, wp, cx + d * P, hg[d], save ? save + (int64_t)g * T * N * 6 * P : NULL,
                          cs, p + (int64_t)d * T * N);
        }
        attend(T, K, N, H, P, k, hg[0], hg[1], p, p + (int64_t)T * N, alpha, m, e);
    }
}

/* ---- backward --------------------------------------------------------------------------------- */

/* Back-propagation through time of one group (channel k, direction d). The gradient arriving at h_t
 * of gene n is alpha(t) dm_n + dp(t, n) ctx (the attention's, formed here step by step). dwp: the
 * group's padded weight gradient (accumulated); whh (4P, P): W_hh for dh_{t-1} = da @ W_hh. */
INLINE void backward_group(int T, int K, int N, int H, const int P, int k, int d, const float *restrict x,
                           const float *restrict wp, const float *restrict whh, const float *restrict cx,
                           const float *restrict alpha, const float *restrict dmp, const float *restrict dp,
                           const float *restrict hg, const float *restrict sg, float *restrict dx,
                           float *restrict dwp, float *restrict dh_next, float *restrict dc_next,
                           float *restrict da_all) {
    const int NV = 4 * P / VW, HV = P / VW;
    const float *restrict wih = wp + (int64_t)P * 4 * P;
    float *restrict dwih = dwp + (int64_t)P * 4 * P;
    float *restrict dbias = dwih + 4 * P;
    memset(dh_next, 0, sizeof(float) * 2 * (size_t)N * P); /* dh_next and dc_next are adjacent */
    for (int t = T - 1; t >= 0; t--) {
        for (int n = 0; n < N; n++) {
            const float *restrict s = sg + ((int64_t)t * N + n) * 6 * P;
            const float *restrict cp = t ? sg + ((int64_t)(t - 1) * N + n) * 6 * P + 4 * P : NULL;
            const float at = alpha[((int64_t)n * K + k) * T + (d ? T - 1 - t : t)];
            const float dpt = dp[(int64_t)t * N + n];
            float *restrict dhn = dh_next + (int64_t)n * P;
            float *restrict dcn = dc_next + (int64_t)n * P;
            float *restrict da = da_all + (int64_t)n * 4 * P;
            for (int q = 0; q < HV; q++) {
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
            const float xv = x[XAT(n, t)];
            vf dxv = splat(0.0f);
            for (int j = 0; j < NV; j++) {
                const vf g_ = ld(da + j * VW);
                st(dwih + j * VW, ld(dwih + j * VW) + xv * g_);
                st(dbias + j * VW, ld(dbias + j * VW) + g_);
                dxv += g_ * ld(wih + j * VW);
            }
            dx[XAT(n, t)] += hsum(dxv);
        }
        if (!t) break;
        /* dW_hh^T += h_{t-1}^T @ da over the step's genes: a row of dW held in registers over the genes. */
        for (int u = 0; u < H; u++) {
            float *restrict row = dwp + (int64_t)u * 4 * P;
            vf acc[4 * MAX_P / VW];
            for (int j = 0; j < NV; j++) acc[j] = ld(row + j * VW);
            for (int n = 0; n < N; n++) {
                const float hu = hg[((int64_t)(t - 1) * N + n) * P + u];
                const float *restrict da = da_all + (int64_t)n * 4 * P;
                for (int j = 0; j < NV; j++) acc[j] += hu * ld(da + j * VW);
            }
            for (int j = 0; j < NV; j++) st(row + j * VW, acc[j]);
        }
        /* The recurrent part of dh_{t-1} = da @ W_hh (the attention's part is added at that step); one
         * accumulator per gate, so four independent chains of multiply-adds. */
        for (int n = 0; n < N; n++) {
            const float *restrict da = da_all + (int64_t)n * 4 * P;
            vf acc[4][MAX_P / VW];
            for (int gate = 0; gate < 4; gate++)
                for (int q = 0; q < HV; q++) acc[gate][q] = splat(0.0f);
            for (int u = 0; u < H; u++) /* padded gate columns have zero gradient */
                for (int gate = 0; gate < 4; gate++) {
                    const int j = gate * P + u;
                    const float dj = da[j];
                    const float *restrict col = whh + (int64_t)j * P;
                    for (int q = 0; q < HV; q++) acc[gate][q] += dj * ld(col + q * VW);
                }
            for (int q = 0; q < HV; q++) st(dh_next + (int64_t)n * P + q * VW, (acc[0][q] + acc[1][q]) + (acc[2][q] + acc[3][q]));
        }
    }
}

INLINE void backward_channels(int T, int K, int N, int H, const int P, int k0, int k1, const float *x,
                              const float *w, const float *ctx, const float *alpha, const float *h,
                              const float *save, const float *dm, const float *dalpha, float *dx, float *dw,
                              float *dctx, float *scratch) {
    const int HV = P / VW;
    float *wp = scratch;                                 /* (P + 2, 4P) */
    float *dwp = wp + (int64_t)(P + 2) * 4 * P;           /* (P + 2, 4P) */
    float *whh = dwp + (int64_t)(P + 2) * 4 * P;          /* (4P, P) */
    float *cx = whh + (int64_t)4 * P * P;                 /* (2, P) */
    float *dmp = cx + 2 * P;                              /* (2, N, P) */
    float *dp = dmp + 2 * (int64_t)N * P;                 /* (2, T, N) */
    float *dat = dp + 2 * (int64_t)T * N;                 /* (T) */
    float *dh_next = dat + T;                             /* (N, P), then dc_next (N, P) */
    float *da_all = dh_next + 2 * (int64_t)N * P;         /* (N, 4P) */
    for (int k = k0; k < k1; k++) {
        const float *hg[2], *sg[2];
        for (int d = 0; d < 2; d++) {
            const int g = d * K + k;
            hg[d] = h + (int64_t)g * T * N * P;
            sg[d] = save + (int64_t)g * T * N * 6 * P;
            memset(cx + d * P, 0, sizeof(float) * P);
            memcpy(cx + d * P, ctx + (int64_t)k * 2 * H + d * H, sizeof(float) * H);
            for (int n = 0; n < N; n++) {
                float *dst = dmp + ((int64_t)d * N + n) * P;
                memset(dst, 0, sizeof(float) * P);
                memcpy(dst, dm + ((int64_t)n * K + k) * 2 * H + d * H, sizeof(float) * H);
            }
        }
        /* The attention's backward: d scores (through the softmax) and d ctx. */
        vf dcf[MAX_P / VW], dcb[MAX_P / VW];
        for (int q = 0; q < HV; q++) dcf[q] = dcb[q] = splat(0.0f);
        for (int n = 0; n < N; n++) {
            const float *restrict al = alpha + ((int64_t)n * K + k) * T;
            const float *restrict dmf = dmp + (int64_t)n * P, *restrict dmb = dmp + ((int64_t)N + n) * P;
            float total = 0.0f;
            for (int t = 0; t < T; t++) {
                const float *restrict a = hg[0] + ((int64_t)t * N + n) * P;
                const float *restrict b = hg[1] + ((int64_t)(T - 1 - t) * N + n) * P;
                vf acc = splat(0.0f);
                for (int q = 0; q < HV; q++) acc += ld(a + q * VW) * ld(dmf + q * VW) + ld(b + q * VW) * ld(dmb + q * VW);
                dat[t] = (dalpha ? dalpha[((int64_t)n * K + k) * T + t] : 0.0f) + hsum(acc);
                total += al[t] * dat[t];
            }
            for (int t = 0; t < T; t++) {
                const float ds = al[t] * (dat[t] - total);
                dp[(int64_t)t * N + n] = ds;
                dp[(int64_t)T * N + (int64_t)(T - 1 - t) * N + n] = ds;
                const float *restrict a = hg[0] + ((int64_t)t * N + n) * P;
                const float *restrict b = hg[1] + ((int64_t)(T - 1 - t) * N + n) * P;
                for (int q = 0; q < HV; q++) {
                    dcf[q] += ds * ld(a + q * VW);
                    dcb[q] += ds * ld(b + q * VW);
                }
            }
        }
        for (int u = 0; u < H; u++) {
            dctx[(int64_t)k * 2 * H + u] = dcf[u / VW][u % VW];
            dctx[(int64_t)k * 2 * H + H + u] = dcb[u / VW][u % VW];
        }
        for (int n = 0; n < N; n++) memset(dx + ((int64_t)n * K + k) * T, 0, sizeof(float) * T);
        for (int d = 0; d < 2; d++) {
            const int g = d * K + k;
            pad_weights(H, P, w + (int64_t)g * (H + 2) * 4 * H, wp);
            for (int u = 0; u < P; u++)
                for (int j = 0; j < 4 * P; j++) whh[(int64_t)j * P + u] = wp[(int64_t)u * 4 * P + j];
            memset(dwp, 0, sizeof(float) * (size_t)(P + 2) * 4 * P);
            backward_group(T, K, N, H, P, k, d, x, wp, whh, cx + d * P, alpha, dmp + (int64_t)d * N * P,
                           dp + (int64_t)d * T * N, hg[d], sg[d], dx, dwp, dh_next, dh_next + (int64_t)N * P, da_all);
            unpad_weights(H, P, dwp, dw + (int64_t)g * (H + 2) * 4 * H);
        }
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

/* Floats of each array and of one call's scratch, for H hidden units. */
int64_t dd_state_floats(int T, int K, int N, int H) { return 2 * (int64_t)K * T * N * padded(H); }
int64_t dd_save_floats(int T, int K, int N, int H) { return 2 * (int64_t)K * T * N * 6 * padded(H); }
int64_t dd_forward_scratch(int T, int N, int H, int with_states) { /* with_states: h is NULL */
    const int64_t P = padded(H);
    return (P + 2) * 4 * P + 2 * P + N * P + 2 * (int64_t)T * N + T + (with_states ? 2 * (int64_t)T * N * P : 0);
}
int64_t dd_backward_scratch(int T, int N, int H) {
    const int64_t P = padded(H);
    return 2 * (P + 2) * 4 * P + 4 * P * P + 2 * P + 2 * N * P + 2 * (int64_t)T * N + T + 2 * N * P + N * 4 * P;
}

void dd_level1_forward(int T, int K, int N, int H, int k0, int k1, const float *x, const float *w, const float *ctx,
                       float *m, float *alpha, float *h, float *save, float *scratch) {
    const int P = padded(H);
    FOR_P(forward_channels(T, K, N, H, P_, k0, k1, x, w, ctx, m, alpha, h, save, scratch))
}

void dd_level1_backward(int T, int K, int N, int H, int k0, int k1, const float *x, const float *w,
                        const float *ctx, const float *alpha, const float *h, const float *save, const float *dm,
                        const float *dalpha, float *dx, float *dw, float *dctx, float *scratch) {
    const int P = padded(H);
    FOR_P(backward_channels(T, K, N, H, P_, k0, k1, x, w, ctx, alpha, h, save, dm, dalpha, dx, dw, dctx, scratch))
}
