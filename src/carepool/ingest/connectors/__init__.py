"""Connectors: one small interface (`Connector.units`), one implementation per feed format."""

from __future__ import annotations

from pathlib import Path

from carepool.core.errors import InvalidInput
from carepool.ingest.connectors.base import Connector, Parsed, ParseOptions, Unit
from carepool.ingest.connectors.fake import FakeConnector
from carepool.ingest.connectors.fhir import FhirConnector
from carepool.ingest.connectors.hl7v2 import Hl7v2Connector, _utf16
from carepool.ingest.connectors.tabular import CsvConnector

__all__ = [
    "CONNECTORS",
    "Connector",
    "ParseOptions",
    "Parsed",
    "Unit",
    "connector_for",
    "detect_format",
]

CONNECTORS: dict[str, Connector] = {
    c.format: c for c in (Hl7v2Connector(), FhirConnector(), CsvConnector(), FakeConnector())
}
_EXTENSIONS = {
    ".hl7": "hl7v2",
    ".er7": "hl7v2",
    ".hl7v2": "hl7v2",
    ".json": "fhir",
    ".ndjson": "fhir",
    ".jsonl": "fhir",
    ".csv": "csv",
    ".tsv": "csv",
}


def detect_format(name: str, data: bytes) -> str:
    """The feed format of an input, from its first bytes, then its file extension."""
    head = data[:64].lstrip(b"\xef\xbb\xbf\x0b \t\r\n")
    if head.startswith((b"MSH", b"FHS", b"BHS")):
        return "hl7v2"
    wide = _utf16(data)
    if wide is not None:  # a UTF-16 export: look at its first characters
        text = data[:128].decode(wide, errors="ignore").lstrip("\ufeff\x0b \t\r\n")
        if text.startswith(("MSH", "FHS", "BHS")):
            return "hl7v2"
    if head.startswith((b"{", b"[")) and not name.endswith(".fake"):
        return "fhir"
    suffix = Path(name).suffix.lower()
    if suffix in _EXTENSIONS:
        return _EXTENSIONS[suffix]
    raise InvalidInput(
        f"cannot tell the format of {name}: give one of {', '.join(sorted(CONNECTORS))}"
    )


def connector_for(format: str) -> Connector:
    try:
        return CONNECTORS[format]
    except KeyError:
        raise InvalidInput(
            f"unknown format {format!r}; use one of {', '.join(sorted(CONNECTORS))}"
        ) from None
