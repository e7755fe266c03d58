"""Server-rendered pages (placeholder landing page until the dashboard lands)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def landing() -> str:
    return "<!doctype html><title>carepool</title><h1>carepool</h1>"
