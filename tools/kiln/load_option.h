#pragma once
// --no-mmap: the one load option shared by every command that loads a model to run it.
#include <CLI/CLI.hpp>

#include "core/mapped_file.h"

namespace kiln::cli {

inline void add_no_mmap_flag(CLI::App* cmd) {
  cmd->add_flag_callback(
      "--no-mmap", [] { set_load_mode(LoadMode::copy); },
      "Read the weights into private huge-page memory instead of mapping the file, as llama.cpp's "
      "--no-mmap (also KILN_LOAD=copy): steadier decode where the page cache reads slowly, at the "
      "cost of page-cache sharing between processes");
}

}  // namespace kiln::cli
