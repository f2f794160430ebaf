"""Go's ``strconv.ParseFloat(s, 64)`` for JSON number texts, bug for bug (private).

``encoding/json`` turns every number it puts into an ``interface{}`` into a float64 with
``strconv.ParseFloat``. That is correctly rounded (Python's ``float()`` gives the same
float64) for every number text of up to 800 characters, but not for longer ones
(measured with Go 1.19, the differential tests' Go; applied to every version the go
dialect accepts, as no later change is known; golang.org/issue/42436 is the exponent
half):

* the exact slow path (``decimal.set``) keeps at most 800 digits and then puts the
  decimal point after the digits it kept, not after all the digits before the ``.``:
  ``"1" + "0" * 4400 + "e-4400"`` reads as ``0``, not ``1``, whenever the fast path
  (exact float arithmetic, then Eisel-Lemire) gives up;
* both paths stop reading exponent digits once the exponent reaches 10000, so
  ``"0." + "0" * 100000 + "1e100001"`` reads as ``0``.

:func:`parse_float` ports ``atof64`` (``readFloat``, ``atof64exact``, ``eiselLemire64``
and the slow path's rounding) for such long texts and uses ``float()`` for the rest.
It returns ``inf`` or ``-inf`` where Go reports a range error.
"""

from __future__ import annotations

from functools import cache

__all__ = ["parse_float"]


_MASK64 = (1 << 64) - 1
_POW10 = [10.0**i for i in range(23)]  # float64pow10: exact float64 powers of ten
_INF = float("inf")
_MIN_EXP10, _MAX_EXP10 = -348, 347  # detailedPowersOfTen{Min,Max}Exp10
_DECIMAL_DIGITS = 800  # len(decimal.d)
#: Number texts up to this long fit the slow path's digits: Go reads them correctly, and
#: ``float()`` gives its result.
SHORT = _DECIMAL_DIGITS


def parse_float(text: str) -> float:
    """What ``strconv.ParseFloat(text, 64)`` returns for a JSON number ``text`` (an
    infinity where it reports a range error)."""
    if len(text) <= SHORT:
        return float(text)
    return _atof64(text)


@cache
def _power_of_ten(q: int) -> tuple[int, int]:
    """detailedPowersOfTen's row for 10**q: the 128-bit mantissa of 10**q rounded down
    (top bit set), as (low 64 bits, high 64 bits)."""
    if q >= 0:
        p = 10**q
        shift = 128 - p.bit_length()
        m = p << shift if shift >= 0 else p >> -shift
    else:
        d = 10**-q
        m = (1 << (127 + d.bit_length())) // d
        if m.bit_length() > 128:
            m >>= 1
    return m & _MASK64, m >> 64


def _read_exponent(s: str, i: int) -> int:
    """The exponent after the ``e`` at ``s[i]``, as Go reads it: digits stop counting
    once the value reaches 10000."""
    i += 1
    sign = 1
    if s[i] == "+":
        i += 1
    elif s[i] == "-":
        i += 1
        sign = -1
    e = 0
    for c in s[i:]:
        if e < 10000:
            e = e * 10 + ord(c) - 48
    return sign * e


def _read_float(s: str) -> tuple[int, int, bool, bool, int]:
    """readFloat: (mantissa of up to 19 digits, exp10, neg, trunc, end of mantissa)."""
    i = 0
    neg = s[0] == "-"
    if neg:
        i = 1
    mantissa = nd = nd_mant = dp = 0
    sawdot = trunc = False
    n = len(s)
    while i < n:
        c = s[i]
        if c == ".":
            sawdot = True
            dp = nd
        elif "0" <= c <= "9":
            if c == "0" and nd == 0:  # leading zeros
                dp -= 1
            else:
                nd += 1
                if nd_mant < 19:
                    mantissa = mantissa * 10 + ord(c) - 48
                    nd_mant += 1
                elif c != "0":
                    trunc = True
        else:
            break
        i += 1
    end = i
    if not sawdot:
        dp = nd
    if i < n:
        dp += _read_exponent(s, i)
    exp = dp - nd_mant if mantissa != 0 else 0
    return mantissa, exp, neg, trunc, end


