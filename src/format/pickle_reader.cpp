#include "format/pickle_reader.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <optional>

#include "core/error.h"

namespace kiln {
namespace {

constexpr std::array<TorchStorageType, 10> kStorageTypes = {{
    {"FloatStorage", "float32", 4},
    {"HalfStorage", "float16", 2},
    {"BFloat16Storage", "bfloat16", 2},
    {"DoubleStorage", "float64", 8},
    {"LongStorage", "int64", 8},
    {"IntStorage", "int32", 4},
    {"ShortStorage", "int16", 2},
    {"CharStorage", "int8", 1},
    {"ByteStorage", "uint8", 1},
    {"BoolStorage", "bool", 1},
}};

constexpr std::string_view kOrderedDict = "collections.OrderedDict";
constexpr std::string_view kRebuildTensor = "torch._utils._rebuild_tensor_v2";
constexpr std::string_view kRebuildParameter = "torch._utils._rebuild_parameter";

// The name of any pickle opcode, so that a refusal names what the pickle tried.
std::string_view opcode_name(std::uint8_t op) {
  switch (op) {
    case 0x80:
      return "PROTO";
    case 0x95:
      return "FRAME";
    case '.':
      return "STOP";
    case '(':
      return "MARK";
    case '}':
      return "EMPTY_DICT";
    case ']':
      return "EMPTY_LIST";
    case ')':
      return "EMPTY_TUPLE";
    case 't':
      return "TUPLE";
    case 0x85:
      return "TUPLE1";
    case 0x86:
      return "TUPLE2";
    case 0x87:
      return "TUPLE3";
    case 'X':
      return "BINUNICODE";
    case 0x8c:
      return "SHORT_BINUNICODE";
    case 'J':
      return "BININT";
    case 'K':
      return "BININT1";
    case 'M':
      return "BININT2";
    case 0x8a:
      return "LONG1";
    case 'G':
      return "BINFLOAT";
    case 0x88:
      return "NEWTRUE";
    case 0x89:
      return "NEWFALSE";
    case 'N':
      return "NONE";
    case 'q':
      return "BINPUT";
    case 'r':
      return "LONG_BINPUT";
    case 'h':
      return "BINGET";
    case 'j':
      return "LONG_BINGET";
    case 0x94:
      return "MEMOIZE";
    case 's':
      return "SETITEM";
    case 'u':
      return "SETITEMS";
    case 'a':
      return "APPEND";
    case 'e':
      return "APPENDS";
    case 'c':
      return "GLOBAL";
    case 0x93:
      return "STACK_GLOBAL";
    case 'R':
      return "REDUCE";
    case 'Q':
      return "BINPERSID";
    case 'b':
      return "BUILD";
    // Opcodes kiln refuses.
    case 'i':
      return "INST";
    case 'o':
      return "OBJ";
    case 0x81:
      return "NEWOBJ";
    case 0x92:
      return "NEWOBJ_EX";
    case 0x82:
      return "EXT1";
    case 0x83:
      return "EXT2";
    case 0x84:
      return "EXT4";
    case 'P':
      return "PERSID";
    case 'I':
      return "INT";
    case 'L':
      return "LONG";
    case 0x8b:
      return "LONG4";
    case 'F':
      return "FLOAT";
    case 'S':
      return "STRING";
    case 'T':
      return "BINSTRING";
    case 'U':
      return "SHORT_BINSTRING";
    case 'V':
      return "UNICODE";
    case 0x8d:
      return "BINUNICODE8";
    case 'B':
      return "BINBYTES";
    case 'C':
      return "SHORT_BINBYTES";
    case 0x8e:
      return "BINBYTES8";
    case 0x96:
      return "BYTEARRAY8";
    case 0x97:
      return "NEXT_BUFFER";
    case 0x98:
      return "READONLY_BUFFER";
    case 'l':
      return "LIST";
    case 'd':
      return "DICT";
    case 0x8f:
      return "EMPTY_SET";
    case 0x90:
      return "ADDITEMS";
    case 0x91:
      return "FROZENSET";
    case '0':
      return "POP";
    case '1':
      return "POP_MARK";
    case '2':
      return "DUP";
    case 'g':
      return "GET";
    case 'p':
      return "PUT";
    default:
      return "";
  }
}

PickleValuePtr make(PickleValue::Kind kind) {
  auto v = std::make_shared<PickleValue>();
  v->kind = kind;
  return v;
}

// The key a dict indexes an item by: str and int keys are kept apart ("s:a" vs "i:1").
std::optional<std::string> index_key(const PickleValue& key) {
  if (key.kind == PickleValue::Kind::string) return "s:" + key.string;
  if (key.kind == PickleValue::Kind::integer) return "i:" + std::to_string(key.integer);
  return std::nullopt;
}

class Unpickler {
 public:
  Unpickler(std::span<const std::uint8_t> bytes, const std::string& where, const PickleLimits& limits)
      : bytes_(bytes), where_(where), limits_(limits) {}

