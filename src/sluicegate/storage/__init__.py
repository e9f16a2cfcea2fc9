"""Shared state behind small interfaces: the SQL database and its migrations."""
