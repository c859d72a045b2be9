#pragma once
// A strict reader of the Prometheus text format (0.0.4) for the tests: it parses what /metrics
// answers into samples, and lists every way the text strays from the format, so that a test can
// check the exposition's validity without Prometheus and then read values out of it.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace kiln::test {

struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

struct Exposition {
  std::vector<Sample> samples;
  std::map<std::string, std::string> types;  // family -> counter | gauge | histogram | ...
  std::map<std::string, std::string> help;
  std::vector<std::string> errors;  // empty when the text is valid

  // The sum of the samples of `name` whose labels include all of `match`.
  double sum(const std::string& name, const std::map<std::string, std::string>& match = {}) const {
    double total = 0;
    for (const Sample& s : samples) {
      if (s.name != name) continue;
      bool ok = true;
      for (const auto& [k, v] : match) ok = ok && s.labels.count(k) && s.labels.at(k) == v;
      if (ok) total += s.value;
    }
    return total;
  }
  bool has(const std::string& name) const {
    for (const Sample& s : samples)
      if (s.name == name) return true;
    return false;
  }
};

namespace exposition_detail {

inline bool is_name(const std::string& s, bool colon_ok) {
  if (s.empty()) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon_ok && c == ':');
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

inline bool parse_value(const std::string& s, double* v) {
  if (s == "+Inf") return *v = std::numeric_limits<double>::infinity(), true;
  if (s == "-Inf") return *v = -std::numeric_limits<double>::infinity(), true;
  if (s == "NaN") return *v = 0, true;
  char* end = nullptr;
  *v = std::strtod(s.c_str(), &end);
  return !s.empty() && end == s.c_str() + s.size();
}

// The family a sample belongs to: a histogram's _bucket, _sum and _count belong to its name.
inline std::string family_of(const std::string& name, const std::map<std::string, std::string>& types) {
  for (const char* suffix : {"_bucket", "_sum", "_count"}) {
    const std::string s = suffix;
    if (name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0) {
      const std::string base = name.substr(0, name.size() - s.size());
      const auto it = types.find(base);
      if (it != types.end() && (it->second == "histogram" || it->second == "summary")) return base;
    }
  }
  return name;
}

}  // namespace exposition_detail

