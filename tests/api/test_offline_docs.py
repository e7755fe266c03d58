"""The API's documentation pages work on a hospital network without internet: every script,
style sheet and icon they load is served by carepool itself."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

_ASSET = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url:\s*["']([^"']+)["']""")


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_nothing_from_outside(client: TestClient, page: str) -> None:
    response = client.get(page)
    assert response.status_code == 200
    html = response.text
    for host in ("cdn.", "jsdelivr", "unpkg", "googleapis", "gstatic", "http://", "https://"):
        assert host not in html, (page, host)
    assets = [a or b for a, b in _ASSET.findall(html)]
    assert any(a.endswith(".js") for a in assets), assets
    for asset in assets:
        assert asset.startswith("/"), asset
        assert client.get(asset).status_code == 200, asset
