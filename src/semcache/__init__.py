"""semcache: a semantic cache for LLM responses that serves a stored answer only when it fits."""

__version__ = "0.1.0"
__all__ = ["__version__"]