  PickleValuePtr run() {
    if (bytes_.empty()) fail("{}: empty pickle", where_);
    if (bytes_[0] != 0x80)
      fail("{}: byte 0: pickle does not start with PROTO (0x80) but 0x{:02x} (protocol 0/1 pickles are not read)",
           where_, bytes_[0]);
    while (true) {
      op_at_ = pos_;
      if (pos_ >= bytes_.size()) fail("{}: pickle ends at byte {} without STOP (truncated)", where_, pos_);
      const std::uint8_t op = bytes_[pos_++];
      if (op == '.') return stop();
      step(op);
    }
  }

 private:
  template <typename... Args>
  [[noreturn]] void error(fmt::format_string<Args...> format, Args&&... args) const {
    fail("{}: byte {}: {}", where_, op_at_, fmt::format(format, std::forward<Args>(args)...));
  }

  std::span<const std::uint8_t> take(std::size_t n) {
    if (bytes_.size() - pos_ < n)
      error("{} needs {} bytes of argument, {} remain (truncated pickle)", opcode_name(bytes_[op_at_]), n,
            bytes_.size() - pos_);
    const auto out = bytes_.subspan(pos_, n);
    pos_ += n;
    return out;
  }
  std::uint64_t take_le(std::size_t n) {
    const auto b = take(n);
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < n; ++i) v |= static_cast<std::uint64_t>(b[i]) << (8 * i);
    return v;
  }
  // A GLOBAL line: bytes up to '\n', bounded.
  std::string take_line() {
    constexpr std::size_t kMaxLine = 256;
    for (std::size_t i = pos_; i < bytes_.size() && i - pos_ <= kMaxLine; ++i) {
      if (bytes_[i] == '\n') {
        std::string line(reinterpret_cast<const char*>(bytes_.data() + pos_), i - pos_);
        pos_ = i + 1;
        return line;
      }
    }
    error("GLOBAL name is not a line of at most {} bytes (truncated or corrupt pickle)", kMaxLine);
  }
  std::string take_string(std::uint64_t n) {
    if (n > limits_.max_string_bytes) error("string of {} bytes (kiln reads at most {})", n, limits_.max_string_bytes);
    const auto b = take(static_cast<std::size_t>(n));
    return std::string(reinterpret_cast<const char*>(b.data()), b.size());
  }

  std::size_t base() const { return marks_.empty() ? 0 : marks_.back(); }
  void push(PickleValuePtr v) {
    if (stack_.size() >= limits_.max_stack) error("stack holds more than {} values", limits_.max_stack);
    stack_.push_back(std::move(v));
  }
  PickleValuePtr pop() {
    if (stack_.size() <= base()) error("{} finds the stack empty (corrupt pickle)", opcode_name(bytes_[op_at_]));
    PickleValuePtr v = std::move(stack_.back());
    stack_.pop_back();
    return v;
  }
  const PickleValuePtr& top() {
    if (stack_.size() <= base()) error("{} finds the stack empty (corrupt pickle)", opcode_name(bytes_[op_at_]));
    return stack_.back();
  }
  // The values above the innermost MARK, which is removed.
  std::vector<PickleValuePtr> pop_mark() {
    if (marks_.empty()) error("{} without a MARK", opcode_name(bytes_[op_at_]));
    const std::size_t at = marks_.back();
    marks_.pop_back();
    std::vector<PickleValuePtr> items(std::make_move_iterator(stack_.begin() + static_cast<std::ptrdiff_t>(at)),
                                      std::make_move_iterator(stack_.end()));
    stack_.resize(at);
    return items;
  }

