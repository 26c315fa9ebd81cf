"""The index layer: the only code that knows Chroma, its collection layout, metadata keys and ids."""
