// PyTorchCheckpoint, ZipArchive and the restricted unpickler: checkpoints written at run time by
// Debian's PyTorch (state dicts of f32/f16/bf16 tensors, an nn.Module state_dict with
// _metadata, views sharing a storage, a sharded checkpoint with its index, a ZIP64 archive),
// each tensor's bytes compared with what Python dumped; hostile pickles (os.system,
// builtins.eval, subprocess.Popen, INST/OBJ/NEWOBJ, REDUCE of a non-allowlisted callable)
// refused with the global or opcode named and nothing run; truncated and corrupt input refused.
// Skips visibly when `import torch` fails in /usr/bin/python3.
#include "format/pytorch_checkpoint.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "format/pickle_reader.h"
#include "format/zip_archive.h"
#include "test_support.h"

namespace kiln {
namespace {

using ::testing::HasSubstr;

// Writes every fixture into the folder given as argv[1]. Each checkpoint X.bin gets X.expected/
// holding <tensor name>.raw (its bytes, contiguous) and manifest.json ({name: [dtype, size]}).
constexpr const char* kGenerator = R"PY(
import collections, io, json, os, pickle, struct, subprocess, sys, zipfile
import torch

out = sys.argv[1]
torch.manual_seed(0)

def expect(name, sd):
    d = os.path.join(out, name + ".expected")
    os.makedirs(d, exist_ok=True)
    manifest = {}
    for k, t in sd.items():
        with open(os.path.join(d, k + ".raw"), "wb") as f:
            f.write(t.detach().contiguous().flatten().view(torch.uint8).numpy().tobytes())
        manifest[k] = [str(t.dtype).replace("torch.", ""), list(t.shape)]
    with open(os.path.join(d, "manifest.json"), "w") as f:
        json.dump(manifest, f)

def save(name, sd, **kw):
    torch.save(sd, os.path.join(out, name), **kw)
    expect(name, sd)

# An OrderedDict with Hugging Face names, three float types, a scalar and tensors sharing storages.
embed = torch.randn(16, 8)
packed = torch.randn(6, 8).to(torch.float16)
hf = collections.OrderedDict()
hf["model.embed_tokens.weight"] = embed
hf["model.layers.0.self_attn.q_proj.weight"] = torch.randn(8, 8).to(torch.float16)
hf["model.layers.0.self_attn.k_proj.weight"] = torch.randn(4, 8).to(torch.bfloat16)
hf["model.layers.0.input_layernorm.weight"] = torch.rand(8)
hf["model.layers.0.mlp.up_proj.weight"] = packed[2:5]   # a view at an element offset
hf["model.layers.0.mlp.gate_proj.weight"] = packed[0:2]
hf["model.norm.weight"] = torch.ones(8, dtype=torch.bfloat16)
hf["lm_head.weight"] = embed                              # tied: the same storage twice
hf["model.rotary.scale"] = torch.tensor(0.5)              # 0-d
hf["model.conv.weight"] = torch.randn(2, 3, 2, 2)         # 4-d
save("hf.bin", hf)

# nn.Module.state_dict(): an OrderedDict with a _metadata attribute (pickled through BUILD).
module = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.LayerNorm(4)).to(torch.bfloat16)
save("module.bin", module.state_dict())

# Tensors kiln lists but does not view: a transposed view and an int64 tensor.
other = collections.OrderedDict()
other["plain"] = torch.randn(3, 5)
other["transposed"] = torch.randn(5, 3).t()
other["ids"] = torch.arange(6, dtype=torch.int64)
other["mask"] = torch.tensor([True, False])
other["param"] = torch.nn.Parameter(torch.randn(2, 3))  # pickled through _rebuild_parameter
other["permuted"] = torch.randn(2, 3, 4).permute(2, 0, 1)  # strides (1, 12, 4)
other["broadcast"] = torch.randn(3, 1).half().expand(3, 4)  # strides (1, 0)
save("other.bin", other)

# A sharded checkpoint and its index.
shard1 = collections.OrderedDict([("a.weight", torch.randn(4, 4)), ("b.weight", torch.randn(4).half())])
shard2 = collections.OrderedDict([("c.weight", torch.randn(2, 4).bfloat16())])
torch.save(shard1, os.path.join(out, "pytorch_model-00001-of-00002.bin"))
torch.save(shard2, os.path.join(out, "pytorch_model-00002-of-00002.bin"))
expect("sharded", collections.OrderedDict(list(shard1.items()) + list(shard2.items())))
weight_map = {"a.weight": "pytorch_model-00001-of-00002.bin", "b.weight": "pytorch_model-00001-of-00002.bin",
              "c.weight": "pytorch_model-00002-of-00002.bin"}
def index(name, wm):
    with open(os.path.join(out, name), "w") as f:
        json.dump({"metadata": {"total_size": 0}, "weight_map": wm}, f)
index("pytorch_model.bin.index.json", weight_map)
index("missing.bin.index.json", dict(weight_map, **{"d.weight": "pytorch_model-00003-of-00003.bin"}))
index("absent.bin.index.json", dict(weight_map, **{"d.weight": "pytorch_model-00002-of-00002.bin"}))
index("unlisted.bin.index.json", {k: v for k, v in weight_map.items() if k != "b.weight"})
index("misplaced.bin.index.json", dict(weight_map, **{"b.weight": "pytorch_model-00002-of-00002.bin"}))
index("escape.bin.index.json", dict(weight_map, **{"a.weight": "../pytorch_model-00001-of-00002.bin"}))

# The legacy format of torch < 1.6.
torch.save(hf, os.path.join(out, "legacy.bin"), _use_new_zipfile_serialization=False)

entries = [(i.filename, zipfile.ZipFile(os.path.join(out, "hf.bin")).read(i.filename))
           for i in zipfile.ZipFile(os.path.join(out, "hf.bin")).infolist()]

# The same entries deflated, as a zip tool would rewrite them.
with zipfile.ZipFile(os.path.join(out, "deflated.bin"), "w", zipfile.ZIP_DEFLATED) as z:
    for n, b in entries:
        z.writestr(n, b)

# The same entries in a ZIP64 archive: every size and offset in ZIP64 extra fields, a ZIP64
# end record and locator; data aligned to 64 bytes by a padding extra field, as torch does.
def zip64(entries):
    body, central = b"", b""
    for n, b in entries:
        name = n.encode()
        crc = zipfile.crc32(b) & 0xFFFFFFFF
        offset = len(body)
        z64 = struct.pack("<HHQQ", 1, 16, len(b), len(b))
        pad = -(offset + 30 + len(name) + len(z64) + 4) % 64
        extra = z64 + struct.pack("<HH", 0x4b46, pad) + b"Z" * pad
        body += struct.pack("<IHHHHHIIIHH", 0x04034b50, 45, 0, 0, 0, 0, crc, 0xFFFFFFFF, 0xFFFFFFFF, len(name),
                            len(extra)) + name + extra + b
        cextra = struct.pack("<HHQQQ", 1, 24, len(b), len(b), offset)
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014b50, 45, 45, 0, 0, 0, 0, crc, 0xFFFFFFFF, 0xFFFFFFFF,
                               len(name), len(cextra), 0, 0, 0, 0, 0xFFFFFFFF) + name + cextra
    cd_offset, z_offset = len(body), len(body) + len(central)
    end64 = struct.pack("<IQHHIIQQQQ", 0x06064b50, 44, 45, 45, 0, 0, len(entries), len(entries), len(central),
                        cd_offset)
    locator = struct.pack("<IIQI", 0x07064b50, 0, z_offset, 1)
    end = struct.pack("<IHHHHIIH", 0x06054b50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return body + central + end64 + locator + end
with open(os.path.join(out, "zip64.bin"), "wb") as f:
    f.write(zip64(entries))

# Hostile pickles. Each payload runs `touch "$KILN_MARKER"` (or writes the file) when Python
# unpickles it; the test sets KILN_MARKER to a path that must still be absent afterwards.
class System:
    def __reduce__(self):
        return (os.system, ('touch "$KILN_MARKER"',))
class Eval:
    def __reduce__(self):
        return (eval, ("open(__import__('os').environ['KILN_MARKER'], 'w').close()",))
class Popen:
    def __reduce__(self):
        return (subprocess.Popen, (["sh", "-c", 'touch "$KILN_MARKER"'],))
hostile = {"os_system": System(), "builtins_eval": Eval(), "subprocess_popen": Popen()}
for name, payload in hostile.items():
    data = pickle.dumps(collections.OrderedDict([("w", payload)]), protocol=2)
    with open(os.path.join(out, name + ".pkl"), "wb") as f:
        f.write(data)
# The os.system payload inside a torch.save archive: data.pkl replaced, storages kept.
with zipfile.ZipFile(os.path.join(out, "hostile.bin"), "w") as z:
    for n, b in entries:
        z.writestr(n, pickle.dumps(collections.OrderedDict([("w", System())]), protocol=2) if n.endswith("data.pkl") else b)
# Proof that the payloads are live: Python's own unpickler runs them.
env_marker = os.path.join(out, "python_ran")
os.environ["KILN_MARKER"] = env_marker
for name in hostile:
    if os.path.exists(env_marker):
        os.remove(env_marker)
    with open(os.path.join(out, name + ".pkl"), "rb") as f:
        obj = pickle.load(f)
    if name == "subprocess_popen":
        obj["w"].wait()
    assert os.path.exists(env_marker), name
with open(os.path.join(out, "payloads_live"), "w") as f:
    f.write("yes")
)PY";

