"""Standardisation as a pure function: a snapshot of every map, asked about codes, units, names.

`Terminology` holds the seed plus the maps stored in the database (consortium-wide and per
member) at one moment. Ingest builds one snapshot per run and asks it about every record, so a
run sees one consistent version of the maps and needs no database round trip per lookup.
Lookup order, first hit wins: the member's map, the consortium map, then the seed. Answers are
remembered per snapshot (a feed asks about the same few hundred codes and units millions of
times), so a snapshot must not be changed once made: take a new one to see new maps.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from carepool.records.schemas import Coding
from carepool.terminology.seed import (
    Seed,
    is_loinc_code,
    is_loinc_system,
    load_seed,
    norm_text,
)
from carepool.terminology.units import (
    UnitError,
    conversion,
    normalise_unit,
    other_reading,
    to_ucum,
)

MapKind = str  # "code" | "unit" | "department"
CODE, UNIT, DEPARTMENT = "code", "unit", "department"
GLOBAL = "*"  # the scope of a consortium-wide map

FLAG_UNMAPPED_CODE = "unmapped-code"
FLAG_UNMAPPED_UNIT = "unmapped-unit"
FLAG_IMPLAUSIBLE = "implausible"
FLAG_UNKNOWN_LOINC = "unknown-loinc"  # sent under the LOINC system, not a code of the table


@dataclass(frozen=True)
class UnmappedTerm:
    """Something the maps did not know, for the unmapped-term queue."""

    kind: MapKind
    system: str
    term: str
    display: str
    match: str = "code"  # "code": `term` is a local code; "name": a folded name or unit


@dataclass
class MapLayer:
    """One stored map: `(system, code)` keys for codes, `norm_text` keys for names.

    A value of None means "explicitly not mapped" (it hides the layers below).
    """

    version: int = 0
    by_code: dict[tuple[str, str], str | None] = field(default_factory=dict)
    by_name: dict[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class CodeResult:
    loinc: str | None  # the analyte's code (equivalents folded in)
    display: str
    original: Coding
    via: str  # "loinc", "map:<scope>", "name:<scope>", "seed", "" (unmapped)
    matched: str | None = None  # the code before folding (its molar mass applies)
    # codings sent under the LOINC system whose code is malformed or not in the LOINC table:
    # never trusted as the standard code (the result came from maps or names, or is unmapped)
    unknown_loinc: tuple[Coding, ...] = ()


@dataclass
class StandardValue:
    """An observation's standard form: LOINC code, canonical value/unit, range, flags."""

    loinc: str | None
    display: str
    original: Coding
    value: float | None
    unit: str | None
    ref_low: float | None
    ref_high: float | None
    flags: list[str]
    note: str
    unmapped: list[UnmappedTerm]


def _unit_term(unit: str) -> UnmappedTerm:
    return UnmappedTerm(UNIT, "", normalise_unit(unit), unit.strip(), "name")


_MEMO_LIMIT = 100_000  # remembered answers per kind of question before starting afresh


def _round(value: float) -> float:
    """Drop binary noise from conversions (12 significant digits are more than any lab has)."""
    if value == 0 or not math.isfinite(value):
        return value
    digits = 12 - math.floor(math.log10(abs(value))) - 1
    return round(value, max(digits, 0))


