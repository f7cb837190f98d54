// offload/offload.hpp — the umbrella header: everything offload provides.
#pragma once

#include <offload/errors.hpp>
#include <offload/event_loop.hpp>
#include <offload/gather.hpp>
#include <offload/run.hpp>
#include <offload/sleep.hpp>
#include <offload/slow_callback.hpp>
#include <offload/task.hpp>
#include <offload/task_group.hpp>
#include <offload/task_handle.hpp>
#include <offload/wait_for.hpp>
