// seed001_lag_probe.cpp — seed 001, the loop-lag probe: a timer due every
// millisecond measures how late the loop serves it. A blocking call that is
// offloaded leaves the lag near zero; the same call made on the loop shows up
// as lag of its full length. In Python: a task that sleeps an interval in a
// loop and records how late it woke up.
#include <offload/offload.hpp>

#include <fmt/format.h>

#include <chrono>
#include <thread>

using namespace std::chrono_literals;
using offload::task;

void blocking_call() { std::this_thread::sleep_for(30ms); } // a sync driver, say

double ms(std::chrono::nanoseconds d) { return std::chrono::duration<double, std::milli>(d).count(); }

void report(const char* phase, const offload::lag_stats& s) {
    fmt::print(
        "{:<22} {:3} samples  p50 {:5.2f} ms  p95 {:5.2f} ms  p99 {:5.2f} ms  max {:5.2f} ms  over {:.0f} ms: {}\n",
        phase, s.samples, ms(s.p50), ms(s.p95), ms(s.p99), ms(s.max), ms(s.threshold), s.over_threshold);
}

task<> amain() {
    // Sample every 1 ms; count the samples later than 20 ms (what to alert
    // on: a percentile can hide a rare long stall, this count cannot).
    offload::lag_monitor probe(1ms, 20ms);
    probe.start();

    // 1. The blocking call runs on a pool thread: the loop keeps serving the probe.
    for (int i = 0; i < 5; ++i) co_await offload::to_thread(blocking_call);
    report("offloaded (to_thread)", probe.stats());

    // 2. The same call made on the loop: nothing else runs while it sleeps,
    //    so the probe's next firing is about 30 ms late, once per call.
    probe.reset();
    for (int i = 0; i < 5; ++i) {
        blocking_call();               // the bug the probe exists to find
        co_await offload::sleep(5ms); // yield: the probe fires (late), then on time
    }
    report("blocking on the loop", probe.stats());
    probe.stop();
    // Printed figures depend on the machine; the exit status does not.
}

int main() { offload::run(amain()); }
