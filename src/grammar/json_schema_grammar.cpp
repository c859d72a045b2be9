#include "grammar/json_schema_grammar.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <set>

#include "core/error.h"
#include "grammar/regex_grammar.h"

namespace kiln::grammar {

namespace {

// Ordered: properties are written in the order the schema lists them.
using json = nlohmann::ordered_json;

constexpr int kMaxIntegerDigits = 16;  // integers up to 10^16 - 1 in magnitude when unbounded

// Keywords that describe a schema without constraining it.
const std::set<std::string> kAnnotations = {"title", "description", "default", "examples", "$schema", "$id", "$comment",
                                            "readOnly", "writeOnly", "deprecated", "$defs", "definitions", "strict",
                                            "name", "contentMediaType", "contentEncoding", "nullable"};

std::string digits_class(char lo, char hi) {
  if (lo == hi) return gbnf_literal(std::string(1, lo));
  return fmt::format("[{}-{}]", lo, hi);
}

// GBNF alternatives matching the decimal numerals of lo..hi, both of `len` digits.
void same_length_range(const std::string& lo, const std::string& hi, const std::string& prefix, std::vector<std::string>& out) {
  if (lo == hi) {
    out.push_back(prefix + (prefix.empty() ? "" : " ") + gbnf_literal(lo));
    return;
  }
  std::size_t i = 0;
  while (lo[i] == hi[i]) ++i;
  std::string p = prefix;
  if (i > 0) p += (p.empty() ? "" : " ") + gbnf_literal(lo.substr(0, i));
  const std::size_t rest = lo.size() - i - 1;
  const std::string lo_rest = lo.substr(i + 1), hi_rest = hi.substr(i + 1);
  const bool lo_zeros = lo_rest.find_first_not_of('0') == std::string::npos;
  const bool hi_nines = hi_rest.find_first_not_of('9') == std::string::npos;
  auto tail = [&](std::size_t n) { return n == 0 ? std::string() : n == 1 ? std::string(" [0-9]") : fmt::format(" [0-9]{{{}}}", n); };
  auto join = [&](const std::string& head) { return p + (p.empty() ? "" : " ") + head; };
  if (lo_zeros && hi_nines) {
    out.push_back(join(digits_class(lo[i], hi[i]) + tail(rest)));
    return;
  }
  char from = lo[i], to = hi[i];
  if (!lo_zeros) {
    same_length_range(lo.substr(i), std::string(1, lo[i]) + std::string(rest, '9'), p, out);
    ++from;
  }
  if (!hi_nines) --to;
  if (from <= to) out.push_back(join(digits_class(from, to) + tail(rest)));
  if (!hi_nines) same_length_range(std::string(1, hi[i]) + std::string(rest, '0'), hi.substr(i), p, out);
}

// Alternatives for the non-negative integers lo..hi (no leading zeros).
void nonnegative_range(std::uint64_t lo, std::uint64_t hi, std::vector<std::string>& out) {
  if (lo > hi) return;
  std::uint64_t low = lo;
  for (int len = 1; len <= 19 && low <= hi; ++len) {
    std::uint64_t top = 9;
    for (int k = 1; k < len; ++k) top = top * 10 + 9;
    if (low > top) continue;
    const std::uint64_t high = std::min(hi, top);
    same_length_range(std::to_string(low), std::to_string(high), "", out);
    low = high + 1;
  }
}

std::string integer_range(long long lo, long long hi) {
  std::vector<std::string> alts;
  if (lo < 0) {
    const std::uint64_t a = hi < 0 ? static_cast<std::uint64_t>(-(hi + 1)) + 1 : 1;  // |hi| for negative hi, else 1
    const std::uint64_t b = static_cast<std::uint64_t>(-(lo + 1)) + 1;              // |lo|
    std::vector<std::string> neg;
    nonnegative_range(a, b, neg);
    for (const std::string& n : neg) alts.push_back("\"-\" " + (n.find(' ') != std::string::npos ? "(" + n + ")" : n));
  }
  if (hi >= 0) nonnegative_range(static_cast<std::uint64_t>(std::max(lo, 0LL)), static_cast<std::uint64_t>(hi), alts);
  if (alts.empty()) fail("json_schema: an empty integer range {}..{}", lo, hi);
  std::string out = "(";
  for (std::size_t i = 0; i < alts.size(); ++i) out += (i ? " | " : "") + alts[i];
  return out + ")";
}

class Converter {
 public:
  Converter(const json& root, const JsonGrammarOptions& o) : root_(root), options_(o) {}

