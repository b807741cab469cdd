/* CPU kernels of NumpyBackend: one pass over memory where NumPy needs several.
 *
 * Compiled on first use by nnbench/backend/_native.py with the system C compiler and loaded
 * with ctypes; without a compiler NumpyBackend computes the same results with NumPy calls.
 * Every kernel performs the IEEE operations of its NumPy counterpart in the same order
 * (floating-point contraction is off, so no fused multiply-adds), except where a comment
 * says otherwise (sums accumulated in double).
 *
 * A 2-D operand is (rows, cols) with element (i, j) at a[i * rs + j * cs]: row-major memory
 * has cs = 1, feature-major memory (the transpose of a row-major (cols, rows) array) rs = 1.
 * Each kernel walks memory in address order for either layout.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__) && defined(__x86_64__) && defined(NNBENCH_CLONES)
/* One build for every x86-64 CPU: the loader picks the widest vector unit at load time. */
#define HOT __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define HOT
#endif

#define KERNELS(T, S, SQRT, EXP, LOG)                                                        \
                                                                                             \
    /* Adam, one pass (torch.optim.Adam with the bias corrections folded into two scalars):  \
     *   m = b1 m + c1 g;  v = b2 v + c2 g^2;  p -= size * m / (sqrt(v) + eps_r)             \
     * with c1 = 1 - b1, c2 = 1 - b2, size = lr sqrt(1 - b2^t) / (1 - b1^t) and              \
     * eps_r = eps sqrt(1 - b2^t). */                                                        \
    HOT void adam_##S(int64_t n, T *restrict p, const T *restrict g, T *restrict m,          \
                      T *restrict v, T b1, T c1, T b2, T c2, T size, T eps_r) {              \
        for (int64_t k = 0; k < n; k++) {                                                    \
            T gk = g[k];                                                                     \
            T mk = b1 * m[k] + c1 * gk;                                                      \
            T vk = b2 * v[k] + c2 * (gk * gk);                                               \
            m[k] = mk;                                                                       \
            v[k] = vk;                                                                       \
            p[k] = p[k] - size * (mk / (SQRT(vk) + eps_r));                                  \
        }                                                                                    \
    }                                                                                        \
                                                                                             \
    /* SGD with momentum (torch.optim.SGD, dampening 0, no Nesterov), one pass:              \
     *   b = g (first step) or mu b + g;  p -= lr b */                                       \
    HOT void momentum_##S(int64_t n, T *restrict p, const T *restrict g, T *restrict b,      \
                          T mu, T lr, int first) {                                           \
        if (first) {                                                                         \
            for (int64_t k = 0; k < n; k++) {                                                \
                b[k] = g[k];                                                                 \
                p[k] = p[k] - lr * g[k];                                                     \
            }                                                                                \
            return;                                                                          \
        }                                                                                    \
        for (int64_t k = 0; k < n; k++) {                                                    \
            T bk = mu * b[k] + g[k];                                                         \
            b[k] = bk;                                                                       \
            p[k] = p[k] - lr * bk;                                                           \
        }                                                                                    \
    }                                                                                        \
                                                                                             \
    /* z = y + bias (per column), then y = relu(z) (slope 0: z if z > 0, else 0; NaN stays   \
     * NaN) or leaky relu (z if z > 0, else slope z), in place. */                           \
    HOT void bias_act_##S(int64_t rows, int64_t cols, int64_t rs, int64_t cs, T *y,          \
                          const T *restrict bias, T slope) {                                 \
        int relu = slope == 0;                                                               \
        if (cs == 1) {                                                                       \
            for (int64_t i = 0; i < rows; i++) {                                             \
                T *restrict r = y + i * rs;                                                  \
                for (int64_t j = 0; j < cols; j++) {                                         \
                    T z = r[j] + bias[j];                                                    \
                    r[j] = relu ? (z <= 0 ? (T)0 : z) : (z > 0 ? z : slope * z);             \
                }                                                                            \
            }                                                                                \
        } else {                                                                             \
            for (int64_t j = 0; j < cols; j++) {                                             \
                T *restrict c = y + j * cs;                                                  \
                T bj = bias[j];                                                              \
                if (rs == 1) {                                                               \
                    for (int64_t i = 0; i < rows; i++) {                                     \
                        T z = c[i] + bj;                                                     \
                        c[i] = relu ? (z <= 0 ? (T)0 : z) : (z > 0 ? z : slope * z);         \
                    }                                                                        \
                    continue;                                                                \
                }                                                                            \
                for (int64_t i = 0; i < rows; i++) {                                         \
                    T z = c[i * rs] + bj;                                                    \
                    c[i * rs] = relu ? (z <= 0 ? (T)0 : z) : (z > 0 ? z : slope * z);        \
                }                                                                            \
            }                                                                                \
        }                                                                                    \
    }                                                                                        \
                                                                                             \
    /* dz = dy * f'(z), with f' = 1 if y > 0 else slope (0 for relu), written over dy, and   \
     * grad_bias[j] = sum_i dz[i, j] (accumulated in double). y and dy share one layout. */  \
    HOT void act_backward_##S(int64_t rows, int64_t cols, int64_t rs, int64_t cs,            \
                              const T *restrict y, T *restrict dy, T slope,                  \
                              T *restrict grad_bias) {                                       \
        if (cs == 1) {                                                                       \
            double acc[cols > 0 ? cols : 1];                                                 \
            for (int64_t j = 0; j < cols; j++) acc[j] = 0.0;                                 \
            for (int64_t i = 0; i < rows; i++) {                                             \
                const T *restrict yr = y + i * rs;                                           \
                T *restrict dr = dy + i * rs;                                                \
                for (int64_t j = 0; j < cols; j++) {                                         \
                    T dz = dr[j] * (yr[j] > 0 ? (T)1 : slope);                               \
                    dr[j] = dz;                                                              \
                    acc[j] += dz;                                                            \
                }                                                                            \
            }                                                                                \
            for (int64_t j = 0; j < cols; j++) grad_bias[j] = (T)acc[j];                     \
            return;                                                                          \
        }                                                                                    \
        /* Column by column: eight running sums (rows i = k mod 8, vectorizable when the     \
         * column is contiguous), then added pairwise. */                                    \
        for (int64_t j = 0; j < cols; j++) {                                                 \
            const T *restrict yc = y + j * cs;                                               \
            T *restrict dc = dy + j * cs;                                                    \
            double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                        \
            int64_t i = 0;                                                                   \
            if (rs == 1) {                                                                   \
                for (; i + 8 <= rows; i += 8) {                                              \
                    for (int k = 0; k < 8; k++) {                                            \
                        T dz = dc[i + k] * (yc[i + k] > 0 ? (T)1 : slope);                   \
                        dc[i + k] = dz;                                                      \
                        acc[k] += dz;                                                        \
                    }                                                                        \
                }                                                                            \
            }                                                                                \
            for (; i < rows; i++) {                                                          \
                T dz = dc[i * rs] * (yc[i * rs] > 0 ? (T)1 : slope);                         \
                dc[i * rs] = dz;                                                             \
                acc[i % 8] += dz;                                                            \
            }                                                                                \
            grad_bias[j] = (T)(((acc[0] + acc[1]) + (acc[2] + acc[3])) +                     \
                               ((acc[4] + acc[5]) + (acc[6] + acc[7])));                     \
        }                                                                                    \
    }                                                                                        \
                                                                                             \
    /* Softmax cross-entropy of rows z_i with labels y_i, mean over the n rows: with         \
     * s = z_i - max(z_i) and S_i = sum_j exp(s_j), writes dL/dz_ij = exp(s_j) / (n S_i)     \
     * - [j = y_i] / n into grad (its own strides; it may be the logits' memory) and returns \
     * L = 1/n sum_i (log(n S_i) - s_iy_i) - log n (the per-row terms summed in double).     \
     * A label outside [0, classes) returns -inf and writes nothing (the caller then raises). */ \
    double cross_entropy_##S(int64_t n, int64_t classes, int64_t rs, int64_t cs,             \
                             const T *z, const int64_t *labels, int64_t grs, int64_t gcs,    \
                             T *grad) {                                                      \
        for (int64_t i = 0; i < n; i++)                                                      \
            if (labels[i] < 0 || labels[i] >= classes) return -HUGE_VAL;                     \
        double total = 0.0;                                                                  \
        T inv_n = (T)(1.0 / (double)n);                                                      \
        T n_t = (T)n;                                                                        \
        for (int64_t i = 0; i < n; i++) {                                                    \
            const T *zr = z + i * rs;                                                        \
            T *gr = grad + i * grs;                                                          \
            T top = zr[0];                                                                   \
            for (int64_t j = 1; j < classes; j++) {                                          \
                T zj = zr[j * cs];                                                           \
                top = (zj > top || zj != zj) ? zj : top;                                     \
            }                                                                                \
            int64_t y = labels[i];                                                           \
            T picked = zr[y * cs] - top;                                                     \
            T sum = 0;                                                                       \
            for (int64_t j = 0; j < classes; j++) {                                          \
                T e = EXP(zr[j * cs] - top);                                                 \
                gr[j * gcs] = e;                                                             \
                sum += e;                                                                    \
            }                                                                                \
            T row = sum * n_t;                                                               \
            for (int64_t j = 0; j < classes; j++) gr[j * gcs] = gr[j * gcs] / row;           \
            gr[y * gcs] = gr[y * gcs] - inv_n;                                               \
            total += (double)LOG(row) - (double)picked;                                      \
        }                                                                                    \
        return total / (double)n - log((double)n);                                           \
    }                                                                                        \
                                                                                             \
    /* The same kernels over a stack of members (member k's operands at a fixed member       \
     * stride, its scalars at index k): each member is computed by the solo kernel itself,    \
     * so its results are bit for bit those of a solo call. */                               \
    void adam_stack_##S(int64_t members, int64_t n, T *p, const T *g, T *m, T *v,            \
                        const T *b1, const T *c1, const T *b2, const T *c2, const T *size,   \
                        const T *eps_r) {                                                    \
        for (int64_t k = 0; k < members; k++)                                                \
            adam_##S(n, p + k * n, g + k * n, m + k * n, v + k * n, b1[k], c1[k], b2[k],     \
                     c2[k], size[k], eps_r[k]);                                              \
    }                                                                                        \
                                                                                             \
    void momentum_stack_##S(int64_t members, int64_t n, T *p, const T *g, T *b, const T *mu, \
                            const T *lr, int first) {                                        \
        for (int64_t k = 0; k < members; k++)                                                \
            momentum_##S(n, p + k * n, g + k * n, b + k * n, mu[k], lr[k], first);           \
    }                                                                                        \
                                                                                             \
    /* losses[k] = member k's mean cross-entropy; labels of member k at labels + k * ls      \
     * (ls = 0: one label row shared by every member). A label out of range gives -inf.     \
     * With correct != NULL, correct[k] = the rows whose first largest logit is at the      \
     * label (numpy's argmax: the first NaN, else the first maximum), counted first. */     \
    void cross_entropy_stack_##S(int64_t members, int64_t n, int64_t classes, int64_t zs,    \
                                 int64_t rs, int64_t cs, const T *z, const int64_t *labels,  \
                                 int64_t ls, int64_t gs, int64_t grs, int64_t gcs, T *grad,  \
                                 double *losses, int64_t *correct) {                         \
        for (int64_t k = 0; k < members; k++) {                                              \
            const T *zk = z + k * zs;                                                        \
            const int64_t *yk = labels + k * ls;                                             \
            if (correct) {                                                                   \
                int64_t right = 0;                                                           \
                for (int64_t i = 0; i < n; i++) {                                            \
                    const T *zr = zk + i * rs;                                               \
                    T best = zr[0];                                                          \
                    int64_t arg = 0;                                                         \
                    for (int64_t j = 1; j < classes && best == best; j++) {                  \
                        T v = zr[j * cs];                                                    \
                        if (v > best || v != v) {                                            \
                            best = v;                                                        \
                            arg = j;                                                         \
                        }                                                                    \
                    }                                                                        \
                    right += arg == yk[i];                                                   \
                }                                                                            \
                correct[k] = right;                                                          \
            }                                                                                \
            losses[k] = cross_entropy_##S(n, classes, rs, cs, zk, yk, grs, gcs, grad + k * gs); \
        }                                                                                    \
    }

KERNELS(float, f32, sqrtf, expf, logf)
KERNELS(double, f64, sqrt, exp, log)

/* The digest of this source the library was built from (-DNNBENCH_DIGEST=...): the loader
 * checks it, so that a library built from another version of this file is never used. */
#ifndef NNBENCH_DIGEST
#define NNBENCH_DIGEST "unknown"
#endif
const char *nnbench_native_digest(void) { return NNBENCH_DIGEST; }
