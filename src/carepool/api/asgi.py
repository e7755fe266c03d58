"""ASGI entry point for servers: `uvicorn carepool.api.asgi:app` (settings from the environment)."""

from carepool.api.app import create_app

app = create_app()
