"""The search service: an index and its model(s) loaded once, query-by-image over HTTP and a web
page (FastAPI + uvicorn, the optional `[serve]` extra)."""
