#include "runtime/stop_strings.h"

#include <algorithm>

namespace kiln {

StopStringMatcher::StopStringMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {
  stops_.erase(std::remove(stops_.begin(), stops_.end(), std::string{}), stops_.end());
}

StopStringMatcher::Result StopStringMatcher::push(std::string_view text) {
  Result r;
  if (stopped_) {
    r.stopped = true;
    return r;
  }
  held_.append(text);
  if (stops_.empty()) {
    r.released.swap(held_);
    return r;
  }
  // Everything before held_ was released only because no stop string could start there, so
  // a stop string, if any, starts inside held_: take the earliest.
  std::size_t first = std::string::npos;
  for (const std::string& s : stops_) first = std::min(first, held_.find(s));
  if (first != std::string::npos) {
    r.released = held_.substr(0, first);
    r.stopped = stopped_ = true;
    held_.clear();
    return r;
  }
  // Hold back the longest suffix that is a proper prefix of a stop string. Such a suffix starts
  // with a stop string's first byte, which in valid UTF-8 begins a character, so the release
  // never splits one.
  std::size_t keep = 0;
  for (const std::string& s : stops_) {
    const std::size_t max_len = std::min(s.size() - 1, held_.size());
    for (std::size_t len = max_len; len > keep; --len)
      if (std::string_view(held_).substr(held_.size() - len) == std::string_view(s).substr(0, len)) {
        keep = len;
        break;
      }
  }
  r.released = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return r;
}

std::string StopStringMatcher::flush(std::string_view tail) {
  if (stopped_) return {};
  Result r = push(tail);
  if (r.stopped) return r.released;
  r.released += held_;
  held_.clear();
  return r.released;
}

}  // namespace kiln
