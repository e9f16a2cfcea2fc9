"""Counters and logs. Metrics export and tracing arrive with issue #6."""
