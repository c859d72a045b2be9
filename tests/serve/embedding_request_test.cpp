// /v1/embeddings without a model: every shape of `input` and each wrong field named in a 400;
// the body's vectors cut to `dimensions` and normalised again, as floats or as base64 of
// little-endian float32 (decoded here independently); base64 against RFC 4648's test vectors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "serve/api_error.h"
#include "serve/base64.h"
#include "serve/embedding_job.h"
#include "serve/request_validation.h"

namespace kiln::serve {
namespace {

using json = nlohmann::json;

ApiError embedding_error(const json& body, const ValidationLimits& limits = {}) {
  try {
    parse_embedding_request(body, limits);
  } catch (const ApiError& e) {
    return e;
  }
  ADD_FAILURE() << "accepted: " << body.dump();
  return ApiError(0, "", "");
}

std::vector<std::uint8_t> decode_base64(const std::string& s) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::vector<std::uint8_t> out;
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : s) {
    if (c == '=') break;
    const int v = value(c);
    EXPECT_GE(v, 0) << "not base64: " << c;
    acc = acc << 6 | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<std::uint8_t>(acc >> bits));
    }
  }
  return out;
}

TEST(EmbeddingRequest, EveryShapeOfInput) {
  EmbeddingParams p = parse_embedding_request(json{{"model", "m"}, {"input", "hello"}}, {});
  ASSERT_EQ(p.inputs.size(), 1u);
  EXPECT_TRUE(p.inputs[0].is_text);
  EXPECT_EQ(p.input_field(0), "input");
  EXPECT_FALSE(p.base64);
  EXPECT_EQ(p.dimensions, 0);

  p = parse_embedding_request(json{{"model", "m"}, {"input", {"a", "b", "c"}}}, {});
  ASSERT_EQ(p.inputs.size(), 3u);
  EXPECT_EQ(p.inputs[2].text, "c");
  EXPECT_EQ(p.input_field(2), "input[2]");

  p = parse_embedding_request(json{{"model", "m"}, {"input", {1, 2, 3}}}, {});
  ASSERT_EQ(p.inputs.size(), 1u);
  EXPECT_FALSE(p.inputs[0].is_text);
  EXPECT_EQ(p.inputs[0].tokens, (std::vector<std::int32_t>{1, 2, 3}));
  EXPECT_EQ(p.input_field(0), "input");

  p = parse_embedding_request(
      json{{"model", "m"}, {"input", {{1, 2}, {3}}}, {"encoding_format", "base64"}, {"dimensions", 8}, {"user", "u"}},
      {});
  ASSERT_EQ(p.inputs.size(), 2u);
  EXPECT_EQ(p.inputs[1].tokens, (std::vector<std::int32_t>{3}));
  EXPECT_TRUE(p.base64);
  EXPECT_EQ(p.dimensions, 8);
  EXPECT_EQ(p.user, "u");
  // null means "not given".
  p = parse_embedding_request(
      json{{"model", "m"}, {"input", "x"}, {"encoding_format", nullptr}, {"dimensions", nullptr}}, {});
  EXPECT_FALSE(p.base64);
}

TEST(EmbeddingRequest, WrongFieldsAreNamed) {
  EXPECT_EQ(embedding_error(json{{"input", "x"}}).param, "model");
  EXPECT_EQ(embedding_error(json{{"model", 3}, {"input", "x"}}).param, "model");
  EXPECT_EQ(embedding_error(json{{"model", "m"}}).param, "input");
  EXPECT_EQ(embedding_error(json{{"model", "m"}, {"input", ""}}).param, "input");
  EXPECT_EQ(embedding_error(json{{"model", "m"}, {"input", json::array()}}).param, "input");
  EXPECT_EQ(embedding_error(json{{"model", "m"}, {"input", 7}}).param, "input");
  EXPECT_EQ(embedding_error(json{{"model", "m"}, {"input", {"a", ""}}}).param, "input[1]");
  EXPECT_EQ(embedding_error(json{{"model", "m"}, {"input", {"a", 5}}}).param, "input[1]");
  EXPECT_EQ(embedding_error(json{{"model", "m"}, {"input", {"a", json::array()}}}).param, "input[1]");
  EXPECT_EQ(embedding_error(json{{"model", "m"}, {"input", {"a", {1, -2}}}}).param, "input[1][1]");
  EXPECT_EQ(embedding_error(json{{"model", "m"}, {"input", {1, "b"}}}).param, "input[1]");
  EXPECT_EQ(embedding_error(json{{"model", "m"}, {"input", "x"}, {"encoding_format", "int8"}}).param,
            "encoding_format");
  EXPECT_EQ(embedding_error(json{{"model", "m"}, {"input", "x"}, {"encoding_format", 1}}).param, "encoding_format");
  EXPECT_EQ(embedding_error(json{{"model", "m"}, {"input", "x"}, {"dimensions", 0}}).param, "dimensions");
  EXPECT_EQ(embedding_error(json{{"model", "m"}, {"input", "x"}, {"dimensions", 1.5}}).param, "dimensions");
  EXPECT_EQ(embedding_error(json{{"model", "m"}, {"input", "x"}, {"user", 1}}).param, "user");
  ValidationLimits two;
  two.max_embedding_inputs = 2;
  const ApiError many = embedding_error(json{{"model", "m"}, {"input", {"a", "b", "c"}}}, two);
  EXPECT_EQ(many.param, "input");
  EXPECT_NE(many.message.find("at most 2"), std::string::npos) << many.message;
}

