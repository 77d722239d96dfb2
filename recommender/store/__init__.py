"""The store: every Redis key and Lua script (`keys`, `scripts`), connections, coalesced reads, and
the feature store by concern (users, catalogue, popularity, stats).

Imports only the shared vocabulary at the top of `recommender`.
"""
