"""Data protection: PII, sensitivity levels, guardrails (checks returning verdicts)."""
