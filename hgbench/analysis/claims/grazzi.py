"""Claims of Grazzi, Franceschi, Pontil, Salzo, "On the Iteration Complexity of Hypergradient
Computation", ICML 2020 (arXiv 2006.16218), on the error of ITD, AID-FP and AID-CG, in the paper's
own words: its conclusions on the bounds (§3), on its hypergradient-error experiments (§5) and
its abstract. This project's own findings are not here: hgbench.analysis.claims.observations.

Conventions of every check: errors are relative (err_rel) unless a bound is involved (bounds
bound the absolute error err_abs); an error below ``theory.floor_for(dtype)`` (1e-12 in float64)
is round-off, and two errors both below it are a tie; "past the first iterations" is t ≥ PAST.
The bound-level checks need the constants of the bounds (columns ``b_<name>`` for the names of
hgbench.problems.bounds.NAMES, attached by ``theory.attach_constants`` from a preset's bounds.csv,
which ``hgbench reproduce`` writes); without them, a row says "constants not computable in closed
form".
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hgbench.analysis.claims.common import CONFIG, Claim, Verdict, declared, fmt, labels, medians
from hgbench.analysis.theory import MIN_POINTS, bounds_of, floor_for, rate_table
from hgbench.problems.bounds import bound

PAST = 10  # "past the first iterations": t ≥ 10 (the first grid points 0 … 7 are the transient)
GOOD_FIT = 0.9  # R² of a log-linear fit that counts as "linear"
SHARE = 0.8  # share of points at which an error-level ordering must hold
ROLES = ("itd", "fp", "cg")


def _ok(df: pd.DataFrame) -> pd.DataFrame:
    df = declared(df)
    return df[df["status"] == "ok"]


def _floor(df: pd.DataFrame) -> float:
    return floor_for(str(df["dtype"].iloc[0])) if "dtype" in df and len(df) else 1e-12


def _at_most(a, b, floor: float):
    """a ≤ b up to round-off: a ≤ b·(1 + 1e-9), or both below the floor (a tie)."""
    return (a <= b * (1 + 1e-9)) | ((a < floor) & (b < floor))


def linear_convergence(df: pd.DataFrame) -> Verdict:
    """Every curve of role itd, fp or cg converges linearly: in t (k = t or k fixed) and, for fp and
    cg, in k. A curve's rate is theory.rate_table's fit over its points between round-off and
    0.5 — ITD's of log(err/t), the factor t of its bound (c₁ + c₂t/q + c₃)qᵗ taken out; FP's and
    CG's of log err (C·ρᵗ). Linear: fitted rate < 1 with R² ≥ GOOD_FIT. Curves with fewer than
    MIN_POINTS points above round-off are not judged (listed); none judged: undecided."""
    table = rate_table(df)
    if table.empty:
        return "no curves", None
    table = table[table["role"].isin(ROLES) & ((table["axis"] == "t") | (table["role"] != "itd"))]
    fitted = table[table["fitted_rate"].notna()]
    if fitted.empty:
        return f"too few points (< {MIN_POINTS}) above round-off to fit any rate", None
    fitted = fitted.assign(linear=(fitted["fitted_rate"] < 1) & (fitted["r2"] >= GOOD_FIT), where=labels(fitted))
    parts = []
    for where, rows in fitted.groupby("where", sort=True):
        parts.append(f"{where}: " + ", ".join(
            f"{r.role} in {r.axis} {r.fitted_rate:.4f} (R² {r.r2:.2f})" for r in rows.itertuples()))  # fmt: skip
    skipped = len(table) - len(fitted)
    text = "; ".join(parts) + (f"; {skipped} curve(s) with too few points not judged" if skipped else "")
    return text, bool(fitted["linear"].all())


def _mean_curves(df: pd.DataFrame) -> pd.DataFrame:
    """Mean err_rel over λ draws of every curve of the diag grid (k = t), one column per role:
    index (problem, setting_id, t); several estimators of one role: the best (lowest) of them."""
    diag = _ok(df[df["grid"] == "diag"])
    diag = diag[diag["role"].isin(ROLES)]
    means = diag.groupby([*CONFIG, "role", "estimator", "t"])["err_rel"].mean()
    return means.groupby([*CONFIG, "role", "t"]).min().unstack("role")


def hierarchy(df: pd.DataFrame) -> Verdict:
    """At k = t and t ≥ PAST, the mean relative error over λ draws orders CG ≤ FP ≤ ITD (ties:
    both below round-off, or equal to 1e-9). Per configuration the share of such t; it holds
    there when the share is at least SHARE, and the claim when it holds in every configuration
    with all three roles; undecided with fewer than 3 such t anywhere."""
    curves = _mean_curves(df)
    if curves.empty or not set(ROLES) <= set(curves.columns):
        return "needs itd, fp and cg on the diag grid", None
    floor = _floor(df)
    curves = curves.dropna(subset=list(ROLES)).reset_index()
    curves = curves[curves["t"] >= PAST]
    if curves.empty:
        return f"no t ≥ {PAST}", None
    curves = curves.assign(cg_fp=_at_most(curves["cg"], curves["fp"], floor), fp_itd=_at_most(curves["fp"], curves["itd"], floor))
    share = curves.groupby(CONFIG).agg(n=("t", "size"), cg_fp=("cg_fp", "mean"), fp_itd=("fp_itd", "mean"))
    both = curves.assign(both=curves["cg_fp"] & curves["fp_itd"]).groupby(CONFIG)["both"].mean()
    share = share.assign(both=both).reset_index()
    if (share["n"] < 3).all():
        return f"fewer than 3 t ≥ {PAST}", None
    share = share[share["n"] >= 3]
    text = "; ".join(
        f"{w}: {r.both:.0%} of {r.n} t (CG ≤ FP {r.cg_fp:.0%}, FP ≤ ITD {r.fp_itd:.0%})"
        for w, r in zip(labels(share), share.itertuples())
    )  # fmt: skip
    return text, bool((share["both"] >= SHARE).all())


def _constants_or_reason(df: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The ok rows of the configurations whose bounds' constants are attached, and a note naming
    the problems without them."""
    df = _ok(df)
    have = bounds_of(df)
    missing = sorted(set(df["problem"]) - set(have["problem"]))
    note = f"{', '.join(missing)}: constants not computable in closed form" if missing else ""
    return have, note


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def fp_bound_below_itd(df: pd.DataFrame) -> Verdict:
    """With k = t, AID-FP's bound (c₁ + c₂(1 − qᵗ)/(1 − q))qᵗ + c₃qᵗ is at most ITD's
    (c₁ + c₂t/q + c₃)qᵗ at every t ≥ 1 of the diag grid, for every λ draw (constants of that draw);
    strictly where c₂ > 0 (with c₂ = 0 the two bounds are equal). Undecided without constants."""
    have, note = _constants_or_reason(df[df["grid"] == "diag"])
    have = have[have["t"] >= 1].drop_duplicates([*CONFIG, "lam_id", "t"])
    if have.empty:
        return _join(note, "no computable configuration with t ≥ 1") if note else "no diag grid", None
    fp = have.apply(lambda r: _bound(r, "fp", r["t"], r["t"]), axis=1)
    itd = have.apply(lambda r: _bound(r, "itd", r["t"], r["t"]), axis=1)
    have = have.assign(ratio=fp / itd, strict=have["b_c2"] > 0)
    holds = (have["ratio"] <= 1 + 1e-12) & (~have["strict"] | (have["ratio"] < 1))
    per = have.assign(holds=holds).groupby(CONFIG).agg(
        n=("ratio", "size"), worst=("ratio", "max"), holds=("holds", "all"), strict=("strict", "all"))  # fmt: skip
    per = per.reset_index()
    text = ", ".join(
        f"{w}: FP/ITD bound ≤ {r.worst:.3g} over {r.n} (draw, t)" + ("" if r.strict else " (c₂ = 0: equal)")
        for w, r in zip(labels(per), per.itertuples())
    )  # fmt: skip
    return _join(text, note), bool(per["holds"].all())


