#include "convert/export_source.h"

#include "model/model_source.h"

namespace kiln::convert {

ExportSource open_export_source(const std::string& path) {
  std::shared_ptr<const ModelSource> model = ModelSource::open(path);
  ExportSource source;
  source.path = model->path();
  source.format_name = model->format_name();
  source.config = model->config();
  source.tensor = [m = model.get()](const std::string& name) { return m->tensor(name); };
  source.owner = model;
  return source;
}

}  // namespace kiln::convert
