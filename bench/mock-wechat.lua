-- wrk script: POST valid template sends to `wxnotify mock-wechat`.
-- Every request has its own client_msg_id (so de-duplication is exercised, never hit) and
-- cycles through WX_FOLLOWERS recipients. Env: WX_TOKEN (an OA access token, required),
-- WX_FOLLOWERS (default 1000), WX_RUN (a run label, keeps ids unique across runs).

local token = assert(os.getenv("WX_TOKEN"), "set WX_TOKEN")
local followers = tonumber(os.getenv("WX_FOLLOWERS") or "1000")
local run = os.getenv("WX_RUN") or "0"
local path = "/cgi-bin/message/template/send?access_token=" .. token
local counter = 0
local threads = 0

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"touser":"oMockOA%021d","template_id":"TPL_ORDER_SHIPPED",' ..
    '"client_msg_id":"bench-%s-%d-%d","url":"https://example.com/orders/%d",' ..
    '"miniprogram":{"appid":"wxmockmp000000001","pagepath":"pages/order/detail?id=%d"},' ..
    '"data":{"thing1":{"value":"订单已发货"},"time2":{"value":"2024-01-01 12:00"}}}',
    counter % followers, run, tid or 0, counter, counter, counter)
  return wrk.format(nil, path, nil, body)
end
