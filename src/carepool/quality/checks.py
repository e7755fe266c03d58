"""The check registry: every data-quality check, written once as an Ibis expression.

Checks follow the Kahn framework as OHDSI's DataQualityDashboard applies it: a category
(conformance, completeness, plausibility, plus timeliness and cross-member consistency), a
subcategory, a target table, a threshold (the percent of rows allowed to fail) and a severity.

A check is pure: `build(tables, params)` takes Ibis table expressions of the *normalised* record
tables (`sources.SCHEMAS`: times as integer epoch seconds, flags as JSON text) and plain
parameters, and returns an expression with one row per record in the check's denominator and
the columns `member`, `record_id` and `failed`. Nothing here touches a database; the same
expression runs on SQLite, PostgreSQL, DuckDB over Parquet, or Spark, wherever the tables are
bound (`evaluate.py` runs it, `sources.py` binds the tables).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

import ibis
import ibis.expr.types as ir

CheckId = str


class Category(enum.StrEnum):
    CONFORMANCE = "conformance"
    COMPLETENESS = "completeness"
    PLAUSIBILITY = "plausibility"
    TIMELINESS = "timeliness"
    CONSISTENCY = "consistency"


class Severity(enum.StrEnum):
    """DQD's severities: a fatal check breaks use of the data; the others describe it."""

    FATAL = "fatal"
    CONVENTION = "convention"
    CHARACTERIZATION = "characterization"


@dataclass(frozen=True)
class Tables:
    """The normalised record tables a check reads (see `sources.SCHEMAS` for their columns)."""

    patient: ir.Table
    encounter: ir.Table
    report: ir.Table
    observation: ir.Table
    order: ir.Table
    provenance: ir.Table
    feed_schedule: ir.Table


@dataclass(frozen=True)
class AnalyteRange:
    """An analyte's canonical UCUM unit and plausible range (from the terminology seed)."""

    loinc: str
    unit: str
    low: float | None = None
    high: float | None = None


# Tests that only make sense for one sex (DQD's plausibleGender): PSA for men, pregnancy
# tests for women. Quantitative hCG is left out on purpose: it is a tumour marker in men too.
SEX_SPECIFIC: dict[str, str] = {
    "2857-1": "male",  # Prostate specific Ag [Mass/volume] in Serum or Plasma
    "10886-0": "male",  # Prostate specific Ag Free [Mass/volume] in Serum or Plasma
    "12841-3": "male",  # Prostate specific Ag Free/Prostate specific Ag.total
    "2106-3": "female",  # Choriogonadotropin (pregnancy test) [Presence] in Urine
    "2118-8": "female",  # Choriogonadotropin (pregnancy test) [Presence] in Serum or Plasma
}


@dataclass(frozen=True)
class Params:
    """What checks need besides the tables: the clock, reference data and tunables."""

    now: datetime
    analytes: tuple[AnalyteRange, ...] = ()
    # UCUM codes known to be valid among those the data uses (validated outside, in Python).
    valid_units: frozenset[str] = frozenset()
    sex_specific: Mapping[str, str] = field(default_factory=lambda: dict(SEX_SPECIFIC))
    # Members expected to send data (besides those that ever did or have a schedule).
    members: tuple[str, ...] = ()
    max_lag_hours: float = 72.0
    stale_days: float = 7.0
    late_grace: float = 1.5
    consensus_factor: float = 3.0
    range_tolerance: float = 0.5
    max_age_years: float = 120.0
    after_death_hours: float = 24.0

    def __post_init__(self) -> None:
        if self.now.tzinfo is None:
            raise ValueError("Params.now must be timezone-aware")

    @property
    def now_s(self) -> int:
        return int(self.now.timestamp())


Builder = Callable[[Tables, Params], ir.Table]


@dataclass(frozen=True)
class Check:
    id: CheckId
    category: Category
    subcategory: str
    target: str
    threshold: float
    severity: Severity
    description: str
    build: Builder = field(repr=False, compare=False)

    def as_dict(self, threshold: float | None = None) -> dict[str, object]:
        return {
            "id": self.id,
            "category": self.category.value,
            "subcategory": self.subcategory,
            "target": self.target,
            "threshold": self.threshold if threshold is None else threshold,
            "default_threshold": self.threshold,
            "severity": self.severity.value,
            "description": self.description,
        }


