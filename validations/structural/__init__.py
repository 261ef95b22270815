"""Structural (raw layout) schemas of each centre format, pandera over the raw string frames."""