  std::string convert() {
    const std::string top = visit(root_, "root-value", "");
    // Leading whitespace is allowed, trailing is not: the grammar is exhausted at the last
    // closing bracket, so generation ends there instead of drifting into spaces.
    std::string out = "root ::= ";
    if (!options_.prefix.empty()) out += gbnf_literal(options_.prefix) + " ";
    out += "ws " + top;
    if (!options_.suffix.empty()) out += " " + gbnf_literal(options_.suffix);
    out += "\n" + ws_rule();
    for (const auto& [name, body] : rules_) out += name + " ::= " + body + "\n";
    return out;
  }

  std::string any_object() {
    const std::string top = builtin("object");
    std::string out = "root ::= ws " + top + "\n" + ws_rule();
    for (const auto& [name, body] : rules_) out += name + " ::= " + body + "\n";
    return out;
  }

 private:
  [[noreturn]] void unsupported(const std::string& path, const std::string& what) const {
    fail("json_schema: at {}: {}", path.empty() ? "/" : path, what);
  }

  std::string ws_rule() const {
    if (!options_.allow_newlines) return "ws ::= \" \"?\n";
    return fmt::format("ws ::= (\" \" | \"\\n\" \" \"{{0,{}}})?\n", std::max(0, options_.max_indent));
  }

  std::string add_rule(const std::string& hint, const std::string& body) {
    std::string base;
    for (char c : hint) base += std::isalnum(static_cast<unsigned char>(c)) ? c : '-';
    if (base.empty() || base == "root" || base == "ws") base = "r-" + base;
    std::string name = base;
    for (int k = 2; rules_.count(name) && rules_[name] != body; ++k) name = fmt::format("{}-{}", base, k);
    rules_[name] = body;
    return name;
  }

  std::string builtin(const std::string& what) {
    if (what == "char") return add_rule("char", R"([^"\\\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4}))");
    if (what == "string") return add_rule("string", "\"\\\"\" " + builtin("char") + "* \"\\\"\"");
    if (what == "integer") return add_rule("integer", "\"-\"? (\"0\" | [1-9] [0-9]{0,15})");
    if (what == "number")
      return add_rule("number", builtin("integer") + " (\".\" [0-9]{1,16})? ([eE] [-+]? [0-9]{1,3})?");
    if (what == "boolean") return add_rule("boolean", "\"true\" | \"false\"");
    if (what == "null") return add_rule("null", "\"null\"");
    if (what == "value") {
      rules_["value"] = "";  // reserved: object and array refer back to it
      rules_["value"] = builtin("object") + " | " + builtin("array") + " | " + builtin("string") + " | " +
                        builtin("number") + " | " + builtin("boolean") + " | " + builtin("null");
      return "value";
    }
    if (what == "object") {
      if (!rules_.count("object")) {
        rules_["object"] = "";
        const std::string member = builtin("string") + " ws \":\" ws " + builtin("value");
        rules_["object"] = "\"{\" ws (" + member + " (ws \",\" ws " + member + ")*)? ws \"}\"";
      }
      return "object";
    }
    if (what == "array") {
      if (!rules_.count("array")) {
        rules_["array"] = "";
        rules_["array"] = "\"[\" ws (" + builtin("value") + " (ws \",\" ws " + builtin("value") + ")*)? ws \"]\"";
      }
      return "array";
    }
    fail("json_schema: internal: no builtin {}", what);
  }