REGISTRY: dict[CheckId, Check] = {}


def check(
    id: CheckId,
    category: Category,
    subcategory: str,
    target: str,
    *,
    threshold: float = 0.0,
    severity: Severity = Severity.CONVENTION,
    description: str,
) -> Callable[[Builder], Builder]:
    """Register a builder as a check (the same extension point a plugin would use)."""

    def register(build: Builder) -> Builder:
        if id in REGISTRY:
            raise ValueError(f"check {id!r} is registered twice")
        REGISTRY[id] = Check(
            id, category, subcategory, target, threshold, severity, description, build
        )
        return build

    return register


def all_checks() -> list[Check]:
    return list(REGISTRY.values())


# -- helpers --------------------------------------------------------------------------------------

DAY = 86_400


def _rows(
    t: ir.Table, failed: ir.BooleanValue, record_id: ir.StringValue | None = None
) -> ir.Table:
    """The contract of every check: one row per denominator record, `failed` never null."""
    return t.select(
        member=t.member,
        record_id=t.id if record_id is None else record_id,
        failed=failed.fill_null(False),
    )


def has_flag(flags: ir.StringValue, flag: str) -> ir.BooleanValue:
    """Whether a JSON list of flags (as text) holds `flag` (portable: no JSON functions)."""
    return flags.contains(f'"{flag}"')


def _blank(value: ir.StringValue) -> ir.BooleanValue:
    return value.isnull() | (value.strip() == "")


def _code_key(t: ir.Table) -> ir.StringValue:
    """The test a record is about: its LOINC code, or the member's code while unmapped."""
    return ibis.coalesce(t.loinc_code, t.original_code)


def memtable(columns: Mapping[str, list[object]], schema: Mapping[str, str]) -> ir.Table:
    """An in-memory table of plain columns (through Arrow, with exactly these types)."""
    import pyarrow as pa

    arrow_schema = ibis.schema(dict(schema)).to_pyarrow()
    data = {name: columns.get(name, []) for name in schema}
    return ibis.memtable(pa.Table.from_pydict(data, schema=arrow_schema))


def _analytes(params: Params) -> ir.Table:
    a = params.analytes
    return memtable(
        {
            "a_loinc": [x.loinc for x in a],
            "a_unit": [x.unit for x in a],
            "a_low": [x.low for x in a],
            "a_high": [x.high for x in a],
        },
        {"a_loinc": "string", "a_unit": "string", "a_low": "float64", "a_high": "float64"},
    )


def _first_arrival(tables: Tables, record_type: str) -> ir.Table:
    p = tables.provenance
    p = p.filter(p.record_type == record_type)
    return p.group_by(arrived_id=p.record_id).aggregate(first_s=p.received_s.min())


def _last_arrival(tables: Tables) -> tuple[ir.Table, ir.Table]:
    """Last arrival per (member, feed) and per member, in epoch seconds."""
    p = tables.provenance
    per_feed = p.group_by(l_member=p.member, l_feed=p.feed).aggregate(last_s=p.received_s.max())
    per_member = p.group_by(m_member=p.member).aggregate(any_last_s=p.received_s.max())
    return per_feed, per_member


def _luhn_ok(code: ir.StringValue) -> ir.BooleanValue:
    """LOINC's mod-10 check digit, in SQL: the number part padded to 7 digits, every other
    digit from the right doubled (a doubled digit over 9 loses 9)."""
    dash = code.find("-")
    number = code.substr(0, dash).lpad(7, "0")
    total: ir.IntegerValue = ibis.literal(0)
    for j in range(7):
        d = number.substr(j, 1).cast("int64")
        if (6 - j) % 2 == 0:
            d = ibis.ifelse(d * 2 > 9, d * 2 - 9, d * 2)
        total = total + d
    check_digit = code.substr(dash + 1, 1).cast("int64")
    return (10 - total % 10) % 10 == check_digit


# -- conformance ----------------------------------------------------------------------------------


