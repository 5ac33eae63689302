// Fused CPU voxeliser kernel (float32), built by gausstr_core/voxelize_native.py with torch's extension
// builder. The same coefficients as the numba kernel of gausstr_core/voxelize_fused.py (its docstring has
// the maths) and the same results within float32 rounding (the exponential differs: see
// exp_above_cutoff); the loop order differs: per (x, y) column and 16 z voxels at a time (GCC vector
// types), first the weights of every Gaussian reaching the column (independent iterations, so the
// exponentials' dependency chains overlap), then their sum times the C + 1 channels (features, density)
// into accumulators that stay in registers: one store per voxel and channel, no patch in memory.
//
// Threads: thread t takes the x planes t, t + T, ...; each owns whole planes (no atomics). Per plane, the
// Gaussians whose box holds it are bucketed by the rows y where their weight can reach the cutoff.

#include <pybind11/pybind11.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace py = pybind11;

namespace {

constexpr int LANES = 16;
constexpr int MAX_CHANNELS = 32;  // features per Gaussian handled here (C + 1 accumulators incl. density)
typedef float vfloat __attribute__((vector_size(LANES * sizeof(float))));
typedef int32_t vint __attribute__((vector_size(LANES * sizeof(int32_t))));

// 2^f = sum_k (f ln 2)^k / k!, k <= 5, for |f| <= 1/2 (relative error < 3e-6)
constexpr float EXP2_TAYLOR[6] = {1.0f, 0.6931471805599453f, 0.2402265069591007f, 0.055504108664821576f, 0.009618129107628477f, 0.0013333558146428441f};

// exp(x) for the cutoff range (-44 log2 <= x <= 0): 2^t, t = x log2(e), split into n = round(t) and
// f = t - n; 2^f by its degree-5 series, 2^n put into the float's exponent bits (relative error < 6e-6,
// far inside the voxeliser's tolerance of 1e-4 of the peak density).
inline vfloat exp_above_cutoff(vfloat x) {
  const vfloat t = x * 1.4426950408889634f;
  const vfloat n = (t + 12582912.0f) - 12582912.0f;  // round to nearest (1.5 x 2^23), |t| < 2^22
  const vfloat f = t - n;
  vfloat p = vfloat{} + EXP2_TAYLOR[5];
  for (int k = 4; k >= 0; --k) p = p * f + EXP2_TAYLOR[k];
  const vint bits = (__builtin_convertvector(n, vint) + 127) << 23;
  return p * reinterpret_cast<const vfloat &>(bits);
}

struct Reach {  // one Gaussian on the current plane (double: as the numba kernel's scalar maths)
  double q_x, q_xy, q_yy, u_x, c_y, rel_y;
  float step, opacity, z_lo, z_hi;
  int64_t g, first, last;
};

struct Args {
  const int64_t *lo, *hi;
  const double *coef;    // (N, 11), voxelize_fused._column_coefficients
  const float *sources;  // (N, C + 1): features, then 1 (the density)
  int64_t num, num_x, num_y, num_z;
  double size, cutoff, floor;
  bool clear;
  float *density, *weighted;  // (X, Y, Z), (X, Y, Z, C)
};

// Rows (first, last) of plane x where Gaussian g's weight can reach the cutoff (voxelize_fused._row_range).
std::pair<int64_t, int64_t> row_range(const Args &a, int64_t g, int64_t x, Reach &r) {
  const double *c = a.coef + g * 11;
  double dx = (x + 0.5) * a.size - c[6];
  r.q_x = c[0] * dx * dx;
  r.q_xy = c[1] * dx;
  r.q_yy = c[2];
  r.u_x = c[10] * 0.5 - c[3] * c[8] - c[4] * dx;
  r.c_y = c[5];
  r.rel_y = c[7];
  r.step = static_cast<float>(c[10]);
  r.opacity = static_cast<float>(c[9]);
  r.z_lo = static_cast<float>(a.lo[g * 3 + 2]);
  r.z_hi = static_cast<float>(a.hi[g * 3 + 2]);
  r.g = g;
  int64_t y_lo = a.lo[g * 3 + 1], y_hi = a.hi[g * 3 + 1];
  if (r.q_yy < 0) {
    double disc = r.q_xy * r.q_xy - 4 * r.q_yy * (r.q_x - a.cutoff);
    if (disc < 0) return {1, 0};
    double root = std::sqrt(disc);
    double lowest = (r.rel_y + (-r.q_xy + root) / (2 * r.q_yy)) / a.size - 0.5;
    double highest = (r.rel_y + (-r.q_xy - root) / (2 * r.q_yy)) / a.size - 0.5;
    y_lo = std::max(y_lo, static_cast<int64_t>(std::ceil(std::max(lowest, y_lo - 1.0))));
    y_hi = std::min(y_hi, static_cast<int64_t>(std::floor(std::min(highest, y_hi + 1.0))));
  }
  return {y_lo, y_hi};
}

// Weights of Gaussian r at z voxels `index` of row y's column (zero outside its box's z range and below the
// cutoff); sets `any` when the column's best weight reaches the cutoff.
inline vfloat column_weights(const Args &a, const Reach &r, int64_t y, vfloat index, vfloat cutoff, bool &any) {
  const double dy = (y + 0.5) * a.size - r.rel_y;
  const double q = std::min(r.q_x + r.q_xy * dy + r.q_yy * dy * dy, 0.0);
  any |= q >= a.cutoff;  // below: every weight of the column is below the cutoff (masked below)
  // ln(w / opacity) = q - (k step + u_0)^2 at z voxel k (voxelize_fused._gaussian_patch)
  const vfloat u = index * r.step + static_cast<float>(r.u_x - r.c_y * dy);
  const vfloat e = static_cast<float>(q) - u * u;
  const vint inside = (e >= cutoff) & (index >= r.z_lo) & (index <= r.z_hi);
  const vfloat w = exp_above_cutoff(e > cutoff ? e : cutoff) * r.opacity;  // max(e, cutoff): no subnormals
  return inside ? w : vfloat{};
}

template <int NC>  // NC = C + 1 accumulators: C features, then the density
void splat_plane(const Args &a, int64_t x, std::vector<Reach> &reach, std::vector<int64_t> &start,
                 std::vector<int32_t> &order, std::vector<vfloat> &weights) {
  const int64_t num_y = a.num_y, num_z = a.num_z, channels = NC - 1;
  float *plane_density = a.density + x * num_y * num_z;
  float *plane = a.weighted + x * num_y * num_z * channels;
  if (a.clear) std::memset(plane, 0, sizeof(float) * num_y * num_z * channels);
  reach.clear();
  for (int64_t g = 0; g < a.num; ++g) {
    if (x < a.lo[g * 3] || x > a.hi[g * 3]) continue;
    Reach r;
    auto [first, last] = row_range(a, g, x, r);
    if (first > last) continue;
    r.first = first;
    r.last = last;
    reach.push_back(r);
  }
  // Bucket the Gaussians by row: order[start[y] .. start[y + 1]) reach row y.
  std::fill(start.begin(), start.end(), 0);
  for (const Reach &r : reach)
    for (int64_t y = r.first; y <= r.last; ++y) ++start[y + 1];
  for (int64_t y = 0; y < num_y; ++y) start[y + 1] += start[y];
  order.resize(start[num_y]);
  std::vector<int64_t> fill(start.begin(), start.end() - 1);
  for (int32_t i = 0; i < static_cast<int32_t>(reach.size()); ++i)
    for (int64_t y = reach[i].first; y <= reach[i].last; ++y) order[fill[y]++] = i;
  weights.resize(reach.size());

  const vfloat cutoff = vfloat{} + static_cast<float>(a.cutoff), zero = {};
  const vfloat floor = vfloat{} + static_cast<float>(a.floor);
  vfloat lane;
  for (int l = 0; l < LANES; ++l) lane[l] = static_cast<float>(l);
  for (int64_t y = 0; y < num_y; ++y) {
    if (start[y] == start[y + 1]) continue;
    for (int64_t z0 = 0; z0 < num_z; z0 += LANES) {
      vfloat acc[NC];  // fully unrolled loops with constant indices only: the compiler keeps it in registers
#pragma GCC unroll 64
      for (int ch = 0; ch < NC; ++ch) acc[ch] = zero;
      const vfloat index = lane + static_cast<float>(z0);
      // Two passes: the weights of every Gaussian of the column first (independent iterations: the
      // exponentials' dependency chains overlap), then the accumulation.
      bool any = false;
      const int64_t begin = start[y], items = start[y + 1] - start[y];
      for (int64_t i = 0; i < items; ++i) weights[i] = column_weights(a, reach[order[begin + i]], y, index, cutoff, any);
      if (!any) continue;
      for (int64_t i = 0; i < items; ++i) {
        const vfloat w = weights[i];
        const float *v = a.sources + reach[order[begin + i]].g * NC;
#pragma GCC unroll 64
        for (int ch = 0; ch < NC; ++ch) acc[ch] += v[ch] * w;
      }
      // features = sums / max(density, floor), zero where no weight (its sums are zero)
      const vfloat density = acc[NC - 1];
      const vfloat inverse = 1.0f / (density > floor ? density : floor);
      alignas(64) float lanes[NC][LANES];
#pragma GCC unroll 64
      for (int ch = 0; ch < NC - 1; ++ch) {
        const vfloat feature = acc[ch] * inverse;
        std::memcpy(lanes[ch], &feature, sizeof(vfloat));
      }
      std::memcpy(lanes[NC - 1], &density, sizeof(vfloat));
      const int64_t count = std::min<int64_t>(LANES, num_z - z0);
      float *out = plane + (y * num_z + z0) * channels;
      for (int64_t l = 0; l < count; ++l) {
        plane_density[y * num_z + z0 + l] = lanes[NC - 1][l];
#pragma GCC unroll 64
        for (int ch = 0; ch < NC - 1; ++ch) out[l * channels + ch] = lanes[ch][l];
      }
    }
  }
}

template <int NC>
void splat_planes(const Args &a, int64_t t, int64_t threads) {
  std::vector<Reach> reach;
  std::vector<int64_t> start(a.num_y + 1);
  std::vector<int32_t> order;
  std::vector<vfloat> weights;  // one column's weights, a vector per Gaussian
  reach.reserve(a.num);
  for (int64_t x = t; x < a.num_x; x += threads) splat_plane<NC>(a, x, reach, start, order, weights);
}

using PlanesFn = void (*)(const Args &, int64_t, int64_t);

template <int... I>
constexpr std::array<PlanesFn, sizeof...(I)> planes_table(std::integer_sequence<int, I...>) {
  return {&splat_planes<I + 2>...};  // NC = 2 .. MAX_CHANNELS + 1
}

constexpr auto PLANES = planes_table(std::make_integer_sequence<int, MAX_CHANNELS>{});

template <typename T>
T *checked(const py::buffer &array, const char *name, std::vector<int64_t> shape) {
  py::buffer_info info = array.request(std::is_const<T>::value ? false : true);
  if (!info.item_type_is_equivalent_to<std::remove_const_t<T>>())
    throw std::invalid_argument(std::string("splat_cpu: ") + name + " has the wrong dtype (" + info.format + ")");
  if (info.ndim != static_cast<int64_t>(shape.size()))
    throw std::invalid_argument(std::string("splat_cpu: ") + name + " has the wrong number of dimensions");
  int64_t stride = info.itemsize;
  for (int64_t d = info.ndim - 1; d >= 0; --d) {
    if (shape[d] >= 0 && info.shape[d] != shape[d])
      throw std::invalid_argument(std::string("splat_cpu: ") + name + " has the wrong shape");
    if (info.shape[d] > 1 && info.strides[d] != stride)
      throw std::invalid_argument(std::string("splat_cpu: ") + name + " is not C-contiguous");
    stride *= info.shape[d];
  }
  return static_cast<T *>(info.ptr);
}

void splat(const py::buffer &lo, const py::buffer &hi, const py::buffer &coef, const py::buffer &sources, double size,
           double cutoff, double floor, bool clear, int64_t threads, const py::buffer &density,
           const py::buffer &weighted) {
  Args a{};
  py::buffer_info grid = density.request();
  if (grid.ndim != 3) throw std::invalid_argument("splat_cpu: density must be (X, Y, Z)");
  a.num_x = grid.shape[0];
  a.num_y = grid.shape[1];
  a.num_z = grid.shape[2];
  py::buffer_info table = sources.request();
  if (table.ndim != 2) throw std::invalid_argument("splat_cpu: sources must be (N, C + 1)");
  a.num = table.shape[0];
  const int64_t nc = table.shape[1];
  if (nc < 2 || nc > MAX_CHANNELS + 1)
    throw std::invalid_argument("splat_cpu: C must be 1.." + std::to_string(MAX_CHANNELS) + ", got " +
                                std::to_string(nc - 1));
  a.lo = checked<const int64_t>(lo, "lo", {a.num, 3});
  a.hi = checked<const int64_t>(hi, "hi", {a.num, 3});
  a.coef = checked<const double>(coef, "coef", {a.num, 11});
  a.sources = checked<const float>(sources, "sources", {a.num, nc});
  a.density = checked<float>(density, "density", {a.num_x, a.num_y, a.num_z});
  a.weighted = checked<float>(weighted, "weighted", {a.num_x, a.num_y, a.num_z, nc - 1});
  a.size = size;
  a.cutoff = cutoff;
  a.floor = floor;
  a.clear = clear;
  const PlanesFn run = PLANES[nc - 2];
  threads = std::max<int64_t>(1, std::min(threads, a.num_x));
  py::gil_scoped_release release;
  std::vector<std::thread> pool;
  for (int64_t t = 1; t < threads; ++t) pool.emplace_back(run, std::cref(a), t, threads);
  run(a, 0, threads);
  for (std::thread &worker : pool) worker.join();
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "Fused CPU voxeliser kernel (gausstr_core/voxelize_native.py)";
  m.def("splat", &splat, "Fill density (X, Y, Z) and weighted (X, Y, Z, C) float32 in place");
  m.attr("max_channels") = MAX_CHANNELS;
}