def _bound(row, role: str, t, k) -> float:
    return bound(role, t, k, {name[2:]: row[name] for name in row.index if name.startswith("b_")})


def cg_bound_below_fp(df: pd.DataFrame) -> Verdict:
    """With the inner problem solved (k sweep at its t), for every λ draw there is a k* in the
    sweep from which on AID-CG's bound is below AID-FP's at every k of the sweep, and it stays
    below for every larger k: c₂qᵗ/(1 − q) < c₃ (the limit of the two bounds' difference over qᵏ,
    since p < q). Reports the median and largest k*. Undecided without constants."""
    have, note = _constants_or_reason(df[df["grid"] == "k_sweep"])
    have = have[have["k"].notna()].drop_duplicates([*CONFIG, "lam_id", "t", "k"])
    if have.empty:
        return _join(note, "no computable k sweep") if note else "no k sweep", None
    cg = have.apply(lambda r: _bound(r, "cg", r["t"], r["k"]), axis=1)
    fp = have.apply(lambda r: _bound(r, "fp", r["t"], r["k"]), axis=1)
    have = have.assign(below=cg < fp, limit=have["b_c2"] * have["b_q"] ** have["t"] / (1 - have["b_q"]) < have["b_c3"])
    draws = []
    for key, rows in have.sort_values("k").groupby([*CONFIG, "lam_id"]):
        above = rows.loc[~rows["below"], "k"]
        after = rows["k"][rows["k"] > above.max()] if len(above) else rows["k"]
        k_star = after.min() if len(after) else np.nan
        draws.append(dict(zip([*CONFIG, "lam_id"], key), k_star=k_star, limit=rows["limit"].all()))
    draws = pd.DataFrame(draws)
    per = draws.groupby(CONFIG).agg(
        median=("k_star", "median"), worst=("k_star", "max"), found=("k_star", lambda s: s.notna().all()), limit=("limit", "all"))  # fmt: skip
    per = per.reset_index()
    text = ", ".join(
        f"{w}: CG bound < FP bound from k* = {fmt(r.median)} (median), {fmt(r.worst)} (largest)"
        + ("" if r.found else " — not reached in the sweep for some draw") + ("" if r.limit else " — c₂qᵗ/(1−q) ≥ c₃")
        for w, r in zip(labels(per), per.itertuples())
    )  # fmt: skip
    return _join(text, note), bool((per["found"] & per["limit"]).all())


