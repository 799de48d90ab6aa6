// AVX-512 kernels of crop_and_resize: the forward pass and the image gradient, for NCHW and
// channels-last (NHWC) images. All of them work on vectors of channels:
//
// - NHWC forward: a sample's four taps are channel vectors of the image; the crop is written
//   a vector of channels at a time.
// - NCHW forward: per (image, block of channels), the block's planes are transposed into an
//   (H, W, block) tile; each box's samples are computed as channel vectors into an
//   (oh * ow, block) tile, which is transposed back into the box's output planes, one
//   contiguous run of the output (large outputs: streamed to memory while the next box is
//   computed). Every bilinear weight serves a whole vector of channels, and the image is read
//   once per block instead of four scattered taps per output value.
// - image gradient: per (image, block of channels), the output gradient is scattered into a
//   private (H, W, block) tile, box by box in order, then copied out into the image gradient
//   (large: with non-temporal stores).
//   No two tasks share an element, and no atomic or lock is taken per value.
//
// The per-lane arithmetic and, for every gradient element, the order of its terms are the
// portable kernels' (planes.h, channels.h), so outputs and image gradients are those
// kernels' to the bit, on any number of threads.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "planes.h"
#include "simd.h"
#include "work.h"

#if IVR_HAVE_AVX512

namespace ivr {
namespace cpu {

// The boxes of each image, in their order: image n's are order[start[n] .. start[n + 1]).
struct BoxesByImage {
  std::vector<int64_t> start, order;
  BoxesByImage(const int64_t* b, int64_t k, int64_t batch) : start(batch + 1, 0), order(k) {
    for (int64_t r = 0; r < k; ++r) ++start[b[r] + 1];
    for (int64_t n = 0; n < batch; ++n) start[n + 1] += start[n];
    std::vector<int64_t> next(start.begin(), start.end() - 1);
    for (int64_t r = 0; r < k; ++r) order[next[b[r]]++] = r;
  }
};

// Outputs from this size on (an L2 cache of this project's machine) are written with
// non-temporal stores: they would leave the writing core's cache before being read anyway,
// and a normal store first reads the line it writes.
constexpr int64_t kStreamBytes = int64_t(2) << 20;

// Copies a run of values to memory with non-temporal stores, a vector per step(), so that the
// copy is spread over the work that follows start() (a core stalls once its few
// write-combining buffers are full, so a copy in one burst waits for memory, while stores
// spread over computation drain as it runs).
template <typename W, typename T>
class StreamOut {
 public:
  // Copies what is left of the last run, then starts src[0, n) -> dst[0, n).
  IVR_AVX512 void start(const T* src, int64_t n, T* dst) {
    finish();
    int64_t head = (64 - reinterpret_cast<uintptr_t>(dst) % 64) % 64 / sizeof(T);
    if (reinterpret_cast<uintptr_t>(dst) % sizeof(T) != 0) head = n;  // unaligned scalars
    head = std::min(head, n);
    std::memcpy(dst, src, head * sizeof(T));
    src_ = src + head;
    dst_ = dst + head;
    left_ = n - head;
  }
  IVR_AVX512 void step(int64_t vectors) {
    for (; vectors > 0 && left_ >= W::L; --vectors, src_ += W::L, dst_ += W::L, left_ -= W::L) {
      W::stream(dst_, W::load(src_));
    }
  }
  // Copies the rest of the run (the caller fences with _mm_sfence before others read dst).
  IVR_AVX512 void finish() {
    step(INT64_MAX);
    if (left_ > 0) std::memcpy(dst_, src_, left_ * sizeof(T));
    left_ = 0;
  }

