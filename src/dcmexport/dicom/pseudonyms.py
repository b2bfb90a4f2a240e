"""Keyed pseudonyms for de-identification: UIDs, patient names and IDs, date shifts.

Why keyed (HMAC-SHA256) and never a plain hash: a plain hash of a UID or patient ID can be
reversed by hashing candidate values (UIDs are predictable, IDs are short). With a secret key
the same key gives the same pseudonyms across files, runs and worker processes, so one study
stays one study and references still resolve, while nobody without the key can link back.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import re
import secrets

from pydicom.uid import UID_dictionary

KEY_BYTES = 32
UID_ROOT = "2.25."
# Date shifts go 1 to 10 years back; a past date stays in the past and stays a valid DA.
MIN_SHIFT_DAYS = 365
SHIFT_SPAN_DAYS = 3288
# Roots whose UIDs name things of the standard or of coding schemes, never an instance: the
# DICOM root (SOP classes, transfer syntaxes, LDAP OIDs, well-known frames of reference) and
# the HL7 OID root used by coding schemes (SNOMED CT, LOINC, …).
WELL_KNOWN_ROOTS = ("1.2.840.10008.", "2.16.840.1.113883.")

_DATE = re.compile(r"^(\d{4})(\d{2})?(\d{2})?$")


def random_key() -> bytes:
    """A fresh random key for a run without ``--key`` (pseudonyms then differ per run)."""
    return secrets.token_bytes(KEY_BYTES)


def key_from_text(secret: str) -> bytes:
    """The key bytes for a user-given ``--key`` / ``DCMEXPORT_KEY`` text."""
    return secret.encode("utf-8")


def _digest(key: bytes, purpose: str, value: str) -> bytes:
    """HMAC-SHA256 over a purpose label and the value, so the same value never gives the
    same output for two purposes (a patient ID's pseudonym is not its date shift)."""
    return hmac.new(key, f"{purpose}\x00{value}".encode(), hashlib.sha256).digest()


def keyed_token(key: bytes, purpose: str, value: str, length: int = 16) -> str:
    """`length` hex digits of HMAC-SHA256(key, purpose, value): a pseudonymous handle for
    a value that must not be shown or stored in clear (an input's path, a resume key)."""
    return _digest(key, purpose, value).hex()[:length]


def is_well_known_uid(uid: str) -> bool:
    """SOP classes, transfer syntaxes, coding schemes and other UIDs of the standard."""
    return uid in UID_dictionary or uid.startswith(WELL_KNOWN_ROOTS)


def keyed_uid(key: bytes, uid: str) -> str:
    """``2.25.<int>``: the first 128 bits of HMAC-SHA256(key, uid), made a UUID (version 8,
    RFC 9562 custom) so the result is a valid ``2.25`` UID of at most 44 characters (PS3.5
    B.2). Well-known UIDs and empty values are returned unchanged."""
    uid = uid.strip().rstrip("\x00")
    if not uid or is_well_known_uid(uid):
        return uid
    value = int.from_bytes(_digest(key, "uid", uid)[:16], "big")
    value = (value & ~(0xF << 76)) | (0x8 << 76)  # version 8
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 9562 variant
    return f"{UID_ROOT}{value}"


def patient_id_pseudonym(key: bytes, patient_id: str) -> str:
    """``ANON<12 hex>``: keyed, obviously not a real ID, valid LO."""
    return "ANON" + _digest(key, "patient-id", patient_id).hex()[:12].upper()


def patient_name_pseudonym(key: bytes, patient_id: str) -> str:
    """``ANON^<8 hex>`` from the original Patient ID: one name per patient, obviously fake."""
    return "ANON^" + _digest(key, "patient-name", patient_id).hex()[:8].upper()


def date_offset_days(key: bytes, patient_id: str) -> int:
    """The whole-day shift of one patient (negative: dates move back 1 to 10 years)."""
    value = int.from_bytes(_digest(key, "date-shift", patient_id)[:8], "big")
    return -(MIN_SHIFT_DAYS + value % SHIFT_SPAN_DAYS)


def _shift_date_digits(digits: str, days: int) -> str | None:
    """Shift a DA value (``YYYY``, ``YYYYMM`` or ``YYYYMMDD``), keeping its precision."""
    match = _DATE.match(digits)
    if match is None:
        return None
    year, month, day = match.groups()
    try:
        date = datetime.date(int(year), int(month or 1), int(day or 1))
        shifted = date + datetime.timedelta(days=days)
    except (ValueError, OverflowError):
        return None
    full = shifted.strftime("%Y%m%d")
    if len(full) != 8:  # a year before 1000 is printed without zero padding on some libc
        full = f"{shifted.year:04d}{shifted.month:02d}{shifted.day:02d}"
    return full[: len(digits)]


def shift_da(value: str, days: int) -> str | None:
    """Shift one DA value (also a ``A-B`` range, and the old ``YYYY.MM.DD`` form).

    Returns None when the value is not a date, so the caller can empty it rather than keep it.
    """
    value = value.strip()
    if "-" in value:
        parts = [shift_da(part, days) if part else "" for part in value.split("-", 1)]
        return None if any(part is None for part in parts) else "-".join(p or "" for p in parts)
    return _shift_date_digits(value.replace(".", ""), days)


def shift_dt(value: str, days: int) -> str | None:
    """Shift the date part of one DT value; the time of day, fraction and UTC offset stay."""
    value = value.strip()
    if "-" in value[1:] and not re.search(r"[+-]\d{4}$", value):
        first, second = value.split("-", 1)
        parts = [shift_dt(part, days) if part else "" for part in (first, second)]
        return None if any(part is None for part in parts) else "-".join(p or "" for p in parts)
    date_len = len(value) if len(value) < 8 else 8
    date_part, rest = value[:date_len], value[date_len:]
    if not date_part.isdigit() or len(date_part) not in (4, 6, 8):
        return None
    shifted = _shift_date_digits(date_part, days)
    return None if shifted is None else shifted + rest