TEST(EmbeddingRequest, Base64FollowsRfc4648) {
  const std::pair<const char*, const char*> vectors[] = {{"", ""},
                                                         {"f", "Zg=="},
                                                         {"fo", "Zm8="},
                                                         {"foo", "Zm9v"},
                                                         {"foob", "Zm9vYg=="},
                                                         {"fooba", "Zm9vYmE="},
                                                         {"foobar", "Zm9vYmFy"}};
  for (const auto& [in, out] : vectors) {
    std::string s;
    append_base64(s, in, std::strlen(in));
    EXPECT_EQ(s, out) << in;
  }
}

TEST(EmbeddingRequest, BodyCutsNormalisesAndEncodes) {
  EmbeddingParams p;
  p.model = "m";
  p.inputs.resize(2);
  p.input_is_list = true;
  const std::vector<std::vector<float>> vectors = {{3, 4, 12}, {0.5f, -1, 0}};

  json body = json::parse(embeddings_body(vectors, p, 2, 9));
  EXPECT_EQ(body["object"], "list");
  EXPECT_EQ(body["model"], "m");
  EXPECT_EQ(body["usage"], (json{{"prompt_tokens", 9}, {"total_tokens", 9}}));
  ASSERT_EQ(body["data"].size(), 2u);
  EXPECT_EQ(body["data"][1]["object"], "embedding");
  EXPECT_EQ(body["data"][1]["index"], 1);
  const std::vector<float> first = body["data"][0]["embedding"].get<std::vector<float>>();
  ASSERT_EQ(first.size(), 3u);
  EXPECT_FLOAT_EQ(first[0], 3.0f / 13);
  EXPECT_FLOAT_EQ(first[2], 12.0f / 13);

  // dimensions: the leading two, normalised again; base64 of little-endian float32.
  p.dimensions = 2;
  p.base64 = true;
  body = json::parse(embeddings_body(vectors, p, 2, 9));
  const std::vector<std::uint8_t> bytes = decode_base64(body["data"][0]["embedding"].get<std::string>());
  ASSERT_EQ(bytes.size(), 8u);
  float got[2];
  for (int k = 0; k < 2; ++k) {
    const std::uint32_t u =
        bytes[k * 4] | bytes[k * 4 + 1] << 8 | bytes[k * 4 + 2] << 16 | std::uint32_t{bytes[k * 4 + 3]} << 24;
    std::memcpy(&got[k], &u, 4);
  }
  EXPECT_FLOAT_EQ(got[0], 0.6f);
  EXPECT_FLOAT_EQ(got[1], 0.8f);

  // No normalisation: the values as pooled; floats round-trip through their JSON text.
  p.dimensions = 0;
  p.base64 = false;
  const std::vector<std::vector<float>> odd = {{0.1f, 1e-30f, -3.4e38f, 123456.789f}};
  body = json::parse(embeddings_body(odd, p, -1, 1));
  EXPECT_EQ(body["data"][0]["embedding"].get<std::vector<float>>(), odd[0]);

  const std::vector<std::vector<float>> bad = {{1, 2}, {1, NAN}};
  try {
    embeddings_body(bad, p, 2, 1);
    ADD_FAILURE() << "a NaN was written";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("input[1]"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace kiln::serve