std::vector<std::uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<std::uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const std::vector<std::uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

std::string open_error(const std::string& path) {
  return error_of([&] { PyTorchCheckpoint::open(path); });
}

std::string pickle_error(const std::vector<std::uint8_t>& bytes) {
  return error_of([&] { read_pickle(bytes, "test.pkl"); });
}

// The bytes of a literal, embedded NULs included.
template <std::size_t N>
std::vector<std::uint8_t> bytes_of(const char (&s)[N]) {
  return {s, s + N - 1};
}
std::vector<std::uint8_t> bytes_of(const std::string& s) { return {s.begin(), s.end()}; }

class PyTorchCheckpointTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string out;
    if (test::run_command("/usr/bin/python3 -c 'import torch' 2>&1", &out) != 0) {
      skip_reason_ = "/usr/bin/python3 cannot import torch: " + out;
      return;
    }
    dir_ = test::temp_dir() + "/pytorch";
    std::filesystem::create_directories(dir_);
    const std::string script = dir_ + "/make_checkpoints.py";
    std::ofstream(script) << kGenerator;
    if (test::run_command("/usr/bin/python3 " + script + " " + dir_, &out, true) != 0)
      generator_error_ = "the generator failed:\n" + out;
  }
  void SetUp() override {
    if (!skip_reason_.empty()) GTEST_SKIP() << skip_reason_;
    ASSERT_TRUE(generator_error_.empty()) << generator_error_;
  }
  static std::string file(const std::string& name) { return dir_ + "/" + name; }

  // Every tensor of `ckpt` against the bytes, dtype and shape Python recorded for `expected`.
  static void expect_tensors_match(const PyTorchCheckpoint& ckpt, const std::string& expected) {
    const std::string edir = file(expected + ".expected");
    std::ifstream manifest_in(edir + "/manifest.json");
    const nlohmann::json manifest = nlohmann::json::parse(manifest_in);  // {name: [dtype, [sizes]]}
    ASSERT_EQ(ckpt.tensors().size(), manifest.size());
    for (const PyTorchTensorInfo& info : ckpt.tensors()) {
      SCOPED_TRACE(info.name);
      ASSERT_TRUE(manifest.contains(info.name));
      EXPECT_EQ(manifest[info.name][0].get<std::string>(), info.dtype_name);
      EXPECT_EQ(manifest[info.name][1].get<std::vector<std::int64_t>>(), info.size);
      const std::vector<std::uint8_t> want = read_bytes(edir + "/" + info.name + ".raw");
      EXPECT_EQ(static_cast<std::size_t>(info.n_elements) * info.element_bytes, want.size());
      std::vector<std::uint8_t> copied(want.size());
      ckpt.copy_row_major(info, copied);
      EXPECT_EQ(copied, want);
      if (!info.contiguous) continue;
      const std::span<const std::uint8_t> got = ckpt.tensor_bytes(info);
      ASSERT_EQ(got.size(), want.size());
      EXPECT_TRUE(std::equal(got.begin(), got.end(), want.begin()));
      if (info.dtype) {
        const TensorView view = ckpt.tensor_view(info);
        EXPECT_EQ(view.n_bytes(), want.size());
        EXPECT_EQ(view.data, got.data());
        EXPECT_EQ(view.n_dims, static_cast<int>(info.size.size()));
        for (std::size_t i = 0; i < info.size.size(); ++i) EXPECT_EQ(view.ne[i], info.size[info.size.size() - 1 - i]);
      }
    }
  }

  static std::string dir_, skip_reason_, generator_error_;
};
std::string PyTorchCheckpointTest::dir_, PyTorchCheckpointTest::skip_reason_, PyTorchCheckpointTest::generator_error_;