  // Stores `child` inside `parent`: the child is frozen from now on, and the parent's depth
  // grows past it.
  // The parent is never frozen (only unfrozen containers change), so nothing contains it and
  // the only cycle left to refuse is a value stored inside itself.
  void adopt(PickleValue& parent, PickleValue& child) {
    if (&parent == &child) error("{} stores a {} inside itself", opcode_name(bytes_[op_at_]), child.kind_name());
    child.frozen = true;
    parent.depth = std::max(parent.depth, child.depth + 1);
    if (parent.depth > limits_.max_depth) error("values nest deeper than {} levels", limits_.max_depth);
  }
  PickleValue& mutable_container(const PickleValuePtr& v, PickleValue::Kind kind) {
    if (v->kind != kind)
      error("{} applies to a {}, expected a {}", opcode_name(bytes_[op_at_]), v->kind_name(),
            kind == PickleValue::Kind::dict ? "dict" : "list");
    if (v->frozen)
      error("{} changes a {} already stored inside another value (shared or cyclic structures are not read)",
            opcode_name(bytes_[op_at_]), v->kind_name());
    return *v;
  }
  PickleValuePtr make_tuple(std::vector<PickleValuePtr> items) {
    if (items.size() > limits_.max_container)
      error("tuple of {} items (at most {})", items.size(), limits_.max_container);
    PickleValuePtr t = make(PickleValue::Kind::tuple);
    for (const PickleValuePtr& item : items) adopt(*t, *item);
    t->elements = std::move(items);
    return t;
  }
  void set_item(PickleValue& dict, PickleValuePtr key, PickleValuePtr value) {
    const std::optional<std::string> k = index_key(*key);
    if (!k) error("dict key is a {} (kiln reads str and int keys)", key->kind_name());
    adopt(dict, *key);
    adopt(dict, *value);
    PickleDict& d = dict.dict;
    const auto [it, inserted] = d.index.emplace(*k, d.items.size());
    if (!inserted) {
      d.items[it->second].second = std::move(value);
      return;
    }
    if (d.items.size() >= limits_.max_container) error("dict of more than {} items", limits_.max_container);
    d.items.emplace_back(std::move(key), std::move(value));
  }
  void append(PickleValue& list, PickleValuePtr value) {
    if (list.elements.size() >= limits_.max_container) error("list of more than {} items", limits_.max_container);
    adopt(list, *value);
    list.elements.push_back(std::move(value));
  }
  void memo_put(std::uint64_t index) {
    const PickleValuePtr& v = top();
    if (memo_.size() >= limits_.max_memo && !memo_.count(index))
      error("memo holds more than {} values", limits_.max_memo);
    memo_[index] = v;
  }
  void memo_get(std::uint64_t index) {
    const auto it = memo_.find(index);
    if (it == memo_.end()) error("{} of memo entry {}, which was never stored", opcode_name(bytes_[op_at_]), index);
    push(it->second);
  }

  PickleValuePtr resolve_global(const std::string& module, const std::string& name) {
    const std::string full = module + "." + name;
    if (full == kOrderedDict || full == kRebuildTensor || full == kRebuildParameter) {
      PickleValuePtr v = make(PickleValue::Kind::callable);
      v->string = full;
      return v;
    }
    if (module == "torch" && find_torch_storage_type(name)) {
      PickleValuePtr v = make(PickleValue::Kind::storage_type);
      v->string = name;
      return v;
    }
    error(
        "{} '{}' is not allowed (kiln's unpickler rebuilds only tensors and dicts: collections.OrderedDict, "
        "torch._utils._rebuild_tensor_v2, torch._utils._rebuild_parameter and torch.*Storage)",
        opcode_name(bytes_[op_at_]), full);
  }

  std::int64_t expect_int(const PickleValue& v, std::string_view what) {
    if (v.kind != PickleValue::Kind::integer) error("{} is a {}, expected an int", what, v.kind_name());
    return v.integer;
  }
  std::vector<std::int64_t> expect_int_tuple(const PickleValue& v, std::string_view what) {
    if (v.kind != PickleValue::Kind::tuple) error("{} is a {}, expected a tuple of ints", what, v.kind_name());
    std::vector<std::int64_t> out;
    for (const PickleValuePtr& e : v.elements) out.push_back(expect_int(*e, what));
    return out;
  }
  bool expect_bool(const PickleValue& v, std::string_view what) {
    if (v.kind != PickleValue::Kind::boolean) error("{} is a {}, expected a bool", what, v.kind_name());
    return v.boolean;
  }
  void expect_no_hooks(const PickleValue& v, std::string_view callable) {
    if (v.kind != PickleValue::Kind::dict || !v.dict.items.empty())
      error("{}'s backward_hooks is a {} with {} items, expected an empty OrderedDict", callable, v.kind_name(),
            v.kind == PickleValue::Kind::dict ? v.dict.items.size() : 0);
  }

