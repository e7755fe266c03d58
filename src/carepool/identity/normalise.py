"""Comparable forms of what members record about a patient (pure: plain data in, plain data out).

Names become pinyin keys, so `张三` (characters), `Zhang San` and `ZHANG san` compare equal;
surnames with a special reading (`单` shan, `曾` zeng) are read as surnames. A Chinese resident
identity number (GB 11643-1999) counts only when its check digit and its birth date are valid;
a 15-digit number of the first generation is upgraded to 18 digits. Phones keep their digits
without the country code, addresses become pinyin letters and digits.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any

from pypinyin import lazy_pinyin

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_HAN_OR_DIGIT = re.compile(r"[\u3400-\u9fff\uf900-\ufaff0-9]")
_SPACE = re.compile(r"\s+")
_NOT_ALNUM = re.compile(r"[^a-z0-9]+")
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"

# Surnames whose reading as a surname differs from pypinyin's default for the character.
SURNAME_READINGS: dict[str, tuple[str, ...]] = {
    "单": ("shan",),
    "曾": ("zeng",),
    "区": ("ou",),
    "仇": ("qiu",),
    "解": ("xie",),
    "查": ("zha",),
    "朴": ("piao",),
    "盖": ("ge",),
    "翟": ("zhai",),
    "乐": ("yue",),
    "覃": ("qin",),
    "缪": ("miao",),
    "召": ("shao",),
    "冼": ("xian",),
    "种": ("chong",),
    "秘": ("bi",),
    "员": ("yun",),
    "尉迟": ("yu", "chi"),
    "万俟": ("mo", "qi"),
    "长孙": ("zhang", "sun"),
    "令狐": ("ling", "hu"),
    "欧阳": ("ou", "yang"),
    "司马": ("si", "ma"),
    "上官": ("shang", "guan"),
    "诸葛": ("zhu", "ge"),
    "东方": ("dong", "fang"),
    "皇甫": ("huang", "fu"),
    "司徒": ("si", "tu"),
    "公孙": ("gong", "sun"),
    "慕容": ("mu", "rong"),
    "夏侯": ("xia", "hou"),
}
_COMPOUND = sorted((s for s in SURNAME_READINGS if len(s) > 1), key=len, reverse=True)


# -- national id ----------------------------------------------------------------------------------


def national_id_check_char(first17: str) -> str:
    """The check character of an 18-character resident id (ISO 7064 MOD 11-2)."""
    total = sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True))
    return _CHECK[total % 11]


def _birth(digits: str) -> date | None:
    try:
        return date(int(digits[0:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        return None


def normalise_national_id(value: str | None) -> str | None:
    """The 18-character form of a valid resident id, or None (wrong length, check or date).

    Full-width characters and spaces are tidied first; a 15-digit id gets `19` and a check
    character, as the 1999 standard prescribes.
    """
    if not value:
        return None
    text = unicodedata.normalize("NFKC", value).replace(" ", "").replace("-", "").upper()
    if len(text) == 15 and text.isdigit():
        first17 = text[:6] + "19" + text[6:]
        text = first17 + national_id_check_char(first17)
    if len(text) != 18 or not text[:17].isdigit() or text[0] == "0":
        return None
    if national_id_check_char(text[:17]) != text[17]:
        return None
    born = _birth(text[6:14])
    if born is None or born.year < 1880:
        return None
    return text


def national_id_birth_date(nid: str) -> date | None:
    """The birth date inside a valid 18-character id."""
    return _birth(nid[6:14])


def national_id_sex(nid: str) -> str:
    """`male` when the 17th digit is odd, `female` when even."""
    return "male" if int(nid[16]) % 2 else "female"


# -- names ----------------------------------------------------------------------------------------


def _latin(text: str) -> list[str]:
    """Lower-case ASCII words of a Latin-script name (diacritics dropped: `Lü` -> `lu`)."""
    decomposed = unicodedata.normalize("NFKD", text)
    ascii_text = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()
    return [w for w in _NOT_ALNUM.split(ascii_text.replace("ü", "u")) if w]


def _syllables(han: str) -> list[str]:
    out = []
    for p in lazy_pinyin(han, v_to_u=True):
        out.extend(_latin(p))
    return out


def _surname_syllables(han: str) -> list[str]:
    reading = SURNAME_READINGS.get(han)
    return list(reading) if reading else _syllables(han)


def _split_han(name: str) -> tuple[str, str]:
    """Surname and given name of a name in characters (compound surnames known)."""
    for compound in _COMPOUND:
        if name.startswith(compound) and len(name) > len(compound):
            return compound, name[len(compound) :]
    return name[:1], name[1:]


@dataclass(frozen=True, slots=True)
class NameKeys:
    han: str | None  # the name in characters, when it was written so
    key: str | None  # pinyin (or Latin) letters, surname first: `zhangsan`
    rev: str | None  # given name first: `sanzhang` (a name written in the other order)
    initial: str | None  # first letter of `key`, for blocking
    phonetic: str | None = None  # a Latin-script name's sound, word by word (`phonetic_key`)


_SOUND = str.maketrans("bfpvcgjkqsxzdtlmnr", "111122222222334556")


def phonetic_key(words: list[str]) -> str | None:
    """A sound key of Latin-script words, sorted (Soundex-like: first letter, then consonant
    classes, vowels and h/w/y dropped, runs folded): `Jon Smith` and `John Smyth` agree."""
    keys = []
    for word in words:
        letters = "".join(ch for ch in word if ch.isalpha())
        if not letters:
            continue
        coded = letters.translate(_SOUND)
        out, last = [letters[0]], coded[0]
        for ch in coded[1:]:
            if ch.isdigit() and ch != last:
                out.append(ch)
            last = ch if ch.isdigit() else ("" if ch not in "hw" else last)
        keys.append("".join(out)[:5])
    return "-".join(sorted(keys)) or None


@lru_cache(maxsize=100_000)
def name_keys(name: str, family: str = "", given: str = "") -> NameKeys:
    """Comparable forms of a name (see the module docstring); cached: names repeat a lot."""
    name, family, given = name.strip(), family.strip(), given.strip()
    han_source = unicodedata.normalize("NFKC", family + given if (family or given) else name)
    # Digits stay part of a name written in characters: `测试22` and `测试2` are two names.
    han_chars = "".join(_HAN_OR_DIGIT.findall(han_source)) if _CJK.search(han_source) else ""
    if han_chars:
        if family and _CJK.search(family):
            fam = "".join(_HAN_OR_DIGIT.findall(unicodedata.normalize("NFKC", family)))
            giv = "".join(_HAN_OR_DIGIT.findall(unicodedata.normalize("NFKC", given)))
        else:
            fam, giv = _split_han(han_chars)
        surname, rest = _surname_syllables(fam), _syllables(giv)
    elif family or given:
        surname, rest = _latin(family), _latin(given)
    else:
        words = _latin(name)
        surname, rest = words[:1], words[1:]
    key = "".join(surname + rest)
    if not key:
        return NameKeys(han_chars or None, None, None, None)
    phonetic = None if han_chars else phonetic_key(surname + rest)
    return NameKeys(han_chars or None, key, "".join(rest + surname), key[0], phonetic)


# -- phones, addresses, dates ---------------------------------------------------------------------


def phone_key(phone: str | None) -> str | None:
    """The digits of a phone number without the country code; None if too short to compare."""
    if not phone:
        return None
    digits = re.sub(r"\D", "", unicodedata.normalize("NFKC", phone))
    if digits.startswith("0086"):
        digits = digits[4:]
    elif digits.startswith("86") and len(digits) == 13:
        digits = digits[2:]
    return digits if len(digits) >= 7 else None


@lru_cache(maxsize=100_000)
def address_key(address: str | None) -> str | None:
    """An address as pinyin letters and digits (`幸福路1号` -> `xingfulu1hao`); cached."""
    if not address:
        return None
    text = unicodedata.normalize("NFKC", address)
    parts = []
    for chunk in re.split(r"([\u3400-\u9fff]+)", text):
        if _CJK.search(chunk):
            parts.extend(_syllables(chunk))
        else:
            parts.extend(_latin(chunk))
    key = "".join(parts)
    return key if len(key) >= 4 else None


@dataclass(frozen=True, slots=True)
class PatientFacts:
    """What a member recorded about a patient, as plain data."""

    patient_id: str
    institution_id: str
    name: str = ""
    family: str = ""
    given: str = ""
    sex: str = "unknown"
    birth_date: date | None = None
    national_id: str | None = None
    phone: str = ""
    address: str = ""
    # Every identifier with its issuer (system): passports, other countries' ids, MRNs.
    identifiers: tuple[tuple[str, str], ...] = ()


FEATURE_COLUMNS = (
    "unique_id",
    "institution_id",
    "name_han",
    "name_key",
    "name_rev",
    "name_initial",
    "name_phonetic",
    "sex",
    "dob",
    "birth_year",
    "nid",
    "phone",
    "address",
    "ids",
)


def features(facts: PatientFacts) -> dict[str, Any]:
    """One row of the matching table (columns `FEATURE_COLUMNS`; None where unknown).

    A valid national id also supplies a missing birth date or sex.
    """
    keys = name_keys(facts.name, facts.family, facts.given)
    nid = normalise_national_id(facts.national_id)
    born = facts.birth_date or (national_id_birth_date(nid) if nid else None)
    sex = facts.sex if facts.sex in ("male", "female") else None
    if sex is None and nid:
        sex = national_id_sex(nid)
    return {
        "unique_id": facts.patient_id,
        "institution_id": facts.institution_id,
        "name_han": keys.han,
        "name_key": keys.key,
        "name_rev": keys.rev,
        "name_initial": keys.initial,
        "sex": sex,
        "dob": born.strftime("%Y%m%d") if born else None,
        "birth_year": str(born.year) if born else None,
        "nid": nid,
        "name_phonetic": keys.phonetic,
        "phone": phone_key(facts.phone),
        "address": address_key(facts.address),
        "ids": identifier_keys(facts.identifiers, nid),
    }


def identifier_keys(identifiers: tuple[tuple[str, str], ...], nid: str | None) -> str | None:
    """`system|value` of each identifier, sorted, space-separated (None if there is none).

    An identifier is only evidence with its issuer: `P123` of one passport office is not `P123`
    of another. A resident id already compared as `nid` is left out (it would count twice).
    """
    keys = set()
    for system, value in identifiers:
        text = _SPACE.sub("", unicodedata.normalize("NFKC", value or "")).upper()
        if not text or (nid is not None and normalise_national_id(text) == nid):
            continue
        issuer = _SPACE.sub("", system or "").lower()
        keys.add(f"{issuer}|{text}")
    return " ".join(sorted(keys)) or None


def facts_hash(row: dict[str, Any]) -> str:
    """A hash of a features row (what a link was decided on): it changes when a feed changes
    anything the matcher compares."""
    text = "\x1f".join(str(row.get(c) or "") for c in FEATURE_COLUMNS[1:])
    return hashlib.sha256(text.encode()).hexdigest()
