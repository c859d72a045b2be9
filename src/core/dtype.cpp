#include "core/dtype.h"

#include <array>
#include <cctype>
#include <string>

#include "core/error.h"

namespace kiln {
namespace {

struct Entry {
  std::uint32_t id;
  DTypeTraits traits;
};

// Block sizes and bytes as in ggml's ggml-common.h (static_asserts live in kernels/blocks.h).
constexpr std::array<Entry, 25> kKnown = {{
    {0, {"f32", 1, 4, false}},
    {1, {"f16", 1, 2, false}},
    {2, {"q4_0", 32, 18, true}},
    {3, {"q4_1", 32, 20, true}},
    {6, {"q5_0", 32, 22, true}},
    {7, {"q5_1", 32, 24, true}},
    {8, {"q8_0", 32, 34, true}},
    {9, {"q8_1", 32, 36, true}},
    {10, {"q2_k", 256, 84, true}},
    {11, {"q3_k", 256, 110, true}},
    {12, {"q4_k", 256, 144, true}},
    {13, {"q5_k", 256, 176, true}},
    {14, {"q6_k", 256, 210, true}},
    {15, {"q8_k", 256, 292, true}},
    {24, {"i8", 1, 1, false}},
    {25, {"i16", 1, 2, false}},
    {26, {"i32", 1, 4, false}},
    {27, {"i64", 1, 8, false}},
    {28, {"f64", 1, 8, false}},
    {30, {"bf16", 1, 2, false}},
    // kiln's affine types: f16 scale d and minimum m per group, then the quants (kernels/blocks.h).
    {1001, {"a4g64", 64, 4 + 64 / 2, true}},
    {1002, {"a4g128", 128, 4 + 128 / 2, true}},
    {1003, {"a8g32", 32, 4 + 32, true}},
    {1004, {"a8g64", 64, 4 + 64, true}},
    {1005, {"a8g128", 128, 4 + 128, true}},
}};

// Names of ggml ids kiln recognises but cannot compute with, for clear error messages.
constexpr std::array<std::pair<std::uint32_t, std::string_view>, 14> kOtherNames = {{
    {16, "iq2_xxs"}, {17, "iq2_xs"}, {18, "iq3_xxs"}, {19, "iq1_s"}, {20, "iq4_nl"},
    {21, "iq3_s"}, {22, "iq2_s"}, {23, "iq4_xs"}, {29, "iq1_m"}, {34, "tq1_0"},
    {35, "tq2_0"}, {39, "mxfp4"}, {40, "nvfp4"}, {4, "q4_2 (removed)"},
}};

}  // namespace

std::optional<DTypeTraits> dtype_traits(std::uint32_t id) {
  for (const Entry& e : kKnown)
    if (e.id == id) return e.traits;
  return std::nullopt;
}

const DTypeTraits& traits(DType t) {
  for (const Entry& e : kKnown)
    if (e.id == static_cast<std::uint32_t>(t)) return e.traits;
  fail("internal: dtype id {} has no traits", static_cast<std::uint32_t>(t));
}

std::optional<DType> parse_dtype(std::string_view name) {
  std::string lower(name);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const Entry& e : kKnown)
    if (e.traits.name == lower) return static_cast<DType>(e.id);
  return std::nullopt;
}

std::string dtype_name_for_id(std::uint32_t id) {
  if (auto t = dtype_traits(id)) return std::string(t->name);
  for (const auto& [other, name] : kOtherNames)
    if (other == id) return std::string(name);
  return "type " + std::to_string(id);
}

}  // namespace kiln
