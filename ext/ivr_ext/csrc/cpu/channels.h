// Loops over a contiguous run of channels, for channels-last (NHWC) images: every sample's
// four taps are channel vectors, so these loops vectorise (the per-sample bookkeeping is
// paid once per sample instead of once per channel).
#pragma once

#include <cstdint>

#include "../bilinear.h"

// Compile each loop for AVX-512, AVX2 and the baseline, picked at load time (GCC/Clang on
// x86-64 Linux); elsewhere the compiler's default target.
#if defined(__x86_64__) && defined(__linux__) && (defined(__GNUC__) || defined(__clang__))
#define IVR_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define IVR_SIMD_CLONES
#endif

namespace ivr {
namespace cpu {

// out[d] = bilinear value of the four tap vectors, d < n.
template <typename T, typename S>
IVR_SIMD_CLONES void lerp_channels(const S* __restrict__ tl, const S* __restrict__ tr,
                          const S* __restrict__ bl, const S* __restrict__ br, T xl, T yl,
                          S* __restrict__ out, int64_t n) {
  for (int64_t d = 0; d < n; ++d) {
    out[d] = static_cast<S>(bilinear<T>(tl[d], tr[d], bl[d], br[d], xl, yl));
  }
}

// The transposed sampling: spread g over the four tap vectors, in TF's order. Taps coincide
// at integer coordinates (tl == tr and so on), so they are not __restrict__.
template <typename T, typename S>
IVR_SIMD_CLONES void scatter_channels(const S* __restrict__ g, T xl, T yl, S* tl, S* tr, S* bl, S* br,
                             int64_t n) {
  for (int64_t d = 0; d < n; ++d) {
    const T dt = (1 - yl) * static_cast<T>(g[d]);
    const T db = yl * static_cast<T>(g[d]);
    tl[d] += static_cast<S>((1 - xl) * dt);
    tr[d] += static_cast<S>(xl * dt);
    bl[d] += static_cast<S>((1 - xl) * db);
    br[d] += static_cast<S>(xl * db);
  }
}

// sum_d g[d] * d value[d] / d coord_y (and _x) over the channels.
template <typename T, typename S>
IVR_SIMD_CLONES void grad_channels(const S* tl, const S* tr, const S* bl, const S* br, const S* g, T xl,
                          T yl, int64_t n, T* dy_sum, T* dx_sum) {
  T sy = 0, sx = 0;
  for (int64_t d = 0; d < n; ++d) {
    T dy, dx;
    bilinear_grad<T>(tl[d], tr[d], bl[d], br[d], xl, yl, &dy, &dx);
    sy += dy * static_cast<T>(g[d]);
    sx += dx * static_cast<T>(g[d]);
  }
  *dy_sum = sy;
  *dx_sum = sx;
}

}  // namespace cpu
}  // namespace ivr
