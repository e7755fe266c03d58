"""Developer tool: write the LOINC table carepool ships (`terminology/seed/loinc.tsv`).

Usage: .venv/bin/python tools/build_loinc_table.py [--check]

The table holds only the LOINC terms carepool's seed names (`terminology/seed/analytes.yaml`:
every analyte's code and its equivalents): code, long common name, and the parts read from the
name (component, property, system, scale) plus an example UCUM unit. Ingest checks every code
sent under the LOINC system against it, and analyte equivalence groups are built from the
parts. The output is deterministic (sorted, no dates), so `--check` fails when the committed
table is not what the seed gives. Nothing is downloaded; LOINC's notice heads the file (the
LOINC licence, section 10, asks for it with any content taken from LOINC).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "src" / "carepool" / "terminology" / "seed"
TABLE = SEED / "loinc.tsv"
COLUMNS = (
    "LOINC_NUM",
    "LONG_COMMON_NAME",
    "COMPONENT",
    "PROPERTY",
    "SYSTEM",
    "SCALE_TYP",
    "EXAMPLE_UCUM_UNITS",
)
NOTICE = (
    "This material contains content from LOINC (http://loinc.org). LOINC is copyright "
    "© 1995-2024, Regenstrief Institute, Inc. and the Logical Observation Identifiers Names "
    "and Codes (LOINC) Committee and is available at no cost under the license at "
    "http://loinc.org/license. LOINC® is a registered United States trademark of Regenstrief "
    "Institute, Inc."
)

# LOINC's long-name wording of a property and of a system, and the table abbreviation
_PROPERTIES = {
    "#/volume": "NCnc",
    "Mass/volume": "MCnc",
    "Moles/volume": "SCnc",
    "Enzymatic activity/volume": "CCnc",
    "Units/volume": "ACnc",
    "Volume Fraction": "VFr",
    "Pure volume fraction": "VFr",
    "Entitic volume": "EntVol",
    "Entitic mass": "EntMass",
    "Ratio": "Ratio",
}
_SYSTEMS = {
    "Blood": "Bld",
    "Arterial blood": "BldA",
    "Capillary blood": "BldC",
    "Venous blood": "BldV",
    "Serum or Plasma": "Ser/Plas",
    "Serum": "Ser",
    "Plasma": "Plas",
    "Platelet poor plasma": "PPP",
    "Urine": "Urine",
}
_BRACKETED = re.compile(
    r"^(?P<c>.+?) \[(?P<p>[^\]]+)\](?: (?:in|of) (?P<s>.+?))?(?: by (?P<m>.+))?$"
)
_FRACTION = re.compile(r"^(?P<c>\w+/100 leukocytes) in (?P<s>.+?)(?: by (?P<m>.+))?$")
_PANEL = re.compile(r"^(?P<c>.+ panel.*?) - (?P<s>.+?)(?: by (?P<m>.+))?$")


class TableError(ValueError):
    """A seed entry whose parts cannot be read from its name (give them as `parts:`)."""


@dataclass(frozen=True)
class Row:
    code: str
    name: str
    component: str
    property: str
    system: str
    scale: str
    unit: str

    def line(self) -> str:
        cells = (self.code, self.name, self.component, self.property, self.system, self.scale)
        return "\t".join((*cells, self.unit))


def check_digit_ok(code: str) -> bool:
    """LOINC's mod-10 check digit (the same rule as `carepool.terminology.seed`)."""
    match = re.fullmatch(r"(\d{1,7})-(\d)", code)
    if not match:
        return False
    total = 0
    for i, ch in enumerate(reversed(match.group(1))):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return (10 - total % 10) % 10 == int(match.group(2))


def parts_of(code: str, name: str, given: list[Any] | None) -> tuple[str, str, str, str]:
    """(component, property, system, scale) of a term: as given, else read from its name."""
    if given:
        if len(given) != 4:
            raise TableError(f"{code}: parts must be [component, property, system, scale]")
        component, prop, system, scale = (str(x) for x in given)
        return component, prop, system, scale
    m = _BRACKETED.match(name)
    if m and m.group("p") in _PROPERTIES:
        system = m.group("s") or ""
        if system and system not in _SYSTEMS:
            raise TableError(f"{code}: system {system!r} in {name!r} is not known")
        return m.group("c"), _PROPERTIES[m.group("p")], _SYSTEMS.get(system, ""), "Qn"
    m = _FRACTION.match(name)
    if m and m.group("s") in _SYSTEMS:
        return m.group("c"), "NFr", _SYSTEMS[m.group("s")], "Qn"
    m = _PANEL.match(name)
    if m and m.group("s") in _SYSTEMS:
        return m.group("c"), "-", _SYSTEMS[m.group("s")], "-"
    raise TableError(f"{code}: cannot read the parts of {name!r}; give them as `parts:`")


def rows(seed: dict[str, Any]) -> list[Row]:
    out: dict[str, Row] = {}

    def add(code: str, name: str, given: list[Any] | None, unit: str) -> None:
        if not check_digit_ok(code):
            raise TableError(f"{code}: not a LOINC code (format or check digit)")
        if code in out:
            raise TableError(f"{code}: listed twice in the seed")
        component, prop, system, scale = parts_of(code, name, given)
        out[code] = Row(code, name, component, prop, system, scale, unit)

    for entry in seed["analytes"]:
        unit = str(entry.get("unit") or "")
        add(str(entry["loinc"]), str(entry["display"]), entry.get("parts"), unit)
        for eq in entry.get("equivalents") or []:
            if not isinstance(eq, dict) or "display" not in eq:
                raise TableError(f"equivalent {eq!r} of {entry['loinc']} has no display")
            add(str(eq["loinc"]), str(eq["display"]), eq.get("parts"), str(eq.get("unit", unit)))
    return sorted(out.values(), key=lambda r: tuple(int(x) for x in r.code.split("-")))


def render(seed: dict[str, Any]) -> str:
    version = str(seed.get("version", "0"))
    head = [
        f"# {NOTICE}",
        f"# carepool LOINC subset for seed {version}: the terms the seed names, generated by",
        "# tools/build_loinc_table.py (do not edit by hand). COMPONENT..SCALE_TYP are read from",
        "# LOINC_NUM's long common name; verify against a LOINC release before relying on them",
        "# outside carepool.",
        "\t".join(COLUMNS),
    ]
    return "\n".join(head + [r.line() for r in rows(seed)]) + "\n"


def main(argv: list[str]) -> int:
    seed = yaml.safe_load((SEED / "analytes.yaml").read_text("utf-8"))
    text = render(seed)
    if "--check" in argv:
        current = TABLE.read_text("utf-8") if TABLE.exists() else ""
        if current != text:
            print(f"{TABLE.relative_to(ROOT)} is out of date: run tools/build_loinc_table.py")
            return 1
        print(f"{TABLE.relative_to(ROOT)} is up to date ({text.count(chr(10)) - 6} terms)")
        return 0
    TABLE.write_text(text, "utf-8")
    print(f"wrote {TABLE.relative_to(ROOT)} ({text.count(chr(10)) - 6} terms)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
