"""streamrec's domain core, in rooms by concern (each sub-package's docstring says what it may
import); the shared vocabulary (settings, errors, types, listeners, weights) sits here at the top
and imports no room.

The core knows no HTTP and no Kafka: `api/` and `streams/` call it, and it calls `models/`.
"""
