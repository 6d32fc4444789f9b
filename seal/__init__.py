"""SEAL-style agentic visual search gated by a value-of-vision policy."""

__version__ = "0.1.0"
