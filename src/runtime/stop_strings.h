#pragma once
// Stop strings over streamed text: the generated text arrives in pieces (one token's worth at a
// time) and a stop string may span several pieces. The matcher releases text only once it can
// no longer be the start of a stop string, so a stop string is never shown, even in part; when
// one appears, the text before it is released and the stream is over.
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace kiln {

class StopStringMatcher {
 public:
  explicit StopStringMatcher(std::vector<std::string> stops);

  struct Result {
    std::string released;  // text safe to show now
    bool stopped = false;  // a stop string appeared; `released` ends right before it
  };
  // Takes the next piece of text. After a stop, further pieces are ignored.
  Result push(std::string_view text);
  // Ends the stream: everything still held back, followed by `tail`, unless stopped.
  std::string flush(std::string_view tail = {});
  bool stopped() const { return stopped_; }
  std::size_t held_bytes() const { return held_.size(); }

 private:
  std::vector<std::string> stops_;
  std::string held_;  // text not yet released: a suffix that is a prefix of some stop string
  bool stopped_ = false;
};

}  // namespace kiln
