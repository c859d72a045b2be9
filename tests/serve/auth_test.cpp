// API-key checks: the Bearer scheme, wrong and missing keys, the key file, and the comparison.
#include "serve/auth.h"

#include <gtest/gtest.h>

#include <fstream>

#include "core/error.h"
#include "test_support.h"

namespace kiln::serve {
namespace {

TEST(Auth, ConstantTimeEqualMatchesPlainEquality) {
  const char* samples[] = {"", "a", "b", "ab", "abc", "abd", "sk-123", "sk-124", "sk-1234"};
  for (const char* a : samples)
    for (const char* b : samples) EXPECT_EQ(constant_time_equal(a, b), std::string(a) == b) << a << " vs " << b;
  // A prefix is not a match, in either direction.
  EXPECT_FALSE(constant_time_equal("secret", std::string_view("secret\0x", 8)));
  EXPECT_FALSE(constant_time_equal(std::string_view("ab\0", 3), "ab"));
}

TEST(Auth, NoKeyAllowsEverything) {
  ApiKeyAuth open;
  EXPECT_FALSE(open.enabled());
  EXPECT_TRUE(open.allows(nullptr));
  const std::string junk = "Bearer whatever";
  EXPECT_TRUE(open.allows(&junk));
}

TEST(Auth, BearerKeyIsRequiredAndCompared) {
  ApiKeyAuth auth("sk-test-123");
  EXPECT_TRUE(auth.enabled());
  EXPECT_FALSE(auth.allows(nullptr));
  for (const char* bad : {"", "Bearer", "Bearer ", "Bearer sk-test-12", "Bearer sk-test-1234", "Basic sk-test-123",
                          "sk-test-123", "Bearer  sk-test-123", "Bearer SK-TEST-123"}) {
    const std::string h = bad;
    EXPECT_FALSE(auth.allows(&h)) << bad;
  }
  for (const char* good : {"Bearer sk-test-123", "bearer sk-test-123", "BEARER sk-test-123"}) {
    const std::string h = good;
    EXPECT_TRUE(auth.allows(&h)) << good;
  }
}

TEST(Auth, KeyFileFirstLineTrimmed) {
  const std::string dir = test::temp_dir();
  std::ofstream(dir + "/key.txt") << "  sk-from-file \t\nsecond line\n";
  EXPECT_EQ(ApiKeyAuth::read_key_file(dir + "/key.txt"), "sk-from-file");
  std::ofstream(dir + "/empty.txt") << "   \n";
  EXPECT_THROW(ApiKeyAuth::read_key_file(dir + "/empty.txt"), Error);
  EXPECT_THROW(ApiKeyAuth::read_key_file(dir + "/missing.txt"), Error);
}

TEST(Auth, KeyIdIsAStableShortHashNotTheKey) {
  // sha256("sk-kiln-test") begins with these 8 hex digits (coreutils' sha256sum).
  EXPECT_EQ(api_key_id("sk-kiln-test"), "b8a27bce");
  EXPECT_EQ(ApiKeyAuth("sk-kiln-test").key_id(), "b8a27bce");
  EXPECT_NE(api_key_id("sk-kiln-test2"), api_key_id("sk-kiln-test"));
  EXPECT_EQ(ApiKeyAuth().key_id(), "");
}

}  // namespace
}  // namespace kiln::serve