class Terminology:
    """A snapshot of the seed and the stored maps (see the module docstring)."""

    def __init__(
        self,
        *,
        seed: Seed | None = None,
        maps: Mapping[tuple[MapKind, str], MapLayer] | None = None,
        member_departments: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.seed = seed or load_seed()
        self.maps: dict[tuple[MapKind, str], MapLayer] = dict(maps or {})
        # member -> norm_text(local department name) -> department code (from the catalogue)
        self.member_departments = {k: dict(v) for k, v in (member_departments or {}).items()}
        self._codes: dict[tuple[str, tuple[Coding, ...], str], CodeResult] = {}
        self._units: dict[tuple[str, str | None], str | None] = {}
        self._departments: dict[tuple[str, str | None], str | None] = {}

    # -- versions -------------------------------------------------------------------------------
    def versions(self) -> dict[str, str]:
        out = {"seed": self.seed.version}
        for (kind, scope), layer in sorted(self.maps.items()):
            out[f"{kind}:{scope}"] = str(layer.version)
        return out

    def _layers(self, kind: MapKind, member: str) -> Iterable[tuple[str, MapLayer]]:
        for scope in (member, GLOBAL):
            layer = self.maps.get((kind, scope))
            if layer is not None:
                yield scope, layer

    # -- codes ----------------------------------------------------------------------------------
    def canonical(self, loinc: str) -> tuple[str, float | None]:
        """The code an equivalent LOINC code folds into, with the molar mass for its values."""
        hit = self.seed.equivalents.get(loinc)
        if hit is None:
            return loinc, None
        return hit

    def display(self, loinc: str) -> str:
        analyte = self.seed.analytes.get(loinc)
        return analyte.display if analyte else ""

    def resolve_code(self, member: str, codings: list[Coding], text: str = "") -> CodeResult:
        """The LOINC code for a result's codings (LOINC first, then maps, then names)."""
        key = (member, tuple(codings), text)
        hit = self._codes.get(key)
        if hit is None:
            if len(self._codes) >= _MEMO_LIMIT:
                self._codes.clear()
            hit = self._codes[key] = self._resolve_code(member, codings, text)
        return hit

    def is_known_loinc(self, code: str | None) -> bool:
        """A code of the shipped LOINC table (its check digit is right by construction)."""
        return bool(code) and code.strip() in self.seed.loinc  # type: ignore[union-attr]

    def _resolve_code(self, member: str, codings: list[Coding], text: str) -> CodeResult:
        result = self._lookup_code(member, codings, text)
        unknown = tuple(
            c
            for c in codings
            if is_loinc_system(c.system) and c.code and not self.is_known_loinc(c.code)
        )
        # a steward's map for the exact code settles it; a name match does not
        if unknown and result.via != "loinc" and not result.via.startswith("map:"):
            return replace(result, unknown_loinc=unknown)
        return result

    def _lookup_code(self, member: str, codings: list[Coding], text: str) -> CodeResult:
        codings = [c for c in codings if c.code or c.text] or [Coding(text=text)]
        first = codings[0]
        for c in codings:
            if is_loinc_system(c.system) and self.is_known_loinc(c.code):
                loinc, _ = self.canonical(c.code.strip())
                return CodeResult(loinc, self.display(loinc) or c.text, c, "loinc", c.code.strip())
        for c in codings:
            if not c.code:
                continue
            key = (c.system or "", c.code.strip())
            for scope, layer in self._layers(CODE, member):
                if key in layer.by_code:
                    target = layer.by_code[key]
                    if target is None:
                        return CodeResult(None, c.text, c, f"map:{scope}")
                    loinc, _ = self.canonical(target)
                    return CodeResult(
                        loinc, self.display(loinc) or c.text, c, f"map:{scope}", target
                    )
        names = [(c, c.text) for c in codings if c.text]
        if text:
            names.append((first, text))
        for c in codings:
            if c.code and not is_loinc_code(c.code):
                names.append((c, c.code))  # a local code that is really a name ("Hb")
        for c, name in names:
            folded = norm_text(name)
            if not folded:
                continue
            for scope, layer in self._layers(CODE, member):
                if folded in layer.by_name:
                    target = layer.by_name[folded]
                    if target is None:
                        return CodeResult(None, c.text, c, f"name:{scope}")
                    loinc, _ = self.canonical(target)
                    return CodeResult(
                        loinc, self.display(loinc) or c.text, c, f"name:{scope}", target
                    )
            if folded in self.seed.names:
                matched = self.seed.names[folded]
                loinc, _ = self.canonical(matched)
                return CodeResult(loinc, self.display(loinc), c, "seed", matched)
        return CodeResult(None, first.text or text, first, "")

    # -- units ----------------------------------------------------------------------------------
    def resolve_unit(self, member: str, unit: str | None) -> str | None:
        """The UCUM code for a local unit string, or None when no map or parser knows it."""
        key = (member, unit)
        if key in self._units:
            return self._units[key]
        if len(self._units) >= _MEMO_LIMIT:
            self._units.clear()
        found = self._units[key] = self._resolve_unit(member, unit)
        return found

    def _resolve_unit(self, member: str, unit: str | None) -> str | None:
        if unit is None or not unit.strip():
            return None
        key = normalise_unit(unit)
        for _scope, layer in self._layers(UNIT, member):
            if key in layer.by_name:
                return layer.by_name[key]
        return to_ucum(unit, self.seed.units)

    # -- departments ----------------------------------------------------------------------------
    def resolve_department(self, member: str, name: str | None) -> str | None:
        """The standard department code for a member's local department name or code."""
        memo = (member, name)
        if memo in self._departments:
            return self._departments[memo]
        if len(self._departments) >= _MEMO_LIMIT:
            self._departments.clear()
        found = self._departments[memo] = self._resolve_department(member, name)
        return found

    def _resolve_department(self, member: str, name: str | None) -> str | None:
        key = norm_text(name)
        if not key:
            return None
        for _scope, layer in self._layers(DEPARTMENT, member):
            if key in layer.by_name:
                return layer.by_name[key]
        local = self.member_departments.get(member, {})
        if key in local:
            return local[key]
        return self.seed.departments.get(key)

    # -- observations ---------------------------------------------------------------------------
    def standardise(
        self,
        member: str,
        codings: list[Coding],
        *,
        text: str = "",
        value: float | None = None,
        unit: str | None = None,
        ref_low: float | None = None,
        ref_high: float | None = None,
    ) -> StandardValue:
        """File one result: LOINC code, value in the analyte's UCUM unit, flags for what failed.

        Never guesses: an unknown unit or an incompatible one leaves the value unfiled with
        `unmapped-unit`; a converted value outside the analyte's plausible range stays unfiled
        with `implausible` (the original value and unit are kept by the caller either way).
        """
        code = self.resolve_code(member, codings, text)
        flags: list[str] = []
        notes: list[str] = []
        unmapped: list[UnmappedTerm] = []
        for c in code.unknown_loinc:
            # queued under its own system and code: a steward maps it like any local code
            unmapped.append(UnmappedTerm(CODE, c.system or "", c.code.strip(), c.text or text))
        if code.unknown_loinc:
            flags.append(FLAG_UNKNOWN_LOINC)
            notes.append(
                ", ".join(repr(c.code.strip()) for c in code.unknown_loinc)
                + " is not a LOINC code carepool knows (malformed, or not in its LOINC table)"
            )
        if code.loinc is None:
            flags.append(FLAG_UNMAPPED_CODE)
            orig = code.original
            if orig.code and orig not in code.unknown_loinc:
                unmapped.append(
                    UnmappedTerm(CODE, orig.system or "", orig.code, orig.text or text, "code")
                )
            elif not orig.code and norm_text(orig.text or text):
                name = orig.text or text
                unmapped.append(UnmappedTerm(CODE, "", norm_text(name), name, "name"))
        ucum = self.resolve_unit(member, unit)
        if unit and unit.strip() and ucum is None:
            unmapped.append(_unit_term(unit))
        result = StandardValue(
            loinc=code.loinc,
            display=code.display,
            original=code.original,
            value=None,
            unit=None,
            ref_low=None,
            ref_high=None,
            flags=flags,
            note="; ".join(notes),
            unmapped=unmapped,
        )
        if value is None:
            return result
        analyte = self.seed.analytes.get(code.loinc) if code.loinc else None
        if analyte is None or not analyte.unit:
            # No canonical unit known: keep the value in the unit as sent (made UCUM if we can).
            if unit and unit.strip() and ucum is None:
                flags.append(FLAG_UNMAPPED_UNIT)
                notes.append(f"unit {unit!r} is not UCUM and no map knows it")
            result.value, result.unit = value, ucum
            result.ref_low, result.ref_high = ref_low, ref_high
            result.note = "; ".join(notes)
            return result
        _, molar_mass = self.canonical(code.matched or analyte.loinc)
        if ucum is None:
            flags.append(FLAG_UNMAPPED_UNIT)
            notes.append(
                f"unit {unit!r} is unknown; {analyte.loinc} is filed in {analyte.unit}"
                if unit and unit.strip()
                else f"no unit given; {analyte.loinc} is filed in {analyte.unit}"
            )
            result.note = "; ".join(notes)
            return result
        try:
            try:
                conv = conversion(ucum, analyte.unit, molar_mass)
            except UnitError:
                # an ambiguous spelling read the other way round (`C`: coulomb or Celsius)
                other = other_reading(unit or "", self.seed.units)
                if other is None or other == ucum:
                    raise
                conv = conversion(other, analyte.unit, molar_mass)
                ucum = other
        except UnitError as exc:
            # read as UCUM, but not a unit of this analyte (`G/L` is gauss per litre, `g/l-1`
            # grams times litres): a spelling a steward has to map, so it goes to the queue
            flags.append(FLAG_UNMAPPED_UNIT)
            notes.append(str(exc))
            if unit and unit.strip():
                unmapped.append(_unit_term(unit))
            result.note = "; ".join(notes)
            return result
        converted = _round(conv(value))
        if analyte.plausible is not None:
            low, high = analyte.plausible
            if not (low <= converted <= high):
                flags.append(FLAG_IMPLAUSIBLE)
                result.note = (
                    f"{value:g} {ucum} is {converted:g} {analyte.unit}, outside the plausible "
                    f"range {low:g}-{high:g} {analyte.unit} for {analyte.loinc}; not filed"
                )
                return result
        result.value, result.unit = converted, analyte.unit
        result.ref_low = _round(conv(ref_low)) if ref_low is not None else None
        result.ref_high = _round(conv(ref_high)) if ref_high is not None else None
        result.note = "; ".join(notes)
        return result
