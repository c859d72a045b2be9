// Feeds arbitrary bytes to read_pickle, kiln's restricted unpickler. Refusal must be a
// kiln::Error; anything else (a crash, a sanitizer report, another exception, a hang, a giant
// allocation) is a finding. An accepted value tree is walked, within a budget of nodes, since
// shared subtrees may make a naive walk exponential.
#include <cstddef>
#include <cstdint>
#include <span>

#include "core/error.h"
#include "format/pickle_reader.h"

namespace {

std::size_t walk(const kiln::PickleValue& v, std::size_t& budget, int depth) {
  if (budget == 0) return 0;
  --budget;
  if (depth > 64) __builtin_trap();  // read_pickle bounds nesting at 64 levels
  std::size_t sum = v.string.size() + v.kind_name().size();
  for (const kiln::PickleValuePtr& e : v.elements) sum += walk(*e, budget, depth + 1);
  for (const auto& [key, value] : v.dict.items) {
    sum += walk(*key, budget, depth + 1);
    sum += walk(*value, budget, depth + 1);
    if (key->kind == kiln::PickleValue::Kind::string && v.find(key->string) != value.get()) __builtin_trap();
  }
  if (v.dict.attributes) sum += walk(*v.dict.attributes, budget, depth + 1);
  if (v.kind == kiln::PickleValue::Kind::tensor) {
    if (v.tensor.size.size() != v.tensor.stride.size()) __builtin_trap();
    sum += v.tensor.storage.key.size() + v.tensor.size.size();
  }
  return sum;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const kiln::PickleValuePtr root = kiln::read_pickle(std::span<const std::uint8_t>(data, size), "fuzz.pkl");
    std::size_t budget = 100000;
    volatile std::size_t sink = walk(*root, budget, 1);
    (void)sink;
  } catch (const kiln::Error&) {
  }
  return 0;
}
