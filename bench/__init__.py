"""Benchmarks and the chaos run for MetaChat Jobs.

`python -m bench.run` measures the pipeline against a one-task-per-job reference design, polling
efficiency, bulk ingest, fairness and API latency; `python -m bench.chaos` checks the delivery
invariants while workers, Redis and the API are killed. Results go to `docs/benchmarks.md`.
Every process they start listens on 127.0.0.1 only and is stopped before they return.
"""