  const json& resolve_ref(const std::string& ref, const std::string& path) const {
    std::string p;
    if (ref.rfind("#/$defs/", 0) == 0 || ref.rfind("#/definitions/", 0) == 0) {
      p = ref.substr(1);
    } else if (ref == "#") {
      return root_;
    } else {
      unsupported(path, fmt::format("$ref {} is not supported (only #/$defs/... and #/definitions/...)", ref));
    }
    try {
      const json::json_pointer ptr(p);
      if (!root_.contains(ptr)) unsupported(path, fmt::format("$ref {} points at nothing", ref));
      return root_.at(ptr);
    } catch (const json::exception&) {
      unsupported(path, fmt::format("$ref {} is not a valid JSON pointer", ref));
    }
  }

  std::string ref_rule(const std::string& ref, const std::string& path) {
    auto it = refs_.find(ref);
    if (it != refs_.end()) return it->second;
    const json& target = resolve_ref(ref, path);
    std::string hint = ref.substr(ref.find_last_of('/') + 1);
    std::string name = add_rule("ref-" + hint, "<reserved " + ref + ">");  // before the visit: recursion refers to it
    refs_[ref] = name;
    ++ref_depth_;
    if (ref_depth_ > 256) unsupported(path, "$ref chains deeper than 256");
    rules_[name] = visit(target, name, "#" + ref.substr(1));
    --ref_depth_;
    return name;
  }

  static std::string alternatives(const std::vector<std::string>& alts) {
    if (alts.size() == 1) return alts[0];
    std::string out = "(";
    for (std::size_t i = 0; i < alts.size(); ++i) out += (i ? " | " : "") + alts[i];
    return out + ")";
  }

  std::string json_literal(const json& v) const { return gbnf_literal(v.dump(-1, ' ', false, json::error_handler_t::strict)); }

  void check_keywords(const json& s, const std::string& path, const std::set<std::string>& allowed) const {
    for (const auto& [k, v] : s.items()) {
      if (allowed.count(k) || kAnnotations.count(k)) continue;
      unsupported(path, fmt::format("{} is not supported", k));
    }
  }

  std::string visit(const json& s, const std::string& hint, const std::string& path) {
    if (++depth_ > 128) unsupported(path, "schemas nested deeper than 128");
    std::string r = visit_inner(s, hint, path);
    --depth_;
    return r;
  }