inline Exposition parse_exposition(const std::string& text) {
  using namespace exposition_detail;
  Exposition out;
  std::istringstream in(text);
  std::string line;
  int n = 0;
  std::set<std::string> seen_families;  // families whose samples have started
  std::string current;                  // the family of the last sample
  if (!text.empty() && text.back() != '\n') out.errors.push_back("the text does not end with a newline");
  while (std::getline(in, line)) {
    ++n;
    const std::string where = "line " + std::to_string(n) + ": ";
    if (line.empty()) continue;
    if (line[0] == '#') {
      std::istringstream ls(line);
      std::string hash, kind, name;
      ls >> hash >> kind >> name;
      if (kind != "HELP" && kind != "TYPE") continue;  // other comments are allowed
      if (!is_name(name, true)) out.errors.push_back(where + "bad metric name '" + name + "'");
      std::string rest;
      std::getline(ls, rest);
      if (!rest.empty() && rest[0] == ' ') rest.erase(0, 1);
      if (kind == "TYPE") {
        static const std::set<std::string> kTypes = {"counter", "gauge", "histogram", "summary", "untyped"};
        if (!kTypes.count(rest)) out.errors.push_back(where + "bad type '" + rest + "'");
        if (out.types.count(name)) out.errors.push_back(where + "a second TYPE for " + name);
        if (seen_families.count(name)) out.errors.push_back(where + "TYPE of " + name + " after its samples");
        out.types[name] = rest;
      } else {
        for (std::size_t i = 0; i < rest.size(); ++i)
          if (rest[i] == '\\' && (i + 1 >= rest.size() || (rest[i + 1] != '\\' && rest[i + 1] != 'n')))
            out.errors.push_back(where + "bad escape in HELP");
          else if (rest[i] == '\\')
            ++i;
        out.help[name] = rest;
      }
      continue;
    }
    Sample s;
    std::size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    s.name = line.substr(0, i);
    if (!is_name(s.name, true)) out.errors.push_back(where + "bad metric name '" + s.name + "'");
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        std::size_t eq = line.find('=', i);
        if (eq == std::string::npos) {
          out.errors.push_back(where + "label without '='");
          break;
        }
        const std::string label = line.substr(i, eq - i);
        if (!is_name(label, false) || label.rfind("__", 0) == 0)
          out.errors.push_back(where + "bad label name '" + label + "'");
        if (eq + 1 >= line.size() || line[eq + 1] != '"') {
          out.errors.push_back(where + "label value not quoted");
          break;
        }
        std::string value;
        std::size_t j = eq + 2;
        bool closed = false;
        for (; j < line.size(); ++j) {
          if (line[j] == '\\') {
            if (j + 1 >= line.size()) break;
            const char e = line[++j];
            if (e == 'n')
              value += '\n';
            else if (e == '\\' || e == '"')
              value += e;
            else
              out.errors.push_back(where + "bad escape in a label value");
          } else if (line[j] == '"') {
            closed = true;
            break;
          } else {
            value += line[j];
          }
        }
        if (!closed) {
          out.errors.push_back(where + "unterminated label value");
          break;
        }
        if (s.labels.count(label)) out.errors.push_back(where + "label " + label + " given twice");
        s.labels[label] = value;
        i = j + 1;
        if (i < line.size() && line[i] == ',') ++i;
      }
      if (i >= line.size() || line[i] != '}') {
        out.errors.push_back(where + "labels not closed");
        continue;
      }
      ++i;
    }
    if (i >= line.size() || line[i] != ' ') {
      out.errors.push_back(where + "no value");
      continue;
    }
    std::istringstream vs(line.substr(i + 1));
    std::string value, timestamp;
    vs >> value >> timestamp;
    if (!parse_value(value, &s.value)) out.errors.push_back(where + "bad value '" + value + "'");
    const std::string family = family_of(s.name, out.types);
    if (!out.types.count(family)) out.errors.push_back(where + s.name + " has no TYPE line");
    if (family != current && seen_families.count(family))
      out.errors.push_back(where + "the samples of " + family + " are not together");
    seen_families.insert(family);
    current = family;
    out.samples.push_back(std::move(s));
  }
  // Histograms: per series, buckets cumulative, ending with +Inf equal to _count.
  for (const auto& [family, type] : out.types) {
    if (type != "histogram") continue;
    std::map<std::map<std::string, std::string>, std::vector<std::pair<double, double>>> buckets;
    std::map<std::map<std::string, std::string>, double> counts;
    for (const Sample& s : out.samples) {
      if (s.name == family + "_bucket") {
        auto labels = s.labels;
        if (!labels.count("le")) {
          out.errors.push_back(family + "_bucket without le");
          continue;
        }
        double le = 0;
        parse_value(labels["le"], &le);
        labels.erase("le");
        buckets[labels].push_back({le, s.value});
      } else if (s.name == family + "_count") {
        counts[s.labels] = s.value;
      }
    }
    for (auto& [labels, bs] : buckets) {
      std::sort(bs.begin(), bs.end());
      for (std::size_t k = 1; k < bs.size(); ++k)
        if (bs[k].second < bs[k - 1].second) out.errors.push_back(family + ": buckets are not cumulative");
      if (bs.empty() || !std::isinf(bs.back().first))
        out.errors.push_back(family + ": no +Inf bucket");
      else if (!counts.count(labels) || counts[labels] != bs.back().second)
        out.errors.push_back(family + ": the +Inf bucket differs from _count");
    }
  }
  return out;
}

}  // namespace kiln::test
