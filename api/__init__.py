"""The HTTP edge: FastAPI app, routers, dependencies. Handlers translate; `recommender` decides."""