TEST_F(PyTorchCheckpointTest, ReadsAnOrderedDictOfFloatTensorsByteForByte) {
  const auto ckpt = PyTorchCheckpoint::open(file("hf.bin"));
  ASSERT_EQ(ckpt->tensors().size(), 10u);
  EXPECT_EQ(ckpt->tensors()[0].name, "model.embed_tokens.weight");  // pickle order
  expect_tensors_match(*ckpt, "hf.bin");

  const TensorView q = ckpt->tensor_view(*ckpt->find_tensor("model.layers.0.self_attn.q_proj.weight"));
  EXPECT_EQ(q.dtype, DType::F16);
  const TensorView k = ckpt->tensor_view(*ckpt->find_tensor("model.layers.0.self_attn.k_proj.weight"));
  EXPECT_EQ(k.dtype, DType::BF16);
  EXPECT_EQ(k.ne[0], 8);
  EXPECT_EQ(k.ne[1], 4);
  const TensorView scalar = ckpt->tensor_view(*ckpt->find_tensor("model.rotary.scale"));
  EXPECT_EQ(scalar.n_dims, 0);
  EXPECT_EQ(*static_cast<const float*>(scalar.data), 0.5f);
}

TEST_F(PyTorchCheckpointTest, ViewsOfOneStorageShareItsBytes) {
  const auto ckpt = PyTorchCheckpoint::open(file("hf.bin"));
  const PyTorchTensorInfo& embed = *ckpt->find_tensor("model.embed_tokens.weight");
  const PyTorchTensorInfo& head = *ckpt->find_tensor("lm_head.weight");
  EXPECT_EQ(embed.storage_key, head.storage_key);
  EXPECT_EQ(ckpt->tensor_view(embed).data, ckpt->tensor_view(head).data);
  const PyTorchTensorInfo& up = *ckpt->find_tensor("model.layers.0.mlp.up_proj.weight");
  const PyTorchTensorInfo& gate = *ckpt->find_tensor("model.layers.0.mlp.gate_proj.weight");
  EXPECT_EQ(up.storage_key, gate.storage_key);
  EXPECT_EQ(up.storage_offset, 16);
  EXPECT_EQ(static_cast<const std::uint8_t*>(ckpt->tensor_view(up).data) -
                static_cast<const std::uint8_t*>(ckpt->tensor_view(gate).data),
            16 * 2);
}