@check(
    "observation.loinc_format",
    Category.CONFORMANCE,
    "value",
    "observation",
    severity=Severity.FATAL,
    description="Observations whose LOINC code is not LOINC-shaped (digits, dash, a mod-10 "
    "check digit).",
)
def loinc_format(tables: Tables, params: Params) -> ir.Table:
    o = tables.observation
    o = o.filter(o.loinc_code.notnull())
    # A data set uses a few hundred distinct codes: check those, then join the verdict back.
    # The verdict is an aggregate so no planner evaluates it again per joined row (PostgreSQL
    # would pull a plain expression above the join).
    codes = o.select(c_code=o.loinc_code).distinct()
    code = codes.c_code.strip()
    shaped = code.re_search(r"^[0-9]{1,7}-[0-9]$")
    ok = ibis.ifelse(ibis.ifelse(shaped, _luhn_ok(code), False), 1, 0)
    verdict = codes.group_by("c_code").aggregate(c_ok=ok.max())
    j = o.join(verdict, o.loinc_code == verdict.c_code)
    return _rows(j, j.c_ok == 0)


@check(
    "observation.ucum_unit",
    Category.CONFORMANCE,
    "value",
    "observation",
    severity=Severity.FATAL,
    description="Observations filed with a unit that is not a valid UCUM code.",
)
def ucum_unit(tables: Tables, params: Params) -> ir.Table:
    o = tables.observation
    o = o.filter(o.unit.notnull() & (o.unit != ""))
    valid = sorted(params.valid_units)
    failed = ~o.unit.isin(valid) if valid else ibis.literal(True)
    return _rows(o, failed)


@check(
    "observation.references_resolve",
    Category.CONFORMANCE,
    "relational",
    "observation",
    severity=Severity.FATAL,
    description="Observations whose patient, encounter or report was never received (missing, "
    "or only a placeholder made when the observation referred to it).",
)
def observation_references(tables: Tables, params: Params) -> ir.Table:
    o, p, e, r = tables.observation, tables.patient, tables.encounter, tables.report
    pj = p.select(p_id=p.id, p_stub=p.stub)
    ej = e.select(e_id=e.id, e_stub=has_flag(e.flags, "stub"))
    rj = r.select(r_id=r.id, r_stub=has_flag(r.flags, "stub"))
    j = (
        o.left_join(pj, o.patient_id == pj.p_id)
        .left_join(ej, o.encounter_id == ej.e_id)
        .left_join(rj, o.report_id == rj.r_id)
    )
    bad_patient = j.p_id.isnull() | j.p_stub.fill_null(False)
    bad_encounter = j.encounter_id.notnull() & (j.e_id.isnull() | j.e_stub.fill_null(False))
    bad_report = j.report_id.notnull() & (j.r_id.isnull() | j.r_stub.fill_null(False))
    return _rows(j, bad_patient | bad_encounter | bad_report)


@check(
    "encounter.references_resolve",
    Category.CONFORMANCE,
    "relational",
    "encounter",
    severity=Severity.FATAL,
    description="Encounters whose patient was never received (missing or a placeholder).",
)
def encounter_references(tables: Tables, params: Params) -> ir.Table:
    e, p = tables.encounter, tables.patient
    e = e.filter(~has_flag(e.flags, "stub"))
    pj = p.select(p_id=p.id, p_stub=p.stub)
    j = e.left_join(pj, e.patient_id == pj.p_id)
    return _rows(j, j.p_id.isnull() | j.p_stub.fill_null(False))


@check(
    "observation.interpretation_agrees",
    Category.CONFORMANCE,
    "computational",
    "observation",
    threshold=1.0,
    description="Observations whose abnormal flag (H, L, N) contradicts the value and the "
    "reference range sent with it.",
)
def interpretation_agrees(tables: Tables, params: Params) -> ir.Table:
    o = tables.observation
    flag = o.interpretation.strip().upper()
    o = o.mutate(i_flag=flag).filter(
        o.value.notnull()
        & flag.isin(["H", "HH", "L", "LL", "N"])
        & (o.ref_low.notnull() | o.ref_high.notnull())
    )
    above = o.ref_high.notnull() & (o.value > o.ref_high)
    below = o.ref_low.notnull() & (o.value < o.ref_low)
    failed = (
        (o.i_flag.isin(["H", "HH"]) & ~above)
        | (o.i_flag.isin(["L", "LL"]) & ~below)
        | ((o.i_flag == "N") & (above | below))
    )
    return _rows(o, failed)


