"""Collaborative filtering: users' vectors in Redis, per-batch fold-ins, refits and their policy,
candidates, the served ALS.

Imports `store`, `lifecycle`, `evaluation` and `models`.
"""
