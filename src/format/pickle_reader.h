#pragma once
// A restricted unpickler for the pickles torch.save writes (data.pkl of a PyTorch checkpoint):
// it rebuilds a small tree of plain values (none, bool, int, float, str, tuple, list, dict)
// plus tensor records, and runs nothing. Python's pickle imports any module and calls any
// callable a pickle names; this reader knows a fixed allowlist and refuses everything else
// before acting on it, so a pickle that would call os.system never gets to.
//
// Accepted: protocol 2 to 5 headers, and only these opcodes: PROTO, FRAME, STOP, MARK,
// EMPTY_DICT, EMPTY_LIST, EMPTY_TUPLE, TUPLE, TUPLE1/2/3, BINUNICODE, SHORT_BINUNICODE,
// BININT, BININT1, BININT2, LONG1 (up to 8 bytes), BINFLOAT, NEWTRUE, NEWFALSE, NONE,
// BINPUT, LONG_BINPUT, BINGET, LONG_BINGET, MEMOIZE, SETITEM, SETITEMS, APPEND, APPENDS,
// GLOBAL and STACK_GLOBAL (allowlisted names only), REDUCE (allowlisted callables only),
// BINPERSID (torch's storage ids only), BUILD (attributes of a dict only).
//
// Allowlisted globals:
//   collections.OrderedDict           called with () -> an empty dict
//   torch._utils._rebuild_tensor_v2   called with (storage, storage_offset, size, stride,
//                                     requires_grad, backward_hooks[, metadata]) -> a tensor
//   torch._utils._rebuild_parameter   called with (tensor, requires_grad, backward_hooks)
//                                     -> the tensor
//   torch.{Float,Half,BFloat16,Double,Long,Int,Short,Char,Byte,Bool}Storage
//                                     only as the type inside a persistent id
// A persistent id must be ('storage', <storage type>, key: str, location: str, numel: int).
// BUILD sets attributes of an OrderedDict (nn.Module.state_dict()'s `_metadata`): the state
// must be a dict (or None); the attributes are kept apart from the dict's items.
//
// Anything else throws kiln::Error naming the opcode or global and its byte offset, e.g.
// "model.bin: data.pkl byte 2: GLOBAL 'os.system' is not allowed ...". Sizes are bounded
// (stack, memo, marks, string and container lengths, nesting depth), and a container cannot
// be changed once it is stored inside another, which rules out cycles.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace kiln {

// A storage a tensor points into: the persistent id's fields. `storage_type` is the torch class
// name ("FloatStorage"); `numel` counts elements of that type.
struct PickleStorage {
  std::string storage_type;
  std::string key;       // the storage's file is <archive>/data/<key>
  std::string location;  // "cpu", "cuda:0", ...
  std::int64_t numel = 0;
};

// What _rebuild_tensor_v2 was called with. Sizes and strides are in elements, outermost first.
struct PickleTensor {
  PickleStorage storage;
  std::int64_t storage_offset = 0;
  std::vector<std::int64_t> size;
  std::vector<std::int64_t> stride;
  bool requires_grad = false;
};

// The storage classes a persistent id may name, with what their elements are.
struct TorchStorageType {
  std::string_view name;        // "FloatStorage"
  std::string_view dtype_name;  // "float32", as torch names the dtype
  std::size_t element_bytes;
};
// The allowlisted storage class called `name`, or null.
const TorchStorageType* find_torch_storage_type(std::string_view name);

struct PickleValue;
using PickleValuePtr = std::shared_ptr<PickleValue>;

// A dict's items in insertion order (Python dicts and OrderedDict both keep it). Keys are str
// or int; setting an existing key replaces its value in place, as Python does.
struct PickleDict {
  std::vector<std::pair<PickleValuePtr, PickleValuePtr>> items;
  std::unordered_map<std::string, std::size_t> index;  // key's index_key() -> position in items
  PickleValuePtr attributes;                           // a dict, set by BUILD (e.g. `_metadata`), or null
  bool ordered = false;                                // made by collections.OrderedDict rather than EMPTY_DICT
};

struct PickleValue {
  enum class Kind {
    none,
    boolean,
    integer,
    floating,
    string,
    tuple,
    list,
    dict,
    tensor,
    storage,       // a persistent id's result
    callable,      // an allowlisted function (only as REDUCE's callable)
    storage_type,  // an allowlisted storage class (only inside a persistent id)
  };
  Kind kind = Kind::none;
  bool boolean = false;
  std::int64_t integer = 0;
  double floating = 0;
  std::string string;                    // string; the name of a callable or storage type
  std::vector<PickleValuePtr> elements;  // tuple, list
  PickleDict dict;
  PickleTensor tensor;
  PickleStorage storage;
  // True once stored inside another value: a frozen container is never changed again.
  bool frozen = false;
  int depth = 1;  // nesting depth: 1 for a leaf or an empty container

  // "str", "dict", "tensor", ... for messages.
  std::string_view kind_name() const;
  // A dict's item with string key `key`, or null (the value must be a dict).
  const PickleValue* find(std::string_view key) const;
};

struct PickleLimits {
  std::size_t max_stack = 1u << 20;         // values on the stack
  std::size_t max_marks = 1u << 12;         // open MARKs
  std::size_t max_memo = 1u << 22;          // memo entries
  std::size_t max_string_bytes = 1u << 24;  // one str
  std::size_t max_container = 1u << 22;     // items of one tuple, list or dict
  int max_depth = 64;                       // nesting of containers
};

// Unpickles `bytes`; `where` names them in errors ("model.bin: data.pkl"). Returns the value
// STOP leaves on the stack. Throws kiln::Error on anything outside the subset above, and on
// truncated or inconsistent input.
PickleValuePtr read_pickle(std::span<const std::uint8_t> bytes, const std::string& where,
                           const PickleLimits& limits = {});

}  // namespace kiln
