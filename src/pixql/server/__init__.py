"""pixql's HTTP server: Roboflow-compatible CLIP routes on FastAPI (``pixql serve``).

Importing this package is light; :func:`pixql.server.app.create_app` builds the app and
:func:`pixql.server.app.serve` runs it with uvicorn.
"""
