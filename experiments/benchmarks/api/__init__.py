"""API load benchmark: request bodies and the wrk driver (run.sh)."""