TEST_F(PyTorchCheckpointTest, ReadsAModuleStateDictWithMetadata) {
  const auto ckpt = PyTorchCheckpoint::open(file("module.bin"));
  EXPECT_EQ(ckpt->tensors().size(), 4u);
  EXPECT_NE(ckpt->find_tensor("0.weight"), nullptr);
  EXPECT_NE(ckpt->find_tensor("1.bias"), nullptr);
  expect_tensors_match(*ckpt, "module.bin");

  // The pickle itself keeps _metadata apart from the tensors, as the OrderedDict's attribute.
  const std::vector<std::uint8_t> bytes = read_bytes(file("module.bin"));
  const ZipArchive zip(file("module.bin"), bytes);
  const ZipEntry* pkl = zip.find("module/data.pkl");
  ASSERT_NE(pkl, nullptr);
  const PickleValuePtr root = read_pickle(zip.data(*pkl), "module.bin");
  ASSERT_TRUE(root->dict.attributes);
  const PickleValue* metadata = root->dict.attributes->find("_metadata");
  ASSERT_NE(metadata, nullptr);
  ASSERT_NE(metadata->find(""), nullptr);
  EXPECT_EQ(metadata->find("")->find("version")->integer, 1);
}

TEST_F(PyTorchCheckpointTest, ListsOtherTypesAndNonContiguousTensorsAndCopiesButDoesNotViewThem) {
  const auto ckpt = PyTorchCheckpoint::open(file("other.bin"));
  expect_tensors_match(*ckpt, "other.bin");
  const PyTorchTensorInfo& t = *ckpt->find_tensor("transposed");
  EXPECT_FALSE(t.contiguous);
  EXPECT_EQ(t.stride, (std::vector<std::int64_t>{1, 3}));
  EXPECT_THAT(error_of([&] { ckpt->tensor_view(t); }), HasSubstr("tensor 'transposed' is not contiguous"));
  const PyTorchTensorInfo& ids = *ckpt->find_tensor("ids");
  EXPECT_EQ(ids.dtype_name, "int64");
  EXPECT_FALSE(ids.dtype);
  EXPECT_THAT(error_of([&] { ckpt->tensor_view(ids); }), HasSubstr("tensor 'ids' is int64"));
  EXPECT_EQ(ckpt->tensor_bytes(ids).size(), 48u);
  EXPECT_EQ(ckpt->find_tensor("mask")->dtype_name, "bool");
  EXPECT_TRUE(ckpt->find_tensor("plain")->contiguous);
  EXPECT_TRUE(ckpt->find_tensor("param")->contiguous);
  EXPECT_EQ(ckpt->find_tensor("permuted")->stride, (std::vector<std::int64_t>{1, 12, 4}));
  EXPECT_EQ(ckpt->find_tensor("broadcast")->stride, (std::vector<std::int64_t>{1, 0}));
  std::vector<std::uint8_t> too_small(4);
  EXPECT_THAT(error_of([&] { ckpt->copy_row_major(t, too_small); }), HasSubstr("copy into 4 bytes"));
}

