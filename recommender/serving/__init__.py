"""Serving: the recommendation chain, similar, popular and trending lists with their reasons, kept
answers, A/B buckets.

Imports `store`, `lifecycle`, `cf` and `models`.
"""