def error_within_bound(df: pd.DataFrame) -> Verdict:
    """Every row of role itd, fp or cg with the constants has err_abs ≤ its bound (Thms.), for
    every λ draw; a row whose relative error is at round-off is not judged (the bound may fall
    below float64's floor). Reports the largest error/bound per configuration."""
    have, note = _constants_or_reason(df)
    have = have[have["role"].isin(ROLES)]
    if have.empty:
        return note or "no itd, fp or cg rows", None
    floor = _floor(df)
    bound = have.apply(lambda r: _bound(r, r["role"], r["t"], r["k"] if pd.notna(r["k"]) else r["t"]), axis=1)
    have = have.assign(ratio=have["err_abs"] / bound, judged=have["err_rel"] >= floor)
    have = have[have["judged"]]
    if have.empty:
        return _join("every error at round-off", note), None
    per = have.groupby(CONFIG).agg(n=("ratio", "size"), worst=("ratio", "max"), over=("ratio", lambda s: int((s > 1).sum())))
    per = per.reset_index()
    text = ", ".join(
        f"{w}: {r.over} of {r.n} rows above the bound, largest error/bound {r.worst:.2g}"
        for w, r in zip(labels(per), per.itertuples())
    )  # fmt: skip
    return _join(text, note), bool((per["over"] == 0).all())