TEST_F(PyTorchCheckpointTest, ReadsAShardedCheckpointThroughItsIndex) {
  const auto ckpt = PyTorchCheckpoint::open(file("pytorch_model.bin.index.json"));
  ASSERT_EQ(ckpt->shard_paths().size(), 2u);
  ASSERT_EQ(ckpt->tensors().size(), 3u);
  EXPECT_EQ(ckpt->find_tensor("c.weight")->shard, 1u);
  expect_tensors_match(*ckpt, "sharded");
}

TEST_F(PyTorchCheckpointTest, RefusesInconsistentIndexes) {
  EXPECT_THAT(open_error(file("missing.bin.index.json")),
              HasSubstr("names shard 'pytorch_model-00003-of-00003.bin', which does not exist"));
  EXPECT_THAT(open_error(file("absent.bin.index.json")),
              HasSubstr("puts tensor 'd.weight' in shard 'pytorch_model-00002-of-00002.bin', which does not hold it"));
  EXPECT_THAT(open_error(file("unlisted.bin.index.json")),
              HasSubstr("holds tensor 'b.weight', which the index's weight_map does not list"));
  EXPECT_THAT(open_error(file("misplaced.bin.index.json")),
              HasSubstr("holds tensor 'b.weight', which the index's weight_map puts in"));
  EXPECT_THAT(open_error(file("escape.bin.index.json")), HasSubstr("is not a plain file name"));
}