@check(
    "observation.value_matches_original",
    Category.CONFORMANCE,
    "computational",
    "observation",
    description="Observations sent in the canonical unit whose filed value differs from the "
    "value sent (a conversion applied where none was due).",
)
def value_matches_original(tables: Tables, params: Params) -> ir.Table:
    o = tables.observation
    o = o.filter(o.value.notnull() & o.original_number.notnull() & (o.unit == o.original_unit))
    failed = (o.value - o.original_number).abs() > o.original_number.abs() * 0.001 + 1e-9
    return _rows(o, failed)


# -- completeness ---------------------------------------------------------------------------------


@check(
    "patient.required_fields",
    Category.COMPLETENESS,
    "required",
    "patient",
    threshold=5.0,
    description="Patients without a name, a known sex or a birth date.",
)
def patient_required(tables: Tables, params: Params) -> ir.Table:
    p = tables.patient
    p = p.filter(~p.stub)
    return _rows(p, ~p.name_present | (p.sex == "unknown") | p.birth_s.isnull())


@check(
    "observation.required_fields",
    Category.COMPLETENESS,
    "required",
    "observation",
    threshold=1.0,
    description="Observations without a time of observation or a status.",
)
def observation_required(tables: Tables, params: Params) -> ir.Table:
    o = tables.observation
    return _rows(o, o.effective_s.isnull() | (o.status == "unknown"))


@check(
    "observation.unit_present",
    Category.COMPLETENESS,
    "required",
    "observation",
    threshold=1.0,
    description="Numeric results sent without a unit.",
)
def unit_present(tables: Tables, params: Params) -> ir.Table:
    o = tables.observation
    o = o.filter((o.value_type == "quantity") & o.original_number.notnull())
    return _rows(o, _blank(o.original_unit))


@check(
    "encounter.required_fields",
    Category.COMPLETENESS,
    "required",
    "encounter",
    threshold=5.0,
    description="Encounters without a start time or a department.",
)
def encounter_required(tables: Tables, params: Params) -> ir.Table:
    e = tables.encounter
    e = e.filter(~has_flag(e.flags, "stub"))
    return _rows(e, e.start_s.isnull() | _blank(e.department_text))


@check(
    "observation.code_mapped",
    Category.COMPLETENESS,
    "mapping",
    "observation",
    threshold=5.0,
    description="Share of observations whose local code is not mapped to LOINC.",
)
def code_mapped(tables: Tables, params: Params) -> ir.Table:
    o = tables.observation
    return _rows(o, o.loinc_code.isnull())


@check(
    "observation.unit_mapped",
    Category.COMPLETENESS,
    "mapping",
    "observation",
    threshold=5.0,
    description="Share of numeric results whose unit as sent is not mapped to UCUM (or cannot "
    "be converted to the analyte's unit).",
)
def unit_mapped(tables: Tables, params: Params) -> ir.Table:
    o = tables.observation
    o = o.filter((o.value_type == "quantity") & ~_blank(o.original_unit))
    return _rows(o, has_flag(o.flags, "unmapped-unit"))


@check(
    "encounter.department_mapped",
    Category.COMPLETENESS,
    "mapping",
    "encounter",
    threshold=5.0,
    description="Share of encounters whose department name is not mapped to a standard code.",
)
def department_mapped(tables: Tables, params: Params) -> ir.Table:
    e = tables.encounter
    e = e.filter(~has_flag(e.flags, "stub") & ~_blank(e.department_text))
    return _rows(e, e.department_code.isnull())


# -- plausibility: atemporal ----------------------------------------------------------------------


@check(
    "observation.value_plausible",
    Category.PLAUSIBILITY,
    "atemporal",
    "observation",
    threshold=1.0,
    description="Results outside the plausible range of their LOINC code (flagged implausible "
    "at ingest, or outside the range now in force).",
)
def value_plausible(tables: Tables, params: Params) -> ir.Table:
    o = tables.observation
    implausible = has_flag(o.flags, "implausible")
    a = _analytes(params)
    j = o.filter(o.value.notnull() | implausible).left_join(a, o.loinc_code == a.a_loinc)
    outside = (j.a_low.notnull() & (j.value < j.a_low)) | (
        j.a_high.notnull() & (j.value > j.a_high)
    )
    return _rows(j, has_flag(j.flags, "implausible") | outside)


