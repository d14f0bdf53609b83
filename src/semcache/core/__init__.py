"""The caching policy: fingerprints, tiers, decisions. It knows no web framework, database or LLM SDK."""
