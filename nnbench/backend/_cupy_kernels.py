"""The CUDA sources of CupyBackend's fused kernels, and their construction with CuPy.

Importing this module imports nothing from CuPy: the sources are plain strings (so tests
compile them with nvcc or a host C++ compiler on machines without a GPU), and `Kernels`
builds the CuPy kernel objects on first use. The math of every kernel is a ``__device__``
function in `PREAMBLE`; the kernels themselves only index and call it. Each mirrors a method
of the reference `nnbench.backend.base.Backend`, which states the formula.
"""

from __future__ import annotations

from nnbench.backend.base import ACTIVATIONS, LEAKY_SLOPE

# Code of each activation inside the kernels (one kernel is compiled per activation).
ACTIVATION_CODES = {kind: code for code, kind in enumerate(ACTIVATIONS)}

# Threads of the one-block kernels (cross-entropy, counting): a power of two.
BLOCK = 256

PREAMBLE = r"""
#if !defined(__CUDACC__) && !defined(__CUDACC_RTC__)
#define __device__
#define __forceinline__ inline
#endif

#define NNB_LEAKY_SLOPE @LEAKY_SLOPE@

/* ------------------------------------------------------------- activations
   Codes: 0 sigmoid, 1 tanh, 2 relu, 3 leaky_relu, 4 identity (ACTIVATIONS order).
   f(z), and dL/dz from y = f(z) and dL/dy, as Backend.activation(_backward). */
template <typename T>
__device__ __forceinline__ T nnb_act(int kind, T z) {
    if (kind == 0) {  /* sigmoid through e = exp(-|z|) <= 1: nothing overflows */
        T e = exp(-fabs(z));
        return z >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
    }
    if (kind == 1) return tanh(z);
    if (kind == 2) return z > T(0) ? z : T(0);
    if (kind == 3) return z > T(0) ? z : T(NNB_LEAKY_SLOPE) * z;
    return z;
}

template <typename T>
__device__ __forceinline__ T nnb_act_grad(int kind, T y, T dy) {
    if (kind == 0) return dy * y * (T(1) - y);
    if (kind == 1) return dy * (T(1) - y * y);
    if (kind == 2) return y > T(0) ? dy : T(0);
    if (kind == 3) return y > T(0) ? dy : T(NNB_LEAKY_SLOPE) * dy;
    return dy;
}

/* ------------------------------------------------------------- Philox4x32-10
   Salmon et al., "Parallel random numbers: as easy as 1, 2, 3" (SC11): a counter-based
   generator, so element i of draw c is a pure function of (seed, c, i). The counter c is
   read from device memory, which is what lets a CUDA graph draw fresh masks on replay. */
__device__ __forceinline__ unsigned int nnb_mulhilo(unsigned int a, unsigned int b,
                                                    unsigned int* hi) {
    unsigned long long p = (unsigned long long)a * (unsigned long long)b;
    *hi = (unsigned int)(p >> 32);
    return (unsigned int)p;
}

__device__ __forceinline__ void nnb_philox(unsigned int c[4], unsigned int k0,
                                           unsigned int k1) {
    for (int r = 0; r < 10; ++r) {
        if (r > 0) {
            k0 += 0x9E3779B9u;
            k1 += 0xBB67AE85u;
        }
        unsigned int hi0, hi1;
        unsigned int lo0 = nnb_mulhilo(0xD2511F53u, c[0], &hi0);
        unsigned int lo1 = nnb_mulhilo(0xCD9E8D57u, c[2], &hi1);
        unsigned int n0 = hi1 ^ c[1] ^ k0;
        unsigned int n2 = hi0 ^ c[3] ^ k1;
        c[0] = n0;
        c[1] = lo1;
        c[2] = n2;
        c[3] = lo0;
    }
}

/* Uniform in [0, 1) for element i of draw `counter` of generator `seed`: the counter block
   is (i low, i high, counter low, counter high), the key the seed's two halves. float: the
   top 24 bits of word 0; double: 53 bits from words 0 and 1. */
template <typename T>
__device__ __forceinline__ T nnb_uniform(unsigned long long seed, unsigned long long counter,
                                         unsigned long long i);

template <>
__device__ __forceinline__ float nnb_uniform<float>(unsigned long long seed,
                                                    unsigned long long counter,
                                                    unsigned long long i) {
    unsigned int c[4] = {(unsigned int)i, (unsigned int)(i >> 32), (unsigned int)counter,
                         (unsigned int)(counter >> 32)};
    nnb_philox(c, (unsigned int)seed, (unsigned int)(seed >> 32));
    return (float)(c[0] >> 8) * 5.9604644775390625e-08f; /* 2^-24 */
}

template <>
__device__ __forceinline__ double nnb_uniform<double>(unsigned long long seed,
                                                      unsigned long long counter,
                                                      unsigned long long i) {
    unsigned int c[4] = {(unsigned int)i, (unsigned int)(i >> 32), (unsigned int)counter,
                         (unsigned int)(counter >> 32)};
    nnb_philox(c, (unsigned int)seed, (unsigned int)(seed >> 32));
    unsigned long long bits =
        ((unsigned long long)(c[0] >> 5) << 26) | (unsigned long long)(c[1] >> 6);
    return (double)bits * 1.1102230246251565e-16; /* 2^-53 */
}

/* ------------------------------------------------------------- optimizers
   One element of torch.optim.SGD / Adam(W), as Backend.sgd_step / adam_step. */
template <typename T>
__device__ __forceinline__ void nnb_sgd(T g, T lr, T wd, T* p) {
    if (wd != T(0)) g = g + wd * *p;
    *p = *p - lr * g;
}

template <typename T>
__device__ __forceinline__ void nnb_sgd_momentum(T g, T lr, T mu, T wd, int nesterov,
                                                 int first, T* p, T* b) {
    if (wd != T(0)) g = g + wd * *p;
    T nb = first ? g : mu * *b + g;
    *b = nb;
    if (nesterov) g = g + mu * nb;
    else g = nb;
    *p = *p - lr * g;
}

template <typename T>
__device__ __forceinline__ void nnb_adam(T g, double t, double lr, double beta1, double beta2,
                                         double eps, double wd, int decoupled, T* p, T* m,
                                         T* v) {
    double bias1 = 1.0 - pow(beta1, t);
    double root2 = sqrt(1.0 - pow(beta2, t));
    T q = *p;
    if (wd != 0.0 && decoupled) q = q * T(1.0 - lr * wd);
    else if (wd != 0.0) g = g + T(wd) * q;
    T mn = T(beta1) * *m + T(1.0 - beta1) * g;
    T vn = T(beta2) * *v + T(1.0 - beta2) * g * g;
    *m = mn;
    *v = vn;
    *p = q - T(lr / bias1) * mn / (sqrt(vn) / T(root2) + T(eps));
}

/* ------------------------------------------------------------- cross-entropy, one row
   Row r of softmax cross-entropy, as Backend.cross_entropy: with s = z - max(z) and
   lse = log sum exp(s), the row's loss is lse - s[y] and its gradient (exp(s - lse) -
   onehot(y)) / n. A NaN or inf among the logits makes the loss NaN, as in the reference. */
template <typename T>
__device__ __forceinline__ double nnb_ce_row(const T* z, long long y, int classes, T n,
                                             T* g) {
    T m = z[0];
    for (int j = 1; j < classes; ++j) m = fmax(m, z[j]);
    T total = T(0);
    for (int j = 0; j < classes; ++j) total += exp(z[j] - m);
    T lse = log(total);
    for (int j = 0; j < classes; ++j) {
        T p = exp(z[j] - m - lse);
        g[j] = (p - (j == y ? T(1) : T(0))) / n;
    }
    return (double)(lse - (z[y] - m));
}

/* The first index of a row's largest logit (a NaN counts as largest, as numpy.argmax). */
template <typename T>
__device__ __forceinline__ int nnb_argmax(const T* z, int classes) {
    T best = z[0];
    int at = 0;
    for (int j = 1; j < classes; ++j) {
        if (best == best && (z[j] > best || z[j] != z[j])) {
            best = z[j];
            at = j;
        }
    }
    return at;
}

/* ------------------------------------------------------------- step bookkeeping
   Backend.record_step on s = [ok, loss_sum, correct, seen, steps, diverged_at, applied]. */
__device__ __forceinline__ void nnb_record(double* s, double loss, double correct,
                                           double rows) {
    int ok = s[0] > 0.0;
    double steps = s[4] + 1.0;
    s[4] = steps;
    if (ok && isfinite(loss)) {
        s[1] += loss * rows;
        s[2] += correct;
        s[3] += rows;
        s[6] += 1.0;
    } else {
        if (ok) s[5] = steps;
        s[0] = 0.0;
    }
}
""".replace("@LEAKY_SLOPE@", repr(LEAKY_SLOPE))

