"""Linear theory of the mean-field attention dynamics (docs/theory.md).

Pure functions of (dimension, variant, beta, viscosity, modes).  A perturbation
rho = rho_bar + eps * delta of the uniform state evolves mode by mode at first
order, delta_l(t) = delta_l(0) exp(lambda_l t).  The tokens live on S^{d-1}:
d = 2 is the circle (Fourier mode k), d = 3 the sphere S^2 (degree l).

Everything is computed from exponentially scaled Bessel functions
(``scipy.special.ive``) so that SA never overflows (tested to beta = 1e4; accepted up to ``MAX_BETA``).
USA rates carry a factor e^beta; they are refused above ``USA_MAX_BETA``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln, ive

from ..config.schema import GEOMETRY_DIM, MAX_BETA, NGPT_ALPHA, USA_MAX_BETA, VARIANTS
from ..errors import ConfigError
from .kernels import alibi_kernel


def dim_of(geometry: str) -> int:
    """Ambient dimension d of a geometry name ("circle" -> 2, "sphere" -> 3)."""
    try:
        return GEOMETRY_DIM[geometry]
    except KeyError:
        raise ConfigError(
            f"geometry: got {geometry!r}, allowed: {', '.join(GEOMETRY_DIM)}"
        ) from None


def check_parameters(beta: float, variant: str, viscosity: float = 0.0, dim: int = 2) -> None:
    """Raise ConfigError (one line, naming the parameter) if the parameters are not admissible."""
    if variant not in VARIANTS:
        raise ConfigError(f"variant: got {variant!r}, allowed: 'sa' | 'usa'")
    if not (isinstance(dim, (int, np.integer)) and dim >= 2):
        raise ConfigError(f"dim: got {dim!r}, allowed: an integer >= 2")
    if not (np.isfinite(beta) and 0 < beta <= MAX_BETA):
        raise ConfigError(f"beta: got {beta!r}, allowed: a number in (0, {MAX_BETA:g}]")
    if variant == "usa" and beta > USA_MAX_BETA:
        raise ConfigError(
            f"beta: got {beta!r}, allowed for variant 'usa': beta <= {USA_MAX_BETA:g} "
            "(the USA field grows like e^beta and overflows float64); use variant 'sa'"
        )
    if not (np.isfinite(viscosity) and viscosity >= 0):
        raise ConfigError(f"viscosity: got {viscosity!r}, allowed: a finite number >= 0")


def laplacian_eigenvalue(modes, dim: int = 2) -> np.ndarray:
    """l (l + d - 2): minus the Laplace–Beltrami eigenvalue of degree l on S^{d-1}."""
    l = np.asarray(modes, dtype=float)
    return l * (l + dim - 2)


def kernel_ratio(modes, beta: float, dim: int = 2) -> np.ndarray:
    """I_{l+d/2-1}(beta) / I_{d/2-1}(beta): the normalised Funk–Hecke multiplier of e^{beta <x,y>}."""
    nu = dim / 2 - 1
    l = np.asarray(modes, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.asarray(ive(l + nu, beta) / ive(nu, beta))
    bad = ~np.isfinite(r) | ((r == 0) & (beta < nu))
    if np.any(bad):  # I_nu(beta) underflows (beta << nu): the small-argument law (beta/2)^l Gamma(nu+1)/Gamma(l+nu+1)
        from scipy.special import gammaln

        lb = np.broadcast_to(l, r.shape)[bad]
        r = r.copy()
        r[bad] = np.exp(lb * math.log(beta / 2) + gammaln(nu + 1) - gammaln(lb + nu + 1))
    return r


def growth_rates(modes, beta: float, variant: str = "sa", viscosity: float = 0.0, dim: int = 2, *,
                 update: str = "post-ln", alpha: float = NGPT_ALPHA) -> np.ndarray:
    r"""Linear growth rates :math:`\lambda_l` of the uniform state (docs/theory.md, section 3).

    For SA, :math:`\lambda_l = \frac{l(l+d-2)}{\beta} \frac{I_{l+d/2-1}(\beta)}{I_{d/2-1}(\beta)} - \nu\, l(l+d-2)`,
    formed with exponentially scaled Bessel functions (no overflow at any beta).  nGPT (``update = "ngpt"``, SA
    and USA alike) moves the uniform state's perturbations by SA's field over |A| = I_{d/2}(beta) / I_{d/2-1}(beta)
    times alpha: its attention part is SA's times :math:`\alpha I_{d/2-1}(\beta) / I_{d/2}(\beta)`
    (docs/variants.md).

    Parameters
    ----------
    modes : int or array_like
        Fourier wavenumbers (d = 2) or harmonic degrees (d >= 3); only :math:`|l|` matters.
    beta : float
        Inverse temperature, > 0.
    variant : {"sa", "usa"}
        Softmax or unnormalised attention.
    viscosity : float
        :math:`\nu \ge 0`.
    dim : int
        d, the sphere :math:`S^{d-1} \subset R^d` (2: circle, 3: sphere).
    update : {"post-ln", "ngpt"}
        The residual update (``particles.update``) of the density's tokens.
    alpha : float
        nGPT's step.

    Returns
    -------
    numpy.ndarray
        The rates, shaped like ``modes``. Mode 0 has rate 0 (mass is conserved).

    Examples
    --------
    >>> growth_rates([1, 2, 3], 9.0, viscosity=0.02).round(4)
    """
    check_parameters(beta, variant, viscosity, dim)
    l = np.abs(np.asarray(modes, dtype=float))
    lap = laplacian_eigenvalue(l, dim)
    nu = dim / 2 - 1
    if update == "ngpt":
        attention = alpha * lap * kernel_ratio(l, beta, dim) / (beta * float(kernel_ratio(1, beta, dim)))
    elif variant == "sa":
        attention = lap * kernel_ratio(l, beta, dim) / beta
    else:
        # Gamma(d/2) 2^{d/2-1} beta^{-d/2} I_{l+nu}(beta), formed in logs: I = e^beta * ive.
        log_pref = gammaln(dim / 2) + nu * math.log(2.0) - (dim / 2) * math.log(beta) + beta
        with np.errstate(divide="ignore"):
            attention = lap * np.exp(log_pref + np.log(ive(l + nu, beta)))
    with np.errstate(over="ignore"):  # a huge viscosity: -inf is the right limit (the model refuses it)
        return attention - viscosity * lap


def most_unstable_mode(beta: float, variant: str = "sa", viscosity: float = 0.0, dim: int = 2,
                       max_mode: int | None = None, *, update: str = "post-ln", alpha: float = NGPT_ALPHA) -> int:
    r"""The integer :math:`l \ge 1` with the largest growth rate (the exact argmax, not :math:`\sqrt{2\beta}`).

    Parameters
    ----------
    beta, variant, viscosity, dim, update, alpha
        As for `growth_rates`.
    max_mode : int, optional
        Where the search stops (default: far beyond the peak, where
        :math:`I_l/I_0 \sim e^{-l^2/(2\beta)}` is negligible).

    Returns
    -------
    int
        :math:`k^*`. With viscosity every rate may be negative; the least stable mode is returned.
    """
    if max_mode is None:
        max_mode = int(8 * math.sqrt(2 * beta + 1)) + 16
    l = np.arange(1, max_mode + 1)
    return int(l[np.argmax(growth_rates(l, beta, variant, viscosity, dim, update=update, alpha=alpha))])


@dataclass(frozen=True)
class RateTable:
    """The linear rates of modes 0..``modes[-1]`` on S^{dim-1} (``meanfield theory``): the most unstable mode
    ``kstar`` and its rate ``lambda_star``; ``tags`` say of each mode "most unstable", "grows", "neutral" or
    "decays"."""

    dim: int
    variant: str
    beta: float
    viscosity: float
    kstar: int
    lambda_star: float
    modes: np.ndarray
    rates: np.ndarray

    @property
    def tags(self) -> list[str]:
        """What each mode does."""
        return ["most unstable" if k == self.kstar else ("grows" if r > 0 else ("neutral" if r == 0 else "decays"))
                for k, r in zip(self.modes, self.rates)]


def rate_table(beta: float, variant: str = "sa", viscosity: float = 0.0, dim: int = 2,
               modes: int | None = None, *, update: str = "post-ln", alpha: float = NGPT_ALPHA) -> RateTable:
    """The growth rate of every mode 0..``modes`` (default max(2 k* + 4, 8)) and the most unstable mode (``update``,
    ``alpha``: as for `growth_rates`).  ConfigError (naming the parameter) for parameters out of range, or ``modes``
    outside [1, 100000]."""
    check_parameters(beta, variant, viscosity, dim)
    kind = {"update": update, "alpha": alpha}
    kstar = most_unstable_mode(beta, variant, viscosity, dim, **kind)
    kmax = modes if modes is not None else max(2 * kstar + 4, 8)
    if not 1 <= kmax <= 100_000:
        raise ConfigError(f"--modes: got {kmax}, allowed: an integer in [1, 100000]")
    ks = np.arange(0, kmax + 1)
    rates = growth_rates(ks, beta, variant, viscosity, dim, **kind)
    lam = rates[kstar] if kstar <= kmax else growth_rates([kstar], beta, variant, viscosity, dim, **kind)[0]
    return RateTable(dim, variant, float(beta), float(viscosity), int(kstar), float(lam), ks, rates)


def efolding_time(beta: float, variant: str = "sa", viscosity: float = 0.0, dim: int = 2) -> float:
    """1 / lambda_{l*} for the most unstable mode l* (inf if no mode grows)."""
    k = most_unstable_mode(beta, variant, viscosity, dim)
    rate = float(growth_rates([k], beta, variant, viscosity, dim)[0])
    return 1.0 / rate if rate > 0 else math.inf


def linear_phase_end(eps: float, beta: float, variant: str = "sa", viscosity: float = 0.0,
                     dim: int = 2) -> float:
    """Predicted time to leave the linear phase from a perturbation of size eps: log(1/eps) / lambda*."""
    if not (0 < eps < 1):
        raise ConfigError(f"eps: got {eps!r}, allowed: 0 < eps < 1")
    return math.log(1.0 / eps) * efolding_time(beta, variant, viscosity, dim)


def top_eigenvector(V) -> np.ndarray:
    """The unit eigenvector of the symmetric matrix V for its largest eigenvalue, signed so that its
    first non-zero component is positive (the pole +v_1 of spectral selection)."""
    v = np.linalg.eigh(np.asarray(V, dtype=float))[1][:, -1]
    return v * (1.0 if v[np.flatnonzero(np.abs(v) > 1e-12)[0]] > 0 else -1.0)


def selection_split_circle(V, beta: float, c) -> tuple[np.ndarray, float, float]:
    """Spectral selection on S^1 (SA, Q^T K = V, V symmetric positive definite, viscosity 0): where the
    mass of the density with Fourier coefficients ``c`` (rho = sum_k c_k e^{ik theta}, k = -K..K,
    c_{-k} = conj(c_k)) ends as t -> oo.

    Returns (v_1, H_0, dH): v_1 the top eigenvector (first non-zero component positive), H_0 the
    initial mass of the half-circle <x, v_1> > 0 — the limit of the mass that gathers at +v_1 as
    beta -> oo — and dH the first correction in 1/beta,

        dH = lambda_1 (rho_0'(a_-) - rho_0'(a_+)) / (2 beta (lambda_1^2 - lambda_2^2)),

    a_+- = angle(v_1) +- pi/2 the half-circle's ends, ' = d/dtheta (docs/general.md derives both).
    """
    V = np.asarray(V, dtype=float)
    if V.shape != (2, 2) or not np.allclose(V, V.T):
        raise ValueError(f"V: got shape {V.shape}, allowed: a symmetric 2 x 2 matrix")
    l2, l1 = np.linalg.eigvalsh(V)
    if not (l2 > 0 and l1 > l2):
        raise ValueError(f"V: eigenvalues {l2:.4g}, {l1:.4g}, allowed: 0 < lambda_2 < lambda_1")
    v1 = top_eigenvector(V)
    phi = math.atan2(v1[1], v1[0])
    c = np.asarray(c, dtype=complex)
    k = np.arange(1, c.size)

    def slope(a):  # rho_0'(a)
        return float(np.sum(2 * np.real(1j * k * c[1:] * np.exp(1j * k * a))))

    dH = l1 * (slope(phi - math.pi / 2) - slope(phi + math.pi / 2)) / (2 * beta * (l1**2 - l2**2))
    return v1, half_circle_mass(c, v1), dH


def half_circle_mass(c, v) -> float:
    """The exact mass of rho = sum_k c_k e^{ik theta} (c_{-k} = conj(c_k)) on the half-circle <x, v> > 0:
    c_0 pi + sum_{k >= 1} 2 Re(c_k e^{ik phi}) 2 sin(k pi / 2) / k, phi the angle of v."""
    c = np.asarray(c, dtype=complex)
    k = np.arange(1, c.size)
    phi = math.atan2(v[1], v[0])
    return float(np.real(c[0]) * math.pi + np.sum(2 * np.real(c[1:] * np.exp(1j * k * phi)) * 2 * np.sin(k * math.pi / 2) / k))


def causal_linear_mode(t: float, s: float, a: float, alibi: float, profile) -> float:
    """The linearised causal density, one mode: g(t, s) solving g_t = a int_0^s k_lambda(s, s') g(t, s') ds',
    g(0, s) = profile(s), with k_lambda the ALiBi kernel (lambda = 0: 1/s; docs/causal.md):

        g = g_0(s) + int_0^s G(t, s; s') g_0(s') ds',  G = ``retrieval_kernel``, the resolvent's regular part.
    """
    from scipy.integrate import quad

    if s == 0:
        return profile(0.0) * math.exp(a * t)
    green = lambda sp: float(retrieval_kernel(t, sp, a, alibi, s)) * profile(sp)  # noqa: E731
    return profile(s) + quad(green, 0, s, limit=200, epsabs=1e-13, epsrel=1e-12)[0]


def mean_overlap_ode(t, rho0: float, n: int, d: int) -> np.ndarray:
    """The mean pairwise overlap at times ``t`` (t[0] = 0) of n equal-weight tokens on S^{d-1} under random heads
    drawn afresh every layer, beta -> 0: rho' = (1/n + (1 - 1/n) rho)(1 - rho)(1 - (2 + rho)/d), rho(0) = rho0,
    t = layers x dt (derived in docs/general.md; the logistic law rho' = rho (1 - rho) as n, d -> infinity)."""
    from scipy.integrate import solve_ivp

    f = lambda _, r: (1 / n + (1 - 1 / n) * r) * (1 - r) * (1 - (2 + r) / d)
    return solve_ivp(f, (0, t[-1]), [rho0], t_eval=t, rtol=1e-11, atol=1e-13).y[0]


def equiangular_coefficients(rho, n: int, heads, variant: str = "sa"):
    """(a, b) of the attention output A_i = a x_i + b sum_{j != i} x_j of n equal-weight equiangular tokens
    (<x_i, x_j> = rho for i != j) under heads (beta_h, v_h): Q_h^T K_h = (beta_h / beta) I, V_h = v_h I
    (docs/variants.md).  SA: each head's softmax weights e^{beta_h} (own) and e^{beta_h rho} (others) over their
    sum; USA: the same terms times 1/n."""
    a = b = 0.0
    for beta_h, v_h in heads:
        own, other = np.exp(beta_h * (1 - rho)), 1.0  # both scaled by e^{-beta_h rho}
        z = own + (n - 1) * other if variant == "sa" else n * np.exp(-beta_h * rho)
        a, b = a + v_h * own / z, b + v_h * other / z
    return a, b


def equiangular_rhs(update: str, rho, r, n: int, heads, variant: str = "sa", alpha: float = 0.2):
    """(rho' / (1 - rho), r') of equiangular tokens under a residual update (docs/variants.md).  With
    A_i = a x_i + b S_i, p = <x_i, A_i> = a + (n - 1) b rho, |A_i|^2 = a^2 + 2 (n - 1) a b rho
    + (n - 1)(1 + (n - 2) rho) b^2 and <x_j, A_i> - p rho = b (1 - rho)(1 + (n - 1) rho): a token moves by
    c P_x A_i, so

        rho' = 2 c b (1 - rho)(1 + (n - 1) rho),
        c = 1 (post-LN), alpha / |A| (nGPT), 1 / r (pre-LN, r' = p), 1 / (r |A|) (peri-LN, r' = p / |A|),

    r = |z_i| the common length of the residual streams (1 and constant on the sphere)."""
    a, b = equiangular_coefficients(rho, n, heads, variant)
    p = a + (n - 1) * b * rho
    size = np.sqrt(a * a + 2 * (n - 1) * a * b * rho + (n - 1) * (1 + (n - 2) * rho) * b * b)
    c, dr = {"post-ln": (1.0, 0.0), "ngpt": (alpha / size, 0.0), "pre-ln": (1.0 / r, p),
             "peri-ln": (1.0 / (r * size), p / size)}[update]
    return 2 * c * b * (1 + (n - 1) * rho), dr


def equiangular_overlap(t, rho0: float, n: int, heads, update: str = "post-ln", variant: str = "sa",
                        alpha: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """(1 - rho(t), r(t)) of n equiangular tokens (rho(0) = rho0, r(0) = 1) at times ``t`` (t[0] = 0), solved
    for log(1 - rho) (no digits lost as rho -> 1).  Late times (SA): 1 - rho ~ C e^{-2 t} (post-LN),
    C e^{-2 alpha t} (nGPT), C t^{-2} (pre-LN, peri-LN: r grows like t), docs/variants.md."""
    from scipy.integrate import solve_ivp

    def f(_, y):
        rate, dr = equiangular_rhs(update, -math.expm1(y[0]), y[1], n, heads, variant, alpha)
        return [-rate, dr]

    sol = solve_ivp(f, (0, t[-1]), [math.log1p(-rho0), 1.0], t_eval=t, method="DOP853", rtol=1e-12, atol=1e-12)
    return np.exp(sol.y[0]), sol.y[1]


def two_dirac_gap_rate(gap: float, beta: float, m1: float = 0.5, m2: float = 0.5) -> float:
    """dD/dt for two Dirac masses m1, m2 on the circle at angular gap D (SA, Q = K = V = I, viscosity 0):

        dD/dt = -sin D e^{beta (cos D - 1)} ( m2 / (m1 + m2 e^{beta (cos D - 1)}) + m1 / (m2 + m1 e^{beta (cos D - 1)}) )

    (each Dirac moves with the field of the pair; written with e^{beta (cos D - 1)} so it never overflows)."""
    e = math.exp(beta * (math.cos(gap) - 1.0))
    return -math.sin(gap) * e * (m2 / (m1 + m2 * e) + m1 / (m2 + m1 * e))


def two_dirac_merge_time(gap: float, beta: float, m1: float = 0.5, m2: float = 0.5, until: float = 1e-9,
                         variant: str = "sa") -> float:
    """The time two Dirac masses at angular gap ``gap`` (0 < gap < pi) take to come within ``until`` of each
    other: int_until^gap dD / |dD/dt|, by adaptive quadrature in log D (the plateau, ~ e^{beta (1 - cos gap)} /
    (beta sin^2 gap), is spent near the start; the last approach, ~ log(1 / until), near the end).  ``variant``
    "usa": dD/dt = -(m1 + m2) e^{beta cos D} sin D (each Dirac pulled by the other's unnormalised weight), so the
    time is ~ e^{-beta cos gap}, computed scaled by it (beta = 500 gives times of 1e-216)."""
    from scipy.integrate import quad

    if not (0 < until < gap < math.pi):
        raise ValueError(f"gap: got {gap!r}, allowed: {until:g} < gap < pi")
    if variant == "usa":
        top = beta * math.cos(gap)
        g = lambda u: math.exp(u - beta * math.cos(math.exp(u)) + top) / ((m1 + m2) * math.sin(math.exp(u)))
        val = quad(g, math.log(until), math.log(gap), limit=400, epsabs=0.0, epsrel=1e-12)[0]
        return val * math.exp(-top)
    # integrate exp(u) / |rate(exp(u))| du, scaled by the plateau's size so quad sees O(1) numbers
    scale = beta * (1.0 - math.cos(gap))
    f = lambda u: math.exp(u - scale) / -two_dirac_gap_rate(math.exp(u), beta, m1, m2)
    lo, hi = math.log(until), math.log(gap)
    knee = hi - 4.0 / max(scale, 1.0)  # the plateau's integrand lives in the last few 1/scale below log(gap)
    val = quad(f, lo, hi, limit=400, epsabs=0.0, epsrel=1e-12, points=[knee] if knee > lo else None)[0]
    return val * math.exp(scale)


def two_dirac_travel(gap: float, beta: float, m1: float = 0.5, m2: float = 0.5) -> float:
    """How far Dirac 1 (mass m1) moves towards Dirac 2 before they meet (SA, circle, as ``two_dirac_gap_rate``).

    SA does not conserve the first moment: each Dirac's velocity is divided by its own partition function,
    so Dirac 1 moves at m2 e / (m1 + m2 e) and Dirac 2 at m1 e / (m2 + m1 e) (times sin D, e = e^{beta (cos D - 1)}):
    the distance is int_0^gap v1 / (v1 + v2) dD.  As beta -> oo the meeting point weights the positions by the
    squared masses (e << 1 on the whole way but the last ~1/sqrt(beta)); for e -> 1 by the masses."""
    from scipy.integrate import quad

    def share(d):
        e = math.exp(beta * (math.cos(d) - 1.0))
        v1, v2 = m2 / (m1 + m2 * e), m1 / (m2 + m1 * e)
        return v1 / (v1 + v2)

    return quad(share, 0.0, gap, limit=200, epsabs=1e-14, epsrel=1e-12)[0]


# ---------------------------------------------------------------------------------------------
# with noise on the circle (viscosity nu > 0, Q = K = V = I): the threshold, the stationary states, Landau
def critical_viscosity(beta: float, variant: str = "sa") -> float:
    """nu_c: the uniform density is linearly unstable iff nu < nu_c.  lambda_k / k^2 + nu is I_k(beta) / (beta I_0(beta))
    (SA) or I_k(beta) / beta (USA), largest at k = 1."""
    check_parameters(beta, variant)
    r1 = float(ive(1, beta) / ive(0, beta))
    return r1 / beta if variant == "sa" else float(ive(1, beta)) * math.exp(beta) / beta


def von_mises_concentration(a1: float) -> float:
    """kappa of the von Mises density whose first coefficient a_1 = |rho_1| / rho_0 is I_1(kappa) / I_0(kappa) = a1
    (0 <= a1 < 1; 0 for a1 = 0)."""
    from scipy.optimize import brentq

    return brentq(lambda x: float(ive(1, x) / ive(0, x)) - a1, 1e-9, 1e4) if a1 > 0 else 0.0


def stationary_circle(beta: float, nu: float, variant: str = "sa", a1: float = 0.1, modes: int = 48,
                      nodes: int = 512) -> np.ndarray:
    """A stationary density of the noisy equation on the circle, symmetric about theta = 0: the real vector
    (a_1, ..., a_modes) with rho = rho_bar (1 + 2 sum_k a_k cos k theta), solved by Newton (from the von Mises
    profile whose first coefficient is a_1, or from a previous solution passed as a_1) from the zero-flux condition nu grad rho = rho X[rho], i.e. the Gibbs-type fixed point

        USA:  rho proportional to exp(psi / (beta nu)),     SA:  rho proportional to psi^{1 / (beta nu)},

    psi = G_beta rho (docs/validation.md).  Starting from a_1 = 0 returns the uniform state."""
    k = np.arange(1, modes + 1)
    theta = 2 * np.pi * np.arange(nodes) / nodes
    cos = np.cos(np.outer(theta, k))
    ratio = ive(k, beta) / ive(0, beta)  # I_k / I_0: psi / psi_bar = 1 + 2 sum_k (I_k / I_0) a_k cos k theta

    def residual(a):
        psi = 1.0 + 2.0 * cos @ (ratio * a)
        if variant == "usa":  # psi / (beta nu) = (I_0 e^beta / (beta nu)) psi / psi_bar; constants drop out
            u = (psi - 1.0) * float(ive(0, beta)) * math.exp(beta) / (beta * nu)
        else:
            u = np.log(np.maximum(psi, 1e-300)) / (beta * nu)
        g = np.exp(u - u.max())
        return cos.T @ g / g.sum() - a

    if np.ndim(a1):  # a whole previous solution (continuation)
        a0 = np.asarray(a1, float)
    elif a1 > 0:  # a von Mises profile with this a_1: every harmonic about right, so Newton converges
        kappa = von_mises_concentration(a1)
        a0 = ive(k, kappa) / ive(0, kappa)
    else:
        a0 = np.zeros(modes)
    # Newton with a forward-difference Jacobian and step halving (MINPACK's hybrd stalls from these guesses)
    a, r = a0, residual(a0)
    for _ in range(60):
        if np.max(np.abs(r)) < 1e-14:
            return a
        h = 1e-7
        jac = np.column_stack([(residual(a + h * e) - r) / h for e in np.eye(modes)])
        step = np.linalg.solve(jac, -r)
        for _ in range(30):
            trial = a + step
            rt = residual(trial)
            if np.max(np.abs(rt)) < np.max(np.abs(r)):
                break
            step = step / 2
        a, r = trial, rt
    if np.max(np.abs(r)) > 1e-10:
        raise RuntimeError(f"stationary_circle: Newton did not converge (residual {np.max(np.abs(r)):.1e}) at beta = "
                           f"{beta:g}, nu = {nu:g}")
    return a


def _landau_coefficients(beta: float, nu: float, variant: str) -> tuple[float, float]:
    """(linear, cubic): the cubic truncation 0 = linear a_1 + cubic a_1^3 of ``stationary_circle``'s fixed point,
    the second harmonic slaved at order a_1^2 (docs/validation.md)."""
    if variant == "usa":
        k1, k2 = (float(ive(k, beta)) * math.exp(beta) / (beta * nu) for k in (1, 2))
        return k1 - 1, k1**3 * (k2 / (2 * (1 - k2)) - 0.5)
    r1, r2 = (float(ive(k, beta) / ive(0, beta)) for k in (1, 2))
    e = 1.0 / (beta * nu)
    return e * r1 - 1, r1**3 * e * (r2 * e * (e - 1) ** 2 / (2 * (1 - e * r2)) + 1 - e / 2 - e**2 / 2)


def landau_amplitude(beta: float, nu: float, variant: str = "sa") -> float:
    """The weakly nonlinear amplitude a_1 = |rho_1| / rho_0 of the stationary density just below nu_c: the cubic
    truncation of ``stationary_circle``'s fixed point in a_1 (the second harmonic slaved at order a_1^2;
    derived in docs/validation.md).  With kappa_k = I_k / (beta nu) (USA) or r_k = I_k / I_0, eps = 1 / (beta nu) (SA):

        USA:  a_1^2 = 2 (kappa_1 - 1)(1 - kappa_2) / (kappa_1^3 (1 - 2 kappa_2))
        SA:   a_1^2 = (eps r_1 - 1) / (-g),  g = r_1^3 eps (r_2 eps (eps - 1)^2 / (2 (1 - eps r_2)) + 1 - eps/2 - eps^2/2)

    nan where the branch is subcritical (no small stationary state below nu_c: beta above beta_*)."""
    check_parameters(beta, variant, nu)
    linear, cubic = _landau_coefficients(beta, nu, variant)
    sq = -linear / cubic
    return math.sqrt(sq) if sq >= 0 else math.nan


def landau_cubic(beta: float, variant: str = "sa") -> float:
    """The cubic Landau coefficient at the threshold (a_1' = (nu_c - nu) c a_1 + cubic a_1^3 up to a positive
    factor): negative = supercritical (a small stationary state bifurcates below nu_c), positive = subcritical
    (hysteresis).  Its zero is beta_*."""
    return _landau_coefficients(beta, critical_viscosity(beta, variant), variant)[1]


def retrieval_kernel(t: float, s0, a: float, alibi: float, s: float = 1.0):
    """The regular part of the causal Volterra resolvent (docs/causal.md): how much of a mode-n perturbation at prompt
    position s0 < s reaches position s by time t, a the mode's rate (USA circle: n^2 I_n(beta) / beta),

        G(t, s; s0) = k_lambda(s, s0) sqrt(a t / Y) I_1(2 sqrt(a t Y)),  Y = log((e^{lambda s} - 1) / (e^{lambda s0} - 1))

    (lambda = 0: Y = log(s / s0)).  Duerinckx–Geshkovski–Rossi's 'lost in the middle' correlation in our time."""
    s0 = np.asarray(s0, dtype=float)
    Y = np.log(s / s0) if alibi == 0 else np.log(np.expm1(alibi * s) / np.expm1(alibi * s0))
    z = 2 * np.sqrt(a * t * Y)
    # sqrt(a t / Y) I_1(z) = a t (I_1(z) / (z / 2)), finite as Y -> 0; ive keeps it from overflowing
    ratio = np.where(z > 1e-8, ive(1, z) * np.exp(z) / np.maximum(z / 2, 1e-300), 1.0)
    return alibi_kernel(s, s0, alibi) * a * t * ratio