TEST_F(PyTorchCheckpointTest, ReadsZip64Archives) {
  const auto ckpt = PyTorchCheckpoint::open(file("zip64.bin"));
  expect_tensors_match(*ckpt, "hf.bin");
}

TEST_F(PyTorchCheckpointTest, RefusesTheLegacyFormatAndCompressedEntries) {
  EXPECT_THAT(open_error(file("legacy.bin")), HasSubstr("legacy PyTorch format (torch < 1.6"));
  EXPECT_THAT(open_error(file("legacy.bin")), HasSubstr("re-save it with a newer torch"));
  EXPECT_THAT(open_error(file("deflated.bin")), HasSubstr("zip entry 'hf/data.pkl' is compressed (method 8)"));
}

TEST_F(PyTorchCheckpointTest, HostilePicklesAreRefusedAndNothingRuns) {
  ASSERT_TRUE(std::filesystem::exists(file("payloads_live")));  // Python's unpickler ran each one
  const std::string marker = file("kiln_ran");
  ::setenv("KILN_MARKER", marker.c_str(), 1);
  // At protocol 2 Python pickles os.system as posix.system, eval as __builtin__.eval and
  // subprocess.Popen under its Python 2 name, commands.Popen.
  EXPECT_THAT(pickle_error(read_bytes(file("os_system.pkl"))), HasSubstr("GLOBAL 'posix.system' is not allowed"));
  EXPECT_THAT(pickle_error(read_bytes(file("builtins_eval.pkl"))),
              HasSubstr("GLOBAL '__builtin__.eval' is not allowed"));
  EXPECT_THAT(pickle_error(read_bytes(file("subprocess_popen.pkl"))),
              HasSubstr("GLOBAL 'commands.Popen' is not allowed"));
  EXPECT_THAT(open_error(file("hostile.bin")), HasSubstr("hostile.bin: hf/data.pkl: byte "));
  EXPECT_THAT(open_error(file("hostile.bin")), HasSubstr("GLOBAL 'posix.system' is not allowed"));
  EXPECT_FALSE(std::filesystem::exists(marker));
}

TEST(PickleReader, RefusesOpcodesAndCallablesOutsideTheAllowlist) {
  // Hand-built protocol 2 pickles.
  EXPECT_THAT(pickle_error(bytes_of("\x80\x02"
                                    "cos\nsystem\n"
                                    "X\x02\0\0\0ls\x85R.")),
              HasSubstr("byte 2: GLOBAL 'os.system' is not allowed"));
  EXPECT_THAT(pickle_error(bytes_of("\x80\x02"
                                    "csubprocess\nPopen\n.")),
              HasSubstr("'subprocess.Popen'"));
  EXPECT_THAT(pickle_error(bytes_of("\x80\x02"
                                    "cbuiltins\ngetattr\n.")),
              HasSubstr("'builtins.getattr'"));
  EXPECT_THAT(pickle_error(bytes_of("\x80\x02"
                                    "c__builtin__\ngetattr\n.")),
              HasSubstr("'__builtin__.getattr'"));
  EXPECT_THAT(pickle_error(bytes_of("\x80\x04"
                                    "\x8c\x02os\x8c\x06system\x93.")),
              HasSubstr("STACK_GLOBAL 'os.system' is not allowed"));
  EXPECT_THAT(pickle_error(bytes_of("\x80\x02(X\x02\0\0\0lsios\nsystem\n.")),
              HasSubstr("byte 10: pickle opcode INST (0x69) is not allowed"));
  EXPECT_THAT(pickle_error(bytes_of("\x80\x02(ccollections\nOrderedDict\no.")),
              HasSubstr("pickle opcode OBJ (0x6f) is not allowed"));
  EXPECT_THAT(pickle_error(bytes_of("\x80\x02"
                                    "ccollections\nOrderedDict\n)\x81.")),
              HasSubstr("pickle opcode NEWOBJ (0x81) is not allowed"));
  EXPECT_THAT(pickle_error(bytes_of("\x80\x02\x82\x01.")), HasSubstr("pickle opcode EXT1"));
  // A storage class is allowlisted only inside a persistent id, never as a callable.
  EXPECT_THAT(pickle_error(bytes_of("\x80\x02"
                                    "ctorch\nFloatStorage\n)R.")),
              HasSubstr("REDUCE calls a storage type 'FloatStorage', not an allowlisted callable"));
  EXPECT_THAT(pickle_error(bytes_of("\x80\x02"
                                    "ccollections\nOrderedDict\n]\x85R.")),
              HasSubstr("REDUCE calls collections.OrderedDict with 1 arguments"));
  EXPECT_THAT(pickle_error(bytes_of("\x80\x02"
                                    "X\x01\0\0\0xQ.")),
              HasSubstr("persistent id is a str"));
  EXPECT_THAT(pickle_error(bytes_of("\x80\x02]N"
                                    "b.")),
              HasSubstr("BUILD applies to a list"));
  EXPECT_THAT(pickle_error(bytes_of("\x80\x01N.")), HasSubstr("pickle protocol 1"));
  EXPECT_THAT(pickle_error(bytes_of("N.")), HasSubstr("does not start with PROTO"));
}

