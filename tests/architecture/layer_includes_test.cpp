// Every #include under src/ and tools/ against the layer table in docs/architecture.md: a file may
// include its own layer and the layers its row names, and third-party headers only of the
// libraries its row names. The build enforces the layer arrows too (each library sees only the
// include directories of the layers it links); this test names the file and line, and also
// catches third-party headers, which the build cannot (Boost and nlohmann are header-only).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;

struct LayerRow {
  std::string name;
  std::string folder;  // "src/kernels/", "tools/kiln/"
  bool every_layer = false;
  std::set<std::string> may_include;
  std::set<std::string> third_party;
};

struct LayerTable {
  std::map<std::string, LayerRow> by_name;
  std::vector<std::string> errors;
};

std::set<std::string> backticked(const std::string& cell) {
  std::set<std::string> names;
  static const std::regex word("`([A-Za-z0-9_]+)`");
  for (std::sregex_iterator it(cell.begin(), cell.end(), word), end; it != end; ++it) names.insert((*it)[1]);
  return names;
}

// The rows of the layer table: | `layer` | `folder/` | may include | third-party | what lives there |
LayerTable parse_layer_table(std::istream& in) {
  LayerTable table;
  static const std::regex row(R"(^\| `([a-z]+)` \| `((?:src|tools)/[a-z]+/)` \| ([^|]*)\| ([^|]*)\|)");
  std::string line;
  while (std::getline(in, line)) {
    std::smatch m;
    if (!std::regex_search(line, m, row)) continue;
    LayerRow r;
    r.name = m[1];
    r.folder = m[2];
    r.every_layer = m[3].str().find("every layer") != std::string::npos;
    r.may_include = backticked(m[3]);
    r.third_party = backticked(m[4]);
    table.by_name[r.name] = r;
  }
  for (const auto& [name, r] : table.by_name) {
    for (const std::string& dep : r.may_include) {
      const auto d = table.by_name.find(dep);
      if (d == table.by_name.end()) {
        table.errors.push_back("layer `" + name + "` may include `" + dep + "`, which has no row");
        continue;
      }
      // Closed rows: the build links rows privately, so a layer's include path holds only its
      // row's layers, and the headers of those include what their own rows name.
      if (!r.every_layer)
        for (const std::string& indirect : d->second.may_include)
          if (indirect != name && !r.may_include.count(indirect))
            table.errors.push_back("layer `" + name + "` may include `" + dep + "`, which may include `" + indirect +
                                   "`: name `" + indirect + "` in its row too");
    }
  }
  return table;
}

// Third-party headers by the name the table uses for their library.
std::string third_party_of(const std::string& header) {
  static const std::vector<std::pair<std::string, std::string>> prefixes = {
      {"boost/", "Boost"}, {"pcre2", "PCRE2"}, {"nlohmann/", "nlohmann_json"}, {"fmt/", "fmt"},
      {"CLI/", "CLI11"},   {"spdlog/", "spdlog"}, {"gtest/", "GTest"}, {"gmock/", "GTest"},
      {"benchmark/", "benchmark"}, {"prometheus/", "prometheus_cpp"}, {"mpi.h", "MPI"},
      {"onnx/", "ONNX"},           {"google/protobuf/", "ONNX"}};
  for (const auto& [prefix, lib] : prefixes)
    if (header.rfind(prefix, 0) == 0) return lib;
  return "";
}