def _fronts(rows: pd.DataFrame, cost: str) -> dict[str, pd.Series]:
    """Per role, the Pareto front of (median cost, median err_rel) over its grid points: the
    lowest error reached at no more cost, as a step function (index cost)."""
    fronts = {}
    for role, part in rows.groupby("role"):
        med = part.groupby(["estimator", "t", "k"], dropna=False)[[cost, "err_rel"]].median().sort_values(cost)
        fronts[role] = med.set_index(cost)["err_rel"].cummin().groupby(level=0).min()
    return fronts


def _beyond_inner(rows: pd.DataFrame) -> pd.DataFrame:
    """On a k sweep (every estimator at one t), each estimator's costs less its median cost at
    its smallest k: the t inner steps, the same for every estimator, are left out of the
    comparison. In wall time they dwarf the solver's share (t = 3000 steps against k ≤ 500), so a
    few % of timing difference between two jobs' inner loops would otherwise decide it. Grids
    with several t (k = t) are returned as they are: there the inner loop is part of the cost."""
    if (rows.groupby("estimator")["t"].nunique() > 1).any():
        return rows
    first = rows["k"] == rows.groupby("estimator")["k"].transform("min")
    base = rows[first].groupby("estimator")[["ops", "time_s"]].median()
    return rows.assign(**{c: rows[c] - rows["estimator"].map(base[c]).fillna(0.0) for c in base})


def _front_at(front: pd.Series, levels: np.ndarray, floor: float) -> np.ndarray:
    """The front's error at each cost level, interpolated linearly in log error between its
    points (a grid of costs 2t for one role and 2t + 1 for another must not compare a point with
    the other's previous grid point); beyond its last point it keeps its last value (the lowest
    error reached at no more cost), below its first point it is inf (no estimate that cheap)."""
    costs, err = front.index.to_numpy(float), np.log(np.maximum(front.to_numpy(float), floor * 1e-3))
    inside = np.exp(np.interp(levels, costs, err))  # np.interp holds the end values outside
    return np.where(levels < costs[0], np.inf, inside)


# Wall time compares jobs of one preset timed minutes apart on a shared machine. Observed in this
# project's grazzi2020 runs: the same 3,000 inner steps took 0.530 s in one job and 0.468 s in
# another, and on meta_learning's k = t grid the ratio of ITD's to CG's time for the same points
# was 1.09 in one reproduction and 0.63 in the next (1.7×). A level therefore counts for CG in
# time only against the others given TIME_SLACK times its time, and against it only when they
# need 1/TIME_SLACK of it; VJP-equivalents are counted exactly.
TIME_SLACK = 2.0
SLACK = {"ops": 1.0, "time_s": TIME_SLACK}