# One block of BLOCK threads walks the rows; the per-row results are summed in a fixed order
# (each thread over its rows, then a tree in shared memory), so the result is deterministic.
REDUCE_SOURCE = r"""
template <typename T>
__device__ void nnb_cross_entropy(const T* logits, const long long* labels, T* grad,
                                  double* loss, int n, int classes) {
    __shared__ double part[@BLOCK@];
    double acc = 0.0;
    for (int r = threadIdx.x; r < n; r += blockDim.x) {
        long long at = (long long)r * classes;
        acc += nnb_ce_row<T>(logits + at, labels[r], classes, T(n), grad + at);
    }
    part[threadIdx.x] = acc;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half >>= 1) {
        if (threadIdx.x < half) part[threadIdx.x] += part[threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x == 0) loss[0] = part[0] / (double)n;
}

template <typename T>
__device__ void nnb_count_correct(const T* logits, const long long* labels, double* out,
                                  int n, int classes) {
    __shared__ double part[@BLOCK@];
    double acc = 0.0;
    for (int r = threadIdx.x; r < n; r += blockDim.x) {
        acc += nnb_argmax<T>(logits + (long long)r * classes, classes) == labels[r] ? 1.0 : 0.0;
    }
    part[threadIdx.x] = acc;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half >>= 1) {
        if (threadIdx.x < half) part[threadIdx.x] += part[threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[0] = part[0];
}

extern "C" __global__ void nnb_cross_entropy_float32(const float* logits,
        const long long* labels, float* grad, double* loss, int n, int classes) {
    nnb_cross_entropy<float>(logits, labels, grad, loss, n, classes);
}

extern "C" __global__ void nnb_cross_entropy_float64(const double* logits,
        const long long* labels, double* grad, double* loss, int n, int classes) {
    nnb_cross_entropy<double>(logits, labels, grad, loss, n, classes);
}

extern "C" __global__ void nnb_count_correct_float32(const float* logits,
        const long long* labels, double* out, int n, int classes) {
    nnb_count_correct<float>(logits, labels, out, n, classes);
}

extern "C" __global__ void nnb_count_correct_float64(const double* logits,
        const long long* labels, double* out, int n, int classes) {
    nnb_count_correct<double>(logits, labels, out, n, classes);
}

extern "C" __global__ void nnb_record_step(double* stats, const double* loss,
        const double* correct, double rows, int with_correct) {
    if (threadIdx.x == 0 && blockIdx.x == 0) {
        nnb_record(stats, loss[0], with_correct ? correct[0] : 0.0, rows);
    }
}
""".replace("@BLOCK@", str(BLOCK))

