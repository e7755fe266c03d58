"""CSV connector driven by a per-source mapping document (YAML), one unit per row.

The mapping says which file is which table, which column feeds which record field, how dates are
written, and the source's own local codes, units and department names (see
docs/csv-mapping.md; `mappings/synthea.yaml` is shipped for Synthea exports). A row that cannot
be read (no patient, a date in no known format) is rejected with the column and the value at
fault; the header is kept with the row so the dead letter can be retried alone.
"""

from __future__ import annotations

import csv
import fnmatch
import io
from collections.abc import Iterator
from datetime import UTC, date, datetime, tzinfo
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator

from carepool.core.errors import FieldError, InvalidInput
from carepool.ingest.connectors.base import Parsed, ParseOptions, Unit, parse_number
from carepool.ingest.connectors.charset import CharsetError, decode_bytes
from carepool.records.schemas import (
    Coding,
    EncounterIn,
    Identifier,
    ObservationIn,
    OrderIn,
    OtherIn,
    PatientIn,
    Ref,
    ReportIn,
)

__all__ = ["CsvConnector", "MappingDocument", "load_mapping", "shipped_mappings"]

RecordKind = Literal["patient", "encounter", "observation", "report", "order", "other"]

_FIELDS: dict[str, set[str]] = {
    "patient": {
        "local_id",
        "name",
        "family",
        "given",
        "sex",
        "birth_date",
        "national_id",
        "phone",
        "address",
        "deceased",
        "deceased_at",
    },
    "encounter": {
        "local_id",
        "patient",
        "encounter_class",
        "status",
        "start_at",
        "end_at",
        "type_text",
        "department",
        "location",
    },
    "observation": {
        "local_id",
        "patient",
        "encounter",
        "report",
        "status",
        "category",
        "code",
        "code_system",
        "text",
        "value",
        "unit",
        "ref_low",
        "ref_high",
        "ref_text",
        "interpretation",
        "effective_at",
        "issued_at",
        "value_type",
    },
    "report": {
        "local_id",
        "patient",
        "encounter",
        "status",
        "code",
        "code_system",
        "text",
        "category",
        "effective_at",
        "issued_at",
        "conclusion",
        "order",
    },
    "order": {
        "local_id",
        "patient",
        "encounter",
        "status",
        "code",
        "code_system",
        "text",
        "priority",
        "ordered_at",
    },
    "other": {"local_id", "patient"},
}


class IdentifierColumn(BaseModel):
    column: str
    system: str
    type: str = ""


class TableMapping(BaseModel):
    name: str
    files: list[str] = Field(default_factory=list)
    record: RecordKind
    columns: dict[str, str | list[str]]
    identifiers: list[IdentifierColumn] = Field(default_factory=list)
    values: dict[str, dict[str, str]] = Field(default_factory=dict)
    defaults: dict[str, str] = Field(default_factory=dict)

    def mapped_columns(self) -> set[str]:
        out: set[str] = set()
        for value in self.columns.values():
            out.update([value] if isinstance(value, str) else value)
        out.update(i.column for i in self.identifiers)
        return out


