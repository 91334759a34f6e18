"""Certified signs of weakening margins: rigorous enclosures at ≥ 50 digits.

A counterexample to a weakening is reported only when the sign of its margin is certain.
:func:`certify` returns a :class:`Certificate` — an interval [lo, hi] that provably
contains the weakening's margin *in exact arithmetic on the exact float inputs* of the
instance — and the counterexample is certified iff ``hi < 0`` (or, for a strict weakening,
the margin is proved to be exactly 0).

Methods
-------
eigenvalues
    Margins built from eigenvalues only (W, R-any-vector, S2-repeated-top, T4.3a-per-draw,
    T4.3b-nonzero-mean, T4.3c-no-genericity off the diagonal case, P3.2-no-LCM, AH-accurate):
    the matrices are formed in interval arithmetic (``mpmath.iv``) from the exact floats,
    and each eigenvalue is enclosed by the Ostrowski + Weyl argument of
    :func:`fimtheory.highprec.eigenvalue_enclosures`, extended here to interval matrices
    (:func:`iv_eigenvalue_enclosures`). The margin is then evaluated in interval arithmetic.
top-pair
    Margins with the top eigenvector (SIGN-lambda1-denominator: a2 and ‖P⊥Ev‖²). The mp top
    eigenvector u is compared with the exact v1 through Parlett's gap theorem,
    sin∠(u, v1) ≤ ‖Au − μu‖ / (μ − λ2); the errors of uᵀEu, ‖Eu‖² and of the resolvent
    form a2 = (Ev)ᵀ(λ1I − A + vvᵀ)⁻¹(Ev) − (vᵀEv)² are bounded in terms of that angle (see
    :func:`top_pair_enclosure`).
exact
    C-* (the float evaluation is a sequence of exact float comparisons) and the diagonal case
    of T4.3c-no-genericity (eigenvalues of a diagonal matrix are its entries; the mean is
    computed in :class:`fractions.Fraction`, which proves the margin is exactly 0).
declared-enclosure
    The weakening's own rigorous evaluator certified it: the ``enclosure=`` of a claim
    declared with :mod:`fimtheory.claim_api` (e.g. T4.3b-S-no-cubic), or the interval
    evaluator of a claim bound to a user's subject (:mod:`properties.subjects`). Files
    written before this name existed say ``eigenvalues`` for these; replay accepts that
    spelling as the same method (:data:`LEGACY_METHODS`). An own enclosure of exactly [0, 0]
    is recorded as ``exact``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import mpmath
import numpy as np

from fimtheory import enclosures as _enc
from fimtheory._generated import series as _series
from fimtheory.errors import InputError, UnknownIdError
from fimtheory.highprec import eigenvalue_enclosures, iv_from_mp, mp_eigh, working_precision

iv = mpmath.iv

#: Precisions tried in turn until the sign is certain.
DPS_LADDER = (50, 100, 200)

#: Method of a certificate computed by the weakening's own rigorous evaluator.
DECLARED_ENCLOSURE = "declared-enclosure"
#: Older spellings of a method, as stored files may hold them: {old name: current name}.
LEGACY_METHODS = {"eigenvalues": DECLARED_ENCLOSURE}


# --------------------------------------------------------------------------------------
# the certificate
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certificate:
    """A rigorous enclosure of a weakening's margin.

    Attributes
    ----------
    lo, hi : mpmath.mpf or None
        Endpoints: the exact margin lies in [lo, hi] (None: no enclosure was computed).
    dps : int
        Decimal digits of the interval arithmetic.
    method : str
        ``'eigenvalues'``, ``'top-pair'``, ``'exact'``, ``'interval'`` or
        ``'declared-enclosure'`` (see the module docstring).
    strict : bool
        Whether the weakening is strict (it holds iff margin > 0, so margin 0 is a violation).
    exact_zero : bool
        The margin was proved to be exactly 0 (rational or exact float arithmetic); then
        lo = hi = 0.
    note : str
        Why certification failed, when it did.

    Decision rule (:attr:`certified`)
    ---------------------------------
    An enclosure is *usable* only when both ends are finite and lo ≤ hi (a NaN or infinite
    end means the interval arithmetic overflowed or broke down; it certifies nothing).
    A usable enclosure certifies a violation iff

    * non-strict weakening (holds iff margin ≥ 0): hi < 0;
    * strict weakening (holds iff margin > 0): hi ≤ 0 — e.g. hi < 0, or lo < 0 = hi, or a
      proved exact 0 (lo = hi = 0).

    An enclosure with lo < 0 < hi (it straddles 0) never certifies anything; nor does
    lo ≤ 0 = hi for a non-strict weakening, nor any enclosure with lo > 0.
    """

    lo: object
    hi: object
    dps: int
    method: str
    strict: bool = False
    exact_zero: bool = False
    note: str = ""

    def __post_init__(self):
        if (self.lo is None) != (self.hi is None):
            raise InputError("a certificate needs both endpoints or neither")
        if self.usable and self.lo > self.hi:
            raise InputError(f"certificate endpoints out of order: lo {self.lo} > hi {self.hi}")
        if self.exact_zero and not (self.usable and self.lo == 0 and self.hi == 0):
            raise InputError(f"exact_zero certificate must have lo = hi = 0, got [{self.lo}, {self.hi}]")

    @property
    def usable(self) -> bool:
        """Both endpoints present and finite (order is checked at construction)."""
        if self.lo is None or self.hi is None:
            return False
        return bool(mpmath.isfinite(self.lo) and mpmath.isfinite(self.hi))

    @property
    def certified(self) -> bool:
        """The margin certainly violates the weakening (see the class docstring)."""
        if not self.usable:
            return False
        return bool(self.hi <= 0) if self.strict else bool(self.hi < 0)

    @property
    def sign(self) -> int | None:
        """-1 certainly negative, 0 proved zero (lo = hi = 0), +1 certainly positive,
        None if undecided (straddling, touching 0 at one end, or not usable)."""
        if not self.usable:
            return None
        if self.lo == 0 and self.hi == 0:
            return 0
        if self.hi < 0:
            return -1
        if self.lo > 0:
            return 1
        return None

    def to_json(self) -> dict:
        """Endpoints as decimal strings rounded outward (the stored interval still encloses),
        plus their exact binary values ``man*2^exp``."""
        return {
            "lo": None if self.lo is None else outward_str(self.lo, "down"),
            "hi": None if self.hi is None else outward_str(self.hi, "up"),
            "lo_exact": None if self.lo is None else exact_str(self.lo),
            "hi_exact": None if self.hi is None else exact_str(self.hi),
            "dps": self.dps,
            "method": self.method,
            "strict": self.strict,
            "exact_zero": self.exact_zero,
            "certified": self.certified,
            "note": self.note,
        }

    @classmethod
    def from_json(cls, obj: dict) -> Certificate:
        """The certificate of :meth:`to_json`, endpoints read from their exact binary values.

        Raises
        ------
        InputError
            On missing fields, unparsable endpoints, or decimal endpoints that do not enclose
            the exact ones (the outward rounding was not preserved).
        """
        if not isinstance(obj, dict):
            raise InputError("certificate is not an object")
        try:
            lo, hi = parse_exact(obj["lo_exact"]), parse_exact(obj["hi_exact"])
            cert = cls(
                lo,
                hi,
                int(obj["dps"]),
                str(obj["method"]),
                bool(obj["strict"]),
                bool(obj["exact_zero"]),
                str(obj.get("note", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"certificate field unreadable: {type(exc).__name__}: {exc}") from None
        if cert.usable:
            dec_lo, dec_hi = obj.get("lo"), obj.get("hi")
            if not decimal_encloses(dec_lo, dec_hi, cert.lo, cert.hi):
                raise InputError(f"decimal endpoints [{dec_lo}, {dec_hi}] do not enclose the exact ones")
        return cert

    def short(self, digits: int = 6) -> str:
        """``[lo, hi]`` with ``digits`` significant digits, rounded outward."""
        if self.hi is None:
            return "—"
        if self.exact_zero:
            return "= 0 (exact)"
        return f"[{outward_str(self.lo, 'down', digits)}, {outward_str(self.hi, 'up', digits)}]"


def decimal_encloses(dec_lo, dec_hi, lo, hi) -> bool:
    """Whether the decimal strings [dec_lo, dec_hi] enclose the mpf interval [lo, hi],
    compared exactly (in :class:`fractions.Fraction`); False for unparsable strings."""
    try:
        return Fraction(str(dec_lo)) <= _as_fraction(lo) and _as_fraction(hi) <= Fraction(str(dec_hi))
    except (TypeError, ValueError, ZeroDivisionError, InputError):
        return False


def parse_exact(s) -> mpmath.mpf | None:
    """Inverse of :func:`exact_str`: the exact mpf of ``'man*2^exp'`` (``'0'``, ``'nan'``,
    ``'+inf'``, ``'-inf'`` also accepted; None stays None). The result carries its full
    mantissa whatever the working precision (mpf comparisons are exact)."""
    if s is None:
        return None
    if not isinstance(s, str):
        raise InputError(f"exact endpoint must be a string, got {type(s).__name__}")
    if s in ("nan", "+inf", "-inf"):
        return mpmath.mpf(s)
    if s == "0":
        return mpmath.mpf(0)
    try:
        man_s, exp_s = s.split("*2^")
        man, exp = int(man_s), int(exp_s)
    except ValueError:
        raise InputError(f"exact endpoint {s!r} is not 'man*2^exp'") from None
    if man == 0:
        return mpmath.mpf(0)
    with mpmath.workprec(abs(man).bit_length() + 8):
        return mpmath.ldexp(mpmath.mpf(man), exp)


def _as_fraction(x) -> Fraction:
    if isinstance(x, Fraction):
        return x
    if isinstance(x, float | int):
        return Fraction(x)
    if not isinstance(x, mpmath.mpf):  # re-wrapping an mpf would round it to mp.prec
        x = mpmath.mpf(x)
    if not mpmath.isfinite(x):
        raise InputError(f"non-finite endpoint {x}")
    sign, man, exp, _ = x._mpf_
    man = -int(man) if sign else int(man)
    return Fraction(man) * (Fraction(2) ** int(exp)) if man else Fraction(0)


def _nonfinite_str(x) -> str:
    if mpmath.isnan(x):
        return "nan"
    return "+inf" if x > 0 else "-inf"


def exact_str(x) -> str:
    """Exact binary value of an mpf endpoint as ``'man*2^exp'``."""
    if not isinstance(x, mpmath.mpf):
        x = mpmath.mpf(x)
    if not mpmath.isfinite(x):
        return _nonfinite_str(x)
    if x == 0:
        return "0"
    sign, man, exp, _ = x._mpf_
    return f"{'-' if sign else ''}{int(man)}*2^{int(exp)}"


def outward_str(x, direction: str, digits: int = 30) -> str:
    """Decimal string of ``x`` with ``digits`` significant digits, rounded toward −∞
    (``'down'``) or +∞ (``'up'``), so that it is a valid enclosure endpoint (non-finite
    values as ``'nan'``, ``'+inf'``, ``'-inf'``)."""
    if not isinstance(x, Fraction | float | int | mpmath.mpf):
        x = mpmath.mpf(x)
    if not isinstance(x, Fraction) and not mpmath.isfinite(x):
        return _nonfinite_str(x)
    f = _as_fraction(x)
    if f == 0:
        return "0"
    e = math.floor(math.log10(abs(f.numerator)) - math.log10(f.denominator))
    # correct the estimate so that 10^e ≤ |f| < 10^(e+1)
    while abs(f) >= Fraction(10) ** (e + 1):
        e += 1
    while abs(f) < Fraction(10) ** e:
        e -= 1
    shift = digits - 1 - e
    scaled = f * Fraction(10) ** shift
    n = math.floor(scaled) if direction == "down" else math.ceil(scaled)
    if abs(n) >= 10**digits:  # rounding carried into a new digit
        shift -= 1
        scaled = f * Fraction(10) ** shift
        n = math.floor(scaled) if direction == "down" else math.ceil(scaled)
    sign = "-" if n < 0 else ""
    s = str(abs(n))
    mant = s[0] + ("." + s[1:].rstrip("0") if s[1:].rstrip("0") else "")
    return f"{sign}{mant}e{len(s) - 1 - shift:+d}"


# --------------------------------------------------------------------------------------
# interval building blocks
# --------------------------------------------------------------------------------------


# Interval primitives shared with the adjudicator's evaluators (fimtheory.enclosures); the
# margin formulas below stay this module's own.
_lo = _enc.lo
_hi = _enc.hi
_mid_matrix = _enc.mid_matrix
_frobenius_upper = _enc.frobenius_upper
ivf = _enc.ivf
iv_matrix = _enc.iv_matrix
iv_column = _enc.iv_column
iv_abs = _enc.iv_abs
iv_sq = _enc.iv_sq
iv_dot = _enc.iv_dot
iv_norm_sq = _enc.iv_norm_sq
iv_norm = _enc.iv_norm
iv_max = _enc.iv_max
iv_min = _enc.iv_min


def _to_iv(m: mpmath.matrix) -> mpmath.matrix:
    return iv_from_mp(m)


def iv_eigenvalue_enclosures(M) -> list:
    """Rigorous enclosures (intervals, descending) of the eigenvalues of every symmetric
    matrix inside the symmetric interval matrix ``M`` — :func:`fimtheory.enclosures.iv_eigenvalue_enclosures`
    (Weyl on XᵀMX − D for the midpoint's mp eigenvectors X, Ostrowski back to M), with its
    failure reported as :class:`InputError`. Call inside :func:`working_precision`."""
    try:
        return _enc.iv_eigenvalue_enclosures(M)
    except _enc.EnclosureError as exc:
        raise InputError(str(exc)) from None


def float_eigenvalue_enclosures(A) -> list:
    """Intervals of :func:`fimtheory.highprec.eigenvalue_enclosures` for a float matrix."""
    return [iv.mpf([lo, hi]) for lo, hi in eigenvalue_enclosures(np.asarray(A, dtype=float), mpmath.mp.dps)]


def iv_lambda_max(M):
    return iv_max(iv_eigenvalue_enclosures(M))


def iv_sym_norm(encl):
    """‖S‖₂ = max(|λ_max|, |λ_min|) from eigenvalue enclosures."""
    return iv_max([iv_abs(encl[0]), iv_abs(encl[-1])])


def _series_iv(fn, *args):
    """Call a generated series formula on intervals, refusing any float fallback (which
    would silently lose rigour)."""
    out = fn(*args)
    if not isinstance(out, mpmath.ctx_iv.ivmpf):
        raise InputError(f"{fn.__name__} did not evaluate in interval arithmetic (got {type(out).__name__})")
    return out


def _sum_iv(A, E):
    return iv_matrix(A) + iv_matrix(E)


# --------------------------------------------------------------------------------------
# top eigenpair: a2, vᵀEv, ‖P⊥Ev‖² with rigorous eigenvector error
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TopPair:
    """Enclosures for the top eigenpair quantities of (A, E)."""

    lam1: object
    lam2: object
    lam_min: object
    gap: object
    eta: object
    e11: object
    r2: object
    a2: object
    sin_bound: object


def top_pair_enclosure(A, E) -> TopPair:
    """Enclosures of λ1, λ2, λ_min, γ, η = ‖E‖₂, E_11 = v1ᵀEv1, ‖P⊥Ev1‖² and
    a2 = Σ_{j≥2} E_1j²/(λ1 − λj) for float symmetric A (with a certified simple top
    eigenvalue) and E.

    With u the (interval-normalised) mp top eigenvector, μ = uᵀAu, ρ = ‖Au − μu‖:
    sin θ ≤ ε = ρ/(μ − λ2), θ = ∠(u, v1) (Parlett's gap theorem; λ1 is the eigenvalue nearest
    μ is checked; u here is the exact unit vector inside the interval u). The eigenvector
    errors rest on one lemma: for unit u, v1 (the sign of v1 with uᵀv1 ≥ 0), symmetric B and
    any c, |v1ᵀBv1 − uᵀBu| = |(v1 − u)ᵀ(B − cI)(v1 + u)| ≤ ‖B − cI‖·‖v1 − u‖‖v1 + u‖ =
    ‖B − cI‖·2 sin θ (both vectors are unit, so the cI parts cancel). With B = E, c = 0:
    |v1ᵀEv1 − uᵀEu| ≤ 2εη; with B = E² (0 ≤ E² ≤ η²), c = η²/2: |‖Ev1‖² − ‖Eu‖²| ≤ εη².
    Both are attained to first order in θ (E swapping the directions of v1 ± u; E² with its
    eigenvectors at 45° to those directions).
    For a2 = wᵀN⁻¹w − E_11², N = λ1I − A + v1v1ᵀ (λ_min(N) ≥ m0 = min(1, γ)), w = Ev1:
    Ñ = μ̂I − A + uuᵀ has ‖N − Ñ‖ ≤ τ = |λ1 − μ̂| + ε, and w̃ᵀÑ⁻¹w̃ (w̃ = Eu) lies in
    [Φ, Φ + ‖Ñz − w̃‖²/(m0 − τ)], Φ = 2zᵀw̃ − zᵀÑz for any z (here an mp solve);
    |wᵀN⁻¹w − w̃ᵀÑ⁻¹w̃| ≤ |w̃ᵀN⁻¹(Ñ − N)Ñ⁻¹w̃| + |v1ᵀBv1 − uᵀBu| (B = EN⁻¹E, 0 ≤ B ≤ η²/m0:
    the lemma with c = η²/(2m0)) ≤ (η²/m0)·(τ/(m0 − τ) + ε). The first term is attained for
    μ̂ off λ1 (w on N's bottom eigenvector, ε → 0). For μ̂ = λ1 and m0 = 1 the radius is
    ≈ 2εη² and the error, at first order in θ, 2θ·E_12E_22 when E_11 = 0 (up to θη²).
    Call inside :func:`working_precision`.
    """
    A = _enc._real_array(A, "top_pair_enclosure")  # refuses complex input (a cast drops the imaginary part)
    n = A.shape[0]
    if n < 2:
        raise InputError("top_pair_enclosure needs n ≥ 2")
    Aiv, Eiv = iv_matrix(A), iv_matrix(E)
    enc = float_eigenvalue_enclosures(A)
    encE = float_eigenvalue_enclosures(E)
    eta = iv_sym_norm(encE)
    lam1, lam2, lam_min = enc[0], enc[1], enc[-1]
    if not _lo(lam1) > _hi(lam2):
        raise InputError("top eigenvalue not certified simple")
    eig = mp_eigh(A, mpmath.mp.dps)
    x = _to_iv(eig.vector(0))
    u = x * (iv.mpf(1) / iv_norm(x))
    Au = Aiv * u
    mu = iv_dot(u, Au)
    rho = _hi(iv_norm(Au - u * mu))
    delta = _lo(mu) - _hi(lam2)
    if not delta > 0 or not (_hi(lam1) - _lo(mu)) <= delta:
        raise InputError("Rayleigh quotient not separated from λ2")
    eps = iv.mpf(rho) / iv.mpf(delta)
    eps = iv.mpf(_hi(eps))
    eta_hi = iv.mpf(_hi(eta))
    e11_err = 2 * eps * eta_hi
    wt = Eiv * u
    e11_u = iv_dot(u, wt)
    e11 = e11_u + iv.mpf([-_hi(e11_err), _hi(e11_err)])
    ev2_err = eps * eta_hi**2
    ev2 = iv_norm_sq(wt) + iv.mpf([-_hi(ev2_err), _hi(ev2_err)])
    r2 = ev2 - iv_sq(e11)
    r2 = iv.mpf([max(_lo(r2), mpmath.mpf(0)), _hi(r2)])
    # a2 through the resolvent form
    gap = lam1 - lam2
    m0 = iv.mpf(min(mpmath.mpf(1), _lo(gap)))
    mu_hat = mpmath.mpf(lam1.mid)
    tau = iv.mpf(_hi(iv_abs(lam1 - iv.mpf(mu_hat)) + eps))
    if not _hi(tau) < _lo(m0):
        raise InputError("eigenvector error too large for the a2 enclosure")
    Nt = Aiv * iv.mpf(-1)
    for i in range(n):
        Nt[i, i] = Nt[i, i] + iv.mpf(mu_hat)
    Nt = Nt + u * u.T
    z = mpmath.lu_solve(_mid_matrix(Nt), _mid_matrix(wt))
    z = _to_iv(z)
    Nz = Nt * z
    phi = 2 * iv_dot(z, wt) - iv_dot(z, Nz)
    res = iv_norm(Nz - wt)
    lmin_t = m0 - tau
    quad = iv.mpf([_lo(phi), _hi(phi + res**2 / lmin_t)])
    err = _hi(eta_hi**2 / m0 * (tau / lmin_t + eps))
    a2 = quad + iv.mpf([-err, err]) - iv_sq(e11)
    return TopPair(lam1, lam2, lam_min, gap, eta, e11, r2, a2, eps)


# --------------------------------------------------------------------------------------
# per-weakening certifiers (each returns an interval; call inside working_precision)
# --------------------------------------------------------------------------------------


def _m_w_no_lambda_min(inst):
    top = iv_lambda_max(_sum_iv(inst.A, inst.E))
    la = float_eigenvalue_enclosures(inst.A)[0]
    scale = iv_abs(la) + iv_sym_norm(float_eigenvalue_enclosures(inst.E))
    return (top - la) / scale


def _rayleigh_E(inst):
    v = iv_column(inst.v)
    return iv_dot(v, iv_matrix(inst.E) * v) / iv_norm_sq(v)


def _m_r_any_vector(inst):
    top = iv_lambda_max(_sum_iv(inst.A, inst.E))
    la = float_eigenvalue_enclosures(inst.A)[0]
    scale = iv_abs(la) + iv_sym_norm(float_eigenvalue_enclosures(inst.E))
    return (top - la - _rayleigh_E(inst)) / scale


def _m_s2_repeated_top(inst):
    encA = float_eigenvalue_enclosures(inst.A)
    w = np.linalg.eigvalsh(inst.A)[::-1]
    k = int(np.argmax(w < w[0]))  # the distinct gap index, as the weakening defines it
    gap = encA[0] - encA[k]
    eta = iv_sym_norm(float_eigenvalue_enclosures(inst.E))
    b1 = _series_iv(_series.remainder_bound_first, eta, gap)
    top = iv_lambda_max(_sum_iv(inst.A, inst.E))
    return (b1 - iv_abs(top - encA[0] - _rayleigh_E(inst))) / b1


def _m_sign_lambda1(inst):
    tp = top_pair_enclosure(inst.A, inst.E)
    hi = tp.r2 / tp.gap
    return (tp.a2 - tp.r2 / tp.lam1) / hi


def _m_per_draw(inst):
    enc = float_eigenvalue_enclosures(inst.A)
    eta = iv_sym_norm(float_eigenvalue_enclosures(inst.E))
    gap = enc[0] - enc[1]
    top = iv_lambda_max(_sum_iv(inst.A, inst.E))
    rem = _series_iv(_series.remainder_bound_second, eta, gap)
    return (top - enc[0] + rem) / (iv_abs(enc[0]) + eta)


def _m_nonzero_mean(inst):
    Es = inst.scaled()
    lam = float_eigenvalue_enclosures(inst.F)[0]
    tops = [iv_lambda_max(_sum_iv(inst.F, E)) for E in Es]
    scale = iv_abs(lam) + iv_max([iv_sym_norm(float_eigenvalue_enclosures(E)) for E in Es])
    return (sum(tops, iv.mpf(0)) / len(tops) - lam) / scale


def _t43c_matrices(inst):
    """The float matrices s·(tE_k) the T4.3c margin is evaluated on (s from the weakening's
    own float evaluation, product rounded to float exactly as its mp evaluation does)."""
    from fimtheory.claims import _t43c_core

    out = _t43c_core(inst, False)
    if not out.hypotheses_met:
        raise InputError(f"hypotheses not met: {out.reason}")
    s = float(out.details["s"])
    return [s * E for E in inst.scaled()]


def _exact_diagonal_t43c(inst):
    """Exact margin (Fraction) when F and every s·E_k are diagonal, else None."""
    Es = _t43c_matrices(inst)
    F = inst.F
    for M in [F, *Es]:
        if np.count_nonzero(M - np.diag(np.diag(M))):
            return None
    f = [Fraction(float(x)) for x in np.diag(F)]
    lam = max(f)
    tops = [max(a + Fraction(float(b)) for a, b in zip(f, np.diag(E))) for E in Es]
    if lam == 0:
        return None
    return (sum(tops, Fraction(0)) / len(tops) - lam) / abs(lam)


def _m_t43c(inst):
    Es = _t43c_matrices(inst)
    lam = float_eigenvalue_enclosures(inst.F)[0]
    tops = [iv_lambda_max(_sum_iv(inst.F, E)) for E in Es]
    return (sum(tops, iv.mpf(0)) / len(tops) - lam) / iv_abs(lam)


# ---- models in interval arithmetic (P3.2-no-LCM) ------------------------------------------


def iv_scores(model: str, X, y, theta) -> mpmath.matrix:
    """Per-sample scores g_i = ∇_θ log p(y_i | x_i; θ) in interval arithmetic from the exact
    floats: linear-Gaussian (y − θᵀx)x, logistic (y − σ(θᵀx))x, softmax (e_y − softmax(Wx)) ⊗ x
    with θ = W.reshape(-1).

    The softmax subtracts the largest logit (the upper end of its enclosure) from every
    logit, so a class whose logit is exactly that value has exp(0) = 1 exactly: equal logits
    (exact, of any size) give exactly the uniform probabilities 1/k — the scores are then
    points wherever 1/k and the products with x are exact (k a power of two)."""
    X = _enc._real_array(X, "iv_scores")  # complex input refused (a cast drops the imaginary part)
    theta = _enc._real_array(theta, "iv_scores").reshape(-1)
    n, d = X.shape
    rows = []
    for i in range(n):
        x = [ivf(float(v)) for v in X[i]]
        if model in ("linear", "logistic"):
            z = sum((ivf(float(theta[j])) * x[j] for j in range(d)), iv.mpf(0))
            if model == "linear":
                r = ivf(float(y[i])) - z
            else:
                r = ivf(float(y[i])) - iv.mpf(1) / (iv.mpf(1) + iv.exp(-z))
            rows.append([r * xj for xj in x])
        elif model == "softmax":
            k = theta.size // d
            W = theta.reshape(k, d)
            zs = [sum((ivf(float(W[c, j])) * x[j] for j in range(d)), iv.mpf(0)) for c in range(k)]
            zmax = iv.mpf(max(_hi(z) for z in zs))
            ex = [iv.exp(z - zmax) for z in zs]
            tot = sum(ex, iv.mpf(0))
            yi = int(y[i])
            row = []
            for c in range(k):
                r = (iv.mpf(1) if c == yi else iv.mpf(0)) - ex[c] / tot
                row += [r * xj for xj in x]
            rows.append(row)
        else:
            raise UnknownIdError(f"unknown model {model!r}")
    return iv_matrix(rows)


def iv_batch_lambda_max(model, X, y, theta):
    """Enclosure of Λ = λ_max of the empirical FIM on the batch, via the smaller of
    GGᵀ/n and GᵀG/n (GGᵀ/n when n ≤ p, n samples, p parameters): the two have the same
    nonzero eigenvalues, and the enclosure's width grows with the size of the matrix used,
    min(n, p). Where that matrix is diagonal with entries exact in the working precision
    (orthogonal score rows for n ≤ p, orthogonal score columns for n > p; e.g. dyadic
    scores and n a power of two), the enclosure is the exact Λ, a point."""
    G = iv_scores(model, X, y, theta)
    n, p = G.rows, G.cols
    small = (G * G.T) if n <= p else (G.T * G)
    small = small * (iv.mpf(1) / n)
    return iv_lambda_max(small)


def _frac_down(f: Fraction):
    x = iv.mpf(f.numerator) / iv.mpf(f.denominator)
    return _lo(x)


def _frac_up(f: Fraction):
    x = iv.mpf(f.numerator) / iv.mpf(f.denominator)
    return _hi(x)


def _m_p32(inst):
    """Exact margin of the P3.2 conclusion on the float grid inputs X + t_k U (the very
    inputs the float evaluation used), worst over grid points, relative to max |Λ|.

    The conclusion's margin at grid point t_k is the minimum of three differences of
    d_i = Λ(x_i + t_k u_i) and b_i = Λ(x_i): pointwise min_i (d_i − b_i), mean(d) − mean(b)
    and q(d) − q(b) (q the linear-interpolation quantile at the level in [0, 1]; other levels
    are refused by the float evaluation, which :func:`certify` runs first). Only the
    pointwise term is enclosed, because it *is* that minimum, exactly: with c = min_i (d_i −
    b_i), d_i ≥ b_i + c for every i, so mean(d) − mean(b) ≥ c (a mean is ≥ its smallest
    term), and q, monotone in every value and translation-equivariant, gives
    q(d) ≥ q(b + c) = q(b) + c. Enclosing the two larger terms too could only lower the
    enclosure's lower end (their intervals reach below c by their own rounding)."""
    t = np.linspace(0.0, inst.T, inst.steps + 1)
    vals = []
    for X, y, U in zip(inst.inputs, inst.labels, inst.directions):
        vals.append([iv_batch_lambda_max(inst.model, X + tk * U, y, inst.theta) for tk in t])
    m = len(vals)
    worst = None
    for k in range(1, len(t)):
        cand = iv_min([vals[i][k] - vals[i][0] for i in range(m)])
        worst = cand if worst is None else iv_min([worst, cand])
    scale = iv_max([iv_abs(v) for row in vals for v in row])
    return worst / scale


def _m_ah_accurate(inst):
    """rq / Λ − 0.99 in interval arithmetic: rq the Rayleigh quotient of F^k ḡ (F = GᵀG/n,
    ḡ the mean score, k = ``power_steps``), Λ = λ_max(F) enclosed from the smaller Gram
    matrix as in :func:`iv_batch_lambda_max` (GGᵀ/n when n ≤ p, else F), so a diagonal one
    with exact entries gives Λ exactly and only rq and the constant 0.99 are rounded.

    The Rayleigh quotient does not change when its vector is scaled, so the iteration starts
    from the score sum Σ_i g_i = n ḡ itself: the division by n (a rounding unless n is a power
    of two) is left out, and rq is that of the exact F^k ḡ direction."""
    G = iv_matrix(inst.G)
    n, p = G.rows, G.cols
    F = (G.T * G) * (iv.mpf(1) / n)
    x = iv.matrix(p, 1)
    for j in range(p):
        x[j, 0] = sum((G[i, j] for i in range(n)), iv.mpf(0))
    for _ in range(inst.power_steps):
        x = F * x  # normalisation does not change the Rayleigh quotient
    rq = iv_dot(x, F * x) / iv_norm_sq(x)
    small = (G * G.T) * (iv.mpf(1) / n) if n <= p else F
    lam = iv_lambda_max(small)
    return rq / lam - iv.mpf("0.99")


def _m_ab_numerical_rank(inst):
    """(λ_max − (tr K^q / r)^{1/q}) / λ_max in interval arithmetic, r the float numerical rank,
    K = GGᵀ/n. Exact where every operation is: for K exactly the identity (n orthogonal score
    rows of squared norm n: the equality case of the power-mean bound, r = n) tr K^q / r = 1,
    its log is 0, and the enclosure is [0, 0] — the margin is proved 0. (For K = cI with
    c ≠ 1 the log and exp round and the enclosure only straddles 0.)"""
    from fimtheory.claims import numerical_rank

    r = numerical_rank(inst.G)
    G = iv_matrix(inst.G)
    n = G.rows
    K = (G * G.T) * (iv.mpf(1) / n)
    Kq = K
    for _ in range(inst.q - 1):
        Kq = Kq * K
    trq = sum((Kq[i, i] for i in range(n)), iv.mpf(0))
    lam = iv_lambda_max(K)
    term = iv.exp(iv.log(trq / r) / inst.q)
    return (lam - term) / lam


def _m_t43d_empirical(inst):
    """(mean_k Λ(θ+δ_k) − Λ(θ)) / Λ(θ) for the empirical-label FIM, all in interval arithmetic."""
    lam = iv_batch_lambda_max(inst.model, inst.X, inst.y, inst.theta)
    tops = [iv_batch_lambda_max(inst.model, inst.X, inst.y, inst.theta + d) for d in inst.deltas]
    return (sum(tops, iv.mpf(0)) / len(tops) - lam) / lam


def _from_enclosure(wid: str):
    """A certifier that reuses the registry's rigorous evaluator (:mod:`fimtheory.enclosures`);
    an enclosure that cannot be computed at this precision is reported as an InputError (the
    ladder then tries the next precision), a hypothesis certainly false likewise (no certificate)."""

    def margin(inst):
        from fimtheory import enclosures

        try:
            return enclosures.ENCLOSURES[wid](inst)
        except (enclosures.EnclosureError, enclosures.HypothesisFails) as exc:
            raise InputError(f"{wid}: {exc}") from None

    return margin


_CERTIFIERS = {
    "W-no-lambda-min": _m_w_no_lambda_min,
    "R-any-vector": _m_r_any_vector,
    "S2-repeated-top": _m_s2_repeated_top,
    "SIGN-lambda1-denominator": _m_sign_lambda1,
    "T4.3a-per-draw": _m_per_draw,
    "T4.3b-nonzero-mean": _m_nonzero_mean,
    "T4.3c-no-genericity": _m_t43c,
    "P3.2-no-LCM": _m_p32,
    "AH-accurate": _m_ah_accurate,
    "AB-numerical-rank": _m_ab_numerical_rank,
    "T4.3d-empirical-labels": _m_t43d_empirical,
    "KT-unperturbed-gap": _from_enclosure("KT-unperturbed-gap"),
    "LL-unperturbed-gap": _from_enclosure("LL-unperturbed-gap"),
    "S-no-disc": _from_enclosure("S-no-disc"),
    "S3-leading-only": _from_enclosure("S3-leading-only"),
    "S3L-second-order": _from_enclosure("S3L-second-order"),
}
_METHOD = {
    "SIGN-lambda1-denominator": "top-pair",
    "KT-unperturbed-gap": "top-pair",
    "LL-unperturbed-gap": "top-pair",
    "S-no-disc": "exact",
    "S3-leading-only": "top-pair",
    "S3L-second-order": "top-pair",
}


def _via_own_enclosure(subject):
    """A certifier from the subject's own rigorous evaluator ``evaluate_iv`` (claims bound to
    a user's implementation, :mod:`properties.subjects`), or None when it has none."""
    own = getattr(subject, "evaluate_iv", None)
    if own is None:
        return None

    def margin(inst):
        from fimtheory import enclosures

        try:
            lo, hi = own(inst, mpmath.mp.dps)
        except (enclosures.EnclosureError, enclosures.HypothesisFails) as exc:
            raise InputError(f"{subject.id}: {exc}") from None
        return iv.mpf([lo, hi])

    return margin


def supported(weakening_id: str) -> bool:
    """Whether :func:`certify` knows how to enclose this weakening's margin (a certifier here,
    or the registered weakening's own rigorous ``evaluate_iv``)."""
    if weakening_id in _CERTIFIERS or weakening_id.startswith("C-"):
        return True
    from fimtheory.claims import REGISTRY

    return any(
        w.id == weakening_id and getattr(w, "evaluate_iv", None) is not None
        for c in REGISTRY.values()
        for w in c.weakenings
    )


def certify(weakening, instance, dps: int = 50, ladder=DPS_LADDER) -> Certificate:
    """Rigorous enclosure of ``weakening``'s margin on ``instance``.

    Tries ``dps`` and then the larger precisions of ``ladder`` until the sign is decided.

    Parameters
    ----------
    weakening : fimtheory.claims.Weakening
    instance : the instance type of the weakening's strategy
    dps : int
        Starting decimal digits (≥ 50).

    Returns
    -------
    Certificate
        ``certified`` is True iff the margin is certainly negative (or proved exactly 0
        for a strict weakening).

    Raises
    ------
    UnknownIdError
        For a weakening without a certifier.
    """
    if dps < 50:
        raise InputError(f"certification needs dps >= 50, got {dps}")
    wid = weakening.id
    strict = bool(getattr(weakening, "strict", False))
    if wid.startswith("C-"):
        # The evaluation of C-* is a finite sequence of exact float comparisons.
        out = weakening.evaluate(instance)
        if not out.hypotheses_met:
            return Certificate(None, None, dps, "exact", strict, note=f"hypotheses not met: {out.reason}")
        m = mpmath.mpf(out.margin)
        return Certificate(m, m, dps, "exact", strict, exact_zero=(m == 0), note=out.reason)
    own = wid not in _CERTIFIERS
    certifier = _CERTIFIERS.get(wid) or _via_own_enclosure(weakening)
    if certifier is None:
        raise UnknownIdError(f"no certifier for weakening {wid!r}")
    if wid == "T4.3c-no-genericity" and weakening.evaluate(instance).hypotheses_met:
        exact = _exact_diagonal_t43c(instance)  # (its matrices exist only when the hypotheses hold)
        if exact is not None:
            with working_precision(dps):
                lo, hi = _frac_down(exact), _frac_up(exact)
            return Certificate(lo, hi, dps, "exact", strict, exact_zero=(exact == 0))
    if wid == "KL-zero-iff-equal" and _kl_profiles_equal(instance):
        # equal sorted (padded) float vectors: every logarithm is log 1, the statistic is exactly 0
        if not weakening.evaluate(instance).hypotheses_met:
            return Certificate(None, None, dps, "exact", strict, note="hypotheses not met")
        return Certificate(mpmath.mpf(0), mpmath.mpf(0), dps, "exact", strict, exact_zero=True)
    method = _METHOD.get(wid, DECLARED_ENCLOSURE if own else "eigenvalues")
    out = weakening.evaluate(instance)
    if not out.hypotheses_met:
        return Certificate(None, None, dps, method, strict, note=f"hypotheses not met: {out.reason}")
    cert = None
    for d in sorted({dps, *[x for x in ladder if x > dps]}):
        with working_precision(d):
            try:
                m = certifier(instance)
            except (InputError, ZeroDivisionError) as exc:
                cert = Certificate(None, None, d, method, strict, note=str(exc))
                continue
            # an own rigorous enclosure [0, 0] proves the margin exactly 0 (e.g. T4.3c-S-no-genericity)
            zero = own and _lo(m) == 0 and _hi(m) == 0
            cert = Certificate(_lo(m), _hi(m), d, _METHOD.get(wid, "exact" if zero else method), strict, zero)
        if cert.certified or cert.sign is not None:
            return cert
    return cert


# --------------------------------------------------------------------------------------
# Eq. 1 and the companion's KL statistic (fimtheory.claims_eq1)
# --------------------------------------------------------------------------------------
# Independent of fimtheory.enclosures, which encloses λ_max(M(q)) through the secular
# equation: here M(q) = diag(q) − qqᵀ is formed as a dense interval matrix and its top
# eigenvalue enclosed by the Ostrowski + Weyl argument (vectors up to DENSE_MAX entries; longer
# ones fall back to the secular enclosure).

#: Longest probability vector whose M is enclosed densely.
DENSE_MAX = 48


def _iv_renormalised(a):
    xs = [ivf(float(v)) for v in a]
    total = sum(xs, iv.mpf(0))
    return [x / total for x in xs]


def _iv_softmax_fisher_top(q, exact_floats=None):
    """Enclosure of λ_max(diag(q) − qqᵀ) for interval entries q."""
    n = len(q)
    if n > DENSE_MAX:
        from fimtheory import enclosures

        if exact_floats is not None:
            return enclosures._eq1_lambda_m(exact_floats)
        raise InputError(f"{n} entries: too many for the dense enclosure of M(q)")
    M = iv.matrix(n, n)
    for i in range(n):
        for j in range(n):
            M[i, j] = (q[i] - q[i] * q[i]) if i == j else -(q[i] * q[j])
    return iv_lambda_max(M)


def _iv_eq1_hat(q):
    """Eq. 1 from interval q (m ≥ 2 positive entries, Σq = 1 exactly): q₁(1 − q₁)(1 + ½H/log m)."""
    h = -sum((x * iv.log(x) for x in q), iv.mpf(0))
    rest = sum(q[1:], iv.mpf(0))
    return q[0] * rest * (1 + h / (2 * iv.log(iv.mpf(len(q)))))


def _eq1_top(inst):
    from fimtheory import claims_eq1 as ce

    a = ce.top_entries(inst)
    if a.size < 2:
        raise InputError("the top-k distribution has fewer than 2 positive entries")
    return a


def _m_eq1_within(tol):
    def margin(inst):
        q = _iv_renormalised(_eq1_top(inst))
        r = _iv_eq1_hat(q) / _iv_softmax_fisher_top(q)
        return iv.mpf(tol) - iv_abs(r - 1)

    return margin


def _m_eq1_full(inst):
    from fimtheory import claims_eq1 as ce

    q = _iv_renormalised(_eq1_top(inst))
    p = [ivf(float(v)) for v in inst.p]
    r = _iv_eq1_hat(q) / _iv_softmax_fisher_top(p, exact_floats=inst.p)
    return iv.mpf(ce.WITHIN_50) - iv_abs(r - 1)


def _m_eq1_empirical(inst):
    from fimtheory import claims_eq1 as ce

    q = _iv_renormalised(_eq1_top(inst))
    d = iv.matrix(inst.p.size, 1)
    for i, v in enumerate(inst.p):
        d[i, 0] = (1 if i == inst.y else 0) - ivf(float(v))
    emp = iv_norm_sq(d)  # ‖e_y − p‖²
    if not _lo(emp) > 0:
        raise InputError("‖e_y − p‖² is not bounded away from 0")
    return iv.log(iv.mpf(ce.EMPIRICAL_FACTOR)) - iv_abs(iv.log(_iv_eq1_hat(q)) - iv.log(emp))


def _kl_profiles_equal(inst) -> bool:
    from fimtheory import claims_eq1 as ce

    if getattr(inst, "q", None) is None or inst.p.shape != inst.q.shape:
        return False
    a, b = ce.sorted_padded(inst.p, inst.q, inst.eps)
    return bool(np.array_equal(a, b))


def _iv_sorted_kl(inst, eps):
    from fimtheory import claims_eq1 as ce

    a, b = ce.sorted_padded(inst.p, inst.q, eps)
    if np.array_equal(a, b):
        return iv.mpf(0)
    pa, pb, e = _iv_renormalised(a), _iv_renormalised(b), ivf(float(eps))
    return sum((u * (iv.log(u + e) - iv.log(v + e)) for u, v in zip(pa, pb)), iv.mpf(0))


def _m_kl_zero(inst):
    return _iv_sorted_kl(inst, inst.eps)


def _m_kl_eps(inst):
    from fimtheory import claims_eq1 as ce

    s1, s2 = _iv_sorted_kl(inst, inst.eps), _iv_sorted_kl(inst, inst.eps_alt)
    return iv.mpf(ce.EPS_RTOL) * iv_max([iv_abs(s1), iv_abs(s2)]) - iv_abs(s1 - s2)


_CERTIFIERS.update(
    {
        "EQ1-RATIO-within-10pct": _m_eq1_within(0.10),
        "EQ1-RATIO-within-25pct": _m_eq1_within(0.25),
        "EQ1-FULL-within-50pct": _m_eq1_full,
        "EQ1-EMPIRICAL-within-10x": _m_eq1_empirical,
        "KL-zero-iff-equal": _m_kl_zero,
        "KL-nonnegative": _m_kl_zero,  # the same statistic; the weakening is non-strict
        "KL-eps-insensitive": _m_kl_eps,
    }
)
_METHOD.update(
    {
        "EQ1-EMPIRICAL-within-10x": "interval",
        "KL-zero-iff-equal": "interval",
        "KL-nonnegative": "interval",
        "KL-eps-insensitive": "interval",
    }
)
