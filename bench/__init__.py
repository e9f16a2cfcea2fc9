"""The overhead and throughput benchmark (run with ``make bench``); not part of the package."""