class MappingDocument(BaseModel):
    format: Literal["carepool.csv-mapping/1"]
    name: str
    description: str = ""
    id_system: str
    timezone: str | None = None
    date_formats: list[str] = Field(default_factory=lambda: ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d"])
    # The field separator; None: a comma, or a tab when the header has more tabs than commas.
    delimiter: str | None = None
    code_system: str = ""
    local_codes: dict[str, str] = Field(default_factory=dict)
    units: dict[str, str] = Field(default_factory=dict)
    departments: dict[str, str] = Field(default_factory=dict)
    tables: list[TableMapping]

    @field_validator("tables")
    @classmethod
    def _known_fields(cls, tables: list[TableMapping]) -> list[TableMapping]:
        for t in tables:
            unknown = set(t.columns) - _FIELDS[t.record]
            if unknown:
                raise ValueError(
                    f"table {t.name}: {', '.join(sorted(unknown))} are not fields of a "
                    f"{t.record} (known: {', '.join(sorted(_FIELDS[t.record]))})"
                )
        return tables

    @field_validator("delimiter")
    @classmethod
    def _one_character(cls, value: str | None) -> str | None:
        if value is not None and len(value) != 1:
            raise ValueError(f"a delimiter is one character (`,`, `;`, a tab), not {value!r}")
        return value

    def table_for(self, filename: str, header: list[str]) -> TableMapping | None:
        base = Path(filename.split("#")[0].split(":")[0]).name
        columns = set(header)
        for t in self.tables:
            if any(fnmatch.fnmatch(base, p) for p in t.files) and t.mapped_columns() <= columns:
                return t
        candidates = [t for t in self.tables if t.mapped_columns() <= columns]
        candidates.sort(key=lambda t: -len(t.mapped_columns()))
        return candidates[0] if candidates else None


def shipped_mappings() -> list[str]:
    folder = resources.files("carepool.ingest").joinpath("mappings")
    return sorted(
        p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")
    )


def parse_mapping(raw: Any, where: str) -> MappingDocument:
    if not isinstance(raw, dict):
        raise InvalidInput(f"{where} is not a mapping document (a YAML mapping)")
    try:
        return MappingDocument.model_validate(raw)
    except ValidationError as exc:
        errors = [
            FieldError(f"{where}:" + ".".join(str(p) for p in e["loc"]), e["msg"])
            for e in exc.errors()
        ]
        raise InvalidInput(f"{where} is not a valid CSV mapping document", errors) from exc


@lru_cache(maxsize=16)
def _shipped(name: str) -> MappingDocument:
    text = (
        resources.files("carepool.ingest").joinpath("mappings", f"{name}.yaml").read_text("utf-8")
    )
    return parse_mapping(yaml.safe_load(text), f"mapping {name!r}")


def load_mapping(name_or_path: str) -> MappingDocument:
    """A shipped mapping by name (`synthea`) or a mapping document file by path."""
    if name_or_path in shipped_mappings():
        return _shipped(name_or_path)
    path = Path(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(
            f"no shipped CSV mapping is called {name_or_path!r} and no file is there "
            f"({exc.strerror}); shipped: {', '.join(shipped_mappings())}"
        ) from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{path} is not valid YAML", [FieldError(str(path), str(exc))]) from exc
    return parse_mapping(raw, str(path))


class _RowError(ValueError):
    pass


class _Reader:
    def __init__(self, doc: MappingDocument, table: TableMapping, tz: tzinfo) -> None:
        self.doc = doc
        self.table = table
        self.tz = ZoneInfo(doc.timezone) if doc.timezone else tz
        self.system = f"{doc.id_system}"

    def get(self, row: dict[str, str], field: str) -> str:
        spec = self.table.columns.get(field)
        if spec is None:
            value = self.table.defaults.get(field, "")
        elif isinstance(spec, str):
            value = (row.get(spec) or "").strip()
        else:
            sep = " " if field in ("name", "given", "family") else ", "
            value = sep.join(v for v in ((row.get(c) or "").strip() for c in spec) if v)
        if not value:
            value = self.table.defaults.get(field, "")
        mapped = self.table.values.get(field)
        if mapped and value in mapped:
            return mapped[value]
        return value

    def when(self, row: dict[str, str], field: str) -> datetime | None:
        text = self.get(row, field)
        if not text:
            return None
        for fmt in self.doc.date_formats:
            try:
                value = datetime.strptime(text, fmt)
            except ValueError:
                continue
            return (value if value.tzinfo else value.replace(tzinfo=self.tz)).astimezone(UTC)
        try:
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            column = self.table.columns.get(field)
            raise _RowError(
                f"{column}={text!r} matches none of the date formats "
                f"{', '.join(self.doc.date_formats)}"
            ) from None
        return (value if value.tzinfo else value.replace(tzinfo=self.tz)).astimezone(UTC)

    def day(self, row: dict[str, str], field: str) -> date | None:
        """A calendar day (a birth date): read as written, never shifted by a time zone."""
        text = self.get(row, field)
        if not text:
            return None
        for fmt in self.doc.date_formats:
            try:
                value = datetime.strptime(text, fmt)
            except ValueError:
                continue
            return value.astimezone(self.tz).date() if value.tzinfo else value.date()
        try:
            return date.fromisoformat(text[:10])
        except ValueError:
            column = self.table.columns.get(field)
            raise _RowError(
                f"{column}={text!r} matches none of the date formats "
                f"{', '.join(self.doc.date_formats)}"
            ) from None

    def ref(self, row: dict[str, str], field: str, kind: str) -> Ref | None:
        value = self.get(row, field)
        return Ref(kind, self.system, value) if value else None

    def codings(self, row: dict[str, str]) -> list[Coding]:
        code = self.get(row, "code")
        text = self.get(row, "text")
        system = self.get(row, "code_system") or self.doc.code_system
        out = [Coding(system=system, code=code, text=text)] if code or text else []
        mapped = self.doc.local_codes.get(code) or self.doc.local_codes.get(text)
        if mapped:
            out.append(Coding(system="http://loinc.org", code=mapped, text=""))
        return out

    def record(self, row: dict[str, str]) -> Any:
        kind = self.table.record
        local_id = self.get(row, "local_id") or None
        if kind == "patient":
            if not local_id:
                raise _RowError(f"{self.table.columns.get('local_id')} (the patient id) is empty")
            birth = self.day(row, "birth_date")
            died = self.when(row, "deceased_at")
            return PatientIn(
                system=self.system,
                local_id=local_id,
                identifiers=[
                    Identifier(
                        system=i.system, value=(row.get(i.column) or "").strip(), type=i.type
                    )
                    for i in self.table.identifiers
                    if (row.get(i.column) or "").strip()
                ],
                name=self.get(row, "name"),
                family=self.get(row, "family"),
                given=self.get(row, "given"),
                sex=self.get(row, "sex") or "unknown",
                birth_date=birth,
                national_id=self.get(row, "national_id") or None,
                phone=self.get(row, "phone"),
                address=self.get(row, "address"),
                deceased=bool(self.get(row, "deceased")) or died is not None,
                deceased_at=died,
            )
        patient = self.ref(row, "patient", "patient")
        if kind != "other" and patient is None:
            raise _RowError(f"{self.table.columns.get('patient')} (the patient id) is empty")
        if kind == "encounter":
            department = self.get(row, "department")
            return EncounterIn(
                system=self.system,
                local_id=local_id,
                patient=patient,
                encounter_class=self.get(row, "encounter_class") or "other",
                status=self.get(row, "status") or "unknown",
                start_at=self.when(row, "start_at"),
                end_at=self.when(row, "end_at"),
                type_text=self.get(row, "type_text"),
                department_text=department,
                department_code=self.doc.departments.get(department),
                location=self.get(row, "location"),
            )
        if kind == "observation":
            raw_value = self.get(row, "value")
            value_type = self.get(row, "value_type")
            number, comparator = parse_number(raw_value) if value_type != "string" else (None, "")
            if value_type == "quantity" and raw_value and number is None:
                value_type = "string"
            unit = self.get(row, "unit")
            low, high = self.get(row, "ref_low"), self.get(row, "ref_high")
            return ObservationIn(
                system=self.system,
                local_id=local_id,
                patient=patient,
                encounter=self.ref(row, "encounter", "encounter"),
                report=self.ref(row, "report", "report"),
                status=self.get(row, "status") or "unknown",
                category=self.get(row, "category"),
                codings=self.codings(row),
                text=self.get(row, "text"),
                comparator=comparator if number is not None else "",
                value_type=(value_type or ("quantity" if number is not None else "string"))
                if raw_value
                else "none",
                value_number=number,
                value_text=raw_value,
                unit=self.doc.units.get(unit, unit),
                ref_low=parse_number(low)[0] if low else None,
                ref_high=parse_number(high)[0] if high else None,
                ref_text=self.get(row, "ref_text"),
                interpretation=self.get(row, "interpretation"),
                effective_at=self.when(row, "effective_at"),
                issued_at=self.when(row, "issued_at"),
            )
        if kind == "report":
            return ReportIn(
                system=self.system,
                local_id=local_id,
                patient=patient,
                encounter=self.ref(row, "encounter", "encounter"),
                status=self.get(row, "status") or "unknown",
                codings=self.codings(row),
                text=self.get(row, "text"),
                category=self.get(row, "category"),
                effective_at=self.when(row, "effective_at"),
                issued_at=self.when(row, "issued_at"),
                conclusion=self.get(row, "conclusion"),
                # An order column names the order's id, which a CSV order also uses as its
                # placer number: both links hold.
                order=self.ref(row, "order", "order"),
                placer_number=self.get(row, "order"),
            )
        if kind == "order":
            return OrderIn(
                system=self.system,
                local_id=local_id,
                patient=patient,
                encounter=self.ref(row, "encounter", "encounter"),
                placer_number=local_id or "",
                status=self.get(row, "status") or "unknown",
                codings=self.codings(row),
                text=self.get(row, "text"),
                priority=self.get(row, "priority"),
                ordered_at=self.when(row, "ordered_at"),
            )
        return OtherIn(
            system=self.system,
            local_id=local_id,
            type_name=f"csv:{self.doc.name}:{self.table.name}",
            patient=patient,
            body=dict(row),
        )


def _line(values: list[str], delimiter: str) -> str:
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="").writerow(values)
    return out.getvalue()


def _pick_mapping(options: ParseOptions, source: str, header: list[str]) -> MappingDocument:
    if options.mapping_doc is not None:
        return parse_mapping(options.mapping_doc, "the mapping document")
    if options.mapping:
        return load_mapping(options.mapping)
    for name in shipped_mappings():
        doc = _shipped(name)
        if doc.table_for(source, header) is not None:
            return doc
    raise InvalidInput(
        f"{source}: no CSV mapping given and no shipped mapping recognises its columns "
        f"({', '.join(header[:8])}...); pass one (shipped: {', '.join(shipped_mappings())})"
    )


# A cell may hold a whole report or an embedded document: allow 64 MiB (the csv default, 128 KiB,
# raises on the first long cell and would end the file there).
csv.field_size_limit(64 * 1024 * 1024)


def _detail(exc: InvalidInput) -> str:
    found = "; ".join(f"{e.location}: {e.message}" for e in exc.errors[:5])
    return f"{exc.detail}: {found}" if found else exc.detail


def _failed(source: str, data: bytes, reason: str) -> Unit:
    unit = Unit(position=source, raw=data, message=source)
    unit.errors.append((source, reason))
    return unit


def _missing_columns(doc: MappingDocument, source: str, header: list[str]) -> str:
    """Why no table of `doc` fits: the table the file name points at and the columns it lacks."""
    base = Path(source.split("#")[0].split(":")[0]).name
    named = [t for t in doc.tables if any(fnmatch.fnmatch(base, p) for p in t.files)]
    columns = set(header)
    for t in named or sorted(doc.tables, key=lambda t: len(t.mapped_columns() - columns)):
        missing = sorted(t.mapped_columns() - columns)
        return (
            f"{source}: the header lacks column(s) {', '.join(missing)} that mapping "
            f"{doc.name!r} table {t.name!r} reads (header: {', '.join(header[:12])})"
        )
    return f"mapping {doc.name!r} has no tables"


class CsvConnector:
    """CSV exports read through a mapping document; one unit per data row.

    The bytes are decoded by `charset.decode_bytes` (a declared encoding, a byte-order mark,
    UTF-8, or GB18030/Latin-1 detected with confidence; otherwise the file is refused unread,
    never stored with replacement characters). Each row's raw is the header and the row,
    written back in the file's own encoding, so a dead letter retries alone.
    """

    format = "csv"

    def units(self, data: bytes, *, source: str, options: ParseOptions) -> Iterator[Unit]:
        try:
            yield from self._units(data, source, options)
        except Exception as exc:  # a defect must not end the run or lose the input
            yield _failed(source, data, f"cannot read the file: {type(exc).__name__}: {exc}")

    def _units(self, data: bytes, source: str, options: ParseOptions) -> Iterator[Unit]:
        if not data.strip():
            yield _failed(source, data, f"{source} is empty: not even a header row")
            return
        try:
            decoded = decode_bytes(data, declared=options.encoding)
        except CharsetError as exc:
            yield _failed(source, data, f"{source}: {exc.reason}")
            return
        text = decoded.text.lstrip("\ufeff")
        # A row's raw is written in the encoding a retry will read it in: the declared one, the
        # marked one (UTF-16/32 write their mark again), else UTF-8 (a detected GB18030 or Latin-1
        # row alone may be too short to detect again).
        codec = decoded.encoding if decoded.how in ("declared", "bom") else "utf-8"
        if codec == "utf-8-sig":
            codec = "utf-8"
        first_line = text.split("\n", 1)[0]
        guessed = "\t" if first_line.count("\t") > first_line.count(",") else ","
        explicit = options.mapping_doc is not None or options.mapping is not None
        delimiter = guessed
        if explicit:
            try:
                header_doc = _pick_mapping(options, source, [])
            except InvalidInput as exc:
                yield _failed(source, data, _detail(exc))
                return
            delimiter = header_doc.delimiter or guessed
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            yield _failed(source, data, f"{source} is empty: not even a header row")
            return
        try:
            doc = _pick_mapping(options, source, header)
        except InvalidInput as exc:
            yield _failed(source, data, _detail(exc))
            return
        table = doc.table_for(source, header)
        if table is None:
            yield _failed(source, data, _missing_columns(doc, source, header))
            return
        reader_ = _Reader(doc, table, options.timezone)
        head = _line(header, delimiter)
        line_no = reader.line_num + 1
        while True:
            number = line_no
            try:
                values = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:  # a quote never closed: the rest of the file is one field
                position = f"{source}:{number}"
                reason = f"line {number}: {exc}; the rest of the file cannot be split into rows"
                yield _failed(position, data, reason)
                break
            line_no = reader.line_num + 1
            if not any(v.strip() for v in values):
                continue
            position = f"{source}:{number}"
            line = _line(values, delimiter)
            unit = Unit(
                position=position,
                raw=f"{head}\n{line}\n".encode(codec),
                message=f"{source} ({doc.name}:{table.name})",
            )
            if len(values) != len(header):
                few = "too few" if len(values) < len(header) else "too many"
                unit.errors.append(
                    (
                        position,
                        f"line {number}: {few} fields: the row has {len(values)}, the header "
                        f"has {len(header)} (delimiter {delimiter!r})"
                        + (
                            "; a quote opened on this line never closes"
                            if any("\n" in v for v in values)
                            else ""
                        ),
                    )
                )
                yield unit
                continue
            row = dict(zip(header, values, strict=True))
            try:
                unit.records.append(Parsed(reader_.record(row), position, line))
            except _RowError as exc:
                unit.errors.append((position, str(exc)))
            yield unit
