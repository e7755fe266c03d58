"""The shipped seed maps (package data `seed/*.yaml`), loaded once into plain, frozen objects.

The seed is the base layer of every lookup; maps edited through the API or CLI (stored in the
database, versioned) lie on top of it, per member and consortium-wide.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

from carepool.catalog.codes import DEPARTMENT_CODES
from carepool.terminology.units import exact_key

LOINC_SYSTEMS = frozenset(
    {
        "http://loinc.org",
        "loinc",
        "ln",
        "urn:oid:2.16.840.1.113883.6.1",
        "2.16.840.1.113883.6.1",
    }
)
_LOINC_CODE = re.compile(r"^(\d{1,7})-(\d)$")


def is_loinc_system(system: str | None) -> bool:
    return bool(system) and system.strip().casefold() in LOINC_SYSTEMS  # type: ignore[union-attr]


def is_loinc_code(code: str | None) -> bool:
    """A syntactically valid LOINC code with a correct mod-10 check digit (`718-7`)."""
    if not code:
        return False
    match = _LOINC_CODE.match(code.strip())
    if not match:
        return False
    total = 0
    for i, ch in enumerate(reversed(match.group(1))):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            d = d - 9 if d > 9 else d
        total += d
    return (10 - total % 10) % 10 == int(match.group(2))


def norm_text(text: str | None) -> str:
    """The lookup key of a local name: NFKC, case-folded, without whitespace."""
    if not text:
        return ""
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text)).casefold()


@dataclass(frozen=True)
class Analyte:
    """One analyte: the LOINC code results are filed under, its UCUM unit and plausible range."""

    loinc: str
    display: str
    display_zh: str
    unit: str
    plausible: tuple[float, float] | None
    molar_mass: float | None
    equivalents: tuple[str, ...]
    names: tuple[str, ...]


@dataclass(frozen=True)
class LoincTerm:
    """One row of the shipped LOINC table (`seed/loinc.tsv`, made by tools/build_loinc_table.py)."""

    code: str
    name: str  # LOINC's long common name
    component: str
    property: str  # LOINC abbreviation: MCnc, SCnc, NCnc, CCnc, NFr, ...
    system: str  # the specimen: Bld, Ser/Plas, BldA, ...
    scale: str  # Qn, Ord, Nom, `-` for panels
    unit: str  # an example UCUM unit ("" when the term has none)


# Specimens that measure the same analyte in circulating blood: one equivalence group.
BLOOD_SPECIMENS = frozenset({"Bld", "BldA", "BldC", "BldV", "Ser", "Plas", "Ser/Plas"})
# Components that are one analyte under two names (urea is reported as its nitrogen too).
_SAME_COMPONENT = {"urea nitrogen": "urea"}
# Mass and substance concentration of one component are one analyte (a molar mass apart).
_SAME_PROPERTY = {"MCnc": "Cnc", "SCnc": "Cnc"}


@dataclass(frozen=True)
class Seed:
    version: str
    analytes: dict[str, Analyte]
    # any LOINC code of an analyte (canonical or equivalent) -> (canonical code, molar mass)
    equivalents: dict[str, tuple[str, float | None]]
    names: dict[str, str]  # norm_text(name) -> LOINC (canonical, or an equivalent)
    units: dict[str, str]  # exact_key(spelling) -> UCUM
    departments: dict[str, str]  # norm_text(name) -> department code
    department_names: dict[str, tuple[str, ...]] = field(default_factory=dict)
    loinc: dict[str, LoincTerm] = field(default_factory=dict)  # the shipped LOINC table
    # every code of the table -> the codes of its analyte equivalence group (itself included)
    groups: dict[str, frozenset[str]] = field(default_factory=dict)


def _read(name: str) -> dict[str, Any]:
    text = resources.files("carepool.terminology").joinpath("seed", name).read_text("utf-8")
    data = yaml.safe_load(text)
    assert isinstance(data, dict), f"seed {name} is not a mapping"
    return data


def _read_loinc_table() -> dict[str, LoincTerm]:
    text = resources.files("carepool.terminology").joinpath("seed", "loinc.tsv").read_text("utf-8")
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    header, rows = lines[0].split("\t"), lines[1:]
    assert header[0] == "LOINC_NUM" and len(header) == 7, "seed loinc.tsv has an unknown layout"
    table: dict[str, LoincTerm] = {}
    for line in rows:
        code, name, component, prop, system, scale, unit = line.split("\t")
        table[code] = LoincTerm(code, name, component, prop, system, scale, unit)
    return table


def _groups(
    table: dict[str, LoincTerm], equivalents: dict[str, tuple[str, float | None]]
) -> dict[str, frozenset[str]]:
    """Analyte equivalence groups: the seed's equivalents, and one component (same property
    kind, quantitative) measured in blood, serum, plasma or serum-or-plasma."""
    parent = {code: code for code in table}

    def find(code: str) -> str:
        while parent[code] != code:
            parent[code] = parent[parent[code]]
            code = parent[code]
        return code

    def union(a: str, b: str) -> None:
        if a in parent and b in parent:
            parent[find(a)] = find(b)

    for code, (canonical, _mm) in equivalents.items():
        union(code, canonical)
    by_part: dict[tuple[str, str], str] = {}
    for term in sorted(table.values(), key=lambda t: t.code):
        if term.system not in BLOOD_SPECIMENS or term.scale != "Qn":
            continue
        component = term.component.casefold()
        key = (
            _SAME_COMPONENT.get(component, component),
            _SAME_PROPERTY.get(term.property, term.property),
        )
        if key in by_part:
            union(term.code, by_part[key])
        else:
            by_part[key] = term.code
    members: dict[str, set[str]] = {}
    for code in table:
        members.setdefault(find(code), set()).add(code)
    return {code: frozenset(members[find(code)]) for code in table}


@lru_cache(maxsize=1)
def load_seed() -> Seed:
    """The shipped seed (cached: it is immutable package data)."""
    raw = _read("analytes.yaml")
    analytes: dict[str, Analyte] = {}
    equivalents: dict[str, tuple[str, float | None]] = {}
    names: dict[str, str] = {}
    for entry in raw["analytes"]:
        loinc = str(entry["loinc"])
        molar_mass = entry.get("molar_mass")
        eq_codes: list[str] = []
        eq_names: list[tuple[str, str]] = []
        for eq in entry.get("equivalents") or []:
            if isinstance(eq, dict):
                code, mm = str(eq["loinc"]), eq.get("molar_mass", molar_mass)
                eq_names += [(str(n), code) for n in eq.get("names") or []]
            else:
                code, mm = str(eq), molar_mass
            eq_codes.append(code)
            equivalents[code] = (loinc, float(mm) if mm else None)
        equivalents[loinc] = (loinc, float(molar_mass) if molar_mass else None)
        plausible = entry.get("plausible")
        analyte = Analyte(
            loinc=loinc,
            display=entry["display"],
            display_zh=entry.get("display_zh", ""),
            unit=str(entry["unit"]),
            plausible=(float(plausible[0]), float(plausible[1])) if plausible else None,
            molar_mass=float(molar_mass) if molar_mass else None,
            equivalents=tuple(eq_codes),
            names=tuple(str(n) for n in entry.get("names") or []),
        )
        analytes[loinc] = analyte
        for name in (*analyte.names, analyte.display, analyte.display_zh):
            if name:
                names.setdefault(norm_text(name), loinc)
        for name, code in eq_names:  # names of an equivalent point at it (its molar mass)
            names.setdefault(norm_text(name), code)
    units = {exact_key(str(k)): str(v) for k, v in _read("units.yaml")["units"].items()}
    departments: dict[str, str] = {}
    department_names: dict[str, tuple[str, ...]] = {}
    for code, (en, zh) in DEPARTMENT_CODES.items():
        spelled = [code, en, zh]
        if zh.endswith("专业"):
            spelled.append(zh.removesuffix("专业"))
        department_names[code] = tuple(spelled)
    for code, spellings in _read("departments.yaml")["departments"].items():
        code = str(code)
        department_names[code] = (*department_names.get(code, ()), *map(str, spellings))
    for code, spellings in department_names.items():
        for name in spellings:
            departments.setdefault(norm_text(name), code)
    table = _read_loinc_table()
    missing = sorted(set(equivalents) - set(table))
    assert not missing, (
        f"seed codes missing from loinc.tsv (run tools/build_loinc_table.py): {missing}"
    )
    return Seed(
        version=str(raw.get("version", "0")),
        analytes=analytes,
        equivalents=equivalents,
        names=names,
        units=units,
        departments=departments,
        department_names=department_names,
        loinc=table,
        groups=_groups(table, equivalents),
    )
