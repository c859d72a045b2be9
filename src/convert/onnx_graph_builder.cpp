#include "convert/onnx_graph_builder.h"

namespace kiln::convert {
namespace {

void set_attribute(onnx::NodeProto& node, const OnnxAttribute& a) {
  onnx::AttributeProto* p = node.add_attribute();
  p->set_name(a.name);
  if (const auto* i = std::get_if<std::int64_t>(&a.value)) {
    p->set_type(onnx::AttributeProto::INT);
    p->set_i(*i);
  } else if (const auto* f = std::get_if<float>(&a.value)) {
    p->set_type(onnx::AttributeProto::FLOAT);
    p->set_f(*f);
  } else {
    p->set_type(onnx::AttributeProto::INTS);
    for (std::int64_t v : std::get<std::vector<std::int64_t>>(a.value)) p->add_ints(v);
  }
}

void set_value_info(onnx::ValueInfoProto& info, const std::string& name, onnx::TensorProto::DataType type,
                    const std::vector<OnnxDim>& dims) {
  info.set_name(name);
  onnx::TypeProto::Tensor* t = info.mutable_type()->mutable_tensor_type();
  t->set_elem_type(type);
  onnx::TensorShapeProto* shape = t->mutable_shape();
  for (const OnnxDim& d : dims) {
    onnx::TensorShapeProto::Dimension* dim = shape->add_dim();
    if (const auto* size = std::get_if<std::int64_t>(&d))
      dim->set_dim_value(*size);
    else
      dim->set_dim_param(std::get<std::string>(d));
  }
}

}  // namespace

std::string OnnxGraphBuilder::unique(const std::string& hint) {
  const int n = used_[hint]++;
  return n == 0 ? hint : hint + "_" + std::to_string(n);
}

onnx::NodeProto& OnnxGraphBuilder::add_node(const std::string& op, const std::vector<std::string>& inputs,
                                            const std::vector<OnnxAttribute>& attributes, const std::string& name) {
  onnx::NodeProto* node = graph_.add_node();
  node->set_op_type(op);
  node->set_name(name);
  for (const std::string& in : inputs) node->add_input(in);
  for (const OnnxAttribute& a : attributes) set_attribute(*node, a);
  return *node;
}

std::string OnnxGraphBuilder::node(const std::string& op, const std::vector<std::string>& inputs,
                                   const std::string& hint, const std::vector<OnnxAttribute>& attributes) {
  const std::string out = unique(hint);
  add_node(op, inputs, attributes, out + "/" + op).add_output(out);
  return out;
}

std::vector<std::string> OnnxGraphBuilder::node_outputs(const std::string& op, const std::vector<std::string>& inputs,
                                                        const std::string& hint, int n_outputs,
                                                        const std::vector<OnnxAttribute>& attributes) {
  const std::string base = unique(hint);
  onnx::NodeProto& n = add_node(op, inputs, attributes, base + "/" + op);
  std::vector<std::string> outs;
  for (int i = 0; i < n_outputs; ++i) {
    outs.push_back(base + "_" + std::to_string(i));
    n.add_output(outs.back());
  }
  return outs;
}

void OnnxGraphBuilder::node_named(const std::string& op, const std::vector<std::string>& inputs,
                                  const std::vector<std::string>& outputs,
                                  const std::vector<OnnxAttribute>& attributes) {
  onnx::NodeProto& n = add_node(op, inputs, attributes, unique(outputs.at(0) + "/" + op));
  for (const std::string& out : outputs) n.add_output(out);
}

std::string OnnxGraphBuilder::constant(const onnx::TensorProto& value, const std::string& hint) {
  const std::string out = unique(hint);
  onnx::NodeProto& n = add_node("Constant", {}, {}, out + "/Constant");
  n.add_output(out);
  onnx::AttributeProto* a = n.add_attribute();
  a->set_name("value");
  a->set_type(onnx::AttributeProto::TENSOR);
  *a->mutable_t() = value;
  return out;
}

std::string OnnxGraphBuilder::constant_i64s(const std::vector<std::int64_t>& values, const std::string& hint) {
  onnx::TensorProto t;
  t.set_data_type(onnx::TensorProto::INT64);
  t.add_dims(static_cast<std::int64_t>(values.size()));
  for (std::int64_t v : values) t.add_int64_data(v);
  return constant(t, hint);
}

std::string OnnxGraphBuilder::constant_i64(std::int64_t value, const std::string& hint) {
  onnx::TensorProto t;  // no dims: a scalar
  t.set_data_type(onnx::TensorProto::INT64);
  t.add_int64_data(value);
  return constant(t, hint);
}

std::string OnnxGraphBuilder::constant_f32(float value, const std::string& hint) {
  onnx::TensorProto t;
  t.set_data_type(onnx::TensorProto::FLOAT);
  t.add_float_data(value);
  return constant(t, hint);
}

std::string OnnxGraphBuilder::constant_f32s(const std::vector<float>& values, const std::string& hint) {
  onnx::TensorProto t;
  t.set_data_type(onnx::TensorProto::FLOAT);
  t.add_dims(static_cast<std::int64_t>(values.size()));
  for (float v : values) t.add_float_data(v);
  return constant(t, hint);
}

void OnnxGraphBuilder::input(const std::string& name, onnx::TensorProto::DataType type,
                             const std::vector<OnnxDim>& dims) {
  set_value_info(*graph_.add_input(), name, type, dims);
  ++used_[name];
}

void OnnxGraphBuilder::output(const std::string& name, onnx::TensorProto::DataType type,
                              const std::vector<OnnxDim>& dims) {
  set_value_info(*graph_.add_output(), name, type, dims);
}

}  // namespace kiln::convert
