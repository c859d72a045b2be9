#include "tokenizer/spm_model_file.h"

#include <cstring>
#include <limits>

#include "core/error.h"
#include "core/mapped_file.h"

namespace kiln {
namespace {

enum WireType : std::uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

const char* wire_type_name(std::uint32_t w) {
  switch (w) {
    case kVarint:
      return "varint";
    case kFixed64:
      return "fixed64";
    case kLengthDelimited:
      return "length-delimited";
    case kFixed32:
      return "fixed32";
    default:
      return "group (unsupported)";
  }
}

// Reads the fields of one protobuf message held in [begin, end) of the file; `where` names the
// message for errors ("ModelProto.pieces[7]") and `base` is its offset in the file.
class WireReader {
 public:
  WireReader(std::span<const std::uint8_t> bytes, std::size_t base, std::string_view source, std::string where)
      : bytes_(bytes), base_(base), source_(source), where_(std::move(where)) {}

  bool done() const { return at_ == bytes_.size(); }

  // Reads the next field's key. Returns the field number; `wire` gets its wire type.
  std::uint32_t key(std::uint32_t& wire) {
    const std::uint64_t k = varint("field key");
    wire = static_cast<std::uint32_t>(k & 7);
    const std::uint64_t field = k >> 3;
    KILN_CHECK(field >= 1 && field <= 536870911, "{}: {}: field number {} at offset {} is invalid", source_, where_,
               field, offset());
    field_ = static_cast<std::uint32_t>(field);
    return field_;
  }

  std::uint64_t varint(std::string_view what) {
    std::uint64_t v = 0;
    for (int shift = 0; shift < 70; shift += 7) {
      KILN_CHECK(at_ < bytes_.size(), "{}: {}: {} is truncated at offset {}", source_, where_, what, offset());
      const std::uint8_t b = bytes_[at_++];
      KILN_CHECK(shift < 63 || (b & 0x7E) == 0, "{}: {}: {} at offset {} is a varint longer than 64 bits", source_,
                 where_, what, offset());
      v |= static_cast<std::uint64_t>(b & 0x7F) << shift;
      if ((b & 0x80) == 0) return v;
    }
    fail("{}: {}: {} at offset {} is a varint longer than 10 bytes", source_, where_, what, offset());
  }

  // The payload of a length-delimited field, checked against what remains of this message.
  std::span<const std::uint8_t> bytes(std::string_view what, std::size_t& payload_offset) {
    const std::uint64_t length = varint(what);
    KILN_CHECK(length <= bytes_.size() - at_, "{}: {}: {} claims {} bytes at offset {} but only {} remain", source_,
               where_, what, length, offset(), bytes_.size() - at_);
    payload_offset = offset();
    const auto payload = bytes_.subspan(at_, static_cast<std::size_t>(length));
    at_ += static_cast<std::size_t>(length);
    return payload;
  }

  std::uint32_t fixed32(std::string_view what) {
    KILN_CHECK(bytes_.size() - at_ >= 4, "{}: {}: {} is truncated at offset {}", source_, where_, what, offset());
    std::uint32_t v;
    std::memcpy(&v, bytes_.data() + at_, 4);  // little-endian on the wire, as on x86
    at_ += 4;
    return v;
  }

  // Skips a field kiln does not read.
  void skip(std::uint32_t wire) {
    std::size_t ignored;
    switch (wire) {
      case kVarint:
        varint("skipped varint field");
        return;
      case kFixed64:
        KILN_CHECK(bytes_.size() - at_ >= 8, "{}: {}: fixed64 field {} is truncated at offset {}", source_, where_,
                   field_, offset());
        at_ += 8;
        return;
      case kLengthDelimited:
        bytes("skipped length-delimited field", ignored);
        return;
      case kFixed32:
        fixed32("skipped fixed32 field");
        return;
      default:
        fail("{}: {}: field {} at offset {} has wire type {}, which protobuf 3 does not use", source_, where_, field_,
             offset(), wire);
    }
  }

