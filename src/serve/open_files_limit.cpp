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

int connection_cap(int wanted, std::size_t open_files) {
  if (open_files == 0 || wanted <= 0) return wanted;
  const std::size_t room = open_files > kReservedFileDescriptors ? open_files - kReservedFileDescriptors : 1;
  return static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(wanted), std::max<std::size_t>(room, 1)));
}

}  // namespace kiln::serve