// Violations, one line each: "path:line: why". `root` holds src/ and tools/.
std::vector<std::string> check_includes(const fs::path& root, const LayerTable& table) {
  std::vector<std::string> out;
  std::map<std::string, const LayerRow*> by_folder;
  for (const auto& [name, r] : table.by_name) by_folder[r.folder] = &r;
  static const std::regex quoted(R"(^\s*#\s*include\s*"([^"]+)\")");
  static const std::regex angled(R"(^\s*#\s*include\s*<([^>]+)>)");
  std::vector<fs::path> files;
  for (const char* top : {"src", "tools"}) {
    if (!fs::is_directory(root / top)) continue;
    for (const auto& e : fs::recursive_directory_iterator(root / top)) {
      const std::string ext = e.path().extension().string();
      if (e.is_regular_file() && (ext == ".h" || ext == ".cpp" || ext == ".hpp" || ext == ".cc")) files.push_back(e.path());
    }
  }
  std::sort(files.begin(), files.end());
  for (const fs::path& file : files) {
    const std::string rel = fs::relative(file, root).generic_string();
    // src/<layer>/... or tools/<front end>/...: the folder is the first two components.
    const std::size_t slash = rel.find('/', rel.find('/') + 1);
    const std::string folder = slash == std::string::npos ? rel : rel.substr(0, slash + 1);
    const auto row_it = by_folder.find(folder);
    if (row_it == by_folder.end()) {
      out.push_back(rel + ": its folder " + folder + " has no row in the layer table");
      continue;
    }
    const LayerRow& row = *row_it->second;
    // Every layer may use core, and with it core's third-party libraries (fmt is in core's
    // interface: kiln::fail takes fmt format strings).
    std::set<std::string> third_party = row.third_party;
    if (const auto core = table.by_name.find("core"); core != table.by_name.end())
      third_party.insert(core->second.third_party.begin(), core->second.third_party.end());
    std::ifstream in(file);
    std::string line;
    for (int n = 1; std::getline(in, line); ++n) {
      std::smatch m;
      const std::string where = rel + ":" + std::to_string(n) + ": ";
      if (std::regex_search(line, m, quoted)) {
        const std::string header = m[1];
        const std::size_t cut = header.find('/');
        if (cut == std::string::npos) {
          if (!fs::exists(file.parent_path() / header))
            out.push_back(where + "includes \"" + header + "\", which is not beside it (name the layer: \"<layer>/" + header + "\")");
          continue;
        }
        const std::string target = header.substr(0, cut);
        if (!table.by_name.count(target)) {
          out.push_back(where + "includes \"" + header + "\": `" + target + "` is not a layer");
        } else if (target != row.name && !row.every_layer && !row.may_include.count(target)) {
          std::string allowed;
          for (const std::string& d : row.may_include) allowed += (allowed.empty() ? "" : ", ") + d;
          out.push_back(where + "includes \"" + header + "\": layer `" + row.name + "` may include only " +
                        (allowed.empty() ? std::string("itself") : allowed) + " (docs/architecture.md)");
        }
      } else if (std::regex_search(line, m, angled)) {
        const std::string lib = third_party_of(m[1]);
        if (!lib.empty() && !third_party.count(lib))
          out.push_back(where + "includes <" + m[1].str() + ">: layer `" + row.name + "` does not name " + lib +
                        " among its third-party libraries (docs/architecture.md)");
      }
    }
  }
  return out;
}

std::string source_dir() {
  const char* dir = std::getenv("KILN_SOURCE_DIR");
  return dir != nullptr ? dir : ".";
}

std::string join_lines(const std::vector<std::string>& lines) {
  std::string s;
  for (const std::string& l : lines) s += l + "\n";
  return s;
}

LayerTable load_project_table() {
  std::ifstream in(fs::path(source_dir()) / "docs" / "architecture.md");
  EXPECT_TRUE(in.good()) << "cannot read docs/architecture.md under KILN_SOURCE_DIR=" << source_dir();
  return parse_layer_table(in);
}

TEST(LayerTable, HasEveryBuiltLayerAndOnlyKnownArrows) {
  const LayerTable table = load_project_table();
  EXPECT_TRUE(table.errors.empty()) << join_lines(table.errors);
  for (const char* layer : {"core", "kernels", "format", "tokenizer", "chat", "model", "sample", "runtime", "eval",
                            "optimize", "serve", "cli"})
    EXPECT_TRUE(table.by_name.count(layer)) << "no row for " << layer;
  EXPECT_TRUE(table.by_name.at("core").may_include.empty());
  EXPECT_TRUE(table.by_name.at("cli").every_layer);
  // Every folder of src/ is a layer of the table.
  for (const auto& e : fs::directory_iterator(fs::path(source_dir()) / "src"))
    if (e.is_directory()) {
      EXPECT_TRUE(table.by_name.count(e.path().filename().string())) << e.path();
    }
}

TEST(LayerIncludes, EveryIncludeUnderSrcAndToolsFollowsTheTable) {
  const LayerTable table = load_project_table();
  const std::vector<std::string> violations = check_includes(source_dir(), table);
  EXPECT_TRUE(violations.empty()) << violations.size() << " include(s) cross the layer table:\n"
                                  << join_lines(violations);
}

TEST(LayerTable, ARowMustNameWhatItsLayersInclude) {
  std::istringstream text(
      "| `core` | `src/core/` | — | — | errors |\n"
      "| `kernels` | `src/kernels/` | `core` | — | kernels |\n"
      "| `model` | `src/model/` | `kernels` | — | forward |\n");
  const LayerTable table = parse_layer_table(text);
  ASSERT_EQ(table.errors.size(), 1u);
  EXPECT_EQ(table.errors[0], "layer `model` may include `kernels`, which may include `core`: name `core` in its row too");
}

// The checker itself, on a small tree with planted violations: it must find each, by file and line.
TEST(LayerIncludes, NamesTheFileAndLineOfAnUpwardOrUndeclaredInclude) {
  const fs::path root = fs::temp_directory_path() / ("kiln_layer_includes_" + std::to_string(::getpid()));
  fs::remove_all(root);
  fs::create_directories(root / "src" / "core");
  fs::create_directories(root / "src" / "kernels");
  fs::create_directories(root / "src" / "model");
  fs::create_directories(root / "src" / "stray");
  const auto write = [&](const fs::path& p, const std::string& text) { std::ofstream(root / p) << text; };
  write("src/core/error.h", "#pragma once\n#include <fmt/format.h>\n");
  write("src/kernels/ops.h", "#pragma once\n#include \"core/error.h\"\n#include \"blocks.h\"\n");
  write("src/kernels/blocks.h", "#pragma once\n");
  write("src/kernels/ops.cpp", "#include \"kernels/ops.h\"\n\n#include \"model/llama.h\"\n#include <boost/asio.hpp>\n");
  write("src/model/llama.h",
        "#pragma once\n#include \"kernels/ops.h\"\n#include \"missing.h\"\n#include \"nowhere/x.h\"\n#include <fmt/format.h>\n");
  write("src/stray/a.h", "#pragma once\n");
  std::istringstream table_text(
      "| layer | folder | may include | third-party | what |\n| --- | --- | --- | --- | --- |\n"
      "| `core` | `src/core/` | — | `fmt` | errors |\n"
      "| `kernels` | `src/kernels/` | `core` | — | kernels |\n"
      "| `model` | `src/model/` | `core`, `kernels` | — | forward |\n");
  const LayerTable table = parse_layer_table(table_text);
  ASSERT_EQ(table.by_name.size(), 3u);
  const std::vector<std::string> v = check_includes(root, table);
  fs::remove_all(root);
  const std::string all = join_lines(v);
  ASSERT_EQ(v.size(), 5u) << all;
  EXPECT_NE(all.find("src/kernels/ops.cpp:3: includes \"model/llama.h\": layer `kernels` may include only core"),
            std::string::npos) << all;
  EXPECT_NE(all.find("src/kernels/ops.cpp:4: includes <boost/asio.hpp>: layer `kernels` does not name Boost"),
            std::string::npos) << all;
  EXPECT_NE(all.find("src/model/llama.h:3: includes \"missing.h\", which is not beside it"), std::string::npos) << all;
  EXPECT_NE(all.find("src/model/llama.h:4: includes \"nowhere/x.h\": `nowhere` is not a layer"), std::string::npos)
      << all;
  EXPECT_NE(all.find("src/stray/a.h: its folder src/stray/ has no row"), std::string::npos) << all;
}

}  // namespace
