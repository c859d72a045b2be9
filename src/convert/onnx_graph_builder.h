#pragma once
// A small builder over an ONNX GraphProto: nodes whose outputs get unique names from a hint,
// scalar and 1-D constants as Constant nodes, and graph inputs and outputs with their element
// type and shape (fixed sizes or named dynamic axes). The graph is kept in the ModelProto that
// owns it; initializers are written separately (convert/onnx_initializers.h).
#include <onnx/onnx_pb.h>

#include <cstdint>
#include <map>
#include <string>
#include <variant>
#include <vector>

namespace kiln::convert {

// One node attribute: an integer, a float or a list of integers.
struct OnnxAttribute {
  std::string name;
  std::variant<std::int64_t, float, std::vector<std::int64_t>> value;
};

// One dimension of a graph input or output: a fixed size or a named dynamic axis.
using OnnxDim = std::variant<std::int64_t, std::string>;

class OnnxGraphBuilder {
 public:
  explicit OnnxGraphBuilder(onnx::GraphProto& graph) : graph_(graph) {}

  // Adds an `op` node and returns the name of its one output, `hint` made unique.
  std::string node(const std::string& op, const std::vector<std::string>& inputs, const std::string& hint,
                   const std::vector<OnnxAttribute>& attributes = {});
  // The same for a node of several outputs (Split): n_outputs names "<hint>_<i>".
  std::vector<std::string> node_outputs(const std::string& op, const std::vector<std::string>& inputs,
                                        const std::string& hint, int n_outputs,
                                        const std::vector<OnnxAttribute>& attributes = {});
  // A node whose outputs are named by the caller (the graph outputs present.N.key, logits).
  void node_named(const std::string& op, const std::vector<std::string>& inputs,
                  const std::vector<std::string>& outputs, const std::vector<OnnxAttribute>& attributes = {});

  // Constant nodes: an int64 1-D tensor, an int64 scalar, a float scalar, a float 1-D tensor.
  std::string constant_i64s(const std::vector<std::int64_t>& values, const std::string& hint);
  std::string constant_i64(std::int64_t value, const std::string& hint);
  std::string constant_f32(float value, const std::string& hint);
  std::string constant_f32s(const std::vector<float>& values, const std::string& hint);

  void input(const std::string& name, onnx::TensorProto::DataType type, const std::vector<OnnxDim>& dims);
  void output(const std::string& name, onnx::TensorProto::DataType type, const std::vector<OnnxDim>& dims);

  int node_count() const { return graph_.node_size(); }

 private:
  std::string unique(const std::string& hint);
  std::string constant(const onnx::TensorProto& value, const std::string& hint);
  onnx::NodeProto& add_node(const std::string& op, const std::vector<std::string>& inputs,
                            const std::vector<OnnxAttribute>& attributes, const std::string& name);

  onnx::GraphProto& graph_;
  std::map<std::string, int> used_;  // hint -> times used
};

}  // namespace kiln::convert
