"""streamrec's domain core: settings, Redis keys, the feature store, training and serving logic.

The core knows no HTTP and no Kafka: `api/` and `streams/` call it, and it calls `models/`.
"""
