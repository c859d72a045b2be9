# Writes OUT (kiln_build_id.h) with the version and the git commit of SOURCE_DIR, only when they
# changed, so that a build after a commit reports the new commit without recompiling otherwise.
# Run at every build by the kiln_build_id target (CMakeLists.txt).
execute_process(COMMAND git -C ${SOURCE_DIR} rev-parse --short=12 HEAD
                OUTPUT_VARIABLE sha OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE rc ERROR_QUIET)
if(NOT rc EQUAL 0 OR sha STREQUAL "")
  # No git history here (a container build's context leaves out .git): the builder may name the
  # commit in KILN_GIT_SHA (deploy/docker/Dockerfile passes its build argument).
  if(NOT "$ENV{KILN_GIT_SHA}" STREQUAL "")
    set(sha "$ENV{KILN_GIT_SHA}")
  else()
    set(sha "unknown")
  endif()
else()
  execute_process(COMMAND git -C ${SOURCE_DIR} status --porcelain --untracked-files=no
                  OUTPUT_VARIABLE changes OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  if(NOT changes STREQUAL "")
    set(sha "${sha}-dirty")
  endif()
endif()
set(text "#pragma once\n#define KILN_VERSION \"${VERSION}\"\n#define KILN_GIT_SHA \"${sha}\"\n")
if(EXISTS ${OUT})
  file(READ ${OUT} old)
endif()
if(NOT old STREQUAL text)
  file(WRITE ${OUT} "${text}")
endif()