@check(
    "observation.unit_plausible",
    Category.PLAUSIBILITY,
    "atemporal",
    "observation",
    threshold=1.0,
    description="Results filed in a unit other than their analyte's canonical UCUM unit "
    "(DQD's plausibleUnitConceptIds).",
)
def unit_plausible(tables: Tables, params: Params) -> ir.Table:
    o = tables.observation
    a = _analytes(params)
    j = o.filter(o.unit.notnull()).join(a, o.loinc_code == a.a_loinc)
    j = j.filter(j.a_unit != "")
    return _rows(j, j.unit != j.a_unit)


@check(
    "observation.sex_plausible",
    Category.PLAUSIBILITY,
    "atemporal",
    "observation",
    severity=Severity.CHARACTERIZATION,
    description="Sex-specific tests (PSA, pregnancy tests) of patients of the other sex.",
)
def sex_plausible(tables: Tables, params: Params) -> ir.Table:
    o, p = tables.observation, tables.patient
    pairs = sorted(params.sex_specific.items())
    s = memtable(
        {"s_loinc": [k for k, _ in pairs], "s_sex": [v for _, v in pairs]},
        {"s_loinc": "string", "s_sex": "string"},
    )
    pj = p.select(p_id=p.id, p_sex=p.sex)
    j = o.join(s, o.loinc_code == s.s_loinc).join(pj, o.patient_id == pj.p_id)
    j = j.filter(j.p_sex.isin(["male", "female"]))
    return _rows(j, j.p_sex != j.s_sex)


@check(
    "patient.birth_date_plausible",
    Category.PLAUSIBILITY,
    "atemporal",
    "patient",
    severity=Severity.FATAL,
    description="Patients born in the future or more than 120 years ago.",
)
def birth_date_plausible(tables: Tables, params: Params) -> ir.Table:
    p = tables.patient
    p = p.filter(~p.stub & p.birth_s.notnull())
    oldest = params.now_s - int(params.max_age_years * 365.25 * DAY)
    return _rows(p, (p.birth_s > params.now_s) | (p.birth_s < oldest))


# -- plausibility: temporal -----------------------------------------------------------------------


@check(
    "encounter.discharge_after_admission",
    Category.PLAUSIBILITY,
    "temporal",
    "encounter",
    severity=Severity.FATAL,
    description="Encounters that end before they start (discharge before admission).",
)
def discharge_after_admission(tables: Tables, params: Params) -> ir.Table:
    e = tables.encounter
    e = e.filter(e.start_s.notnull() & e.end_s.notnull())
    return _rows(e, e.end_s < e.start_s)


def _after_birth(t: ir.Table, when: str, tables: Tables) -> ir.Table:
    p = tables.patient
    pj = p.select(p_id=p.id, p_birth_s=p.birth_s)
    j = t.join(pj, t.patient_id == pj.p_id)
    j = j.filter(j[when].notnull() & j.p_birth_s.notnull())
    # A birth date is a local calendar day: allow a day for time zones.
    return _rows(j, j[when] < j.p_birth_s - DAY)


@check(
    "observation.after_birth",
    Category.PLAUSIBILITY,
    "temporal",
    "observation",
    severity=Severity.FATAL,
    description="Observations dated before the patient's birth.",
)
def observation_after_birth(tables: Tables, params: Params) -> ir.Table:
    return _after_birth(tables.observation, "effective_s", tables)


@check(
    "encounter.after_birth",
    Category.PLAUSIBILITY,
    "temporal",
    "encounter",
    severity=Severity.FATAL,
    description="Encounters that start before the patient's birth.",
)
def encounter_after_birth(tables: Tables, params: Params) -> ir.Table:
    return _after_birth(tables.encounter, "start_s", tables)


def _before_death(t: ir.Table, when: str, tables: Tables, params: Params) -> ir.Table:
    p = tables.patient
    pj = p.select(p_id=p.id, p_death_s=p.death_s)
    j = t.join(pj, t.patient_id == pj.p_id)
    j = j.filter(j[when].notnull() & j.p_death_s.notnull())
    return _rows(j, j[when] > j.p_death_s + int(params.after_death_hours * 3600))


