# Copyright 2026 The hf_atom Authors. Licensed under the Apache License, Version 2.0.
"""Alias of `hf_atom.metrics.text`, kept so that existing imports still resolve. New code imports `hf_atom.metrics`."""

from .metrics.text import *  # noqa: F403
from .metrics.text import __all__  # noqa: F401
