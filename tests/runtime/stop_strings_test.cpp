#include "runtime/stop_strings.h"

#include <gtest/gtest.h>

namespace kiln {
namespace {

// Feeds pieces one by one and returns everything released (flushed at the end unless stopped).
std::string feed(StopStringMatcher& m, const std::vector<std::string>& pieces, bool* stopped = nullptr) {
  std::string out;
  for (const std::string& p : pieces) {
    auto r = m.push(p);
    out += r.released;
    if (r.stopped) {
      if (stopped) *stopped = true;
      return out;
    }
  }
  if (stopped) *stopped = false;
  return out + m.flush();
}

TEST(StopStrings, NoStopsPassesEverythingThrough) {
  StopStringMatcher m({});
  EXPECT_EQ(m.push("abc").released, "abc");
  EXPECT_EQ(m.held_bytes(), 0u);
}

TEST(StopStrings, StopInsideOnePiece) {
  StopStringMatcher m({"END"});
  bool stopped;
  EXPECT_EQ(feed(m, {"hello END world"}, &stopped), "hello ");
  EXPECT_TRUE(stopped);
}

TEST(StopStrings, StopAcrossPiecesIsNeverShown) {
  StopStringMatcher m({"</answer>"});
  auto r1 = m.push("42 </an");
  EXPECT_EQ(r1.released, "42 ");  // "</an" may still become the stop string
  EXPECT_FALSE(r1.stopped);
  auto r2 = m.push("swer> trailing");
  EXPECT_EQ(r2.released, "");
  EXPECT_TRUE(r2.stopped);
}

TEST(StopStrings, HeldTextIsReleasedWhenItDiverges) {
  StopStringMatcher m({"###"});
  auto r1 = m.push("a##");
  EXPECT_EQ(r1.released, "a");
  auto r2 = m.push("b");
  EXPECT_EQ(r2.released, "##b");
  EXPECT_FALSE(r2.stopped);
}

TEST(StopStrings, FlushReleasesAPendingPrefix) {
  StopStringMatcher m({"STOP"});
  bool stopped;
  EXPECT_EQ(feed(m, {"x", "ST", "O"}, &stopped), "xSTO");
  EXPECT_FALSE(stopped);
}

TEST(StopStrings, EarliestOfSeveralStopsWins) {
  StopStringMatcher m({"world", "lo w"});
  bool stopped;
  EXPECT_EQ(feed(m, {"hel", "lo world"}, &stopped), "hel");
  EXPECT_TRUE(stopped);
}

TEST(StopStrings, OverlappingPrefixKeepsTheLongestCandidate) {
  // "aab" : after "aa" the held suffix must be "aa" (both "a" and "aa" are prefixes).
  StopStringMatcher m({"aab"});
  auto r1 = m.push("xaa");
  EXPECT_EQ(r1.released, "x");
  auto r2 = m.push("ab");
  EXPECT_TRUE(r2.stopped);
  EXPECT_EQ(r2.released, "a");
}

TEST(StopStrings, MultibyteTextIsNotSplit) {
  StopStringMatcher m({"é!"});
  auto r = m.push("caf\xc3\xa9");  // "café": the é may start the stop string
  EXPECT_EQ(r.released, "caf");
  EXPECT_EQ(m.flush(), "\xc3\xa9");
}

TEST(StopStrings, PiecesAfterAStopAreIgnored) {
  StopStringMatcher m({"x"});
  EXPECT_TRUE(m.push("x").stopped);
  EXPECT_EQ(m.push("more").released, "");
  EXPECT_EQ(m.flush("tail"), "");
}

}  // namespace
}  // namespace kiln
