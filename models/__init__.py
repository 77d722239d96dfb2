"""Recommendation models behind one small contract, and the registry of their versions.

`models` imports nothing from `api`, `streams` or `recommender`: the core hands it the data.
"""