  std::string visit_inner(const json& s, const std::string& hint, const std::string& path) {
    if (s.is_boolean()) {
      if (!s.get<bool>()) unsupported(path, "the schema false matches nothing");
      return builtin("value");
    }
    if (!s.is_object()) unsupported(path, "a schema must be an object or a boolean");
    if (s.contains("nullable") && s["nullable"].is_boolean() && s["nullable"].get<bool>()) {
      json copy = s;
      copy.erase("nullable");
      return "(" + visit(copy, hint, path) + " | " + builtin("null") + ")";
    }
    if (s.contains("$ref")) {
      if (!s["$ref"].is_string()) unsupported(path + "/$ref", "$ref must be a string");
      check_keywords(s, path, {"$ref", "nullable"});
      return ref_rule(s["$ref"].get<std::string>(), path);
    }
    if (s.contains("const")) {
      check_keywords(s, path, {"const", "type", "nullable"});
      return json_literal(s["const"]);
    }
    if (s.contains("enum")) {
      check_keywords(s, path, {"enum", "type", "nullable"});
      const json& e = s["enum"];
      if (!e.is_array() || e.empty()) unsupported(path + "/enum", "enum must be a non-empty array");
      std::vector<std::string> alts;
      for (const json& v : e) alts.push_back(json_literal(v));
      return add_rule(hint, alternatives(alts));
    }
    for (const char* key : {"anyOf", "oneOf"}) {
      if (!s.contains(key)) continue;
      check_keywords(s, path, {key, "type", "nullable"});
      const json& list = s[key];
      if (!list.is_array() || list.empty()) unsupported(path + "/" + key, fmt::format("{} must be a non-empty array", key));
      std::vector<std::string> alts;
      for (std::size_t i = 0; i < list.size(); ++i)
        alts.push_back(visit(list[i], fmt::format("{}-{}", hint, i), fmt::format("{}/{}/{}", path, key, i)));
      return add_rule(hint, alternatives(alts));
    }
    if (s.contains("allOf")) return visit(merge_all_of(s, path), hint, path);

    if (s.contains("type") && s["type"].is_array()) {
      std::vector<std::string> alts;
      for (const json& t : s["type"]) {
        if (!t.is_string()) unsupported(path + "/type", "type must be a string or an array of strings");
        json copy = s;
        copy["type"] = t;
        alts.push_back(visit(copy, hint + "-" + t.get<std::string>(), path));
      }
      if (alts.empty()) unsupported(path + "/type", "an empty list of types");
      return add_rule(hint, alternatives(alts));
    }
    std::string type;
    if (s.contains("type")) {
      if (!s["type"].is_string()) unsupported(path + "/type", "type must be a string or an array of strings");
      type = s["type"].get<std::string>();
    } else if (s.contains("properties") || s.contains("additionalProperties") || s.contains("required")) {
      type = "object";
    } else if (s.contains("items") || s.contains("prefixItems") || s.contains("minItems") || s.contains("maxItems")) {
      type = "array";
    } else if (s.contains("minLength") || s.contains("maxLength") || s.contains("pattern") || s.contains("format")) {
      type = "string";
    } else if (s.contains("minimum") || s.contains("maximum") || s.contains("exclusiveMinimum") || s.contains("exclusiveMaximum")) {
      type = "number";
    } else {
      check_keywords(s, path, {});
      return builtin("value");
    }
    if (type == "object") return object_rule(s, hint, path);
    if (type == "array") return array_rule(s, hint, path);
    if (type == "string") return string_rule(s, hint, path);
    if (type == "integer" || type == "number") return number_rule(s, hint, path, type == "integer");
    if (type == "boolean" || type == "null") {
      check_keywords(s, path, {"type"});
      return builtin(type);
    }
    unsupported(path + "/type", fmt::format("unknown type {}", type));
  }

  json merge_all_of(const json& s, const std::string& path) {
    check_keywords(s, path, {"allOf", "type"});
    const json& list = s["allOf"];
    if (!list.is_array() || list.empty()) unsupported(path + "/allOf", "allOf must be a non-empty array");
    json merged = {{"type", "object"}, {"properties", json::object()}, {"required", json::array()}};
    for (std::size_t i = 0; i < list.size(); ++i) {
      const std::string p = fmt::format("{}/allOf/{}", path, i);
      const json* part = &list[i];
      if (part->is_object() && part->contains("$ref") && (*part)["$ref"].is_string())
        part = &resolve_ref((*part)["$ref"].get<std::string>(), p);
      if (!part->is_object()) unsupported(p, "allOf is supported for object schemas only");
      check_keywords(*part, p, {"type", "properties", "required", "additionalProperties"});
      if (part->contains("type") && (*part)["type"] != "object") unsupported(p, "allOf is supported for object schemas only");
      if (part->contains("properties"))
        for (const auto& [k, v] : (*part)["properties"].items()) merged["properties"][k] = v;
      if (part->contains("required"))
        for (const json& r : (*part)["required"]) merged["required"].push_back(r);
      if (part->contains("additionalProperties")) merged["additionalProperties"] = (*part)["additionalProperties"];
    }
    return merged;
  }