  // REDUCE: calls one of the allowlisted functions on an argument tuple.
  PickleValuePtr reduce(const PickleValue& callable, const PickleValue& args) {
    if (callable.kind != PickleValue::Kind::callable)
      error("REDUCE calls a {}{}, not an allowlisted callable", callable.kind_name(),
            callable.kind == PickleValue::Kind::storage_type ? " '" + callable.string + "'" : std::string());
    if (args.kind != PickleValue::Kind::tuple) error("REDUCE arguments are a {}, expected a tuple", args.kind_name());
    const std::vector<PickleValuePtr>& a = args.elements;
    const std::string& f = callable.string;
    if (f == kOrderedDict) {
      if (!a.empty()) error("REDUCE calls {} with {} arguments (kiln reads only OrderedDict())", f, a.size());
      PickleValuePtr d = make(PickleValue::Kind::dict);
      d->dict.ordered = true;
      return d;
    }
    if (f == kRebuildTensor) {
      if (a.size() != 6 && a.size() != 7) error("REDUCE calls {} with {} arguments, expected 6 or 7", f, a.size());
      if (a[0]->kind != PickleValue::Kind::storage)
        error("{}'s storage is a {}, expected a persistent storage id", f, a[0]->kind_name());
      PickleValuePtr t = make(PickleValue::Kind::tensor);
      t->tensor.storage = a[0]->storage;
      t->tensor.storage_offset = expect_int(*a[1], "storage_offset");
      t->tensor.size = expect_int_tuple(*a[2], "size");
      t->tensor.stride = expect_int_tuple(*a[3], "stride");
      if (t->tensor.size.size() != t->tensor.stride.size())
        error("{} gets {} sizes but {} strides", f, t->tensor.size.size(), t->tensor.stride.size());
      t->tensor.requires_grad = expect_bool(*a[4], "requires_grad");
      expect_no_hooks(*a[5], f);
      if (a.size() == 7 && a[6]->kind != PickleValue::Kind::none && a[6]->kind != PickleValue::Kind::dict)
        error("{}'s metadata is a {}, expected None or a dict", f, a[6]->kind_name());
      return t;
    }
    // _rebuild_parameter(data, requires_grad, backward_hooks): the tensor itself.
    if (a.size() != 3) error("REDUCE calls {} with {} arguments, expected 3", f, a.size());
    if (a[0]->kind != PickleValue::Kind::tensor) error("{}'s data is a {}, expected a tensor", f, a[0]->kind_name());
    PickleValuePtr t = make(PickleValue::Kind::tensor);
    t->tensor = a[0]->tensor;
    t->tensor.requires_grad = expect_bool(*a[1], "requires_grad");
    expect_no_hooks(*a[2], f);
    return t;
  }

  // BINPERSID: ('storage', storage type, key, location, numel) -> a storage record.
  PickleValuePtr persistent_load(const PickleValue& pid) {
    if (pid.kind != PickleValue::Kind::tuple || pid.elements.size() != 5)
      error("persistent id is a {}{}, expected ('storage', type, key, location, numel)", pid.kind_name(),
            pid.kind == PickleValue::Kind::tuple ? fmt::format(" of {} items", pid.elements.size()) : "");
    const auto& e = pid.elements;
    if (e[0]->kind != PickleValue::Kind::string || e[0]->string != "storage")
      error("persistent id does not start with 'storage'");
    if (e[1]->kind != PickleValue::Kind::storage_type)
      error("persistent id's storage type is a {}, expected a torch.*Storage class", e[1]->kind_name());
    if (e[2]->kind != PickleValue::Kind::string || e[3]->kind != PickleValue::Kind::string)
      error("persistent id's key and location must be str");
    PickleValuePtr s = make(PickleValue::Kind::storage);
    s->storage.storage_type = e[1]->string;
    s->storage.key = e[2]->string;
    s->storage.location = e[3]->string;
    s->storage.numel = expect_int(*e[4], "persistent id's numel");
    if (s->storage.numel < 0) error("persistent id's numel is {}", s->storage.numel);
    return s;
  }

