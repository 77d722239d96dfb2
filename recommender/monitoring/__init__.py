"""Monitoring: the metric catalogue and windows, the monitor's decisions, impressions and
attribution of outcomes.

Imports `store` and `serving` (its bucket names).
"""
