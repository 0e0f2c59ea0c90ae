"""Benchmarks: the system's throughput and latency beside the raw limits of what it is built on.

`python -m bench` (or `make bench`) runs every scenario against the embedded servers (or the
external ones named by DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS / SMTP_URL) and prints one table;
`python -m bench <scenario> [options]` runs one. Results go to `bench/results/` (git-ignored) as
JSON, and the latest table with the machine it ran on is kept in `docs/performance.md`.

Speed is measured here, never asserted in tests; the test suite does not import this package.
"""
