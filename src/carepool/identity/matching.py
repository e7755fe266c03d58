"""Probabilistic record linkage with splink: a Fellegi–Sunter model over the matching table.

Pure with respect to the platform: rows from `normalise.features` go in, scored pairs come out.
splink runs on an in-process DuckDB (no server, nothing downloaded at run time); the same settings
run on Spark through splink's `SparkAPI` when a province outgrows one machine.

The model compares seven fields, each in levels from exact to different; a level has m (how often
records of the same person fall in it) and u (how often records of different people do). Their
priors below come from how Chinese demographic data behaves (common names, shared family phones
and addresses, 11-digit mobiles, check-digit ids) and give these weights (log2 m/u):

    field     level                          m       u        weight
    name      same characters                0.70    4e-4     +10.8
              same pinyin, other characters  0.02    2e-4      +6.6
              same pinyin (or Latin letters) 0.16    8e-4      +7.6
              surname/given swapped          0.02    1e-4      +7.6
              two adjacent letters swapped   0.03    1e-4      +8.2
              same sound (Latin script)      0.02    5e-4      +5.3
              pinyin Jaro-Winkler >= 0.88    0.03    3e-3      +3.3
              different                      0.02    0.995     -5.6
    sex       same / different               0.98/0.02  0.5/0.5  +1.0/-4.6
    birth     same date                      0.92    4e-5     +14.5
              day and month swapped          0.02    3e-5      +9.4
              one digit off or swapped       0.05    5e-4      +6.6
              different                      0.01    0.9994    -6.6
    nat. id   same valid id                  0.98    1e-6     +19.9
              both valid, different          0.02    ~1        -5.6
    ids       same issuer and number         0.20    1e-6     +17.6
              same issuer, other number      0.01    0.05      -2.3
              no issuer in common            0.79    0.95      -0.3
    phone     same                           0.70    2e-4     +11.8
              one digit off                  0.06    3e-4      +7.6
              different                      0.24    0.9995    -2.1
    address   same                           0.45    2e-3      +7.8
              Jaro-Winkler >= 0.9            0.20    0.01      +4.3
              different                      0.35    0.988     -1.5

`ids` holds every identifier but the resident id as `issuer|number` (a passport of one
country, another country's id, a member's MRN): a number only counts with its issuer.
Digits in a name written in characters are part of it (`测试22` is not `测试2`).

A missing value counts neither way. The prior probability that two records match is one over
the population the consortium serves (`population`, default a county of one million, or the
number of records if larger), so a pair needs about +20 of evidence to reach even odds.

Training (`training`): `priors` uses the table above; `u` re-estimates u by random sampling of
record pairs (robust, needs no labels: nearly every random pair is a non-match); `em` also
estimates m by expectation maximisation over pairs blocked on birth date and on pinyin name.
The u of "same national id" stays fixed at its prior: an id is unique, so the share of random
pairs agreeing on it is almost entirely made of true matches (about 1/N of all pairs), and a
sample would mistake them for chance agreement and weaken the strongest evidence there is.
`auto` (the default) samples u once there are `min_training_records` records and keeps the m
priors: EM needs thousands of true matches to beat sensible priors, and a bad EM fit links
strangers silently. Levels the sample never observed keep their prior.

Decisions: a pair at or above `Thresholds.auto_link` is linked automatically if it also passes
the guard (the names agree, or only look alike but an identifier agrees; the national ids do not
conflict; the sexes agree unless an identifier does; an identifier or the birth date agrees, a
swapped or one-digit-off date counting as agreeing; with no birth date, the same phone and
address). Pairs from one member are never
linked automatically (a member's own duplicate registrations are for its staff to confirm), nor
is a pair whose persons already hold records of one same member. `score` is the same model in
Python, for one record at a time (`do_link_records`, `do_relink_changed`). Pairs at or above
`Thresholds.review` that are not linked go to the review queue;
below it, nothing happens.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

TRAINING_MODES = ("auto", "priors", "u", "em")
DEFAULT_POPULATION = 1_000_000


class TrainingError(ValueError):
    """The options do not describe a model that can be trained."""


@dataclass(frozen=True)
class Thresholds:
    """Match-probability thresholds: automatic link, human review, and below review no link."""

    auto_link: float = 0.99
    review: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 < self.review <= self.auto_link <= 1.0:
            raise TrainingError(
                f"thresholds must satisfy 0 < review ({self.review}) <= auto_link "
                f"({self.auto_link}) <= 1"
            )

    def as_dict(self) -> dict[str, float]:
        return {"auto_link": self.auto_link, "review": self.review}


@dataclass(frozen=True)
class ModelOptions:
    population: int = DEFAULT_POPULATION
    training: str = "auto"
    min_training_records: int = 2000
    u_max_pairs: float = 2e6
    seed: int = 42

    def __post_init__(self) -> None:
        if self.training not in TRAINING_MODES:
            raise TrainingError(
                f"training {self.training!r} is not one of {', '.join(TRAINING_MODES)}"
            )
        if self.population < 1:
            raise TrainingError("population must be at least 1")


Row = dict[str, Any]
Predicate = Callable[[Row, Row], bool]


@dataclass(frozen=True)
class Level:
    """One comparison level, written twice side by side: as SQL for splink (batch runs) and
    as a Python predicate over two features rows (incremental links and re-evaluation)."""

    label: str
    sql: str | None  # None: the else level
    m: float
    u: float
    fix_u: bool = False  # keep the prior u when sampling (see the module docstring)
    py: Predicate | None = None  # None: the else level

    @property
    def weight(self) -> float:
        return math.log2(self.m / self.u)


@dataclass(frozen=True)
class Field:
    name: str
    null_sql: str
    levels: tuple[Level, ...]  # most to least similar, the last one the else level
    columns: tuple[str, ...] = ()  # a value missing in one of these: the missing level


def _jw(col: str, threshold: float) -> str:
    return f"jaro_winkler_similarity({col}_l, {col}_r) >= {threshold}"


def _dl1(col: str) -> str:
    return f"damerau_levenshtein({col}_l, {col}_r) <= 1"


def _eq(col: str) -> Predicate:
    return lambda a, b: a[col] is not None and a[col] == b[col]


def _py_jw(col: str, threshold: float) -> Predicate:
    from rapidfuzz.distance import JaroWinkler

    return lambda a, b: JaroWinkler.similarity(a[col], b[col]) >= threshold


def _py_dl1(col: str) -> Predicate:
    from rapidfuzz.distance import DamerauLevenshtein

    return lambda a, b: DamerauLevenshtein.distance(a[col], b[col]) <= 1


def _py_transposed(a: Row, b: Row) -> bool:
    """One pair of adjacent letters swapped (`maria`/`mraia`): a keying slip, not a name."""
    from rapidfuzz.distance import OSA, Levenshtein

    x, y = a["name_key"], b["name_key"]
    return bool(OSA.distance(x, y) == 1 and Levenshtein.distance(x, y) == 2)


def _py_swapped(a: Row, b: Row) -> bool:
    x, y = a["dob"], b["dob"]
    return bool(x[:4] == y[:4] and x[4:6] == y[6:8] and x[6:8] == y[4:6])


def _split(value: Any) -> set[str]:
    return set(value.split(" ")) if value else set()


def _py_same_id(a: Row, b: Row) -> bool:
    return bool(_split(a["ids"]) & _split(b["ids"]))


def _py_same_issuer(a: Row, b: Row) -> bool:
    issuers = {k.split("|", 1)[0] for k in _split(a["ids"])}
    return any(k.split("|", 1)[0] in issuers for k in _split(b["ids"]))


_SQL_IDS_L = "string_split(ids_l, ' ')"
_SQL_IDS_R = "string_split(ids_r, ' ')"
_SQL_ISSUERS = (
    "list_distinct(list_transform(string_split({c}, ' '), lambda x: split_part(x, '|', 1)))"
)


FIELDS: tuple[Field, ...] = (
    Field(
        "name",
        "name_key_l IS NULL OR name_key_r IS NULL",
        (
            Level("same characters", "name_han_l = name_han_r", 0.70, 4e-4, py=_eq("name_han")),
            Level(
                "same pinyin, other characters",
                "name_han_l <> name_han_r AND name_key_l = name_key_r",
                0.02,
                2e-4,
                py=lambda a, b: (
                    a["name_han"] is not None
                    and b["name_han"] is not None
                    and a["name_han"] != b["name_han"]
                    and a["name_key"] == b["name_key"]
                ),
            ),
            Level("same pinyin", "name_key_l = name_key_r", 0.16, 8e-4, py=_eq("name_key")),
            Level(
                "surname and given name swapped",
                "name_key_l = name_rev_r OR name_rev_l = name_key_r",
                0.02,
                1e-4,
                py=lambda a, b: a["name_key"] == b["name_rev"] or a["name_rev"] == b["name_key"],
            ),
            Level(
                "letters transposed",
                "damerau_levenshtein(name_key_l, name_key_r) = 1 AND "
                "levenshtein(name_key_l, name_key_r) = 2",
                0.03,
                1e-4,
                py=_py_transposed,
            ),
            Level(
                "same sound",
                "name_phonetic_l = name_phonetic_r",
                0.02,
                5e-4,
                py=lambda a, b: (
                    a["name_phonetic"] is not None and a["name_phonetic"] == b["name_phonetic"]
                ),
            ),
            Level("similar pinyin", _jw("name_key", 0.88), 0.03, 3e-3, py=_py_jw("name_key", 0.88)),
            Level("different", None, 0.02, 0.995),
        ),
        ("name_key",),
    ),
    Field(
        "sex",
        "sex_l IS NULL OR sex_r IS NULL",
        (
            Level("same", "sex_l = sex_r", 0.98, 0.5, py=_eq("sex")),
            Level("different", None, 0.02, 0.5),
        ),
        ("sex",),
    ),
    Field(
        "dob",
        "dob_l IS NULL OR dob_r IS NULL",
        (
            Level("same date", "dob_l = dob_r", 0.92, 4e-5, py=_eq("dob")),
            Level(
                "day and month swapped",
                "substr(dob_l, 1, 4) = substr(dob_r, 1, 4) AND substr(dob_l, 5, 2) = "
                "substr(dob_r, 7, 2) AND substr(dob_l, 7, 2) = substr(dob_r, 5, 2)",
                0.02,
                3e-5,
                py=_py_swapped,
            ),
            Level("one digit off or swapped", _dl1("dob"), 0.05, 5e-4, py=_py_dl1("dob")),
            Level("different", None, 0.01, 0.99943),
        ),
        ("dob",),
    ),
    Field(
        "nid",
        "nid_l IS NULL OR nid_r IS NULL",
        (
            Level("same national id", "nid_l = nid_r", 0.98, 1e-6, fix_u=True, py=_eq("nid")),
            Level("different national ids", None, 0.02, 0.999999),
        ),
        ("nid",),
    ),
    Field(
        "ids",
        "ids_l IS NULL OR ids_r IS NULL",
        (
            Level(
                "same identifier",
                f"len(list_intersect({_SQL_IDS_L}, {_SQL_IDS_R})) > 0",
                0.20,
                1e-6,
                fix_u=True,
                py=_py_same_id,
            ),
            Level(
                "same issuer, other number",
                f"len(list_intersect({_SQL_ISSUERS.format(c='ids_l')}, "
                f"{_SQL_ISSUERS.format(c='ids_r')})) > 0",
                0.01,
                0.05,
                py=_py_same_issuer,
            ),
            Level("no issuer in common", None, 0.79, 0.949999),
        ),
        ("ids",),
    ),
    Field(
        "phone",
        "phone_l IS NULL OR phone_r IS NULL",
        (
            Level("same", "phone_l = phone_r", 0.70, 2e-4, py=_eq("phone")),
            Level("one digit off", _dl1("phone"), 0.06, 3e-4, py=_py_dl1("phone")),
            Level("different", None, 0.24, 0.9995),
        ),
        ("phone",),
    ),
    Field(
        "address",
        "address_l IS NULL OR address_r IS NULL",
        (
            Level("same", "address_l = address_r", 0.45, 2e-3, py=_eq("address")),
            Level("similar", _jw("address", 0.9), 0.20, 0.01, py=_py_jw("address", 0.9)),
            Level("different", None, 0.35, 0.988),
        ),
        ("address",),
    ),
)
FIELD_NAMES = tuple(f.name for f in FIELDS)

# Candidate pairs are generated by these rules (their union), never by the full cross product.
BLOCKING_RULES: tuple[tuple[str, ...] | str, ...] = (
    ("nid",),
    ("ids",),
    ("phone",),
    # Records without a birth date still meet on name and address (and on ids and phone).
    ("name_key", "address"),
    ("dob", "name_initial"),
    ("name_key", "birth_year"),
    "l.name_key = r.name_rev AND l.birth_year = r.birth_year",
)


@dataclass(frozen=True)
class LevelHit:
    """Where a scored pair fell for one field (None: a value was missing)."""

    field: str
    level: str | None
    weight: float
    rank: int  # 0 for the most similar level; -1 when missing


@dataclass
class ScoredPair:
    a: str
    b: str
    probability: float
    weight: float
    levels: dict[str, LevelHit]

    def level(self, name: str) -> LevelHit:
        return self.levels[name]

    def detail(self) -> dict[str, Any]:
        return {
            name: {"level": hit.level, "weight": round(hit.weight, 2)}
            for name, hit in self.levels.items()
        }


@dataclass
class LinkageResult:
    pairs: list[ScoredPair]
    model: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)


# Name levels that two different people's names reach often (siblings, homophones).
LOOK_ALIKE = ("same pinyin, other characters", "same sound", "similar pinyin")


def guard(pair: ScoredPair) -> str | None:
    """Why a pair may not be linked automatically however high it scores (None: it may)."""
    name = pair.level("name")
    if name.rank < 0 or name.level == "different":
        return "the names do not agree"
    nid = pair.level("nid")
    if nid.level == "different national ids":
        return "the national ids differ"
    same_id = nid.level == "same national id" or pair.level("ids").level == "same identifier"
    if name.level in LOOK_ALIKE and not same_id:
        # 大明 and 小明 (twins, siblings) differ in one syllable, 张伟 and 张薇 only in writing:
        # only an id tells them apart.
        return "the names only look alike and no identifier agrees"
    if pair.level("sex").level == "different" and not same_id:
        # Twins of the other sex share everything else; a wrong sex alone is for a person.
        return "the sexes differ and no identifier agrees"
    dob = pair.level("dob")
    if same_id or dob.level in ("same date", "day and month swapped", "one digit off or swapped"):
        return None
    household = pair.level("phone").level == "same" and pair.level("address").level == "same"
    if dob.rank < 0 and household:
        return None  # no birth date: the same name, phone and address instead
    return "neither an identifier nor the birth date agrees"


def label(levels: dict[str, dict[str, Any]]) -> str | None:
    """What a reviewer should know first about a pair, from its per-field levels (`detail`)."""

    def lv(name: str) -> str | None:
        return (levels.get(name) or {}).get("level")

    household = lv("phone") == "same" or lv("address") == "same"
    if lv("dob") == "same date" and household and lv("name") in (*LOOK_ALIKE, "different"):
        return "possible twins or siblings: same birth date and household, other given name"
    if lv("name") in ("same characters", "same pinyin") and (
        lv("nid") == "different national ids" or lv("dob") == "different"
    ):
        return "possible namesakes: the same name, but other ids or birth date"
    if lv("dob") is None and lv("nid") is None:
        return "no birth date or national id to compare: decided on name and contacts"
    return None


def score(a: Row, b: Row, *, population: int = DEFAULT_POPULATION) -> ScoredPair:
    """Score one pair of features rows with the prior model, in Python (no DuckDB): the same
    levels and weights as `link` with `training="priors"`, for one record at a time."""
    levels: dict[str, LevelHit] = {}
    prior = 1.0 / max(population, 2)
    total = math.log2(prior / (1.0 - prior))
    for f in FIELDS:
        if any(a.get(c) is None or b.get(c) is None for c in f.columns):
            levels[f.name] = LevelHit(f.name, None, 0.0, -1)
            continue
        for rank, lv in enumerate(f.levels):
            if lv.py is None or lv.py(a, b):
                levels[f.name] = LevelHit(f.name, lv.label, lv.weight, rank)
                total += lv.weight
                break
    x, y = (a["unique_id"], b["unique_id"])
    if x > y:
        x, y = y, x
    odds = 2.0**total
    return ScoredPair(x, y, odds / (1.0 + odds), total, levels)


def _settings(options: ModelOptions, records: int) -> Any:
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl
    from splink import SettingsCreator, block_on

    comparisons: list[Any] = []
    for f in FIELDS:
        levels: list[Any] = [cll.CustomLevel(f.null_sql, "missing").configure(is_null_level=True)]
        for lv in f.levels:
            creator = cll.ElseLevel() if lv.sql is None else cll.CustomLevel(lv.sql, lv.label)
            levels.append(
                creator.configure(
                    m_probability=lv.m, u_probability=lv.u, fix_u_probability=lv.fix_u
                )
            )
        comparisons.append(cl.CustomComparison(comparison_levels=levels, output_column_name=f.name))
    rules: list[Any] = [
        block_on(*rule) if isinstance(rule, tuple) else rule for rule in BLOCKING_RULES
    ]
    population = max(options.population, records, 2)
    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="unique_id",
        probability_two_random_records_match=1.0 / population,
        comparisons=comparisons,
        blocking_rules_to_generate_predictions=rules,
        # Matching columns bring the comparison levels (gamma_*); intermediate columns the
        # weight of each field (mw_*).
        retain_matching_columns=True,
        retain_intermediate_calculation_columns=True,
        additional_columns_to_retain=[],
    )


def _model_summary(linker: Any, mode: str) -> dict[str, Any]:
    settings = linker.misc.save_model_to_json()
    fields: dict[str, list[dict[str, Any]]] = {}
    for comparison in settings.get("comparisons", []):
        rows = []
        for level in comparison.get("comparison_levels", []):
            if level.get("is_null_level"):
                continue
            m, u = level.get("m_probability"), level.get("u_probability")
            rows.append(
                {
                    "level": level.get("label_for_charts", ""),
                    "m": m,
                    "u": u,
                    "weight": round(math.log2(m / u), 3) if m and u else None,
                }
            )
        fields[comparison.get("output_column_name", "")] = rows
    return {
        "engine": "splink/duckdb",
        "training": mode,
        "probability_two_random_records_match": settings.get(
            "probability_two_random_records_match"
        ),
        "fields": fields,
    }


def _hits(row: dict[str, Any], i: int) -> dict[str, LevelHit]:
    out = {}
    for f in FIELDS:
        gamma = row[f"gamma_{f.name}"][i]
        if gamma is None or gamma < 0:
            out[f.name] = LevelHit(f.name, None, 0.0, -1)
            continue
        rank = len(f.levels) - 1 - int(gamma)
        weight = float(row[f"mw_{f.name}"][i] or 0.0)
        out[f.name] = LevelHit(f.name, f.levels[rank].label, weight, rank)
    return out


def link(
    rows: Sequence[dict[str, Any]],
    *,
    thresholds: Thresholds,
    options: ModelOptions | None = None,
    progress: Callable[[str], None] | None = None,
) -> LinkageResult:
    """Score every candidate pair of `rows` at or above `thresholds.review` (splink on DuckDB).

    `rows` are `normalise.features` rows. Deterministic for the same rows and options.
    """
    options = options or ModelOptions()
    timings: dict[str, float] = {}
    if len(rows) < 2:
        return LinkageResult([], {"engine": "splink/duckdb", "training": "none"}, timings)
    t0 = time.perf_counter()
    from splink import DuckDBAPI, Linker, block_on

    from carepool.identity.normalise import FEATURE_COLUMNS

    columns = {c: [r[c] for r in rows] for c in FEATURE_COLUMNS}
    import pyarrow as pa

    table = pa.table({c: pa.array(v, type=pa.string()) for c, v in columns.items()})
    db_api = DuckDBAPI()
    frame = db_api.register(table, table_name="identity_records")
    linker = Linker(frame, _settings(options, len(rows)), log_level=logging.WARNING)
    timings["setup"] = time.perf_counter() - t0

    mode = options.training
    notes: list[str] = []
    if mode == "auto":
        mode = "u" if len(rows) >= options.min_training_records else "priors"
    if mode == "em" and len(rows) < options.min_training_records:
        notes.append(
            f"EM needs at least {options.min_training_records} records, there are {len(rows)}: "
            "the prior m and u probabilities were used"
        )
        mode = "priors"
    if mode in ("u", "em"):
        if progress:
            progress("train")
        t1 = time.perf_counter()
        linker.training.estimate_u_using_random_sampling(
            max_pairs=options.u_max_pairs, seed=options.seed
        )
        if mode == "em":
            try:
                for rule in (block_on("dob"), block_on("name_key")):
                    linker.training.estimate_parameters_using_expectation_maximisation(
                        rule, estimate_without_term_frequencies=True
                    )
            except Exception as exc:  # splink refuses degenerate fits (e.g. an m of zero)
                notes.append(
                    f"EM failed ({type(exc).__name__}: {str(exc)[:200]}): the prior m "
                    "probabilities and the sampled u probabilities were used"
                )
                linker = Linker(frame, _settings(options, len(rows)), log_level=logging.WARNING)
                linker.training.estimate_u_using_random_sampling(
                    max_pairs=options.u_max_pairs, seed=options.seed
                )
                mode = "u"
        timings["train"] = time.perf_counter() - t1
    if progress:
        progress("score")
    t2 = time.perf_counter()
    predictions = linker.inference.predict(threshold_match_probability=thresholds.review)
    data = predictions.as_dict()
    timings["score"] = time.perf_counter() - t2
    pairs = []
    for i in range(len(data["unique_id_l"])):
        a, b = data["unique_id_l"][i], data["unique_id_r"][i]
        if a > b:
            a, b = b, a
        pairs.append(
            ScoredPair(
                a=a,
                b=b,
                probability=float(data["match_probability"][i]),
                weight=float(data["match_weight"][i]),
                levels=_hits(data, i),
            )
        )
    pairs.sort(key=lambda p: (-p.probability, p.a, p.b))
    model = _model_summary(linker, mode)
    if options.training != mode:
        model["requested_training"] = options.training
    if notes:
        model["notes"] = notes
    db_api.duckdb_con.close()
    return LinkageResult(pairs, model, timings)
