"""Vietnamese text utilities: normalisation, document numbers, language, terms, legal chunking, snippets."""
