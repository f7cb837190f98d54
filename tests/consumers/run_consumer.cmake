# Builds and runs a consumer project of offload, as a user would.
#   cmake -DCONSUMER_MODE=install|add_subdirectory -DCONSUMER_SOURCE_DIR=...
#         -DCONSUMER_WORK_DIR=... -DOFFLOAD_SOURCE_DIR=... -DOFFLOAD_BINARY_DIR=...
#         [-DCONSUMER_GENERATOR=... -DCONSUMER_MAKE_PROGRAM=... -DCONSUMER_CXX_COMPILER=...
#          -DCONSUMER_CXX_FLAGS=... -DCONSUMER_EXE_LINKER_FLAGS=... -DCONSUMER_BUILD_TYPE=...]
#         -P run_consumer.cmake
# install:          installs offload from OFFLOAD_BINARY_DIR into WORK_DIR/prefix,
#                   then builds the consumer with CMAKE_PREFIX_PATH=<prefix>.
# add_subdirectory: builds the consumer with OFFLOAD_SOURCE_DIR.
cmake_minimum_required(VERSION 3.25)

foreach(var CONSUMER_MODE CONSUMER_SOURCE_DIR CONSUMER_WORK_DIR OFFLOAD_SOURCE_DIR OFFLOAD_BINARY_DIR)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "run_consumer.cmake: ${var} is not set")
  endif()
endforeach()

function(run_step)
  message(STATUS "run_consumer: ${ARGV}")
  execute_process(COMMAND ${ARGV} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "run_consumer: step failed (${rc}): ${ARGV}")
  endif()
endfunction()

# Start from scratch every time: a stale cache would hide packaging bugs.
file(REMOVE_RECURSE ${CONSUMER_WORK_DIR})
file(MAKE_DIRECTORY ${CONSUMER_WORK_DIR})
set(build_dir ${CONSUMER_WORK_DIR}/build)

set(configure_args -S ${CONSUMER_SOURCE_DIR} -B ${build_dir})
if(CONSUMER_GENERATOR)
  list(APPEND configure_args -G ${CONSUMER_GENERATOR})
endif()
if(CONSUMER_MAKE_PROGRAM)
  list(APPEND configure_args -DCMAKE_MAKE_PROGRAM=${CONSUMER_MAKE_PROGRAM})
endif()
if(CONSUMER_CXX_COMPILER)
  list(APPEND configure_args -DCMAKE_CXX_COMPILER=${CONSUMER_CXX_COMPILER})
endif()
# Sanitizer flags of the parent build must reach the consumer too.
list(APPEND configure_args
  "-DCMAKE_CXX_FLAGS=${CONSUMER_CXX_FLAGS}"
  "-DCMAKE_EXE_LINKER_FLAGS=${CONSUMER_EXE_LINKER_FLAGS}")
if(CONSUMER_BUILD_TYPE)
  list(APPEND configure_args -DCMAKE_BUILD_TYPE=${CONSUMER_BUILD_TYPE})
endif()

if(CONSUMER_MODE STREQUAL "install")
  set(prefix ${CONSUMER_WORK_DIR}/prefix)
  run_step(${CMAKE_COMMAND} --install ${OFFLOAD_BINARY_DIR} --prefix ${prefix})
  list(APPEND configure_args -DCMAKE_PREFIX_PATH=${prefix})
elseif(CONSUMER_MODE STREQUAL "add_subdirectory")
  list(APPEND configure_args -DOFFLOAD_SOURCE_DIR=${OFFLOAD_SOURCE_DIR})
else()
  message(FATAL_ERROR "run_consumer.cmake: unknown CONSUMER_MODE '${CONSUMER_MODE}'")
endif()

run_step(${CMAKE_COMMAND} ${configure_args})
run_step(${CMAKE_COMMAND} --build ${build_dir})
run_step(${build_dir}/consumer)
run_step(${build_dir}/consumer_separate)
message(STATUS "run_consumer: ${CONSUMER_MODE} consumer OK")