  // A JSON string key that is none of `taken` (so that extra properties never repeat a named one).
  std::string other_key(const std::vector<std::string>& taken, const std::string& hint) {
    // A trie of the taken names: at each node, leave the trie (a character no taken name has
    // here, then anything) or follow it; end only where no taken name ends.
    struct TrieNode {
      std::map<unsigned char, int> next;
      bool end = false;
    };
    std::vector<TrieNode> t(1);
    for (const std::string& k : taken) {
      for (unsigned char c : k)
        if (c < 0x20 || c >= 0x80 || c == '"' || c == '\\')
          fail("json_schema: additional properties beside a property named {} (outside printable ASCII or with quotes) are not supported", json(k).dump());
      int n = 0;
      for (unsigned char c : k) {
        auto it = t[static_cast<std::size_t>(n)].next.find(c);
        if (it == t[static_cast<std::size_t>(n)].next.end()) {
          t.push_back({});
          const int id = static_cast<int>(t.size()) - 1;
          t[static_cast<std::size_t>(n)].next[c] = id;
          n = id;
        } else {
          n = it->second;
        }
      }
      t[static_cast<std::size_t>(n)].end = true;
    }
    const std::string chr = builtin("char");
    std::vector<std::string> names(t.size());
    for (std::size_t i = 0; i < t.size(); ++i)
      names[i] = add_rule(fmt::format("{}-key-{}", hint, i), fmt::format("<reserved {} key {}>", hint, i));
    for (std::size_t i = 0; i < t.size(); ++i) {
      std::vector<std::string> alts;
      if (!t[i].end) alts.push_back("\"\\\"\"");
      std::vector<std::pair<std::uint32_t, std::uint32_t>> used;
      for (const auto& [c, child] : t[i].next) {
        used.push_back({c, c});
        alts.push_back(gbnf_literal(std::string(1, static_cast<char>(c))) + " " + names[static_cast<std::size_t>(child)]);
      }
      // Any other first character: a plain one not used here, or any escape.
      std::vector<std::pair<std::uint32_t, std::uint32_t>> plain = {{0x20, 0x21}, {0x23, 0x5B}, {0x5D, 0x10FFFF}};
      std::vector<std::pair<std::uint32_t, std::uint32_t>> free;
      for (auto r : plain) {
        std::uint32_t lo = r.first;
        for (const auto& u : used) {
          if (u.first < lo || u.first > r.second) continue;
          if (u.first > lo) free.push_back({lo, u.first - 1});
          lo = u.first + 1;
        }
        if (lo <= r.second) free.push_back({lo, r.second});
      }
      const std::string rest = chr + "* \"\\\"\"";
      if (!free.empty()) alts.push_back(gbnf_class(free) + " " + rest);
      alts.push_back("\"\\\\\" ([\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4}) " + rest);
      std::string body;
      for (std::size_t k = 0; k < alts.size(); ++k) body += (k ? " | " : "") + alts[k];
      rules_[names[i]] = body;
    }
    return "\"\\\"\" " + names[0];
  }

