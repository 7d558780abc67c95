"""Embedding models: the embedded default, a registry by name or path, and the Encoder."""
