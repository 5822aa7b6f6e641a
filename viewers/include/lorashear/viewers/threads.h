#pragma once
// Background threads of the app (the engine, graph layouts) run below the GUI thread.

namespace lorashear {

/// Lowers the calling thread's scheduling priority (nice +5 on Linux) so that, on a machine with
/// few cores, the GUI thread wins the CPU over the engine and the layout threads.
void lower_thread_priority();

}  // namespace lorashear
