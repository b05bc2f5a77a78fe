.PHONY: up down test bench
up:      ## set up and run everything with demo traffic
	scripts/up.sh
down:    ## stop the daemon and Asterisk
	scripts/down.sh
test:    ## run the whole test suite (pytest, real Asterisk, SQLite + PostgreSQL), ruff, mypy
	scripts/test.sh
bench:   ## print benchmark figures
	.venv/bin/python bench/ami_ingest.py
