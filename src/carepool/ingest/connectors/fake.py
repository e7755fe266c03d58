"""A fake feed for tests: records handed over as objects, with chosen failures.

It is a real connector (the same `units` interface), so tests of ingest runs, counters, dead
letters and retries need neither files nor parsers. Its input bytes are a JSON list; each item
is `{"patient": "p1", "code": "718-7", "value": 135, "unit": "g/L"}` (an observation of patient
p1), or `{"fail": "reason"}` (a unit that cannot be read), and yields one unit. An item
`{"raise": "KeyError", "why": "text"}` makes the connector raise that built-in exception there
(a connector bug or a hostile input); `flags` (the observation's), `patient_flags`,
`unmodelled` and `comparator` fill those fields.
The input is decoded with the declared encoding (`ParseOptions.encoding`, UTF-8 by default).
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Iterator

from carepool.ingest.connectors.base import Parsed, ParseOptions, Unit
from carepool.records.schemas import Coding, ObservationIn, PatientIn, Ref

__all__ = ["FakeConnector"]


class FakeConnector:
    format = "fake"

    def units(self, data: bytes, *, source: str, options: ParseOptions) -> Iterator[Unit]:
        encoding = options.encoding or "utf-8"
        for i, item in enumerate(json.loads(data.decode(encoding) or "[]"), start=1):
            position = f"{source}#{i}"
            if "raise" in item:
                error = getattr(builtins, item["raise"])
                assert isinstance(error, type) and issubclass(error, Exception)
                raise error(item.get("why", "raised by the fake connector"))
            raw = json.dumps([item], ensure_ascii=False).encode(encoding)
            unit = Unit(position=position, raw=raw, message=source)
            unit.unmodelled.update(item.get("unmodelled", {}))
            if "fail" in item:
                unit.errors.append((position, str(item["fail"])))
                yield unit
                continue
            pid = str(item["patient"])
            if item.get("with_patient", True):
                unit.records.append(
                    Parsed(
                        PatientIn(system="fake", local_id=pid, name=item.get("name", pid)),
                        position,
                        flags=list(item.get("patient_flags", [])),
                    )
                )
            unit.records.append(
                Parsed(
                    ObservationIn(
                        system="fake",
                        local_id=item.get("id"),
                        patient=Ref("patient", "fake", pid),
                        status="final",
                        codings=[
                            Coding(
                                item.get("system", "http://loinc.org"),
                                item["code"],
                                item.get("text", ""),
                            )
                        ],
                        text=item.get("text", ""),
                        value_type="quantity" if item.get("value") is not None else "none",
                        value_number=item.get("value"),
                        value_text=str(item.get("value", "")),
                        unit=item.get("unit", ""),
                        comparator=item.get("comparator", ""),
                    ),
                    position,
                    flags=list(item.get("flags", [])),
                )
            )
            if "bad" in item:
                unit.errors.append((position, str(item["bad"])))
            yield unit