@check(
    "observation.before_death",
    Category.PLAUSIBILITY,
    "temporal",
    "observation",
    severity=Severity.FATAL,
    description="Observations dated more than 24 hours (`after_death_hours`) after the "
    "patient's recorded death. The window lets through what is legitimately post-mortem within "
    "hours (an autopsy sample, a post-mortem blood culture) and deaths recorded as a day alone, "
    "which count from that day's midnight. Patients marked deceased without a date are not "
    "counted.",
)
def observation_before_death(tables: Tables, params: Params) -> ir.Table:
    return _before_death(tables.observation, "effective_s", tables, params)


@check(
    "encounter.before_death",
    Category.PLAUSIBILITY,
    "temporal",
    "encounter",
    severity=Severity.FATAL,
    description="Encounters that start more than 24 hours (`after_death_hours`) after the "
    "patient's recorded death (the window covers the day of a death recorded as a day alone). "
    "An encounter that ends after the death is not counted: discharge comes after it.",
)
def encounter_before_death(tables: Tables, params: Params) -> ir.Table:
    return _before_death(tables.encounter, "start_s", tables, params)


@check(
    "report.before_death",
    Category.PLAUSIBILITY,
    "temporal",
    "report",
    threshold=1.0,
    description="Diagnostic reports whose observation time (not the time issued: a report may "
    "be written up later) is more than 24 hours (`after_death_hours`) after the patient's "
    "recorded death. An autopsy examined days after the death fails too, so a few are allowed "
    "(1%); raise `after_death_hours` where such reports are common.",
)
def report_before_death(tables: Tables, params: Params) -> ir.Table:
    return _before_death(tables.report, "effective_s", tables, params)


@check(
    "report.result_after_order",
    Category.PLAUSIBILITY,
    "temporal",
    "report",
    threshold=1.0,
    description="Reports whose observation time precedes the time of the order they answer. "
    "The order is the first of these that has a time: (1) the order record the report names "
    "(FHIR basedOn -> ServiceRequest, a CSV order column); (2) the earliest of the member's "
    "orders for the same patient with the report's placer order number (HL7 OBR-2 or ORC-2, a "
    "basedOn identifier); (3) without a link, the earliest of the member's orders of the same "
    "test (LOINC code, or local code while unmapped) for the same patient, an approximation "
    "that misses a result filed before a repeat order. Reports with no such order are not "
    "counted.",
)
def result_after_order(tables: Tables, params: Params) -> ir.Table:
    o, r = tables.order, tables.report
    o = o.filter(o.ordered_s.notnull())
    by_id = o.select(i_id=o.id, i_s=o.ordered_s)
    numbered = o.filter(o.placer_number != "")
    by_number = numbered.group_by(
        n_member=numbered.member,
        n_patient=numbered.patient_id,
        n_number=numbered.placer_number,
    ).aggregate(n_s=numbered.ordered_s.min())
    by_code = o.group_by(f_member=o.member, f_patient=o.patient_id, f_code=_code_key(o)).aggregate(
        f_s=o.ordered_s.min()
    )
    r = r.filter(r.effective_s.notnull()).mutate(r_code=_code_key(r))
    j = (
        r.left_join(by_id, r.order_id == by_id.i_id)
        .left_join(
            by_number,
            [
                r.member == by_number.n_member,
                r.patient_id == by_number.n_patient,
                r.placer_number == by_number.n_number,
            ],
        )
        .left_join(
            by_code,
            [
                r.member == by_code.f_member,
                r.patient_id == by_code.f_patient,
                r.r_code == by_code.f_code,
            ],
        )
    )
    j = j.mutate(order_s=ibis.coalesce(j.i_s, j.n_s, j.f_s))
    j = j.filter(j.order_s.notnull())
    return _rows(j, j.effective_s < j.order_s)


@check(
    "observation.issued_after_effective",
    Category.PLAUSIBILITY,
    "temporal",
    "observation",
    threshold=1.0,
    description="Observations issued (reported) before they were observed.",
)
def issued_after_effective(tables: Tables, params: Params) -> ir.Table:
    o = tables.observation
    o = o.filter(o.effective_s.notnull() & o.issued_s.notnull())
    return _rows(o, o.issued_s < o.effective_s)