 private:
  const T* src_ = nullptr;
  T* dst_ = nullptr;
  int64_t left_ = 0;
};

// An AxisTaps' arrays and kept range, copied out for the inner loops of the helpers below:
// the vector stores may alias any memory, so a value read through a reference or a lambda's
// capture would be loaded again after each store, while a local's is not.
template <typename T>
struct TapsView {
  const int64_t* lo;
  const int64_t* hi;
  const T* lerp;
  int64_t size, first, last;
  explicit TapsView(const AxisTaps<T>& a)
      : lo(a.lo.data()), hi(a.hi.data()), lerp(a.lerp.data()),
        size(static_cast<int64_t>(a.lo.size())), first(a.first), last(a.last) {}
};

// One box's crop of a block as channel vectors, crops[(i * ow + j) * block + d], from the
// block's (H, W, block) tile (row_stride = W * block); stream.step(U) once per sample. The
// dropped samples of a row are filled in loops of their own, so that the kept ones take no
// branch, and the stream is worked on as a local copy, kept in registers (see TapsView).
template <typename W, typename T, int64_t U>
IVR_AVX512 inline void crop_box_vectors(const T* tile, int64_t row_stride, const AxisTaps<T>& ty,
                                        const AxisTaps<T>& tx, typename W::V fills, T* crops,
                                        StreamOut<W, T>& stream) {
  constexpr int64_t L = W::L, block = U * L;
  const TapsView<T> y(ty), x(tx);
  StreamOut<W, T> out = stream;  // the box before: nc * crop values, U vectors per sample
  T* o = crops;
  const auto fill = [&](int64_t samples) IVR_AVX512 {
    for (; samples > 0; --samples, o += block) {
      out.step(U);
      for (int64_t u = 0; u < U; ++u) W::store(o + u * L, fills);
    }
  };
  for (int64_t i = 0; i < y.size; ++i) {
    if (i < y.first || i >= y.last) {
      fill(x.size);
      continue;
    }
    fill(x.first);
    const T* top = tile + y.lo[i] * row_stride;
    const T* bottom = tile + y.hi[i] * row_stride;
    const auto yl = W::set1(y.lerp[i]);
    for (int64_t j = x.first; j < x.last; ++j, o += block) {
      out.step(U);
      const T* tl = top + x.lo[j] * block;
      const T* tr = top + x.hi[j] * block;
      const T* bl = bottom + x.lo[j] * block;
      const T* br = bottom + x.hi[j] * block;
      const auto xl = W::set1(x.lerp[j]);
      for (int64_t u = 0; u < U; ++u) {
        const int64_t d = u * L;
        W::store(o + d, vbilinear<W>(W::load(tl + d), W::load(tr + d), W::load(bl + d),
                                     W::load(br + d), xl, yl));
      }
    }
    fill(x.size - x.last);
  }
  stream = out;
}

// image (B, C, H, W) -> out (K, C, oh, ow). Per (image, block of U * L channels): the block's
// planes are transposed into an (H, W, block) tile, each box's crop is computed as channel
// vectors into an (oh * ow, block) tile, which is transposed into the box's output planes.
// Large outputs: a box's planes are streamed out while the next box's crop is computed.
template <typename T, int64_t U>
IVR_AVX512 void crop_nchw_avx512(const T* src, int64_t batch, int64_t c, int64_t h, int64_t w,
                                 const int64_t* b, const BoxTaps<T>& taps, int64_t k,
                                 int64_t oh, int64_t ow, T fill, T* dst) {
  using W = Vec512<T>;
  constexpr int64_t L = W::L, block = U * L;
  const int64_t hw = h * w, crop = oh * ow, blocks = (c + block - 1) / block;
  const BoxesByImage boxes(b, k, batch);
  const typename W::V fills = W::set1(fill);
  const bool stream = k * c * crop * int64_t(sizeof(T)) >= kStreamBytes;
  parallel_items(batch * blocks, (k * crop + batch * hw) * c, [&](int64_t item) IVR_AVX512 {
    const int64_t n = item / blocks, c0 = item % blocks * block, nc = std::min(block, c - c0);
    if (boxes.start[n] == boxes.start[n + 1]) return;
    // (H, W, block), then (crop, block) and (block, crop). One planes buffer: with two (a
    // box's planes transposed into one while the box before is streamed out of the other)
    // the forward measured 6 to 16 % slower at 14x14 (bench/README.md; most likely for L1
    // room, the buffers' placement mattering little; not isolated).
    T* tile = thread_scratch<T>((hw + 2 * crop) * block);
    T* crops = tile + hw * block;
    T* box_planes = crops + crop * block;
    planes_to_vectors<W>(src + (n * c + c0) * hw, hw, nc, hw, tile, block);
    StreamOut<W, T> out;
    for (int64_t at = boxes.start[n]; at < boxes.start[n + 1]; ++at) {
      const int64_t r = boxes.order[at];
      crop_box_vectors<W, T, U>(tile, w * block, taps.y[r], taps.x[r], fills, crops, out);
      // Transposed in cache; the box's planes of the block are nc * crop consecutive values
      // of the output. The box before has been streamed out of box_planes during this box's
      // sampling (a step per sample is at least its vectors): finish() copies only its
      // unaligned tail.
      out.finish();
      vectors_to_planes<W>(crops, block, nc, crop, box_planes, crop);
      if (stream) {
        out.start(box_planes, nc * crop, dst + (r * c + c0) * crop);
      } else {
        std::memcpy(dst + (r * c + c0) * crop, box_planes, sizeof(T) * nc * crop);
      }
    }
    out.finish();
    _mm_sfence();  // the streamed stores are visible before the task ends
  });
}

// image (B, H, W, C) -> out (K, oh, ow, C). kStream: full vectors are written with
// non-temporal stores (c * sizeof(T) and dst 64-byte aligned).
template <typename T, bool kStream>
IVR_AVX512 void crop_nhwc_rows(const T* src, int64_t h, int64_t w, int64_t c, const int64_t* b,
                               const BoxTaps<T>& taps, int64_t k, int64_t oh, int64_t ow,
                               T fill, T* dst) {
  using W = Vec512<T>;
  constexpr int64_t L = W::L;
  const typename W::V fills = W::set1(fill);
  const int64_t full = c / L * L;
  const auto tail = W::first(c - full);
  parallel_items(k * oh, k * oh * ow * c, [&](int64_t ri) IVR_AVX512 {
    const int64_t r = ri / oh, i = ri % oh;
    const auto& ty = taps.y[r];
    const auto& tx = taps.x[r];
    T* row = dst + ri * ow * c;
    const bool row_kept = i >= ty.first && i < ty.last;
    const T* top = src + (b[r] * h + ty.lo[i]) * w * c;
    const T* bottom = src + (b[r] * h + ty.hi[i]) * w * c;
    const auto yl = W::set1(ty.lerp[i]);
    for (int64_t j = 0; j < ow; ++j) {
      T* o = row + j * c;
      if (!row_kept || j < tx.first || j >= tx.last) {
        for (int64_t d = 0; d < full; d += L) W::store(o + d, fills);
        W::store(o + full, fills, tail);
        continue;
      }
      const T* tl = top + tx.lo[j] * c;
      const T* tr = top + tx.hi[j] * c;
      const T* bl = bottom + tx.lo[j] * c;
      const T* br = bottom + tx.hi[j] * c;
      const auto xl = W::set1(tx.lerp[j]);
      for (int64_t d = 0; d < full; d += L) {
        const auto v = vbilinear<W>(W::load(tl + d), W::load(tr + d), W::load(bl + d),
                                    W::load(br + d), xl, yl);
        if constexpr (kStream) {
          W::stream(o + d, v);
        } else {
          W::store(o + d, v);
        }
      }
      W::store(o + full,
               vbilinear<W>(W::load(tl + full, tail), W::load(tr + full, tail),
                            W::load(bl + full, tail), W::load(br + full, tail), xl, yl),
               tail);
    }
    if constexpr (kStream) _mm_sfence();
  });
}

// image (B, H, W, C) -> out (K, oh, ow, C).
template <typename T>
void crop_nhwc_avx512(const T* src, int64_t h, int64_t w, int64_t c, const int64_t* b,
                      const BoxTaps<T>& taps, int64_t k, int64_t oh, int64_t ow, T fill, T* dst) {
  const bool aligned = reinterpret_cast<uintptr_t>(dst) % 64 == 0 && c * sizeof(T) % 64 == 0;
  if (aligned && k * oh * ow * c * int64_t(sizeof(T)) >= kStreamBytes) {
    crop_nhwc_rows<T, true>(src, h, w, c, b, taps, k, oh, ow, fill, dst);
  } else {
    crop_nhwc_rows<T, false>(src, h, w, c, b, taps, k, oh, ow, fill, dst);
  }
}

// NHWC image gradient: a sample's gradient is fetched this many samples ahead.
constexpr int64_t kPrefetchSamples = 8;

// Software prefetch of a range of memory, a few cache lines per step, spread over the work
// that precedes its use.
class Prefetcher {
 public:
  void start(const void* p, int64_t bytes) {
    next_ = static_cast<const char*>(p);
    end_ = next_ + bytes;
  }
  void step(int64_t lines) {
    for (; lines > 0 && next_ < end_; --lines, next_ += 64) _mm_prefetch(next_, _MM_HINT_T0);
  }
  void finish() { step(INT64_MAX); }

