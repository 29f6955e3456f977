"""Ingestion of documents into kms: file conversion and the Haystack components that run it."""
