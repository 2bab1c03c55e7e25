-- bench.lua: the wrk script of scripts/bench.sh.
-- With BENCH_IDS set to a file of ids (one a line), each request is GET /products/{id} for an id
-- picked at random; without it, every request is the URL given to wrk. Either way, at the end
-- it prints one machine-readable line:
--   BENCH_RESULT requests=N duration_us=N p50_us=N p99_us=N errors=N non2xx=N

local ids_file = os.getenv("BENCH_IDS")

local thread_count = 0
function setup(thread)
  thread_count = thread_count + 1
  thread:set("thread_number", thread_count)
end

if ids_file and ids_file ~= "" then
  local ids = {}
  for line in io.lines(ids_file) do
    if line ~= "" then
      ids[#ids + 1] = line
    end
  end
  assert(#ids > 0, "no ids in " .. ids_file)

  function init(args)
    math.randomseed(os.time() * 1000 + (thread_number or 0))
  end

  function request()
    return wrk.format("GET", "/products/" .. ids[math.random(#ids)])
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH_RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d errors=%d non2xx=%d\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
