#include "lorashear/viewers/threads.h"

#ifdef __linux__
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace lorashear {

void lower_thread_priority() {
#ifdef __linux__
  // Per-thread on Linux: PRIO_PROCESS with a thread id sets that thread's nice value.
  setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), 5);
#endif
}

}  // namespace lorashear
