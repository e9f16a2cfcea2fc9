"""Sluicegate: a self-hostable, OpenAI-compatible LLM inference gateway."""

__all__ = ["__version__"]

__version__ = "0.1.0"
