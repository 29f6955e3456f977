"""Haystack components of the ingestion pipeline (import each from its own module)."""