@check(
    "observation.not_in_future",
    Category.PLAUSIBILITY,
    "temporal",
    "observation",
    severity=Severity.FATAL,
    description="Observations dated in the future (more than five minutes after the run).",
)
def not_in_future(tables: Tables, params: Params) -> ir.Table:
    o = tables.observation
    o = o.filter(o.effective_s.notnull())
    return _rows(o, o.effective_s > params.now_s + 300)


# -- plausibility: uniqueness ---------------------------------------------------------------------


@check(
    "observation.duplicates",
    Category.PLAUSIBILITY,
    "uniqueness",
    "observation",
    threshold=1.0,
    description="Observations that repeat another of the same member (same patient, test, "
    "time, value and unit) under a different record id; every copy after the first fails.",
)
def observation_duplicates(tables: Tables, params: Params) -> ir.Table:
    o = tables.observation
    keys = [o.member, o.patient_id, _code_key(o), o.effective_s, o.original_value, o.original_unit]
    ranked = o.mutate(copy=ibis.row_number().over(group_by=keys, order_by=o.id))
    return _rows(ranked, ranked.copy > 0)


@check(
    "patient.duplicates",
    Category.PLAUSIBILITY,
    "uniqueness",
    "patient",
    threshold=1.0,
    description="Patient records of one member that repeat another (same national id, or same "
    "name, birth date and sex); every copy after the first fails.",
)
def patient_duplicates(tables: Tables, params: Params) -> ir.Table:
    p = tables.patient
    p = p.filter(~p.stub)
    ranked = p.mutate(copy=ibis.row_number().over(group_by=[p.member, p.dedup_key], order_by=p.id))
    return _rows(ranked, ranked.dedup_key.notnull() & (ranked.copy > 0))


# -- timeliness -----------------------------------------------------------------------------------


@check(
    "observation.feed_lag",
    Category.TIMELINESS,
    "lag",
    "observation",
    threshold=5.0,
    description="Observations that reached the platform more than 72 hours (`max_lag_hours`) "
    "after they were observed.",
)
def feed_lag(tables: Tables, params: Params) -> ir.Table:
    o = tables.observation
    first = _first_arrival(tables, "observation")
    j = o.filter(o.effective_s.notnull()).join(first, o.id == first.arrived_id)
    return _rows(j, j.first_s - j.effective_s > int(params.max_lag_hours * 3600))


@check(
    "feed.late",
    Category.TIMELINESS,
    "schedule",
    "feed_schedule",
    severity=Severity.FATAL,
    description="Feeds with an agreed schedule whose last delivery is older than 1.5 "
    "(`late_grace`) times the agreed interval, or that never delivered.",
)
def feed_late(tables: Tables, params: Params) -> ir.Table:
    s = tables.feed_schedule
    per_feed, per_member = _last_arrival(tables)
    j = s.left_join(per_feed, [s.member == per_feed.l_member, s.feed == per_feed.l_feed]).left_join(
        per_member, s.member == per_member.m_member
    )
    last = ibis.ifelse(j.feed == "*", j.any_last_s, j.last_s)
    late = last.isnull() | (params.now_s - last > j.every_minutes * 60 * params.late_grace)
    return _rows(j, late, record_id=j.member.concat("/", j.feed))


@check(
    "member.stale",
    Category.TIMELINESS,
    "stale",
    "member",
    severity=Severity.FATAL,
    description="Members that have sent nothing for 7 days (`stale_days`).",
)
def member_stale(tables: Tables, params: Params) -> ir.Table:
    _per_feed, per_member = _last_arrival(tables)
    s = tables.feed_schedule
    expected = memtable({"member": list(params.members)}, {"member": "string"})
    known = (
        per_member.select(member=per_member.m_member)
        .union(s.select(member=s.member))
        .union(expected)
        .distinct()
    )
    j = known.left_join(per_member, known.member == per_member.m_member)
    stale = j.any_last_s.isnull() | (params.now_s - j.any_last_s > int(params.stale_days * DAY))
    return _rows(j, stale, record_id=j.member)


