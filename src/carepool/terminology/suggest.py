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
    return " ".join(re.sub(r"[\-_/,;:()\[\]]+", " ", text).split())


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


def _score(query: str, choice: str, *, score_cutoff: float | None = None, **_: object) -> float:
    """WRatio, except that short abbreviations (`AST`, `GLU`) must match as a whole: a partial
    match of three letters inside a long name says nothing."""
    if min(len(choice), len(query)) <= 4:
        return float(fuzz.ratio(query, choice))
    return float(fuzz.WRatio(query, choice))


def suggest(
    term: str, kind: str = "code", *, limit: int = 5, seed: Seed | None = None
) -> list[Suggestion]:
    """The best `limit` targets for `term`, one per target, best first."""
    seed = seed or load_seed()
    keys, meta = _choices(kind, seed)
    query = normalise_unit(term) if kind == "unit" else _fold(term)
    if not query:
        return []
    queries = [query]
    if _CJK.search(term):
        queries.append(_pinyin(term))
    best: dict[str, Suggestion] = {}
    for q in queries:
        for _choice, score, index in process.extract(
            q, keys, scorer=_score, limit=limit * 8, score_cutoff=55
        ):
            target, display, name = meta[index]
            if target not in best or score > best[target].score:
                best[target] = Suggestion(target, display, round(float(score), 1), name)
    ranked = sorted(best.values(), key=lambda s: (-s.score, s.target))
    return ranked[:limit]
