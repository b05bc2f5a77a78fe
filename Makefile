.PHONY: up down test bench
up:      ## set up and run everything with demo traffic
	scripts/up.sh
down:    ## stop the daemon and Asterisk
	scripts/down.sh
test:    ## run the whole test suite (pytest, real Asterisk, SQLite + PostgreSQL), ruff, mypy
	scripts/test.sh
bench:   ## print benchmark figures (pop_latency starts its own Asterisk: a few minutes)
	.venv/bin/python bench/ami_ingest.py
	.venv/bin/python bench/crm_search.py
	.venv/bin/python bench/stats_query.py
	.venv/bin/python bench/pop_latency.py
	.venv/bin/python bench/pop_latency.py --history 30000 --supervisors 5
	.venv/bin/python bench/cluster.py
	.venv/bin/python bench/media_cache.py
	.venv/bin/python bench/ws_sweep.py
	.venv/bin/python bench/ws_sweep.py --store postgres
	.venv/bin/python bench/webhooks.py
