"""Routing: which deployment serves a call."""

from sluicegate.routing.router import ModelGroup, Router, Target

__all__ = ["ModelGroup", "Router", "Target"]
