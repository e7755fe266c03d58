"""Ranked suggestions for an unmapped term (pure): fuzzy matching over names, Chinese and pinyin.

Each candidate target (a LOINC code, a UCUM unit, a department code) is known by several names:
the seed's displays and local names, plus the pinyin of every Chinese name, so `xuehongdanbai`,
`血红蛋白浓度` and `Haemoglobin` all find 718-7. Scores come from rapidfuzz (0-100).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from rapidfuzz import fuzz, process

from carepool.terminology.seed import Seed, load_seed
from carepool.terminology.units import normalise_unit

_CJK = re.compile(r"[\u3400-\u9fff]")


@dataclass(frozen=True)
class Suggestion:
    target: str
    display: str
    score: float
    matched: str  # the name that matched best


def _pinyin(text: str) -> str:
    from pypinyin import lazy_pinyin

    return "".join(lazy_pinyin(text)).casefold()


def _fold(text: str) -> str:
    """Case-folded, NFKC, words kept apart (token-based scorers need the spaces)."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(re.sub(r"[\-_/,;:()\[\]+*]+", " ", text).split())


_CACHE: dict[tuple[str, int], tuple[list[str], list[tuple[str, str, str]]]] = {}


def _choices(kind: str, seed: Seed) -> tuple[list[str], list[tuple[str, str, str]]]:
    cached = _CACHE.get((kind, id(seed)))
    if cached is None:
        cached = _CACHE[(kind, id(seed))] = _build_choices(kind, seed)
    return cached


def _build_choices(kind: str, seed: Seed) -> tuple[list[str], list[tuple[str, str, str]]]:
    """Folded choice strings and, per choice, (target, display, name as written)."""
    keys: list[str] = []
    meta: list[tuple[str, str, str]] = []

    fold = normalise_unit if kind == "unit" else _fold

    def add(target: str, display: str, name: str) -> None:
        if not name:
            return
        keys.append(fold(name))
        meta.append((target, display, name))
        if _CJK.search(name):
            keys.append(_pinyin(name))
            meta.append((target, display, name))

    if kind == "code":
        for a in seed.analytes.values():
            for name in (a.display, a.display_zh, *a.names):
                add(a.loinc, a.display, name)
        for folded, code in sorted(seed.names.items()):
            if code not in seed.analytes and code in seed.loinc:
                # an equivalent with names of its own (urea nitrogen: its molar mass differs)
                add(code, seed.loinc[code].name, folded)
    elif kind == "unit":
        units = {a.unit for a in seed.analytes.values()} | set(seed.units.values())
        for unit in sorted(units):
            add(unit, unit, unit)
        for spelled, unit in seed.units.items():
            add(unit, unit, spelled)
    else:
        for code, names in seed.department_names.items():
            display = names[1] if len(names) > 1 else code
            for name in names:
                add(code, display, name)
    return keys, meta


_LENGTHS: dict[tuple[str, int], tuple[dict[int, str], dict[int, str]]] = {}


def _by_length(kind: str, seed: Seed) -> tuple[dict[int, str], dict[int, str]]:
    """The choices of at most four characters and the longer ones, by their index."""
    cached = _LENGTHS.get((kind, id(seed)))
    if cached is None:
        keys, _meta = _choices(kind, seed)
        short = {i: k for i, k in enumerate(keys) if len(k) <= 4}
        long = {i: k for i, k in enumerate(keys) if len(k) > 4}
        cached = _LENGTHS[(kind, id(seed))] = (short, long)
    return cached


# -- reading a local test name -------------------------------------------------------------------
#
# Laboratory systems decorate a test's name: the abbreviation or the unit in brackets
# (`钾(K)`, `收缩压(mmHg)`), the method (`肌酐(酶法)`), the specimen (`血清钾`, `Potassium,
# serum`), the word for "assay" (`测定`), a marker (`*`). The name is scored whole and as each of
# its parts with the decorations taken off; the best part wins. The specimen and "percent" or
# "count" words then move candidates of that specimen or property up, the others down.

