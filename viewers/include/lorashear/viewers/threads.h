#pragma once
// Background threads of the app (the engine, graph layouts): their priority, and the handoffs
// between them and the GUI thread as ThreadSanitizer needs to see them.

namespace lorashear {

/// Lowers the calling thread's scheduling priority (nice +5 on Linux) so that, on a machine with
/// few cores, the GUI thread wins the CPU over the engine and the layout threads.
void lower_thread_priority();

/// Work queued to another thread through Qt (QMetaObject::invokeMethod, QtConcurrent::run,
/// QThreadPool::start) is ordered by Qt's own locks, which ThreadSanitizer cannot see: Qt is not
/// built with it, and QMutex is a futex, not a pthread mutex. Queue inside a Handoff and call
/// handoff_receive(key) first thing on the other side:
///
///     { const Handoff queueing(&kToWorker); QMetaObject::invokeMethod(worker, [..] {
///         handoff_receive(&kToWorker); ... }); }
///
/// The Handoff publishes what this thread wrote before it, and hides from TSan what Qt writes while
/// queueing (the lambda's copy inside Qt's own objects, which the other thread then reads). The key
/// is the address of a static object: reading a capture to find it would come before the receive.
/// No code without TSan. What crosses back (results) goes through a std::mutex, which TSan sees.
class Handoff {
 public:
  explicit Handoff(const void* key);
  ~Handoff();
  Handoff(const Handoff&) = delete;
  Handoff& operator=(const Handoff&) = delete;
};

void handoff_receive(const void* key);

#if !defined(__SANITIZE_THREAD__)
inline Handoff::Handoff(const void*) {}
inline Handoff::~Handoff() {}
inline void handoff_receive(const void*) {}
#endif

}  // namespace lorashear
