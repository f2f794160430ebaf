"""Exact scalar types for event fields.

Python's ``datetime`` keeps microseconds: msgspec rounds a nanosecond timestamp to the
nearest microsecond and ``datetime.fromisoformat`` truncates it, so half of all
nanosecond timestamps differ by 1 us depending on the decoder. :class:`Timestamp` keeps
the instant to the nanosecond, its UTC offset, and the exact text it was read from.

``Int64`` / ``UInt64`` are ``int`` fields that reject values outside their range (msgspec
checks the bounds in C). ``decimal.Decimal``, ``uuid.UUID`` and ``enum.Enum`` fields need
nothing extra: msgspec decodes them exactly (a JSON number is parsed into a Decimal from
its own text, never through float). A ``Decimal`` field takes a JSON number or a string
and is written back as a number; the registry refuses one that is NaN or infinite
(``"NaN"``, ``"-Infinity"``: see :mod:`evtools._decimals`), and takes the other spellings
of Python's ``Decimal()`` (``" 5"``, ``"1_000"``) as the numbers they spell.
:class:`DecimalText` is the decimal that travels as a string (``"5.10"``) and stays one,
written exactly so.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Annotated, Any

import msgspec

from ._accel import speedups

__all__ = ["DecimalText", "Int64", "Timestamp", "UInt64"]

Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
"""A signed 64-bit integer: any other value is a decode error, never a rounded float."""



class UInt64(int):
    """An unsigned 64-bit integer field (0 .. 2**64-1); any other value is a decode error.

    A subclass of ``int`` rather than an ``Annotated`` bound, because msgspec's bounds stop
    at int64: the registry's ``dec_hook`` checks the range instead.
    """

    __slots__ = ()
    MAX = 2**64 - 1

    def __new__(cls, value: int) -> UInt64:
        if type(value) is not int and not isinstance(value, UInt64):
            raise TypeError(f"Expected `int`, got `{type(value).__name__}`")
        if not 0 <= value <= cls.MAX:
            raise ValueError(f"Expected `int` in 0..{cls.MAX} (uint64), got {value}")
        return super().__new__(cls, value)

#: A decimal numeral as :class:`DecimalText` reads it from a JSON string (and as ``schema
#: infer`` recognises one): an optional minus, no leading zeros, no exponent.
DECIMAL_NUMERAL = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?", re.ASCII)


class DecimalText(Decimal):
    """A decimal field that travels as a JSON string (``"5.10"``) and is written back as
    the same string.

    Money is often sent as text so that no JavaScript or Go consumer rounds it through a
    float64. A ``decimal.Decimal`` field reads such a string exactly but the registry
    writes it back as a JSON number, which those consumers then round; this type keeps it
    a string, digit for digit (``"5.10"``, ``"-0.00"``, ``"0.0000001"``). Decoding takes a
    string of the form ``-?(0|[1-9][0-9]*)(.[0-9]+)?`` and nothing else: a JSON number
    (it would reach the hook as a float), ``"NaN"``, ``"1e3"``, ``" 5"`` or ``"1_000"``
    is an error. Arithmetic gives plain ``Decimal`` values, as for any subclass.
    """

    __slots__ = ()

    def __new__(cls, value: Any = "0", context: Any = None) -> DecimalText:
        self = super().__new__(cls, value, context)
        if not self.is_finite():
            raise ValueError(f"a DecimalText is a finite decimal, not {value!r}")
        return self

    def __repr__(self) -> str:
        return f"DecimalText({format(self, 'f')!r})"

    def __str__(self) -> str:
        return format(self, "f")  # "0.0000001", never "1E-7"


def _decimal_text(obj: Any) -> DecimalText:
    if type(obj) is not str:
        raise TypeError(f"Expected `str` (a decimal written as text, such as \"5.10\"), "
                        f"got `{type(obj).__name__}`")
    if DECIMAL_NUMERAL.fullmatch(obj) is None:
        raise ValueError(f"{obj!r} is not a decimal numeral (such as \"5.10\" or \"-3\")")
    return DecimalText(obj)


# Field ranges are checked here, in C; only the day of month needs the calendar. ASCII
# digits only (``\d`` would take any Unicode digit); year 0000 does not fit a datetime.
_SHAPE = (r"(?!0000)\d{{4}}-(?:0[1-9]|1[0-2])-{day}[Tt](?:[01]\d|2[0-3]):[0-5]\d:{second}"
          r"(?:\.\d{{1,9}})?(?:[Zz]|[+-](?:[01]\d|2[0-3]):[0-5]\d)")
_RFC3339_SHAPE = re.compile(_SHAPE.format(day=r"(?:0[1-9]|[12]\d|3[01])",
                                          second=r"(?:[0-5]\d|60)"), re.ASCII).fullmatch
# days 01-28 and seconds 00-59: nothing else to check (the hot path)
_EVERYDAY_SHAPE = re.compile(_SHAPE.format(day=r"(?:0[1-9]|1\d|2[0-8])", second=r"[0-5]\d"),
                             re.ASCII).fullmatch
_RFC3339 = re.compile(
    r"(\d{4})-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[Tt]([01]\d|2[0-3]):([0-5]\d):([0-5]\d|60)"
    r"(?:\.(\d{1,9}))?([Zz]|[+-](?:[01]\d|2[0-3]):[0-5]\d)", re.ASCII
)
_NS_PER_S = 1_000_000_000


class Timestamp:
    """An RFC 3339 timestamp that keeps nanoseconds, its UTC offset and its text.

    Two timestamps are equal when they name the same instant *and* carry the same UTC
    offset (a consumer that turns ``+02:00`` into ``Z`` has changed the state). They order
    by instant. ``str()`` gives the text the timestamp was read from.
    """

    __slots__ = ("_dt", "_ns", "_text")

    # parsed from the text when first needed, once (``_dt`` None until then)
    _dt: datetime | None  # aware, truncated to the microsecond
    _ns: int  # nanoseconds below the microsecond, 0..999 (unset until parsed)
    _text: str

    def __init__(self, text: str) -> None:
        if type(text) is str and _RFC3339_SHAPE(text) is not None:
            self._text = text
            self._dt = None
            # the day (29-31) and a leap second (60) need the calendar: check them now
            if text[8:10] > "28" or text[17:19] == "60":
                self._parse()
            return
        if isinstance(text, str) and re.fullmatch(
            r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?", text
        ):
            raise ValueError(f"timestamp {text!r} has no UTC offset")
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")

    def _parse(self) -> datetime:
        text = self._text
        if text[10] == "T" and text[-1] != "z" and text[17:19] != "60":
            # the common spelling: datetime parses it in C (to the microsecond, checking
            # the calendar); the digits below the microsecond are ours
            try:
                dt = _fromisoformat(text)
            except ValueError as e:
                raise ValueError(f"not a valid timestamp: {text!r} ({e})") from None
            end = len(text) - (1 if text[-1] == "Z" else 6)  # of the fraction
            self._dt = dt
            # digits 7-9 of the fraction start at 26
            self._ns = int(text[26:end].ljust(3, "0")) if end > 26 and text[19] == "." else 0
            return dt
        m = _RFC3339.fullmatch(text)
        assert m is not None  # checked in __init__
        year, month, day, hour, minute, second, frac, offset = m.groups()
        frac = frac or ""
        try:
            dt = datetime.fromisoformat(f"{year}-{month}-{day}T{hour}:{minute}:{second}."
                                        f"{frac[:6].ljust(6, '0')}{_offset_text(offset)}")
        except ValueError as e:
            raise ValueError(f"not a valid timestamp: {self._text!r} ({e})") from None
        self._dt = dt
        self._ns = int(frac[6:9].ljust(3, "0")) if len(frac) > 6 else 0
        return dt

    @property
    def _datetime(self) -> datetime:
        dt = self._dt
        return self._parse() if dt is None else dt

    # -- constructors ---------------------------------------------------------------------

    @classmethod
    def from_datetime(cls, value: datetime, nanosecond: int = 0) -> Timestamp:
        """From an aware ``datetime`` plus ``nanosecond`` (0-999) below its microsecond."""
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("datetime has no UTC offset")
        if not 0 <= nanosecond <= 999:
            raise ValueError("nanosecond must be in 0..999")
        given = value.utcoffset() or timedelta(0)
        if given % timedelta(minutes=1):  # RFC 3339 writes whole minutes, nothing finer
            raise ValueError(f"a UTC offset of {int(given.total_seconds()):+d} seconds is not "
                             "a whole number of minutes, which RFC 3339 cannot write (the "
                             "text would name another instant)")
        frac = f"{value.microsecond:06d}{nanosecond:03d}".rstrip("0")
        # keep 3, 6 or 9 digits so the text reads the way producers write it
        width = 0 if not frac else (3 if len(frac) <= 3 else 6 if len(frac) <= 6 else 9)
        text = (f"{value.year:04d}-{value.month:02d}-{value.day:02d}"
                f"T{value.hour:02d}:{value.minute:02d}:{value.second:02d}")
        if width:
            text += "." + f"{value.microsecond:06d}{nanosecond:03d}"[:width]
        offset = value.utcoffset() or timedelta(0)
        text += "Z" if offset == timedelta(0) else _format_offset(offset)
        return cls(text)

    @classmethod
    def from_epoch_ns(cls, epoch_ns: int, offset: timedelta = timedelta(0)) -> Timestamp:
        seconds, ns = divmod(epoch_ns, _NS_PER_S)
        dt = datetime.fromtimestamp(seconds, UTC).astimezone(timezone(offset))
        return cls.from_datetime(dt.replace(microsecond=ns // 1000), ns % 1000)

    # -- views ----------------------------------------------------------------------------

    @property
    def nanosecond(self) -> int:
        """Nanoseconds within the second (0..999,999,999)."""
        return self._datetime.microsecond * 1000 + self._ns

    @property
    def utcoffset(self) -> timedelta:
        offset = self._datetime.utcoffset()
        assert offset is not None  # always aware by construction
        return offset

    @property
    def epoch_ns(self) -> int:
        """Nanoseconds since 1970-01-01T00:00:00Z, exact."""
        delta = self._datetime - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * _NS_PER_S + self.nanosecond

    def to_datetime(self, *, truncate: bool = False) -> datetime:
        """The aware ``datetime``; raises if that would drop nanoseconds, unless
        ``truncate=True`` says dropping them is wanted."""
        dt = self._datetime
        if self._ns and not truncate:
            raise ValueError(f"{self._text} has sub-microsecond digits that datetime drops; "
                             "pass truncate=True to drop them")
        return dt

    def isoformat(self) -> str:
        return self._text

    # -- protocol -------------------------------------------------------------------------

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"Timestamp({self._text!r})"

    def _key(self) -> tuple[datetime, int]:
        return (self._datetime, self._ns)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Timestamp):
            return NotImplemented
        return self._key() == other._key() and self.utcoffset == other.utcoffset

    def __hash__(self) -> int:
        return hash((*self._key(), self.utcoffset))

    def __lt__(self, other: Timestamp) -> bool:
        return self._key() < other._key()

    def __le__(self, other: Timestamp) -> bool:
        return self._key() <= other._key()

    def __gt__(self, other: Timestamp) -> bool:
        return self._key() > other._key()

    def __ge__(self, other: Timestamp) -> bool:
        return self._key() >= other._key()

    def __sub__(self, other: Timestamp) -> timedelta:
        """The time between two instants, to the microsecond (timedelta's resolution)."""
        return timedelta(microseconds=(self.epoch_ns - other.epoch_ns) // 1000)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Timestamp, (self._text,))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_fromisoformat = datetime.fromisoformat
_new_timestamp = object.__new__


def _offset_text(offset: str) -> str:
    return "+00:00" if offset in ("Z", "z") else offset


def _format_offset(offset: timedelta) -> str:
    total = int(offset.total_seconds())
    sign = "+" if total >= 0 else "-"
    hours, minutes = divmod(abs(total) // 60, 60)
    return f"{sign}{hours:02d}:{minutes:02d}"


# -- msgspec hooks ---------------------------------------------------------------------------

def py_dec_hook(type_: type, obj: Any) -> Any:
    """msgspec ``dec_hook`` for the types of this module, in Python (the reference: see
    :data:`dec_hook`)."""
    if type_ is UInt64:
        return UInt64(obj)
    if type_ is DecimalText:
        return _decimal_text(obj)
    if type_ is Timestamp:
        if type(obj) is str and _EVERYDAY_SHAPE(obj) is not None:
            ts = _new_timestamp(Timestamp)  # the hot path: nothing left to check
            ts._text = obj
            ts._dt = None
            return ts
        if not isinstance(obj, str):
            raise TypeError(f"Expected `str` (RFC 3339 timestamp), got `{type(obj).__name__}`")
        return Timestamp(obj)
    raise TypeError(f"evtools cannot decode type {type_!r}")


#: msgspec ``dec_hook`` for the types of this module: the C ``TimestampHook`` of
#: ``evtools._speedups`` where it was built (it takes plain RFC 3339 text straight to a
#: Timestamp and hands everything else to :func:`py_dec_hook`), else :func:`py_dec_hook`.
dec_hook: Callable[[type, Any], Any] = (
    py_dec_hook if speedups is None else speedups.TimestampHook(Timestamp, py_dec_hook))


def enc_hook(obj: Any) -> Any:
    """msgspec ``enc_hook`` for the types of this module."""
    if isinstance(obj, Timestamp):
        return obj.isoformat()
    if isinstance(obj, UInt64):
        return int(obj)
    if isinstance(obj, DecimalText):
        return str(obj)
    raise TypeError(f"evtools cannot encode {type(obj).__name__}")
