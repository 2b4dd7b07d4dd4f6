// The kernel gradient of a stride-1 depthwise convolution (NHWC input, HWIO kernel with I = 1) as an XLA FFI
// handler for the CPU (`fdx.models.cpu_kernels`):
//
//   dK[i, j, c] = sum over b, h, w of x[b, h + i - pad_top, w + j - pad_left, c] * g[b, h, w, c]
//
// (taps on the padding contribute nothing). Each thread sums a contiguous range of output rows (b, h) into its own
// [KH, KW, C] accumulator, which stays in cache, reading x and g once per tap row; the partial sums are added in
// thread order, so the result depends only on the thread count.

#include <algorithm>
#include <cstdint>
#include <thread>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

void AccumulateRows(const float* x, const float* g, float* acc, int64_t row_begin, int64_t row_end, int64_t in_h,
                    int64_t in_w, int64_t out_h, int64_t out_w, int64_t channels, int64_t kernel_h,
                    int64_t kernel_w, int64_t pad_top, int64_t pad_left) {
  for (int64_t row = row_begin; row < row_end; ++row) {
    const int64_t b = row / out_h, h = row % out_h;
    const float* g_row = g + row * out_w * channels;
    for (int64_t i = 0; i < kernel_h; ++i) {
      const int64_t in_row = h + i - pad_top;
      if (in_row < 0 || in_row >= in_h) continue;
      const float* x_row = x + (b * in_h + in_row) * in_w * channels;
      for (int64_t w = 0; w < out_w; ++w) {
        const float* g_px = g_row + w * channels;
        for (int64_t j = 0; j < kernel_w; ++j) {
          const int64_t in_col = w + j - pad_left;
          if (in_col < 0 || in_col >= in_w) continue;
          const float* __restrict__ x_px = x_row + in_col * channels;
          float* __restrict__ a = acc + (i * kernel_w + j) * channels;
          for (int64_t c = 0; c < channels; ++c) a[c] += x_px[c] * g_px[c];
        }
      }
    }
  }
}

ffi::Error DepthwiseKernelGrad(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> g, ffi::ResultBuffer<ffi::F32> dk,
                               int64_t pad_top, int64_t pad_left, int64_t threads) {
  const auto xd = x.dimensions(), gd = g.dimensions(), kd = dk->dimensions();
  if (xd.size() != 4 || gd.size() != 4 || kd.size() != 3 || xd[0] != gd[0] || xd[3] != gd[3] || kd[2] != xd[3]) {
    return ffi::Error::InvalidArgument("fdx_depthwise_kernel_grad: x [B,H,W,C], g [B,H',W',C], dk [KH,KW,C]");
  }
  const int64_t batch = xd[0], in_h = xd[1], in_w = xd[2], channels = xd[3];
  const int64_t out_h = gd[1], out_w = gd[2], kernel_h = kd[0], kernel_w = kd[1];
  const int64_t rows = batch * out_h, size = kernel_h * kernel_w * channels;
  const int64_t n = std::max<int64_t>(1, std::min<int64_t>(threads, rows));
  std::vector<std::vector<float>> partial(n, std::vector<float>(size, 0.0f));
  std::vector<std::thread> pool;
  for (int64_t t = 0; t < n; ++t) {
    const int64_t begin = rows * t / n, end = rows * (t + 1) / n;
    auto work = [&, t, begin, end] {
      AccumulateRows(x.typed_data(), g.typed_data(), partial[t].data(), begin, end, in_h, in_w, out_h, out_w,
                     channels, kernel_h, kernel_w, pad_top, pad_left);
    };
    if (t + 1 < n) {
      pool.emplace_back(work);
    } else {
      work();
    }
  }
  for (auto& thread : pool) thread.join();
  float* out = dk->typed_data();
  std::copy(partial[0].begin(), partial[0].end(), out);
  for (int64_t t = 1; t < n; ++t) {
    for (int64_t k = 0; k < size; ++k) out[k] += partial[t][k];
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(FdxDepthwiseKernelGrad, DepthwiseKernelGrad,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("pad_top")
                                  .Attr<int64_t>("pad_left")
                                  .Attr<int64_t>("threads"));
