// load_model: what each need gives and the one-line errors naming the file when a model lacks
// what a command needs.
#include "runtime/loaded_model.h"

#include <gtest/gtest.h>

#include <string>

#include "core/error.h"
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

}  // namespace
}  // namespace kiln
