"""Content models on the stream: predicted categories and sentiment, the content trainer, cold
start of new items.

Imports `store`, `lifecycle`, `cf`, `privacy` and `models`.
"""
