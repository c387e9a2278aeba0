# Copyright 2026 The hf_atom Authors. Licensed under the Apache License, Version 2.0.
"""Alias of `hf_atom.metrics.modes`, kept so that existing imports and pickles (`hf_atom.mode_metrics.MixtureSpec`)
still resolve. New code imports `hf_atom.metrics`."""

from .metrics.modes import *  # noqa: F403
from .metrics.modes import __all__  # noqa: F401
