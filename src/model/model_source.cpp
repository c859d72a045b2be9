#include "model/model_source.h"

#include <cstdio>
#include <cstring>

#include "core/error.h"
#include "format/gguf_file.h"
#include "format/llama2c_file.h"

namespace kiln {

ModelSource::~ModelSource() = default;

std::unique_ptr<ModelSource> ModelSource::open(const std::string& path) {
  // Peek at the magic without mapping: a GGUF starts with "GGUF"; anything else is tried as a
  // llama2.c checkpoint, whose reader validates the header and the exact file size.
  char magic[4] = {0, 0, 0, 0};
  std::FILE* fp = std::fopen(path.c_str(), "rb");
  if (fp == nullptr) fail("{}: cannot open: {}", path, std::strerror(errno));
  std::size_t n = std::fread(magic, 1, 4, fp);
  std::fclose(fp);
  std::unique_ptr<ModelSource> src(new ModelSource());
  src->path_ = path;
  if (n == 4 && std::memcmp(magic, "GGUF", 4) == 0) {
    src->gguf_ = GgufFile::open(path);
    src->config_ = llama_config_from_gguf(*src->gguf_);
  } else {
    src->llama2c_ = Llama2cFile::open(path);
    src->config_ = llama_config_from_llama2c(src->llama2c_->header());
  }
  return src;
}

std::optional<TensorView> ModelSource::tensor(const std::string& name) const {
  if (gguf_) {
    const GgufTensorInfo* info = gguf_->find_tensor(name);
    if (info == nullptr) return std::nullopt;
    return gguf_->tensor_view(*info);
  }
  const TensorView* t = llama2c_->find_tensor(name);
  if (t == nullptr) return std::nullopt;
  return *t;
}

std::size_t ModelSource::file_size() const {
  return gguf_ ? gguf_->mapped_file().size() : llama2c_->mapped_file().size();
}

bool ModelSource::weights_copied() const {
  return gguf_ ? gguf_->mapped_file().copied() : llama2c_->mapped_file().copied();
}

std::string ModelSource::format_name() const {
  return gguf_ ? "gguf v" + std::to_string(gguf_->version()) : "llama2.c";
}

}  // namespace kiln
