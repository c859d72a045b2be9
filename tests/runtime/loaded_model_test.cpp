// load_model: what each need gives and the one-line errors naming the file when a model lacks
// what a command needs.
#include "runtime/loaded_model.h"

#include <gtest/gtest.h>

#include <string>

#include "core/error.h"
#include "format/gguf_file.h"
#include "format/gguf_writer.h"
#include "test_support.h"

namespace kiln {
namespace {

std::string load_error(const std::string& path, const ModelNeeds& needs) {
  try {
    load_model(path, needs);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(LoadModel, ACheckpointWithoutTokenizerLoadsByIdsAndFailsWhereOneIsNeeded) {
  KILN_REQUIRE_DATA(path, "stories260K.bin");
  const LoadedModel m = load_model(path);
  ASSERT_NE(m.model, nullptr);
  EXPECT_EQ(m.path, path);
  EXPECT_EQ(m.tokenizer, nullptr);
  EXPECT_FALSE(m.chat_template.has_value());
  EXPECT_EQ(load_model_tokenizer(*m.model), nullptr);

  const std::string e = load_error(path, {.tokenizer = TokenizerNeed::required, .needed_by = "chat"});
  EXPECT_NE(e.find(path), std::string::npos) << e;
  EXPECT_NE(e.find("chat needs a model with a tokenizer"), std::string::npos) << e;
  EXPECT_EQ(e.find('\n'), std::string::npos) << e;
}

TEST(LoadModel, AGgufGivesTokenizerAndChatTemplateAsAsked) {
  KILN_REQUIRE_DATA(path, "llama-2-tiny-random.gguf");
  const LoadedModel weights = load_model(path, {.tokenizer = TokenizerNeed::skip});
  EXPECT_EQ(weights.tokenizer, nullptr);

  const LoadedModel plain = load_model(path);
  ASSERT_NE(plain.tokenizer, nullptr);
  EXPECT_EQ(plain.tokenizer->n_vocab(), plain.model->config().n_vocab);
  EXPECT_FALSE(plain.chat_template.has_value());

  for (ChatTemplateNeed need : {ChatTemplateNeed::model, ChatTemplateNeed::model_or_builtin}) {
    const LoadedModel chat = load_model(path, {.tokenizer = TokenizerNeed::required, .chat_template = need});
    ASSERT_NE(chat.tokenizer, nullptr);
    ASSERT_TRUE(chat.chat_template.has_value());
    const std::string text = chat.chat_template->render(std::vector<ChatMessage>{{"user", "Hi", {}, {}, {}}}, true);
    EXPECT_NE(text.find("Hi"), std::string::npos) << text;
  }
}

// A copy of `model` whose tokenizer.chat_template is `source`.
std::string with_chat_template(const std::string& model, const std::string& source) {
  const std::string out = test::temp_dir() + "/bad-template.gguf";
  auto file = GgufFile::open(model);
  GgufWriter w;
  for (const auto& [k, v] : file->metadata())
    if (k != "tokenizer.chat_template") w.add_metadata(k, v);
  w.add_metadata("tokenizer.chat_template", gguf_value::string(source));
  for (const GgufTensorInfo& t : file->tensors()) {
    const std::uint8_t* src = file->mapped_file().data() + file->data_offset() + t.offset;
    w.add_tensor(GgufTensorSpec(t.name, *t.dtype, t.n_dims, t.ne),
                 [src, n = t.n_bytes](GgufDataSink& sink) { sink.write(src, n); });
  }
  w.write(out);
  return out;
}

TEST(LoadModel, ATemplateKilnCannotParseIsAnErrorOrTheGuessedBuiltIn) {
  KILN_REQUIRE_DATA(model, "llama-2-tiny-random.gguf");
  const std::string path = with_chat_template(model, "{% if messages %}never closed");
  const std::string e =
      load_error(path, {.tokenizer = TokenizerNeed::required, .chat_template = ChatTemplateNeed::model});
  EXPECT_NE(e.find(path), std::string::npos) << e;
  EXPECT_NE(e.find("tokenizer.chat_template"), std::string::npos) << e;

  const LoadedModel m =
      load_model(path, {.tokenizer = TokenizerNeed::required, .chat_template = ChatTemplateNeed::model_or_builtin});
  ASSERT_TRUE(m.chat_template.has_value());
  EXPECT_NE(m.chat_template->name(), "gguf");
  EXPECT_EQ(m.chat_template->bos_token(), "<s>");
}

}  // namespace
}  // namespace kiln
