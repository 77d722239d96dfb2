"""The CLI and the embedded runtime: the one place that wires streams, recommender, models, api."""
