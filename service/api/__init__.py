"""The keepwise HTTP API (FastAPI): ``service.api.main.create_app`` builds it, ``run`` serves it."""