RAW_FUNCTIONS = (
    "nnb_cross_entropy_float32",
    "nnb_cross_entropy_float64",
    "nnb_count_correct_float32",
    "nnb_count_correct_float64",
    "nnb_record_step",
)

# Elementwise kernels: (in params, out params, operation), CuPy's ElementwiseKernel syntax.
# ``i`` is the element's index; arrays are C-contiguous (CupyBackend checks).
ELEMENTWISE = {
    # y = z + b over the rows of a (rows, k) array, in place
    "bias_add": ("raw T b, int32 k", "T y", "y = y + b[i % k]"),
    # y = f(z + b) over the rows of z, in place: a Dense layer and its activation
    "bias_activation": (
        "raw T b, int32 k, int32 kind",
        "T y",
        "y = nnb_act<T>(kind, y + b[i % k])",
    ),
    "activation": ("T z, int32 kind", "T y", "y = nnb_act<T>(kind, z)"),
    "activation_grad": ("T y, T dy, int32 kind", "T dz", "dz = nnb_act_grad<T>(kind, y, dy)"),
    # inverted-dropout mask from draw state[1] of generator state[0]
    "dropout_mask": (
        "raw uint64 state, float64 p, T scale",
        "T mask",
        "mask = nnb_uniform<T>(state[0], state[1], i) >= T(p) ? scale : T(0)",
    ),
    "uniform": ("raw uint64 state", "T u", "u = nnb_uniform<T>(state[0], state[1], i)"),
    "sgd": (
        "T g, raw float64 gate, T lr, T wd",
        "T p",
        "if (gate[0] > 0.0) nnb_sgd<T>(g, lr, wd, &p)",
    ),
    "sgd_momentum": (
        "T g, raw float64 gate, T lr, T mu, T wd, int32 nesterov, int32 first",
        "T p, T b",
        "if (gate[0] > 0.0) nnb_sgd_momentum<T>(g, lr, mu, wd, nesterov, first, &p, &b)",
    ),
    # t: the host's step number, or (device_step) the count in step[0]
    "adam": (
        "T g, raw float64 gate, raw float64 step, float64 t, int32 device_step, "
        "float64 lr, float64 beta1, float64 beta2, float64 eps, float64 wd, int32 decoupled",
        "T p, T m, T v",
        "if (gate[0] > 0.0) nnb_adam<T>(g, device_step ? step[0] : t, lr, beta1, beta2, "
        "eps, wd, decoupled, &p, &m, &v)",
    ),
}


class Kernels:
    """The compiled kernels for one CuPy module, built on first use and then cached."""

    def __init__(self, cupy):
        self.cupy = cupy
        self._elementwise: dict = {}
        self._module = None

    def elementwise(self, name: str):
        kernel = self._elementwise.get(name)
        if kernel is None:
            params_in, params_out, operation = ELEMENTWISE[name]
            kernel = self._elementwise[name] = self.cupy.ElementwiseKernel(
                params_in, params_out, operation, f"nnb_{name}", preamble=PREAMBLE
            )
        return kernel

    def raw(self, name: str):
        if self._module is None:
            self._module = self.cupy.RawModule(code=PREAMBLE + REDUCE_SOURCE)
        return self._module.get_function(name)


_KERNELS: dict = {}


def kernels(cupy) -> Kernels:
    """The `Kernels` of this process's CuPy (one set, shared by every CupyBackend)."""
    found = _KERNELS.get(id(cupy))
    if found is None:
        found = _KERNELS[id(cupy)] = Kernels(cupy)
    return found
