"""Offline evaluation: the temporal split, ranking metrics, prequential replay.

Imports `models` only.
"""