_BRACKETS = re.compile(r"[(（\[【]([^)）\]】]*)[)）\]】]")
_MARKERS = re.compile(r"[*★▲△#]+$|^[*★▲△]+")
_NOISE_ZH = re.compile(r"(测定|检测|检查|定量|测量|试验|含量)$")
_NOISE_EN = re.compile(r"\b(level|test|assay|measured|measurement|result|3rd generation)\b", re.I)
_SPECIMEN_WORDS = re.compile(r"\b(serum|plasma|whole blood|blood)\b|血清|血浆|全血", re.I)
_BLOOD_CUE = re.compile(r"全血|末梢|指尖|毛细血管|whole blood|[,(]\s*blood\b|\bblood\s*\)?$", re.I)
_SERUM_CUE = re.compile(r"血清|血浆|serum|plasma|ser/plas", re.I)
_FRACTION_CUE = re.compile(r"%|百分|比率|percent", re.I)
_COUNT_CUE = re.compile(r"#|绝对值|absolute|\bcount\b", re.I)
_CUE_POINTS = 6.0
_BLOOD = frozenset({"Bld", "BldA", "BldC", "BldV"})
_SERUM = frozenset({"Ser", "Plas", "Ser/Plas"})


def _variants(term: str) -> list[str]:
    """The name whole, without its decorations, and each of its parts (bracketed or not)."""
    text = unicodedata.normalize("NFKC", term).strip()
    parts = [text]
    inner = [p for p in _BRACKETS.findall(text) if p.strip()]
    outer = _BRACKETS.sub(" ", text).strip()
    parts += [outer, *inner]
    for sep in (" - ", "-", " ", ","):
        if sep in outer and not outer.isascii():
            parts += [p for p in outer.split(sep) if p.strip()]
            break
    out: list[str] = []
    for part in parts:
        for candidate in (part, _clean(part)):
            if candidate and candidate not in out:
                out.append(candidate)
    return out


def _clean(text: str) -> str:
    text = _MARKERS.sub("", text.strip())
    text = _NOISE_ZH.sub("", text) if len(text) > 2 else text
    text = _NOISE_EN.sub(" ", text)
    if len(text) > 2:
        text = re.sub(r"(?<=[\u3400-\u9fff])量$", "", text)
    bare = _SPECIMEN_WORDS.sub(" ", text)
    return " ".join((bare if bare.strip(" ,;") else text).replace(",", " ").split())


def _cue_points(term: str, target: str, seed: Seed) -> float:
    row = seed.loinc.get(target)
    if row is None:
        return 0.0
    points = 0.0
    blood, serum = bool(_BLOOD_CUE.search(term)), bool(_SERUM_CUE.search(term))
    if blood != serum and row.system in _BLOOD | _SERUM:
        points += _CUE_POINTS if (row.system in _BLOOD) == blood else -_CUE_POINTS
    fraction, count = bool(_FRACTION_CUE.search(term)), bool(_COUNT_CUE.search(term))
    if fraction != count and row.property in ("NFr", "NCnc"):
        points += _CUE_POINTS if (row.property == "NFr") == fraction else -_CUE_POINTS
    return points


def suggest(
    term: str, kind: str = "code", *, limit: int = 5, seed: Seed | None = None
) -> list[Suggestion]:
    """The best `limit` targets for `term`, one per target, best first."""
    seed = seed or load_seed()
    _keys, meta = _choices(kind, seed)
    fold = normalise_unit if kind == "unit" else _fold
    texts = _variants(term) if kind == "code" else [term]
    queries: list[str] = []
    for text in texts:
        for q in (fold(text), _pinyin(text) if _CJK.search(text) else ""):
            if q and q not in queries:
                queries.append(q)
    if not queries:
        return []
    best: dict[str, Suggestion] = {}
    short, long = _by_length(kind, seed)
    for q in queries:
        # short abbreviations (`AST`, `GLU`) must match as a whole (`ratio`): a partial match of
        # three letters inside a long name says nothing. rapidfuzz's own scorers: a Python
        # scorer is ten times slower
        found = process.extract(q, short, scorer=fuzz.ratio, limit=limit * 8, score_cutoff=55)
        found += process.extract(
            q,
            long,
            scorer=fuzz.ratio if len(q) <= 4 else fuzz.WRatio,
            limit=limit * 8,
            score_cutoff=55,
        )
        for _choice, score, index in found:
            target, display, name = meta[index]
            if target not in best or score > best[target].score:
                best[target] = Suggestion(target, display, round(float(score), 1), name)
    if kind == "code":
        for target, s in best.items():
            points = _cue_points(term, target, seed)
            if points:
                best[target] = Suggestion(target, s.display, round(s.score + points, 1), s.matched)
    ranked = sorted(best.values(), key=lambda s: (-s.score, s.target))
    return ranked[:limit]