  // BUILD on a dict: the state (a dict of attributes, or None) is kept as the dict's attributes.
  void build(const PickleValuePtr& target, const PickleValuePtr& state) {
    if (target->kind != PickleValue::Kind::dict)
      error("BUILD applies to a {} (kiln reads BUILD only on an OrderedDict)", target->kind_name());
    if (state->kind == PickleValue::Kind::none) return;
    if (state->kind != PickleValue::Kind::dict) error("BUILD state is a {}, expected a dict", state->kind_name());
    PickleValue& d = mutable_container(target, PickleValue::Kind::dict);
    if (d.dict.attributes) error("BUILD sets a dict's attributes a second time");
    adopt(d, *state);
    d.dict.attributes = state;
  }

  PickleValuePtr stop() {
    if (!marks_.empty()) error("STOP with {} MARKs still open", marks_.size());
    if (stack_.size() != 1) error("STOP with {} values on the stack, expected 1", stack_.size());
    if (pos_ != bytes_.size()) error("{} bytes follow STOP", bytes_.size() - pos_);
    return stack_.back();
  }

  void step(std::uint8_t op) {
    using Kind = PickleValue::Kind;
    switch (op) {
      case 0x80: {  // PROTO
        const std::uint64_t proto = take_le(1);
        if (op_at_ != 0) error("PROTO after the start");
        if (proto < 2 || proto > 5) error("pickle protocol {} (kiln reads protocols 2 to 5)", proto);
        return;
      }
      case 0x95: {  // FRAME: a length prefix for buffered reading; the bytes follow as usual.
        const std::uint64_t n = take_le(8);
        if (n > bytes_.size() - pos_)
          error("FRAME of {} bytes, but {} remain (truncated pickle)", n, bytes_.size() - pos_);
        return;
      }
      case '(':
        if (marks_.size() >= limits_.max_marks) error("more than {} MARKs open", limits_.max_marks);
        marks_.push_back(stack_.size());
        return;
      case '}':
        push(make(Kind::dict));
        return;
      case ']':
        push(make(Kind::list));
        return;
      case ')':
        push(make(Kind::tuple));
        return;
      case 't':
        push(make_tuple(pop_mark()));
        return;
      case 0x85:
      case 0x86:
      case 0x87: {
        const std::size_t n = op - 0x84u;
        if (stack_.size() < base() + n) error("{} finds fewer than {} values on the stack", opcode_name(op), n);
        std::vector<PickleValuePtr> items(std::make_move_iterator(stack_.end() - static_cast<std::ptrdiff_t>(n)),
                                          std::make_move_iterator(stack_.end()));
        stack_.resize(stack_.size() - n);
        push(make_tuple(std::move(items)));
        return;
      }
      case 'X':
      case 0x8c: {
        PickleValuePtr s = make(Kind::string);
        s->string = take_string(take_le(op == 'X' ? 4 : 1));
        push(std::move(s));
        return;
      }
      case 'J':
      case 'K':
      case 'M': {
        PickleValuePtr v = make(Kind::integer);
        if (op == 'J')
          v->integer = static_cast<std::int32_t>(static_cast<std::uint32_t>(take_le(4)));
        else
          v->integer = static_cast<std::int64_t>(take_le(op == 'K' ? 1 : 2));
        push(std::move(v));
        return;
      }
      case 0x8a: {  // LONG1: n little-endian two's complement bytes
        const std::uint64_t n = take_le(1);
        if (n > 8) error("LONG1 of {} bytes (kiln reads integers of at most 8 bytes)", n);
        std::uint64_t bits = take_le(static_cast<std::size_t>(n));
        if (n > 0 && n < 8 && (bits >> (8 * n - 1)) & 1) bits |= ~std::uint64_t{0} << (8 * n);  // sign-extend
        PickleValuePtr v = make(Kind::integer);
        v->integer = static_cast<std::int64_t>(bits);
        push(std::move(v));
        return;
      }
      case 'G': {  // BINFLOAT: a big-endian double
        const auto b = take(8);
        std::uint64_t bits = 0;
        for (std::uint8_t byte : b) bits = (bits << 8) | byte;
        PickleValuePtr v = make(Kind::floating);
        v->floating = std::bit_cast<double>(bits);
        push(std::move(v));
        return;
      }
      case 0x88:
      case 0x89: {
        PickleValuePtr v = make(Kind::boolean);
        v->boolean = op == 0x88;
        push(std::move(v));
        return;
      }
      case 'N':
        push(make(Kind::none));
        return;
      case 'q':
        memo_put(take_le(1));
        return;
      case 'r':
        memo_put(take_le(4));
        return;
      case 0x94:
        memo_put(memo_.size());
        return;
      case 'h':
        memo_get(take_le(1));
        return;
      case 'j':
        memo_get(take_le(4));
        return;
      case 's': {
        PickleValuePtr value = pop();
        PickleValuePtr key = pop();
        set_item(mutable_container(top(), Kind::dict), std::move(key), std::move(value));
        return;
      }
      case 'u': {
        std::vector<PickleValuePtr> items = pop_mark();
        if (items.size() % 2 != 0) error("SETITEMS with an odd number ({}) of keys and values", items.size());
        PickleValue& d = mutable_container(top(), Kind::dict);
        for (std::size_t i = 0; i < items.size(); i += 2) set_item(d, std::move(items[i]), std::move(items[i + 1]));
        return;
      }
      case 'a': {
        PickleValuePtr value = pop();
        append(mutable_container(top(), Kind::list), std::move(value));
        return;
      }
      case 'e': {
        std::vector<PickleValuePtr> items = pop_mark();
        PickleValue& list = mutable_container(top(), Kind::list);
        for (PickleValuePtr& v : items) append(list, std::move(v));
        return;
      }
      case 'c': {
        const std::string module = take_line();
        const std::string name = take_line();
        push(resolve_global(module, name));
        return;
      }
      case 0x93: {  // STACK_GLOBAL: module and name from the stack
        PickleValuePtr name = pop();
        PickleValuePtr module = pop();
        if (module->kind != Kind::string || name->kind != Kind::string)
          error("STACK_GLOBAL of a {} and a {}, expected two str", module->kind_name(), name->kind_name());
        push(resolve_global(module->string, name->string));
        return;
      }
      case 'R': {
        PickleValuePtr args = pop();
        PickleValuePtr callable = pop();
        push(reduce(*callable, *args));
        return;
      }
      case 'Q': {
        PickleValuePtr pid = pop();
        push(persistent_load(*pid));
        return;
      }
      case 'b': {
        PickleValuePtr state = pop();
        build(top(), state);
        return;
      }
      default: {
        const std::string_view name = opcode_name(op);
        if (name.empty()) error("unknown pickle opcode 0x{:02x}", op);
        error("pickle opcode {} (0x{:02x}) is not allowed (kiln's unpickler rebuilds only tensors and dicts)", name,
              op);
      }
    }
  }