  std::string object_rule(const json& s, const std::string& hint, const std::string& path) {
    check_keywords(s, path, {"type", "properties", "required", "additionalProperties"});
    std::vector<std::pair<std::string, std::string>> props;  // (name, key-value expression)
    std::set<std::string> required;
    if (s.contains("required")) {
      if (!s["required"].is_array()) unsupported(path + "/required", "required must be an array of strings");
      for (const json& r : s["required"]) {
        if (!r.is_string()) unsupported(path + "/required", "required must be an array of strings");
        required.insert(r.get<std::string>());
      }
    }
    std::vector<std::string> names;
    if (s.contains("properties")) {
      if (!s["properties"].is_object()) unsupported(path + "/properties", "properties must be an object");
      for (const auto& [k, v] : s["properties"].items()) {
        const std::string value = visit(v, hint + "-" + k, path + "/properties/" + k);
        props.push_back({k, json_literal(json(k)) + " ws \":\" ws " + value});
        names.push_back(k);
      }
    }
    for (const std::string& r : required)
      if (std::find(names.begin(), names.end(), r) == names.end())
        unsupported(path + "/required", fmt::format("required property {} has no schema in properties", r));
    std::string extra;  // one additional key-value, or empty when none are allowed
    if (s.contains("additionalProperties")) {
      const json& a = s["additionalProperties"];
      if (!(a.is_boolean() && !a.get<bool>())) {
        const std::string value = a.is_boolean() ? builtin("value") : visit(a, hint + "-extra", path + "/additionalProperties");
        extra = add_rule(hint + "-extra-kv", other_key(names, hint) + " ws \":\" ws " + value);
      }
    }
    // after_i: members i.. when one was written already; first_i: when none was.
    const std::size_t n = props.size();
    std::vector<std::string> after(n + 1), first(n + 1);
    after[n] = extra.empty() ? "\"\"" : add_rule(hint + "-more", "(ws \",\" ws " + extra + ")*");
    first[n] = extra.empty() ? "\"\"" : add_rule(hint + "-extras", "(" + extra + " " + after[n] + ")?");
    for (std::size_t k = n; k-- > 0;) {
      const bool req = required.count(props[k].first) > 0;
      const std::string kv = props[k].second;
      if (req) {
        after[k] = add_rule(fmt::format("{}-a{}", hint, k), "ws \",\" ws " + kv + " " + after[k + 1]);
        first[k] = add_rule(fmt::format("{}-f{}", hint, k), kv + " " + after[k + 1]);
      } else {
        after[k] = add_rule(fmt::format("{}-a{}", hint, k), "(ws \",\" ws " + kv + ")? " + after[k + 1]);
        first[k] = add_rule(fmt::format("{}-f{}", hint, k), kv + " " + after[k + 1] + " | " + first[k + 1]);
      }
    }
    return add_rule(hint, "\"{\" ws " + first[0] + " ws \"}\"");
  }

  static long long count_field(const json& s, const char* key, const std::string& path) {
    const json& v = s[key];
    if (!v.is_number_integer() && !(v.is_number_float() && std::floor(v.get<double>()) == v.get<double>()))
      fail("json_schema: at {}/{}: must be a non-negative integer", path, key);
    const long long n = v.is_number_integer() ? v.get<long long>() : static_cast<long long>(v.get<double>());
    if (n < 0 || n > 10000) fail("json_schema: at {}/{}: must be within 0..10000, got {}", path, key, n);
    return n;
  }

  static std::string repeat_suffix(long long min, long long max) {
    if (max < 0) return min == 0 ? "*" : min == 1 ? "+" : fmt::format("{{{},}}", min);
    if (min == max) return fmt::format("{{{}}}", min);
    return fmt::format("{{{},{}}}", min, max);
  }

  std::string array_rule(const json& s, const std::string& hint, const std::string& path) {
    check_keywords(s, path, {"type", "items", "prefixItems", "minItems", "maxItems", "uniqueItems"});
    if (s.contains("uniqueItems") && s["uniqueItems"] != false) unsupported(path, "uniqueItems is not supported");
    const long long min = s.contains("minItems") ? count_field(s, "minItems", path) : 0;
    const long long max = s.contains("maxItems") ? count_field(s, "maxItems", path) : -1;
    if (max >= 0 && max < min) unsupported(path, "maxItems is below minItems");
    std::vector<std::string> prefix;
    if (s.contains("prefixItems")) {
      const json& p = s["prefixItems"];
      if (!p.is_array()) unsupported(path + "/prefixItems", "prefixItems must be an array");
      for (std::size_t i = 0; i < p.size(); ++i)
        prefix.push_back(visit(p[i], fmt::format("{}-{}", hint, i), fmt::format("{}/prefixItems/{}", path, i)));
    }
    std::string item;  // empty: no items beyond the prefix
    if (s.contains("items")) {
      const json& it = s["items"];
      if (!(it.is_boolean() && !it.get<bool>())) item = visit(it, hint + "-item", path + "/items");
    } else if (prefix.empty()) {
      item = builtin("value");
    }
    const auto k = static_cast<long long>(prefix.size());
    if (k > 0) {
      // Every prefix item is written (a valid choice whenever the bounds allow k items).
      if (max >= 0 && max < k) unsupported(path, "maxItems below the number of prefixItems is not supported");
      std::string body = "\"[\" ws ";
      for (long long i = 0; i < k; ++i) body += (i ? " ws \",\" ws " : "") + prefix[static_cast<std::size_t>(i)];
      const long long more_min = std::max(0LL, min - k), more_max = max < 0 ? -1 : max - k;
      if (!item.empty() && more_max != 0) {
        body += " (ws \",\" ws " + item + ")" + repeat_suffix(more_min, more_max);
      } else if (more_min > 0) {
        unsupported(path, "minItems above the number of prefixItems with items false");
      }
      return add_rule(hint, body + " ws \"]\"");
    }
    if (item.empty()) {
      if (min > 0) unsupported(path, "minItems above 0 with items false");
      return add_rule(hint, "\"[\" ws \"]\"");
    }
    if (max == 0) return add_rule(hint, "\"[\" ws \"]\"");
    const std::string rest = "(ws \",\" ws " + item + ")" + repeat_suffix(std::max(0LL, min - 1), max < 0 ? -1 : max - 1);
    const std::string list = item + " " + rest;
    return add_rule(hint, "\"[\" ws " + (min == 0 ? "(" + list + ")?" : list) + " ws \"]\"");
  }

