-- wrk script of the API benchmark: PUT parse-webhook bodies, one variant (an object) or an
-- array of N, with externalIds drawn at random from a key space (so that a run mixes
-- inserts and updates), and a JSON line of results at the end.
-- Arguments (after `--`): token, variants per request (1: an object), key space, seed.

local threads = {}
local counter = 0

function setup(thread)
   counter = counter + 1
   thread:set("id", counter)
   table.insert(threads, thread)
end

function init(args)
   token = args[1]
   per_request = tonumber(args[2])
   keys = tonumber(args[3])
   math.randomseed(tonumber(args[4]) * 1000 + id)
   wrk.method = "PUT"
   wrk.headers["Content-Type"] = "application/json"
   wrk.headers["Authorization"] = "Bearer " .. token
   statuses = {}
end

local function variant()
   local k = math.random(0, keys - 1)
   return string.format(
      '{"externalId":"K%d","vendorSku":"SKU-%d","name":"Item %d","inventoryQuantity":%d,' ..
      '"retailPrice":"%d.%02d"}',
      k, k, k, math.random(0, 500), math.random(1, 300), math.random(0, 99))
end

function request()
   local body
   if per_request == 1 then
      body = variant()
   else
      local parts = {}
      for i = 1, per_request do parts[i] = variant() end
      body = "[" .. table.concat(parts, ",") .. "]"
   end
   return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
   local by_status = {}
   for _, t in ipairs(threads) do
      local s = t:get("statuses")
      for code, n in pairs(s) do
         by_status[#by_status + 1] = string.format('"%d":%d', code, n)
      end
   end
   io.write(string.format(
      'WRK_RESULT {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
      '"max_us":%d,"errors_connect":%d,"errors_read":%d,"errors_write":%d,' ..
      '"errors_status":%d,"errors_timeout":%d,"statuses":[{%s}]}\n',
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency.max, summary.errors.connect, summary.errors.read,
      summary.errors.write, summary.errors.status, summary.errors.timeout,
      table.concat(by_status, "},{")))
end
