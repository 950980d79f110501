"""Pipelines: ops composed into DAGs on the current runtime."""
