# Checks that each per-ISA copy of the attention kernel defines only its own namespaced functions.
#   cmake -DNM=nm -DOBJECTS="variant=obj.o,variant=obj.o,…" -P check_kernel_objects.cmake
# Why: an inline function or template the kernel uses (std::min, std::fill, …) is emitted as a
# weak symbol in every copy, and the linker keeps one of them for all: perhaps the AVX-512 one,
# which a CPU without AVX-512 cannot run (SIGILL), and no test on an AVX-512 build machine would
# notice. So every global symbol a copy defines must be strong (T) and inside its own namespace.
set(bad "")
string(REPLACE "," ";" OBJECTS "${OBJECTS}")
foreach(entry ${OBJECTS})
  string(REGEX REPLACE "=.*" "" variant "${entry}")
  string(REGEX REPLACE "^[^=]*=" "" object "${entry}")
  execute_process(COMMAND ${NM} --defined-only --extern-only -C "${object}"
                  OUTPUT_VARIABLE symbols RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "cannot read ${object} with ${NM}")
  endif()
  string(REPLACE "\n" ";" lines "${symbols}")
  set(own 0)
  foreach(line ${lines})
    if(line STREQUAL "")
      continue()
    endif()
    if(line MATCHES "^[0-9a-f]+ T lorashear::detail::kernel_${variant}::")
      math(EXPR own "${own} + 1")
    else()
      string(APPEND bad "\n  ${variant}: ${line}")
    endif()
  endforeach()
  if(own EQUAL 0)
    string(APPEND bad "\n  ${variant}: defines no lorashear::detail::kernel_${variant} function")
  endif()
  message(STATUS "${variant}: ${own} function(s) of its own")
endforeach()
if(bad)
  message(FATAL_ERROR "the kernel copies define shared or foreign symbols (inline functions or "
                      "templates from headers? keep the kernel self-contained):${bad}")
endif()
