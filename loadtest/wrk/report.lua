-- Shared by the wrk scripts of loadtest/bench.py: each thread's number (`thread_no`, from 1), and one
-- machine-readable line when the run is done.
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("thread_no", threads)
end

-- status = responses with a status >= 400 (wrk counts no 3xx as errors); latencies in milliseconds.
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK_RESULT requests=%d duration_us=%d status=%d connect=%d read=%d write=%d timeout=%d " ..
    "p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f\n",
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000))
end
