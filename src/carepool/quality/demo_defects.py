"""Lab feeds with planted defects, so a quality run has something true to find.

`hl7_feed(member, profile)` writes HL7 v2 ORU^R01 messages (a CBC-and-glucose panel per patient,
local codes and Chinese names, as a township LIS sends them) in which a given share of results
carry one defect each: a missing unit, an implausible value (a unit slip), an unmapped local
code, a duplicate re-sent under a new filler number, or a late delivery (observed days before
the feed); and a given share of patients whose results are filed after their recorded death
(PID-29/PID-30, days before the results). The shares are planted exactly (rounded to whole
results and patients), not drawn at random, so a larger share always means more defects.
Deterministic for a seed. The demo consortium feeds these through `carepool.ingest` per member
with different profiles (`DEMO_PROFILES`); tests do the same.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

# (local code, Chinese name, unit, normal low, normal high, decimals)
_TESTS = (
    ("HGB", "血红蛋白", "g/L", 120.0, 160.0, 0),
    ("WBC", "白细胞计数", "10^9/L", 4.0, 10.0, 1),
    ("PLT", "血小板计数", "10^9/L", 100.0, 300.0, 0),
    ("GLU", "葡萄糖", "mmol/L", 3.9, 6.1, 1),
)


RESULTS_PER_PATIENT = len(_TESTS)  # what one patient's message of `hl7_feed` holds
# The defects a result can carry, as `plant` numbers them (see `DefectProfile.result_shares`).
MISSING_UNIT, IMPLAUSIBLE, UNMAPPED_CODE, RESENT, LATE = range(5)


@dataclass(frozen=True)
class DefectProfile:
    """Shares (0..1) of results carrying each defect (`after_death`: of patients, with all
    their results)."""

    missing_units: float = 0.0
    implausible: float = 0.0
    unmapped_codes: float = 0.0
    duplicates: float = 0.0
    late: float = 0.0
    late_hours: float = 120.0
    after_death: float = 0.0
    after_death_hours: float = 72.0  # how long after the recorded death the results are dated

    @property
    def total(self) -> float:
        return (
            self.missing_units
            + self.implausible
            + self.unmapped_codes
            + self.duplicates
            + self.late
            + self.after_death
        )

    def result_shares(self) -> list[float]:
        """The shares of results per defect, in the order `MISSING_UNIT` ... `LATE`."""
        return [
            self.missing_units,
            self.implausible,
            self.unmapped_codes,
            self.duplicates,
            self.late,
        ]

    def scaled(self, factor: float) -> DefectProfile:
        """The same mix of defects, each share times `factor`."""
        return replace(
            self,
            missing_units=self.missing_units * factor,
            implausible=self.implausible * factor,
            unmapped_codes=self.unmapped_codes * factor,
            duplicates=self.duplicates * factor,
            late=self.late * factor,
            after_death=self.after_death * factor,
        )


DEMO_PROFILES: dict[str, DefectProfile] = {
    # A county hospital's LIS: clean but for the odd duplicate.
    "county": DefectProfile(duplicates=0.01),
    # A township health centre: units dropped, local codes nobody mapped yet.
    "township": DefectProfile(missing_units=0.08, unmapped_codes=0.1, duplicates=0.03),
    # A village clinic that batches its results weekly, with unit slips, and files results
    # under patients its register marks as dead (a mix-up of two patients of the same name).
    "village": DefectProfile(
        missing_units=0.15,
        implausible=0.08,
        unmapped_codes=0.2,
        duplicates=0.05,
        late=0.5,
        after_death=0.25,
    ),
}


def _count(share: float, n: int) -> int:
    """`share` of `n`, rounded half up (Python's round() would make 0.5 of 1 nothing)."""
    return int(share * n + 0.5)


def plant(rng: random.Random, n: int, shares: list[float], what: str) -> list[int]:
    """Which of `n` items carry which defect: defect k for `shares[k]` of them (exactly, after
    rounding), each item at most one; -1 for none."""
    counts = [_count(x, n) for x in shares]
    if sum(counts) > n:
        raise ValueError(f"defect shares of {what} add up to more than all of them: {shares}")
    order = list(range(n))
    rng.shuffle(order)
    out = [-1] * n
    at = 0
    for k, c in enumerate(counts):
        for i in order[at : at + c]:
            out[i] = k
        at += c
    return out


def _ts(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y%m%d%H%M%S+0000")


def _pv1(facility: str, pid: str, admitted: datetime) -> str:
    """An outpatient visit: department (PV1-10), visit number (PV1-19), admit time (PV1-44)."""
    fields = [""] * 45
    fields[:4] = ["PV1", "1", "O", f"检验科^^^{facility}"]
    fields[10] = "内科"
    fields[19] = f"V{pid}^^^{facility}"
    fields[44] = _ts(admitted)
    return "|".join(fields)


def hl7_feed(
    member: str,
    profile: DefectProfile,
    *,
    patients: int = 20,
    seed: int = 0,
    now: datetime | None = None,
) -> bytes:
    """One HL7 v2 file for `member`: one ORU^R01 per patient, defects as `profile` says."""
    rng = random.Random(f"{member}:{seed}")
    now = now or datetime.now(UTC)
    facility = member.upper()
    # Which patients died before their results, and which results carry which defect: planted
    # exactly, in random places.
    dead = plant(rng, patients, [profile.after_death], "patients")
    results = plant(rng, patients * len(_TESTS), profile.result_shares(), "results")
    late = now - timedelta(hours=profile.late_hours)
    messages: list[str] = []
    for p in range(1, patients + 1):
        pid = f"{facility}{p:05d}"
        sex = "M" if p % 2 else "F"
        birth = f"{1940 + rng.randrange(70)}{rng.randrange(1, 13):02d}{rng.randrange(1, 28):02d}"
        observed = now - timedelta(hours=rng.uniform(1, 8))
        death = ""
        if dead[p - 1] == 0:
            died = observed - timedelta(hours=profile.after_death_hours)
            death = "|" * 21 + f"{_ts(died)}|Y"  # PID-29 death time, PID-30 deceased
        filler = f"{facility}-L{p:05d}"
        obx: list[str] = []
        dupes: list[str] = []
        for n, (code, name, unit, low, high, dec) in enumerate(_TESTS, start=1):
            value = round(rng.uniform(low, high), dec)
            shown_unit, shown_code, shown_name = unit, code, name
            defect = results[(p - 1) * len(_TESTS) + n - 1]
            when = observed
            if defect == MISSING_UNIT:
                shown_unit = ""
            elif defect == IMPLAUSIBLE:
                value = value * 1000
            elif defect == UNMAPPED_CODE:
                shown_code, shown_name = f"ZZ{n:02d}", f"自定义项目{n}"
            elif defect == RESENT:
                dupes.append(code)
            elif defect == LATE:
                when = late  # a sample taken days ago (sent out), its result sent only now
            text = f"{value:.{dec}f}"
            obx.append(
                f"OBX|{n}|NM|{shown_code}^{shown_name}^L||{text}|{shown_unit}|"
                f"{low:g}-{high:g}|N|||F|||{_ts(when)}"
            )
        header = [
            f"MSH|^~\\&|LIS|{facility}||CAREPOOL|{_ts(now)}||ORU^R01^ORU_R01|{filler}|P|2.5.1",
            f"PID|1||{pid}^^^{facility}^MR||测试^{p}||{birth}|{sex}{death}",
            _pv1(facility, pid, observed - timedelta(minutes=30)),
        ]
        # OBR-7 observed, OBR-22 reported, OBR-25 final.
        obr = (
            f"OBR|1|{filler}|{filler}^{facility}|CBC^血常规^L|||{_ts(observed)}"
            f"{'|' * 15}{_ts(now)}|||F"
        )
        messages.append("\r".join([*header, obr, *obx]))
        if dupes:
            # The same results again under a new filler number: new record ids, same content.
            copy = [s for s in obx if s.split("|")[3].split("^")[0] in dupes]
            resent = f"{filler}R"
            obr2 = obr.replace(f"|{filler}|{filler}^", f"|{resent}|{resent}^")
            head2 = [header[0].replace(f"|{filler}|P|", f"|{resent}|P|"), *header[1:]]
            messages.append("\r".join([*head2, obr2, *copy]))
    return ("\n".join(messages) + "\n").encode("utf-8")
