"""The API server: REST v1, the live dashboard (static files) and /metrics in one FastAPI app.

Build it with :func:`facegrid_services.api.app.create_app`, handing it its
collaborators (session factory, Redis client, token verifier); ``facegrid
server`` (:mod:`facegrid_services.api.cli`) wires the real ones and runs uvicorn.
"""
