"""Shared test helpers: real services, waiting on conditions, child processes."""
