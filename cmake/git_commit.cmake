# Writes OUT (a C++ header defining LORASHEAR_GIT_COMMIT) from `git describe` of SOURCE_DIR, and only
# when the text changes, so a build after a new commit recompiles one file and an unchanged tree
# recompiles nothing. Outside a git checkout (a source tarball) the commit comes from the
# LORASHEAR_GIT_COMMIT environment variable, or is "unknown".
set(commit "")
if(DEFINED ENV{LORASHEAR_GIT_COMMIT})
  set(commit "$ENV{LORASHEAR_GIT_COMMIT}")
else()
  find_package(Git QUIET)
  if(GIT_FOUND)
    execute_process(COMMAND "${GIT_EXECUTABLE}" -C "${SOURCE_DIR}" rev-parse --short=12 HEAD
                    OUTPUT_VARIABLE commit OUTPUT_STRIP_TRAILING_WHITESPACE
                    RESULT_VARIABLE rc ERROR_QUIET)
    if(NOT rc EQUAL 0)
      set(commit "")
    else()
      execute_process(COMMAND "${GIT_EXECUTABLE}" -C "${SOURCE_DIR}" status --porcelain
                              --untracked-files=no
                      OUTPUT_VARIABLE changes OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
      if(changes)
        string(APPEND commit "+dirty")
      endif()
    endif()
  endif()
endif()
if(commit STREQUAL "")
  set(commit "unknown")
endif()
set(text "#pragma once\n#define LORASHEAR_GIT_COMMIT \"${commit}\"\n")
if(EXISTS "${OUT}")
  file(READ "${OUT}" old)
else()
  set(old "")
endif()
if(NOT old STREQUAL text)
  file(WRITE "${OUT}" "${text}")
endif()
