-- wrk script: POST the JSON body in the file $MEMFIT_WRK_BODY (the embedding
-- requests of tests/integration/serve_load.sh and bench/serve_bench.sh).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open(os.getenv("MEMFIT_WRK_BODY"), "rb")
wrk.body = f:read("*a")
f:close()