TEST(PickleReader, ReadsThePlainValueSubset) {
  // {'a': [1, -2, 300, 70000, 2**40, 1.5, True, None, ()], 'b': ('x',)} at protocol 2, with memo.
  const std::vector<std::uint8_t> bytes = bytes_of(
      "\x80\x02}q\x00(X\x01\0\0\0a]q\x01(K\x01J\xfe\xff\xff\xffM\x2c\x01J\x70\x11\x01\0\x8a\x06\0\0\0\0\0\x01"
      "G\x3f\xf8\0\0\0\0\0\0\x88N)eX\x01\0\0\0b\x8c\x01x\x85u.");
  const PickleValuePtr v = read_pickle(bytes, "test.pkl");
  ASSERT_EQ(v->kind, PickleValue::Kind::dict);
  const PickleValue* a = v->find("a");
  ASSERT_NE(a, nullptr);
  ASSERT_EQ(a->elements.size(), 9u);
  EXPECT_EQ(a->elements[0]->integer, 1);
  EXPECT_EQ(a->elements[1]->integer, -2);
  EXPECT_EQ(a->elements[2]->integer, 300);
  EXPECT_EQ(a->elements[3]->integer, 70000);
  EXPECT_EQ(a->elements[4]->integer, std::int64_t{1} << 40);
  EXPECT_EQ(a->elements[5]->floating, 1.5);
  EXPECT_TRUE(a->elements[6]->boolean);
  EXPECT_EQ(a->elements[7]->kind, PickleValue::Kind::none);
  EXPECT_EQ(a->elements[8]->kind, PickleValue::Kind::tuple);
  EXPECT_EQ(v->find("b")->elements[0]->string, "x");
}