# -- cross-member consistency ---------------------------------------------------------------------


def _consensus(o: ir.Table, cols: list[str], min_members: int = 2) -> ir.Table:
    """Per LOINC code, the values of `cols` most members report (ties: most rows, then value)."""
    counts = o.group_by([o.loinc_code, *cols]).aggregate(
        c_members=o.member.nunique(), c_rows=o.count()
    )
    ranked = counts.mutate(
        rank=ibis.row_number().over(
            group_by=counts.loinc_code,
            order_by=[counts.c_members.desc(), counts.c_rows.desc(), *[counts[c] for c in cols]],
        )
    )
    modal = ranked.filter(ranked.rank == 0)
    reporting = o.group_by(n_loinc=o.loinc_code).aggregate(n_members=o.member.nunique())
    modal = modal.join(reporting, modal.loinc_code == reporting.n_loinc)
    modal = modal.filter(modal.n_members >= min_members)
    return modal.select(m_loinc=modal.loinc_code, **{f"m_{c}": modal[c] for c in cols})


@check(
    "observation.unit_consensus",
    Category.CONSISTENCY,
    "cross-member",
    "observation",
    threshold=1.0,
    description="Results of a test filed in a unit other than the one most members use for it.",
)
def unit_consensus(tables: Tables, params: Params) -> ir.Table:
    o = tables.observation
    o = o.filter(o.loinc_code.notnull() & o.unit.notnull())
    modal = _consensus(o, ["unit"])
    j = o.join(modal, o.loinc_code == modal.m_loinc)
    return _rows(j, j.unit != j.m_unit)


@check(
    "observation.range_consensus",
    Category.CONSISTENCY,
    "cross-member",
    "observation",
    threshold=5.0,
    description="Results whose reference range differs by more than 50% (`range_tolerance`) "
    "from the range most members report for the same test.",
)
def range_consensus(tables: Tables, params: Params) -> ir.Table:
    o = tables.observation
    o = o.filter(o.loinc_code.notnull() & o.ref_high.notnull())
    modal = _consensus(o, ["ref_low", "ref_high"])
    j = o.join(modal, o.loinc_code == modal.m_loinc)
    tol = params.range_tolerance
    high_off = (j.ref_high - j.m_ref_high).abs() > j.m_ref_high.abs() * tol
    low_off = (
        j.ref_low.notnull()
        & j.m_ref_low.notnull()
        & ((j.ref_low - j.m_ref_low).abs() > j.m_ref_low.abs() * tol + 1e-9)
    )
    return _rows(j, high_off | low_off)


@check(
    "observation.value_consensus",
    Category.CONSISTENCY,
    "cross-member",
    "observation",
    threshold=1.0,
    description="Results of a member whose mean for a test is more than 3 times "
    "(`consensus_factor`) above or below the median of the members' means (tests reported by "
    "at least three members).",
)
def value_consensus(tables: Tables, params: Params) -> ir.Table:
    o = tables.observation
    o = o.filter(o.loinc_code.notnull() & o.value.notnull())
    means = o.group_by(v_loinc=o.loinc_code, v_member=o.member).aggregate(v_mean=o.value.mean())
    ranked = means.mutate(
        v_rank=ibis.row_number().over(group_by=means.v_loinc, order_by=means.v_mean),
        v_n=means.count().over(group_by=means.v_loinc),
    )
    middle = ranked.filter(
        (ranked.v_rank == (ranked.v_n - 1) // 2) | (ranked.v_rank == ranked.v_n // 2)
    )
    median = middle.group_by(d_loinc=middle.v_loinc).aggregate(
        d_median=middle.v_mean.mean(), d_n=middle.v_n.max()
    )
    verdict = means.join(median, means.v_loinc == median.d_loinc).filter(
        (median.d_n >= 3) & (median.d_median > 0)
    )
    factor = params.consensus_factor
    verdict = verdict.select(
        "v_loinc",
        "v_member",
        off=(verdict.v_mean > verdict.d_median * factor)
        | (verdict.v_mean * factor < verdict.d_median),
    )
    j = o.join(verdict, [o.loinc_code == verdict.v_loinc, o.member == verdict.v_member])
    return _rows(j, j.off)
