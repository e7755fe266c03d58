"""The framework's ceiling: the same web stack (FastAPI on uvicorn with uvloop and httptools),
endpoints doing nothing."""

from fastapi import FastAPI

app = FastAPI()


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/bare")
def bare(body: dict[str, object]) -> dict[str, object]:
    return {"ok": True, "n": len(body)}
