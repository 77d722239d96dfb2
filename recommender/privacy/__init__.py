"""Personal data: encrypted profiles, export and erasure, envelope encryption, reviews, API keys
and rate limits.

Imports `store`.
"""
