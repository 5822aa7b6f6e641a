#include "lorashear/viewers/threads.h"

#ifdef __linux__
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
extern "C" void __tsan_ignore_thread_begin();
extern "C" void __tsan_ignore_thread_end();
#endif

namespace lorashear {

void lower_thread_priority() {
#ifdef __linux__
  // Per-thread on Linux: PRIO_PROCESS with a thread id sets that thread's nice value.
  setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), 5);
#endif
}

#if defined(__SANITIZE_THREAD__)
Handoff::Handoff(const void* key) {
  __tsan_release(const_cast<void*>(key));
  __tsan_ignore_thread_begin();
}

Handoff::~Handoff() {
  __tsan_ignore_thread_end();
}

void handoff_receive(const void* key) {
  __tsan_acquire(const_cast<void*>(key));
}
#endif

}  // namespace lorashear