TEST(PickleReader, RefusesCyclesTruncationAndUnbalancedStacks) {
  // d = {}; d['k'] = d
  EXPECT_THAT(pickle_error(bytes_of("\x80\x02}q\x00X\x01\0\0\0kh\x00s.")), HasSubstr("inside itself"));
  // l = []; t = (l,); l.append(1): a container changed after it was stored.
  EXPECT_THAT(pickle_error(bytes_of("\x80\x02]q\x00\x85h\x00K\x01"
                                    "a.")),
              HasSubstr("already stored inside"));
  EXPECT_THAT(pickle_error(bytes_of("\x80\x02h\x05.")), HasSubstr("memo entry 5, which was never stored"));
  EXPECT_THAT(pickle_error(bytes_of("\x80\x02s.")), HasSubstr("SETITEM finds the stack empty"));
  EXPECT_THAT(pickle_error(bytes_of("\x80\x02NN.")), HasSubstr("STOP with 2 values"));
  EXPECT_THAT(pickle_error(bytes_of("\x80\x02N.N")), HasSubstr("1 bytes follow STOP"));
  EXPECT_THAT(pickle_error(bytes_of("\x80\x02\x8a\x09\0\0\0\0\0\0\0\0\0.")), HasSubstr("LONG1 of 9 bytes"));
  // Nesting beyond the limit.
  std::string deep = "\x80\x02";
  for (int i = 0; i < 100; ++i) deep += "]";
  for (int i = 0; i < 99; ++i) deep += "a";
  EXPECT_THAT(pickle_error(bytes_of(deep + ".")), HasSubstr("nest deeper than 64"));
  // Every prefix of a valid pickle is refused cleanly.
  const std::vector<std::uint8_t> full = bytes_of("\x80\x02}q\x00(X\x01\0\0\0a]q\x01(K\x01G\x3f\xf8\0\0\0\0\0\0eu.");
  ASSERT_NO_THROW(read_pickle(full, "test.pkl"));
  for (std::size_t n = 0; n < full.size(); ++n)
    EXPECT_NE(pickle_error({full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n)}), "(no error)") << n;
}

TEST_F(PyTorchCheckpointTest, RefusesTruncatedAndCorruptArchives) {
  const std::vector<std::uint8_t> good = read_bytes(file("hf.bin"));
  const std::string bad = file("bad.bin");
  // Every truncation (in steps, and the last bytes one by one) is a clean error.
  for (std::size_t n = 0; n < good.size(); n += (n + 64 < good.size() ? 37 : 1)) {
    write_bytes(bad, {good.begin(), good.begin() + static_cast<std::ptrdiff_t>(n)});
    EXPECT_NE(open_error(bad), "(no error)") << n;
  }
  // A flipped byte in the pickle fails its CRC.
  std::vector<std::uint8_t> flipped = good;
  flipped[200] ^= 0x40;
  write_bytes(bad, flipped);
  EXPECT_THAT(open_error(bad), HasSubstr("zip entry 'hf/data.pkl': CRC-32"));
  // Any byte changed anywhere opens or fails cleanly (never crashes).
  for (std::size_t i = 0; i < good.size(); i += 7) {
    std::vector<std::uint8_t> b = good;
    b[i] ^= 0xFF;
    write_bytes(bad, b);
    error_of([&] { PyTorchCheckpoint::open(bad); });
  }
  // The pickle's recorded size grown by 100 bytes: its data now runs over the next entry.
  std::vector<std::uint8_t> grown = good;
  const std::size_t central = static_cast<std::size_t>(
      std::search(grown.begin(), grown.end(), std::begin("PK\x01\x02"), std::end("PK\x01\x02") - 1) - grown.begin());
  ASSERT_LT(central, grown.size());
  for (std::size_t field : {central + 20, central + 24}) {  // compressed and uncompressed size
    std::uint32_t size = 0;
    std::memcpy(&size, &grown[field], 4);
    size += 100;
    std::memcpy(&grown[field], &size, 4);
  }
  write_bytes(bad, grown);
  EXPECT_THAT(open_error(bad), HasSubstr("zip entries 'hf/data.pkl' and 'hf/data/0' overlap"));
  write_bytes(bad, bytes_of("PK\x03\x04 not really a zip, only its first four bytes are"));
  EXPECT_THAT(open_error(bad), HasSubstr("no end of central directory record"));
  write_bytes(bad, bytes_of("GGUF"));
  EXPECT_THAT(open_error(bad), HasSubstr("not a PyTorch checkpoint"));
}

TEST(ZipArchive, ComputesTheStandardCrc32) {
  const std::vector<std::uint8_t> b = bytes_of("123456789");
  EXPECT_EQ(zip_crc32(b), 0xCBF43926u);
}

}  // namespace
}  // namespace kiln