  std::span<const std::uint8_t> bytes_;
  const std::string& where_;
  const PickleLimits& limits_;
  std::size_t pos_ = 0;
  std::size_t op_at_ = 0;  // offset of the opcode being run, for messages
  std::vector<PickleValuePtr> stack_;
  std::vector<std::size_t> marks_;  // stack sizes at each open MARK
  std::unordered_map<std::uint64_t, PickleValuePtr> memo_;
};

}  // namespace

const TorchStorageType* find_torch_storage_type(std::string_view name) {
  for (const TorchStorageType& t : kStorageTypes)
    if (t.name == name) return &t;
  return nullptr;
}

std::string_view PickleValue::kind_name() const {
  switch (kind) {
    case Kind::none:
      return "None";
    case Kind::boolean:
      return "bool";
    case Kind::integer:
      return "int";
    case Kind::floating:
      return "float";
    case Kind::string:
      return "str";
    case Kind::tuple:
      return "tuple";
    case Kind::list:
      return "list";
    case Kind::dict:
      return "dict";
    case Kind::tensor:
      return "tensor";
    case Kind::storage:
      return "storage";
    case Kind::callable:
      return "callable";
    case Kind::storage_type:
      return "storage type";
  }
  return "value";
}

const PickleValue* PickleValue::find(std::string_view key) const {
  const auto it = dict.index.find("s:" + std::string(key));
  return it == dict.index.end() ? nullptr : dict.items[it->second].second.get();
}

PickleValuePtr read_pickle(std::span<const std::uint8_t> bytes, const std::string& where, const PickleLimits& limits) {
  return Unpickler(bytes, where, limits).run();
}

}  // namespace kiln