  std::string string_rule(const json& s, const std::string& hint, const std::string& path) {
    check_keywords(s, path, {"type", "minLength", "maxLength", "pattern", "format"});
    const std::string q = "\"\\\"\"";
    if (s.contains("pattern")) {
      if (s.contains("minLength") || s.contains("maxLength") || s.contains("format"))
        unsupported(path, "pattern together with minLength, maxLength or format is not supported");
      if (!s["pattern"].is_string()) unsupported(path + "/pattern", "pattern must be a string");
      try {
        return add_rule(hint, q + " " + regex_gbnf_expression(s["pattern"].get<std::string>(), true) + " " + q);
      } catch (const Error& e) {
        unsupported(path + "/pattern", e.what());
      }
    }
    if (s.contains("format")) {
      if (s.contains("minLength") || s.contains("maxLength")) unsupported(path, "format together with minLength or maxLength is not supported");
      const std::string f = s["format"].is_string() ? s["format"].get<std::string>() : "";
      const std::string date =
          "[0-9]{4} \"-\" ((\"01\" | \"03\" | \"05\" | \"07\" | \"08\" | \"10\" | \"12\") \"-\" (\"0\" [1-9] | [12] [0-9] | \"3\" [01])"
          " | (\"04\" | \"06\" | \"09\" | \"11\") \"-\" (\"0\" [1-9] | [12] [0-9] | \"30\")"
          " | \"02\" \"-\" (\"0\" [1-9] | \"1\" [0-9] | \"2\" [0-8]))";
      const std::string time = "([01] [0-9] | \"2\" [0-3]) \":\" [0-5] [0-9] \":\" [0-5] [0-9] (\".\" [0-9]{1,6})? (\"Z\" | [+-] ([01] [0-9] | \"2\" [0-3]) \":\" [0-5] [0-9])";
      std::string body;
      if (f == "date") body = date;
      else if (f == "time") body = time;
      else if (f == "date-time") body = date + " \"T\" " + time;
      else if (f == "uuid") body = "[0-9a-f]{8} \"-\" [0-9a-f]{4} \"-\" [0-9a-f]{4} \"-\" [0-9a-f]{4} \"-\" [0-9a-f]{12}";
      else if (f == "email")
        body = "[a-zA-Z0-9_] [a-zA-Z0-9_+-]{0,31} (\".\" [a-zA-Z0-9_+-]{1,16}){0,2} \"@\" [a-z0-9] [a-z0-9-]{0,20} [a-z0-9] (\".\" [a-z]{2,8}){1,2}";
      else unsupported(path + "/format", fmt::format("format {} is not supported (date, time, date-time, uuid, email are)", s["format"].dump()));
      return add_rule(hint, q + " (" + body + ") " + q);
    }
    const long long min = s.contains("minLength") ? count_field(s, "minLength", path) : 0;
    const long long max = s.contains("maxLength") ? count_field(s, "maxLength", path) : -1;
    if (max >= 0 && max < min) unsupported(path, "maxLength is below minLength");
    if (min == 0 && max < 0) return builtin("string");
    return add_rule(hint, q + " " + builtin("char") + repeat_suffix(min, max) + " " + q);
  }