  // Fails unless field `name` came with the wire type it is declared with.
  void expect(std::uint32_t wire, std::uint32_t expected, std::string_view name) const {
    KILN_CHECK(wire == expected, "{}: {}.{} (field {}) has wire type {}, expected {}", source_, where_, name, field_,
               wire_type_name(wire), wire_type_name(expected));
  }

  std::size_t offset() const { return base_ + at_; }
  const std::string& where() const { return where_; }

 private:
  std::span<const std::uint8_t> bytes_;
  std::size_t base_;
  std::size_t at_ = 0;
  std::string_view source_;
  std::string where_;
  std::uint32_t field_ = 0;
};

// An int32 field: protobuf writes negative values as 10-byte two's complement varints.
std::int32_t to_int32(std::uint64_t v, std::string_view source, std::string_view field) {
  const auto s = static_cast<std::int64_t>(v);
  KILN_CHECK(s >= std::numeric_limits<std::int32_t>::min() && s <= std::numeric_limits<std::int32_t>::max(),
             "{}: {} = {} does not fit an int32", source, field, s);
  return static_cast<std::int32_t>(s);
}

struct TrainerSpec {
  std::int32_t model_type = 1;  // protobuf default: UNIGRAM
  bool byte_fallback = false;
  std::int32_t unk_id = 0, bos_id = 1, eos_id = 2, pad_id = -1;
};

struct NormalizerSpec {
  std::string name;
  bool add_dummy_prefix = true;
  bool remove_extra_whitespaces = true;
};

void read_piece(WireReader& r, Vocab& vocab, std::string_view source) {
  std::string piece;
  float score = 0.0f;
  std::int64_t type = 1;  // NORMAL
  bool has_piece = false;
  while (!r.done()) {
    std::uint32_t wire;
    switch (r.key(wire)) {
      case 1: {
        r.expect(wire, kLengthDelimited, "piece");
        std::size_t offset;
        const auto text = r.bytes("piece", offset);
        piece.assign(reinterpret_cast<const char*>(text.data()), text.size());
        has_piece = true;
        break;
      }
      case 2: {
        r.expect(wire, kFixed32, "score");
        const std::uint32_t bits = r.fixed32("score");
        std::memcpy(&score, &bits, 4);
        break;
      }
      case 3:
        r.expect(wire, kVarint, "type");
        type = static_cast<std::int64_t>(r.varint("type"));
        break;
      default:
        r.skip(wire);
    }
  }
  KILN_CHECK(has_piece, "{}: {} has no piece text", source, r.where());
  KILN_CHECK(type >= 1 && type <= 6, "{}: {}.type = {} is not a piece type (1..6)", source, r.where(), type);
  vocab.tokens.push_back(std::move(piece));
  vocab.scores.push_back(score);
  vocab.types.push_back(static_cast<TokenType>(type));
}

void read_trainer_spec(WireReader& r, TrainerSpec& spec, std::string_view source) {
  while (!r.done()) {
    std::uint32_t wire;
    const std::uint32_t field = r.key(wire);
    auto int_field = [&](const char* name) {
      r.expect(wire, kVarint, name);
      return to_int32(r.varint(name), source, fmt::format("ModelProto.trainer_spec.{}", name));
    };
    switch (field) {
      case 3:
        spec.model_type = int_field("model_type");
        break;
      case 35:
        spec.byte_fallback = int_field("byte_fallback") != 0;
        break;
      case 40:
        spec.unk_id = int_field("unk_id");
        break;
      case 41:
        spec.bos_id = int_field("bos_id");
        break;
      case 42:
        spec.eos_id = int_field("eos_id");
        break;
      case 43:
        spec.pad_id = int_field("pad_id");
        break;
      default:
        r.skip(wire);
    }
  }
}

void read_normalizer_spec(WireReader& r, NormalizerSpec& spec) {
  while (!r.done()) {
    std::uint32_t wire;
    switch (r.key(wire)) {
      case 1: {
        r.expect(wire, kLengthDelimited, "name");
        std::size_t offset;
        const auto text = r.bytes("name", offset);
        spec.name.assign(reinterpret_cast<const char*>(text.data()), text.size());
        break;
      }
      case 3:
        r.expect(wire, kVarint, "add_dummy_prefix");
        spec.add_dummy_prefix = r.varint("add_dummy_prefix") != 0;
        break;
      case 4:
        r.expect(wire, kVarint, "remove_extra_whitespaces");
        spec.remove_extra_whitespaces = r.varint("remove_extra_whitespaces") != 0;
        break;
      default:
        r.skip(wire);
    }
  }
}

}  // namespace

Vocab read_spm_model(std::span<const std::uint8_t> bytes, std::string_view source) {
  Vocab vocab;
  vocab.model = "llama";
  TrainerSpec trainer;
  NormalizerSpec normalizer;
  bool has_normalizer = false;
  WireReader model(bytes, 0, source, "ModelProto");
  while (!model.done()) {
    std::uint32_t wire;
    const std::uint32_t field = model.key(wire);
    if (field < 1 || field > 3) {
      model.skip(wire);
      continue;
    }
    static constexpr const char* kNames[] = {"", "pieces", "trainer_spec", "normalizer_spec"};
    model.expect(wire, kLengthDelimited, kNames[field]);
    std::size_t offset;
    const auto payload = model.bytes(kNames[field], offset);
    if (field == 1) {
      WireReader r(payload, offset, source, fmt::format("ModelProto.pieces[{}]", vocab.tokens.size()));
      read_piece(r, vocab, source);
    } else if (field == 2) {
      WireReader r(payload, offset, source, "ModelProto.trainer_spec");
      read_trainer_spec(r, trainer, source);
    } else {
      WireReader r(payload, offset, source, "ModelProto.normalizer_spec");
      read_normalizer_spec(r, normalizer);
      has_normalizer = true;
    }
  }
  KILN_CHECK(!vocab.tokens.empty(), "{}: ModelProto has no pieces (not a SentencePiece model?)", source);
  KILN_CHECK(trainer.model_type == 2,
             "{}: ModelProto.trainer_spec.model_type = {} is not supported (kiln reads BPE models, type 2; 1 is "
             "unigram)",
             source, trainer.model_type);
  // SpmTokenizer implements the identity normalizer only: a model with NFKC rules or whitespace
  // folding would silently tokenize differently, so it is refused.
  if (has_normalizer) {
    KILN_CHECK(normalizer.name.empty() || normalizer.name == "identity",
               "{}: ModelProto.normalizer_spec.name = \"{}\" is not supported (kiln implements \"identity\")", source,
               normalizer.name);
    KILN_CHECK(!normalizer.remove_extra_whitespaces,
               "{}: ModelProto.normalizer_spec.remove_extra_whitespaces = true is not supported", source);
  }
  vocab.add_space_prefix = normalizer.add_dummy_prefix;
  const auto n = static_cast<std::int32_t>(vocab.tokens.size());
  auto special = [&](std::int32_t id, const char* name) {
    KILN_CHECK(id >= -1 && id < n, "{}: ModelProto.trainer_spec.{} = {} is out of range ({} pieces)", source, name, id,
               n);
    return id;
  };
  vocab.unk_id = special(trainer.unk_id, "unk_id");
  vocab.bos_id = special(trainer.bos_id, "bos_id");
  vocab.eos_id = special(trainer.eos_id, "eos_id");
  vocab.pad_id = special(trainer.pad_id, "pad_id");
  bool has_byte_pieces = false;
  for (TokenType t : vocab.types) has_byte_pieces |= t == TokenType::Byte;
  KILN_CHECK(has_byte_pieces || !trainer.byte_fallback,
             "{}: ModelProto.trainer_spec.byte_fallback is set but the model has no byte pieces", source);
  // As llama.cpp's SentencePiece defaults and sentencepiece's own encode: BOS on, EOS off.
  vocab.add_bos = vocab.bos_id >= 0;
  vocab.add_eos = false;
  vocab.finalize(source);
  return vocab;
}

Vocab load_spm_model_file(const std::string& path) {
  const MappedFile file(path);
  return read_spm_model(file.bytes(), path);
}

}  // namespace kiln
