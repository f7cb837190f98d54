# Compiles SOURCE with COMPILER (-fsyntax-only) and passes only if compilation
# fails and the compiler's output matches EXPECT (a regular expression).
# Usage: cmake -DCOMPILER=... -DINCLUDE_DIR=... -DSOURCE=... -DEXPECT=... -P expect_compile_fail.cmake
execute_process(
  COMMAND ${COMPILER} -std=c++20 -fsyntax-only -I${INCLUDE_DIR} ${SOURCE}
  RESULT_VARIABLE result
  OUTPUT_VARIABLE out
  ERROR_VARIABLE out)
if(result EQUAL 0)
  message(FATAL_ERROR "${SOURCE} compiled, but it must not")
endif()
if(NOT out MATCHES "${EXPECT}")
  message(FATAL_ERROR "${SOURCE} failed to compile, but without the expected message /${EXPECT}/:\n${out}")
endif()
message(STATUS "${SOURCE} fails to compile as expected")
