"""The HTTP surface: routes, size limits, error bodies, SSE writing. No business logic."""

from sluicegate.server.app import create_app

__all__ = ["create_app"]
