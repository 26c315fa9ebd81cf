"""The foundation: settings, the Answer/Citation types, errors and text utilities. Imports nothing else of rag."""