  // minimum/maximum as an inclusive integer range (for integers) or real bounds.
  std::string number_rule(const json& s, const std::string& hint, const std::string& path, bool integer) {
    check_keywords(s, path, {"type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"});
    double lo = -INFINITY, hi = INFINITY;
    bool lo_excl = false, hi_excl = false;
    auto number = [&](const char* key) {
      if (!s[key].is_number()) unsupported(path + "/" + key, fmt::format("{} must be a number", key));
      return s[key].get<double>();
    };
    if (s.contains("minimum")) lo = number("minimum");
    if (s.contains("maximum")) hi = number("maximum");
    if (s.contains("exclusiveMinimum")) {
      if (s["exclusiveMinimum"].is_boolean()) {
        lo_excl = s["exclusiveMinimum"].get<bool>();  // draft 4: a flag on minimum
      } else {
        const double v = number("exclusiveMinimum");
        if (v >= lo) lo = v, lo_excl = true;
      }
    }
    if (s.contains("exclusiveMaximum")) {
      if (s["exclusiveMaximum"].is_boolean()) {
        hi_excl = s["exclusiveMaximum"].get<bool>();
      } else {
        const double v = number("exclusiveMaximum");
        if (v <= hi) hi = v, hi_excl = true;
      }
    }
    if (std::isinf(lo) && std::isinf(hi)) return builtin(integer ? "integer" : "number");
    const double cap = 1e15;
    if (std::fabs(lo) > cap * 10 && !std::isinf(lo)) unsupported(path, "minimum beyond 1e16 is not supported");
    if (std::fabs(hi) > cap * 10 && !std::isinf(hi)) unsupported(path, "maximum beyond 1e16 is not supported");
    // The smallest and largest integers inside the bounds.
    long long ilo = std::isinf(lo) ? -static_cast<long long>(cap) : static_cast<long long>(std::ceil(lo));
    long long ihi = std::isinf(hi) ? static_cast<long long>(cap) : static_cast<long long>(std::floor(hi));
    if (lo_excl && static_cast<double>(ilo) == lo) ++ilo;
    if (hi_excl && static_cast<double>(ihi) == hi) --ihi;
    if (ilo > ihi) {
      if (integer) unsupported(path, "no integer lies within minimum and maximum");
      unsupported(path, "bounds that hold no integer are not supported for numbers");
    }
    const std::string whole = integer_range(ilo, ihi);
    if (integer) return add_rule(hint, whole);
    // A fraction only on integer parts strictly inside the integer range: x.f stays within
    // (x - 1, x + 1), which the bounds then hold for either sign.
    if (ihi - ilo < 2) return add_rule(hint, whole);
    const std::string inner = integer_range(ilo + 1, ihi - 1);
    return add_rule(hint, whole + " | " + inner + " \".\" [0-9]{1,16}");
  }

  const json& root_;
  JsonGrammarOptions options_;
  std::map<std::string, std::string> rules_;
  std::map<std::string, std::string> refs_;
  int depth_ = 0;
  int ref_depth_ = 0;
};

}  // namespace

std::string json_schema_to_gbnf(const nlohmann::ordered_json& schema, const JsonGrammarOptions& options) {
  return Converter(schema, options).convert();
}

std::string json_schema_to_gbnf(const nlohmann::json& schema, const JsonGrammarOptions& options) {
  return Converter(nlohmann::ordered_json::parse(schema.dump()), options).convert();
}

std::string json_object_gbnf(const JsonGrammarOptions& options) {
  static const json empty = json::object();
  return Converter(empty, options).any_object();
}

}  // namespace kiln::grammar
