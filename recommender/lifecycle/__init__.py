"""Model lifecycle for any family: the served-version pointer and its history (`state`), publishing
through the quality gate (`publishing`), the registered families, and the served model held in
memory.

Imports `store` and `models`.
"""
