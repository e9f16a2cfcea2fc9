"""Governance: keys, limits, budgets, prices and usage accounting."""
