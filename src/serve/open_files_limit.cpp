#include "serve/open_files_limit.h"

#include <sys/resource.h>

#include <algorithm>

namespace kiln::serve {

std::size_t raise_open_files_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return 0;
  if (limit.rlim_cur != RLIM_INFINITY && (limit.rlim_max == RLIM_INFINITY || limit.rlim_cur < limit.rlim_max)) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
  }
  if (limit.rlim_cur == RLIM_INFINITY) return 0;
  return static_cast<std::size_t>(limit.rlim_cur);
}

ConnectionLimits connection_limits(int wanted, int wanted_reserve, std::size_t open_files) {
  if (open_files == 0 || wanted <= 0) return {wanted, wanted_reserve};
  const std::size_t room = open_files > kReservedFileDescriptors ? open_files - kReservedFileDescriptors : 1;
  const std::size_t want = static_cast<std::size_t>(wanted), want_reserve = static_cast<std::size_t>(std::max(0, wanted_reserve));
  if (want + want_reserve <= room) return {wanted, wanted_reserve};
  const std::size_t reserve = std::min(want_reserve, std::max<std::size_t>(room / 8, 1));
  const std::size_t cap = std::min(want, room > reserve ? room - reserve : 1);
  return {static_cast<int>(std::max<std::size_t>(cap, 1)), static_cast<int>(reserve)};
}

}  // namespace kiln::serve