 private:
  const char* next_ = nullptr;
  const char* end_ = nullptr;
};

// Scatters one box's gradient of a block into the block's (H, W, block) tile (row_stride =
// W * block): sample s's U vectors at g + s * sample_stride. NHWC: each sample prefetches
// the one kPrefetchSamples ahead (stride c); NCHW: ahead steps. The masks are copied to
// locals too (see TapsView).
template <typename W, typename T, int64_t U, bool kNhwc>
IVR_AVX512 inline void scatter_box(const T* g, int64_t sample_stride, const AxisTaps<T>& ty,
                                   const AxisTaps<T>& tx, const typename W::Mask* masks,
                                   T* tile, int64_t row_stride, int64_t c, Prefetcher& ahead) {
  constexpr int64_t L = W::L, block = U * L;
  typename W::Mask mask[U];
  for (int64_t u = 0; u < U; ++u) mask[u] = masks[u];
  const TapsView<T> y(ty), x(tx);
  for (int64_t i = y.first; i < y.last; ++i) {
    T* top = tile + y.lo[i] * row_stride;
    T* bottom = tile + y.hi[i] * row_stride;
    const auto wt = W::set1(1 - y.lerp[i]), wb = W::set1(y.lerp[i]);
    for (int64_t j = x.first; j < x.last; ++j) {
      const T* gs = g + (i * x.size + j) * sample_stride;
      if constexpr (kNhwc) {
        // A sample's gradient is a block-sized piece of a C-long vector, too far from the
        // last one for the hardware prefetchers. (A prefetch past the end is harmless.)
        for (int64_t d = 0; d < block; d += 64 / sizeof(T)) {
          _mm_prefetch(reinterpret_cast<const char*>(gs + kPrefetchSamples * c + d),
                       _MM_HINT_T0);
        }
      } else {
        ahead.step(2);
      }
      const auto wl = W::set1(1 - x.lerp[j]), wr = W::set1(x.lerp[j]);
      T* ptl = top + x.lo[j] * block;
      T* ptr = top + x.hi[j] * block;
      T* pbl = bottom + x.lo[j] * block;
      T* pbr = bottom + x.hi[j] * block;
      for (int64_t u = 0; u < U; ++u) {
        const int64_t d = u * L;
        const auto gv = W::load(gs + d, mask[u]);
        const auto dt = W::mul(wt, gv), db = W::mul(wb, gv);
        // Taps coincide at integer coordinates: each update reloads its tap.
        W::store(ptl + d, W::add(W::load(ptl + d), W::mul(wl, dt)));
        W::store(ptr + d, W::add(W::load(ptr + d), W::mul(wr, dt)));
        W::store(pbl + d, W::add(W::load(pbl + d), W::mul(wl, db)));
        W::store(pbr + d, W::add(W::load(pbr + d), W::mul(wr, db)));
      }
    }
  }
}

// Image gradient (B, C, H, W) or (B, H, W, C) of the crops' gradient grad (K, C, oh, ow) or
// (K, oh, ow, C), per (image, block of U * L channels) into an (H, W, block) tile. NCHW: each
// box's gradient planes are first transposed into an (oh * ow, block) tile.
template <typename T, int64_t U, bool kNhwc>
IVR_AVX512 void crop_image_grad_avx512(const T* grad, int64_t batch, int64_t c, int64_t h,
                                       int64_t w, const int64_t* b, const BoxTaps<T>& taps,
                                       int64_t k, int64_t oh, int64_t ow, T* gimage) {
  using W = Vec512<T>;
  constexpr int64_t L = W::L, block = U * L;
  const int64_t hw = h * w, crop = oh * ow, blocks = (c + block - 1) / block;
  const BoxesByImage boxes(b, k, batch);
  // A large gradient is written with non-temporal stores (a normal store first reads the
  // line it writes). NHWC: whole blocks (a block of a pixel is a few whole cache lines, 4 KB
  // from the pixel before it at C = 1024). NCHW: the tile is transposed back to planes
  // kPlaneChunk pixels at a time into a buffer that stays in L1, and each plane's run is
  // streamed from there (transposed straight into the gradient, 3/4 of the planes' vector
  // stores straddle two cache lines; the chunked copy measured 0.95 to 0.98 of that one's
  // forward + backward time, bench/README.md).
  constexpr int64_t kPlaneChunk = 256;
  const bool stream =
      batch * c * hw * int64_t(sizeof(T)) >= kStreamBytes &&
      (!kNhwc || (reinterpret_cast<uintptr_t>(gimage) % 64 == 0 && c * sizeof(T) % 64 == 0));
  parallel_items(batch * blocks, (k * crop + batch * hw) * c, [&](int64_t item) IVR_AVX512 {
    const int64_t n = item / blocks, c0 = item % blocks * block, nc = std::min(block, c - c0);
    typename W::Mask mask[U];
    for (int64_t u = 0; u < U; ++u) mask[u] = W::first(std::max<int64_t>(0, nc - u * L));
    // (H, W, block), then NCHW: (crop, block) and (block, kPlaneChunk)
    T* tile = thread_scratch<T>((hw + (kNhwc ? 0 : crop + kPlaneChunk)) * block);
    T* crops = tile + hw * block;
    std::memset(tile, 0, sizeof(T) * hw * block);
    // NCHW: a box's gradient planes of the block (nc * crop values in a row) are fetched
    // while the box before it is scattered.
    Prefetcher ahead;
    for (int64_t at = boxes.start[n]; at < boxes.start[n + 1]; ++at) {
      const int64_t r = boxes.order[at];
      const T* g = grad + r * crop * c + c0;  // NHWC: sample s at g + s * c
      int64_t sample_stride = c;
      if constexpr (!kNhwc) {
        ahead.finish();
        if (at + 1 < boxes.start[n + 1]) {
          ahead.start(grad + (boxes.order[at + 1] * c + c0) * crop, sizeof(T) * nc * crop);
        }
        planes_to_vectors<W>(grad + (r * c + c0) * crop, crop, nc, crop, crops, block);
        g = crops;
        sample_stride = block;
      }
      scatter_box<W, T, U, kNhwc>(g, sample_stride, taps.y[r], taps.x[r], mask, tile, w * block,
                                  c, ahead);
    }
    if constexpr (kNhwc) {
      T* out = gimage + n * hw * c + c0;
      const int64_t pixel_stride = c;  // a local: the stores could alias a captured c
      const bool streamed = stream && nc == block;  // whole vectors only
      for (int64_t p = 0; p < hw; ++p) {
        for (int64_t u = 0; u < U; ++u) {
          T* o = out + p * pixel_stride + u * L;
          const auto v = W::load(tile + p * block + u * L);
          if (streamed) {
            W::stream(o, v);
          } else {
            W::store(o, v, mask[u]);
          }
        }
      }
      if (streamed) _mm_sfence();
    } else if (stream) {
      T* planes = crops + crop * block;
      T* out = gimage + (n * c + c0) * hw;
      StreamOut<W, T> copy;
      for (int64_t p0 = 0; p0 < hw; p0 += kPlaneChunk) {
        const int64_t np = std::min(kPlaneChunk, hw - p0);
        vectors_to_planes<W>(tile + p0 * block, block, nc, np, planes, kPlaneChunk);
        for (int64_t l = 0; l < nc; ++l) {
          copy.start(planes + l * kPlaneChunk, np, out + l * hw + p0);
        }
        copy.finish();
      }
      _mm_sfence();
    } else {
      vectors_to_planes<W>(tile, block, nc, hw, gimage + (n * c + c0) * hw, hw);
    }
  });
}

}  // namespace cpu
}  // namespace ivr

#endif  // IVR_HAVE_AVX512