def _atof64exact(mantissa: int, exp: int, neg: bool) -> float | None:
    if mantissa >> 52:
        return None
    f = float(mantissa)
    if neg:
        f = -f
    if exp == 0:
        return f
    if 0 < exp <= 15 + 22:
        if exp > 22:
            f *= _POW10[exp - 22]
            exp = 22
        if f > 1e15 or f < -1e15:
            return None
        return f * _POW10[exp]
    if -22 <= exp < 0:
        return f / _POW10[-exp]
    return None


def _eisel_lemire64(man: int, exp10: int, neg: bool) -> float | None:
    """eiselLemire64: the float64 nearest man * 10**exp10, or None where it gives up."""
    if man == 0:
        return -0.0 if neg else 0.0
    if exp10 < _MIN_EXP10 or exp10 > _MAX_EXP10:
        return None
    clz = 64 - man.bit_length()
    man = (man << clz) & _MASK64
    ret_exp2 = ((217706 * exp10 >> 16) + 64 + 1023 - clz) & _MASK64
    lo, hi = _power_of_ten(exp10)
    x = man * hi
    x_hi, x_lo = x >> 64, x & _MASK64
    if x_hi & 0x1FF == 0x1FF and x_lo + man > _MASK64:
        y = man * lo
        y_hi, y_lo = y >> 64, y & _MASK64
        merged_hi, merged_lo = x_hi, x_lo + y_hi
        if merged_lo > _MASK64:
            merged_lo &= _MASK64
            merged_hi += 1
        if merged_hi & 0x1FF == 0x1FF and merged_lo == _MASK64 and y_lo + man > _MASK64:
            return None
        x_hi, x_lo = merged_hi, merged_lo
    msb = x_hi >> 63
    ret_mantissa = x_hi >> (msb + 9)
    ret_exp2 = (ret_exp2 - (1 ^ msb)) & _MASK64
    if x_lo == 0 and x_hi & 0x1FF == 0 and ret_mantissa & 3 == 1:
        return None
    ret_mantissa += ret_mantissa & 1
    ret_mantissa >>= 1
    if ret_mantissa >> 53:
        ret_mantissa >>= 1
        ret_exp2 = (ret_exp2 + 1) & _MASK64
    if ((ret_exp2 - 1) & _MASK64) >= 0x7FF - 1:
        return None
    f = float.fromhex(f"0x1.{ret_mantissa & ((1 << 52) - 1):013x}p{ret_exp2 - 1023}")
    return -f if neg else f


def _decimal_slow_path(s: str, neg: bool, end: int) -> float:
    """decimal.set + decimal.floatBits: the digits kept (800 at most, with a sticky
    ``trunc`` for nonzero digits dropped), the decimal point where decimal.set puts it,
    then exact rounding to nearest even."""
    mantissa_text = s[1 if neg else 0 : end]
    whole, _, frac = mantissa_text.partition(".")
    digits: list[str] = []
    dp = 0
    trunc = False
    for part, is_frac in ((whole, False), (frac, True)):
        if is_frac:
            dp = len(digits)  # b.dp = b.nd at the '.'
        for c in part:
            if c == "0" and not digits:
                dp -= 1
            elif len(digits) < _DECIMAL_DIGITS:
                digits.append(c)
            elif c != "0":
                trunc = True
    if "." not in mantissa_text:
        dp = len(digits)
    if end < len(s):
        dp += _read_exponent(s, end)
    sign = -1.0 if neg else 1.0
    if not digits:
        return sign * 0.0
    if dp > 310:
        return sign * _INF
    if dp < -330:
        return sign * 0.0
    text = "".join(digits) + ("1" if trunc else "")  # a sticky digit breaks ties upward
    num = int(text)
    exp10 = dp - len(text)
    try:
        value = float(num * 10**exp10) if exp10 >= 0 else num / 10**-exp10
    except OverflowError:
        value = _INF
    return sign * value


def _atof64(s: str) -> float:
    mantissa, exp, neg, trunc, end = _read_float(s)
    if not trunc:
        f = _atof64exact(mantissa, exp, neg)
        if f is not None:
            return f
    f = _eisel_lemire64(mantissa, exp, neg)
    if f is not None and (not trunc or _eisel_lemire64(mantissa + 1, exp, neg) == f):
        return f
    return _decimal_slow_path(s, neg, end)
