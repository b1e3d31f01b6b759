"""YAML policies: the project's central defaults and the per-camera mapper policies."""
