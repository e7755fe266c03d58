"""Units: local unit strings to UCUM, and value conversion between UCUM units (pure).

UCUM parsing and conversion come from `ucumvert` (a UCUM grammar on top of `pint`); this module
adds the lenient front door that real feeds need (`g/dl`, `x10^9/L`, `tera.l-1`, `℃`, `K/uL`) and
mass <-> substance conversion with an analyte's molar mass. Every conversion is affine
(`a * x + b`), so it is computed once per unit pair and cached.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "Conversion",
    "UnitError",
    "conversion",
    "convert",
    "normalise_unit",
    "other_reading",
    "to_ucum",
]


class UnitError(ValueError):
    """A unit that cannot be read, or two units that cannot be converted into each other."""


@dataclass(frozen=True)
class Conversion:
    """`target = scale * source + offset` (offset is non-zero only for temperatures)."""

    scale: float
    offset: float = 0.0

    def __call__(self, value: float) -> float:
        return self.scale * value + self.offset


_lock = threading.Lock()
_registry: Any = None


def _ureg() -> Any:
    """The UCUM registry, built once per process (it takes a fraction of a second)."""
    global _registry
    if _registry is None:
        with _lock:
            if _registry is None:
                from ucumvert import PintUcumRegistry

                _registry = PintUcumRegistry()
    return _registry


# -- the registry's answers, remembered on disk --------------------------------------------------
#
# Building the registry costs seconds in every new process (each `carepool ingest`, each parse
# worker), although a feed only ever asks it about a few dozen units. So what it answered (is
# this UCUM, its dimension, a conversion) is kept in a small JSON file per ucumvert and pint
# version, and a process that asks only known questions never builds it. `CAREPOOL_UCUM_CACHE`
# names the file; `off` (or empty) keeps answers in memory only.

_ANSWERS_FORMAT = 1
_answers: dict[str, Any] | None = None
_answers_path: Path | None = None


def _cache_path() -> Path | None:
    setting = os.environ.get("CAREPOOL_UCUM_CACHE")
    if setting is not None:
        return None if setting.strip().lower() in ("", "off") else Path(setting)
    try:
        versions = f"{metadata.version('ucumvert')}-{metadata.version('pint')}"
        # and this module's own text: a change to how units are parsed or converted here
        # starts a new file instead of answering from the old one
        versions += "-" + hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
    except (metadata.PackageNotFoundError, OSError):
        return None
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "carepool" / f"ucum-answers-{_ANSWERS_FORMAT}-{versions}.json"


def _known() -> dict[str, Any]:
    global _answers, _answers_path
    if _answers is None:
        with _lock:
            if _answers is None:
                _answers_path = _cache_path()
                loaded: Any = {}
                if _answers_path is not None:
                    try:
                        loaded = json.loads(_answers_path.read_text("utf-8"))
                    except (OSError, ValueError):
                        loaded = {}
                _answers = loaded if isinstance(loaded, dict) else {}
    return _answers


def _remember(key: str, answer: Any) -> None:
    """Keep an answer (and write the file: new answers are rare, a few per new unit)."""
    answers = _known()
    answers[key] = answer
    if _answers_path is None:
        return
    try:
        _answers_path.parent.mkdir(parents=True, exist_ok=True)
        temporary = _answers_path.with_name(f"{_answers_path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(answers, ensure_ascii=False, sort_keys=True), "utf-8")
        os.replace(temporary, _answers_path)
    except OSError:
        pass  # a read-only home: answers stay in memory


# Local spellings that are not UCUM, keyed by `_key()`; values are UCUM codes.
# The terminology seed adds more (`seed/units.yaml`); this is the floor that conversion needs.
_BUILTIN_SYNONYMS: dict[str, str] = {
    "g/dl": "g/dL",
    "mg/dl": "mg/dL",
    "mg/l": "mg/L",
    "g/l": "g/L",
    "mmol/l": "mmol/L",
    "umol/l": "umol/L",
    "micromol/l": "umol/L",
    "nmol/l": "nmol/L",
    "mol/l": "mol/L",
    "fl": "fL",
    "pl": "pL",
    "ml/min": "mL/min",
    "u/l": "U/L",
    "iu/l": "[IU]/L",
    "iu/ml": "[IU]/mL",
    "miu/ml": "m[IU]/mL",
    "ku/l": "kU/L",
    "mmhg": "mm[Hg]",
    "cmh2o": "cm[H2O]",
    "c": "Cel",
    "°c": "Cel",
    "℃": "Cel",
    "degc": "Cel",
    "f": "[degF]",
    "°f": "[degF]",
    "degf": "[degF]",
    "bpm": "/min",
    "beats/min": "/min",
    "beats/minute": "/min",
    "breaths/min": "/min",
    "/min": "/min",
    "%": "%",
    "percent": "%",
    "l/l": "L/L",
    "ratio": "1",
    "k/ul": "10*3/uL",
    "k/mm3": "10*3/uL",
    "thou/ul": "10*3/uL",
    "m/ul": "10*6/uL",
    "mil/ul": "10*6/uL",
    "cells/ul": "{cells}/uL",
    "/ul": "/uL",
    "/mm3": "/uL",
    "giga/l": "10*9/L",
    "g/l(cells)": "10*9/L",
    "giga.l-1": "10*9/L",
    "tera.l-1": "10*12/L",
    "tera/l": "10*12/L",
    "gpt/l": "10*9/L",
    "tpt/l": "10*12/L",
    "pg/cell": "pg",
    "kg/m2": "kg/m2",
    "kg/m^2": "kg/m2",
    "个/ul": "/uL",
    "克/升": "g/L",
    "克/分升": "g/dL",
    "毫摩尔/升": "mmol/L",
    "微摩尔/升": "umol/L",
    "单位/升": "U/L",
    "毫米汞柱": "mm[Hg]",
    "次/分": "/min",
    "次/分钟": "/min",
    "千克": "kg",
    "公斤": "kg",
    "厘米": "cm",
}

_POWER = re.compile(r"^(?:x|\*)?\s*10\s*(?:\^|\*|\*\*|e|~)\s*(-?\d+)\s*(/.*)$", re.IGNORECASE)
_SUPERSCRIPTS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻", "0123456789-")
_SUPERSCRIPT_RUN = re.compile("[⁰¹²³⁴⁵⁶⁷⁸⁹⁻]+")


def _plain(text: str) -> str:
    """Superscript powers to `^n` (before NFKC would glue them to the base), then NFKC."""
    text = _SUPERSCRIPT_RUN.sub(lambda m: "^" + m.group(0).translate(_SUPERSCRIPTS), text)
    return unicodedata.normalize("NFKC", text)


def exact_key(text: str) -> str:
    """A unit string tidied but not case-folded: NFKC, micro signs to `u`, no spaces."""
    text = _plain(text)
    text = text.replace("µ", "u").replace("μ", "u").replace("×", "x")
    return re.sub(r"\s+", "", text)


def _key(text: str) -> str:
    """Fold a unit string for synonym lookup: `exact_key`, then lower case."""
    return exact_key(text).casefold()


def normalise_unit(text: str) -> str:
    """The synonym-table key of a unit string (exposed so maps store the same keys)."""
    return _key(text)


@lru_cache(maxsize=4096)
def _parse(code: str) -> Any:
    """A pint quantity for a UCUM code; annotations alone (`{score}`) are dimensionless."""
    if re.fullmatch(r"\{[^}]*\}", code):
        code = "1"
    try:
        quantity = _ureg().from_ucum(code)
        quantity.dimensionality  # noqa: B018 - forces errors from bare annotations out here
    except Exception as exc:  # ucumvert raises lark and pint errors of many kinds
        raise UnitError(f"{code!r} is not a UCUM unit") from exc
    return quantity


def is_ucum(code: str) -> bool:
    key = f"ucum:{code}"
    answer = _known().get(key)
    if answer is None:
        try:
            _parse(code)
            answer = True
        except UnitError:
            answer = False
        _remember(key, answer)
    return bool(answer)


def to_ucum(text: str | None, synonyms: dict[str, str] | None = None) -> str | None:
    """The UCUM code for a local unit string, or None when it cannot be read.

    `synonyms` maps `exact_key` spellings to UCUM. Order: a synonym spelled exactly so; a
    `x10^9/L`-style power of ten; the string itself when it is valid UCUM (case matters in UCUM:
    `Mg` is a megagram); last, synonyms and the built-in list compared without case.
    """
    if text is None:
        return None
    raw = text.strip()
    if not raw:
        return None
    candidate = exact_key(raw)
    table = synonyms or {}
    if candidate in table:
        return table[candidate]
    match = _POWER.match(candidate)
    if match:
        rest = match.group(2)
        rest_code = _BUILTIN_SYNONYMS.get(_key(rest), rest)
        code = _usual_spelling(f"10*{match.group(1)}{rest_code}")
        return code if is_ucum(code) else None
    folded = candidate.casefold()
    if is_ucum(candidate):
        canonical = _BUILTIN_SYNONYMS.get(folded)
        if canonical and canonical != candidate and _same(candidate, canonical):
            return canonical  # `g/dl` is valid UCUM too; file it as the usual `g/dL`
        tidy = _usual_spelling(candidate)
        if tidy != candidate and is_ucum(tidy) and _same(candidate, tidy):
            return tidy  # `10*9/l`, `ng/ml`, `g.l-1`: file as `10*9/L`, `ng/mL`, `g/L`
        return candidate
    for key, value in table.items():
        if key.casefold() == folded:
            return value
    return _BUILTIN_SYNONYMS.get(folded)


# a litre symbol, with an optional SI prefix, standing alone after `/`, `.` or a digit
_LITRE = re.compile(r"(?:(?<=^)|(?<=[/.*\d]))([munpfdc]?)l(?=$|[/.\-\d^*])")
_PER = re.compile(r"^([^/]+)\.([A-Za-z]+)-1$")  # `g.L-1`: `g/L`


def _usual_spelling(code: str) -> str:
    """A UCUM code in the spelling laboratories and FHIR servers use: `L` for the litre
    (UCUM takes `l` too), `/` for a single `-1` power."""
    code = _LITRE.sub(lambda m: m.group(1) + "L", code)
    return _PER.sub(r"\1/\2", code)


def other_reading(text: str, synonyms: dict[str, str] | None = None) -> str | None:
    """The UCUM code a unit string means when read without case, if that differs from what
    `to_ucum` reads: `C` is the coulomb in UCUM but degrees Celsius on a temperature."""
    folded = exact_key(text.strip()).casefold()
    for key, value in (synonyms or {}).items():
        if key.casefold() == folded:
            return value
    return _BUILTIN_SYNONYMS.get(folded)


def _same(a: str, b: str) -> bool:
    try:
        return conversion(a, b) == Conversion(1.0)
    except UnitError:
        return False


_MASS = "[mass] / [length] ** 3"
_SUBSTANCE = "[substance] / [length] ** 3"


def _dimension(code: str) -> str:
    key = f"dimension:{code}"
    answer = _known().get(key)
    if answer is None:
        try:
            answer = [str(_parse(code).dimensionality)]
        except UnitError as exc:
            answer = {"error": str(exc)}
        _remember(key, answer)
    if isinstance(answer, dict):
        raise UnitError(answer["error"])
    return str(answer[0])


@lru_cache(maxsize=4096)
def conversion(source: str, target: str, molar_mass: float | None = None) -> Conversion:
    """How to turn a value in UCUM `source` into UCUM `target`.

    Mass and substance concentrations convert into each other only with `molar_mass` (g/mol).
    Raises `UnitError` when the units are unreadable or measure different things.
    """
    if source == target:
        return Conversion(1.0)
    key = "conversion:" + json.dumps([source, target, molar_mass])
    answer = _known().get(key)
    if answer is None:
        try:
            found = _conversion(source, target, molar_mass)
            answer = [found.scale, found.offset]
        except UnitError as exc:
            answer = {"error": str(exc)}
        _remember(key, answer)
    if isinstance(answer, dict):
        raise UnitError(answer["error"])
    return Conversion(float(answer[0]), float(answer[1]))


def _conversion(source: str, target: str, molar_mass: float | None) -> Conversion:
    src = _parse(source)
    dst = _parse(target)
    ureg = _ureg()
    src_dim, dst_dim = str(src.dimensionality), str(dst.dimensionality)
    try:
        if src_dim == dst_dim:

            def at(x: float) -> float:
                q = ureg.Quantity(x * float(src.magnitude), src.units)
                return float(q.to(dst.units).magnitude) / float(dst.magnitude)

            f0, f1 = at(0.0), at(1.0)
            return Conversion(f1 - f0, f0)
        if molar_mass and {src_dim, dst_dim} == {_MASS, _SUBSTANCE}:
            g_per_l = ureg.gram / ureg.liter
            mol_per_l = ureg.mole / ureg.liter
            if src_dim == _MASS:
                in_g = float((1.0 * src).to(g_per_l).magnitude)
                scale = (in_g / molar_mass) / float((1.0 * dst).to(mol_per_l).magnitude)
            else:
                in_mol = float((1.0 * src).to(mol_per_l).magnitude)
                scale = (in_mol * molar_mass) / float((1.0 * dst).to(g_per_l).magnitude)
            return Conversion(scale)
    except UnitError:
        raise
    except Exception as exc:  # pint's DimensionalityError and friends
        raise UnitError(f"cannot convert {source} to {target}: {exc}") from exc
    hint = " (needs the analyte's molar mass)" if {src_dim, dst_dim} == {_MASS, _SUBSTANCE} else ""
    raise UnitError(f"{source} ({src_dim}) cannot be converted to {target} ({dst_dim}){hint}")


def convert(value: float, source: str, target: str, molar_mass: float | None = None) -> float:
    """`value` in UCUM `source` expressed in UCUM `target` (see `conversion`)."""
    return conversion(source, target, molar_mass)(value)


def dimension(code: str) -> str:
    """The physical dimension of a UCUM code as text (`[mass] / [length] ** 3`)."""
    return _dimension(code)