def cg_most_efficient(df: pd.DataFrame) -> Verdict:
    """Error per unit of work, per configuration and grid with roles cg and fp (and itd where it has
    more than one point), for each cost measure (VJP-equivalents = Φ evaluations + VJPs + JVPs;
    wall time). At each point of CG's Pareto front (lowest median err_rel at no more cost) within
    the cost range all roles reach, CG is *ahead* when its error is at most every other role's
    front at SLACK times its cost, *behind* when it is above some other role's front at 1/SLACK
    times its cost (fronts interpolated log-linearly; ties at round-off); SLACK is 1 for
    VJP-equivalents (ahead and behind then complement each other) and TIME_SLACK for time.
    On a k sweep the costs are those beyond each estimator's smallest k (``_beyond_inner``).
    A configuration holds when CG is ahead at ≥ SHARE of the levels in both measures, does not
    hold when it is behind at more than 1 − SHARE of them in either, and is undecided otherwise;
    the claim holds when every configuration holds, does not hold when one does not, else
    undecided. The measured text also gives the median over levels (above round-off) of the best
    other role's error over CG's at equal cost (> 1: CG ahead)."""
    df = _ok(df)
    df = df[df["role"].isin(ROLES)]
    if not {"n_phi", "n_vjp", "n_jvp", "time_s"} <= set(df.columns):
        return "these results lack the cost columns", None
    df = df.assign(ops=df["n_phi"] + df["n_vjp"] + df["n_jvp"])
    floor = _floor(df)
    out = []
    for key, rows in df.groupby([*CONFIG, "grid"]):
        if not {"cg", "fp"} <= set(rows["role"]):
            continue
        rows = _beyond_inner(rows)
        shares = {}
        for cost, slack in SLACK.items():
            fronts = {r: f for r, f in _fronts(rows, cost).items() if len(f) >= 2}  # ITD in a k sweep: one point
            if "cg" not in fronts or len(fronts) < 2:
                continue
            low = max(f.index.min() for f in fronts.values())
            high = min(f.index.max() for f in fronts.values())
            levels = fronts["cg"].index.to_numpy(float)  # CG's own points, others at the same cost
            levels = levels[(levels >= low) & (levels <= high)]
            if len(levels) < 3:
                continue
            cg = fronts["cg"].loc[levels].to_numpy(float)
            rivals = [f for r, f in fronts.items() if r != "cg"]

            def best_at(scale):  # the lowest error of the other roles at `scale` times CG's cost
                return np.min([_front_at(f, levels * scale, floor) for f in rivals], axis=0)

            shares[cost] = float(np.mean(_at_most(cg, best_at(slack), floor)))
            shares[f"{cost}_behind"] = float(np.mean(~_at_most(cg, best_at(1 / slack), floor)))
            others = best_at(1.0)
            above = (cg >= floor) | (others >= floor)
            shares[f"{cost}_gain"] = float(np.exp(np.median(np.log(np.maximum(others, floor) / np.maximum(cg, floor))[above]))) if above.any() else 1.0
        if len(shares) == 3 * len(SLACK):
            out.append(dict(zip([*CONFIG, "grid"], key), roles="/".join(sorted(fronts)), **shares))
    if not out:
        return "no configuration with cg and fp over at least 3 common cost levels", None
    table = pd.DataFrame(out)
    text = "; ".join(
        f"{w} {r.grid} ({r.roles}): CG ahead at {r.ops:.0%} of VJP-equivalent levels (median err(best other)/err(CG) {r.ops_gain:.2g}), "
        f"ahead at {r.time_s:.0%} and behind at {r.time_s_behind:.0%} of time levels ({r.time_s_gain:.2g})"
        for w, r in zip(labels(table), table.itertuples())
    )  # fmt: skip
    ahead = (table["ops"] >= SHARE) & (table["time_s"] >= SHARE)
    behind = (table["ops_behind"] > 1 - SHARE) | (table["time_s_behind"] > 1 - SHARE)
    return text, False if behind.any() else (True if ahead.all() else None)


def itd_bound_shape(df: pd.DataFrame) -> Verdict:
    """Every ITD curve (role itd, k = t, median err_rel over draws) has the shape of its bound's
    t·qᵗ term: it peaks at some t > 0 above its value at t = 0, then falls below 1% of that peak
    by the largest t. Undecided without t = 0 or with fewer than 3 t values."""
    med = medians(df[df["grid"] == "diag"], "t")
    curves = []
    for key, curve in med[med["role"] == "itd"].groupby([*CONFIG, "estimator"]):
        curve = curve.set_index("t")["err_rel"].sort_index()
        if 0 not in curve.index or len(curve) < 3:
            return "needs t = 0 and more t values", None
        curves.append(dict(zip([*CONFIG, "estimator"], key), peak_t=int(curve.idxmax()), peak=curve.max(), start=curve[0],
                           last_t=int(curve.index[-1]), last=curve.iloc[-1]))  # fmt: skip
    if not curves:
        return "no itd curve", None
    table = pd.DataFrame(curves)
    text = "; ".join(
        f"{w}: {fmt(r.start)} at t = 0, peak {fmt(r.peak)} at t = {r.peak_t}, {fmt(r.last)} at t = {r.last_t}"
        for w, r in zip(labels(table, ("estimator",)), table.itertuples())
    )  # fmt: skip
    rises = (table["peak_t"] > 0) & (table["peak"] > table["start"])
    return text, bool((rises & (table["last"] < 0.01 * table["peak"])).all())


