"""Prompt injection and jailbreak detection on input: normalise, decode, match, classify.

``InjectionCheck`` is the entry point (build it once at start-up: it loads the
shipped model, ``model.npz``, with numpy alone). ``evaluate.main`` is the
``sluicegate eval injection`` command; scripts/train_injection.py rebuilds the model.
"""

from sluicegate.safety.injection.check import Assessment, InjectionCheck

__all__ = ["Assessment", "InjectionCheck"]
