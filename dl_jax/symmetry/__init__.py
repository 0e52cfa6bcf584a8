"""Symmetries as tested properties (chapter 4): group actions, one checker, the blueprint."""