SOURCE = "Grazzi et al. 2020"
CLAIMS = [
    Claim("G1", f"{SOURCE}, §3 (Thms. on ITD, AID-FP, AID-CG)", "“ITD, CG and FP converge linearly (in t and k)”",
          ("grazzi2020", "ridge_illcond_cold", "ridge_illcond"),
          f"every itd/fp/cg curve: fitted rate < 1 with R² ≥ {GOOD_FIT} (ITD: fit of log(err/t) vs t; FP, CG: log err vs t and k), "
          f"over its points between round-off and 0.5; undecided when no curve has ≥ {MIN_POINTS} such points",
          linear_convergence),
    Claim("G2", f"{SOURCE}, §3 (bounds)", "“FP bound < ITD bound for every t, when k = t”",
          ("grazzi2020", "ridge_illcond_cold"),
          "per λ draw, with the bounds' constants in closed form: FP bound ≤ ITD bound at every t ≥ 1, strictly where c₂ > 0; "
          "undecided where the constants are not computable", fp_bound_below_itd),
    Claim("G3", f"{SOURCE}, §3 (bounds)", "“CG bound < FP bound for k big enough when ∂₁Φ is symmetric”",
          ("grazzi2020", "ridge_illcond"),
          "per λ draw at the k sweep's t: CG bound < FP bound at every sweep k ≥ some k*, and c₂qᵗ/(1−q) < c₃ (so for every "
          "larger k); undecided where the constants are not computable", cg_bound_below_fp),
    Claim("G4", f"{SOURCE}, §5 (hypergradient-error experiments)", "“Methods with lower error bounds have lower error on average”: CG ≤ FP ≤ ITD",
          ("grazzi2020", "ridge_illcond_cold"),
          f"mean err_rel over λ draws at k = t, t ≥ {PAST}: CG ≤ FP ≤ ITD (ties: both < 1e-12) at ≥ {SHARE:.0%} of the t "
          "in every configuration; undecided with < 3 such t", hierarchy),
    Claim("G5", f"{SOURCE}, Thm. on ITD (the bound's t·qᵗ term)", "ITD's error follows its bound (c₁ + c₂t/q + c₃)qᵗ: it can rise before it falls linearly",
          ("ridge_illcond_cold",), "ITD's median error peaks at some t > 0 above its t = 0 value, then falls below 1% of the peak",
          itd_bound_shape),
    Claim("G6", f"{SOURCE}, abstract", "“a hierarchy in terms of computational efficiency … with approximate implicit "
          "differentiation based on conjugate gradient performing best”", ("grazzi2020", "ridge_illcond_cold"),
          f"per configuration and grid, in VJP-equivalents and in wall time, at the points of CG's Pareto front (median err_rel "
          "vs median cost) in the cost range all roles reach: CG ahead where its error ≤ every other role's front at "
          f"{SLACK['time_s']:g}× its time (1× its VJP-equivalents), behind where above some other's at 1/{SLACK['time_s']:g}× "
          "(1×); log-linear interpolation, ties below 1e-12; on a k sweep (one t) the cost beyond each estimator's smallest k. "
          f"Holds: ahead at ≥ {SHARE:.0%} in both measures, every configuration; does not hold: behind at > {1 - SHARE:.0%} "
          "in one; else undecided", cg_most_efficient),
    Claim("G7", f"{SOURCE}, §3 (Thms. on ITD, AID-FP, AID-CG)", "The hypergradient error is at most the bound, for every λ",
          ("grazzi2020", "ridge_illcond_cold", "ridge_illcond"),
          "every itd/fp/cg row above round-off: err_abs ≤ its bound with that draw's constants; undecided where the constants "
          "are not computable", error_within_bound),
]  # fmt: skip
