"""Claims of Grazzi, Franceschi, Pontil, Salzo, "On the Iteration Complexity of Hypergradient
Computation", ICML 2020 (arXiv 2006.16218), on the error, cost and memory of ITD, AID-FP and
AID-CG, in the authors' words: the conclusions of their talk slides (on the bounds and on the
hypergradient-error experiments), the theorems bounding the errors, and the abstract. Statements
that follow from the bound formulas by arithmetic (G2, G3) are labelled checks of the formulas,
not evidence about the estimators. This project's own findings are not here:
hgbench.analysis.claims.observations.

Conventions of every check: errors are relative (err_rel) unless a bound is involved (bounds
bound the absolute error err_abs); an error below ``theory.floor_for(dtype)`` (1e-12 in float64)
is round-off, and two errors both below it are a tie; two errors of different estimators within a
factor ``common.TIE`` (1.25) are a tie; two quantities equal by construction are equal within a
relative ``common.ROUNDOFF`` (1e-9); "past the first iterations" is t ≥ PAST.
The bound-level checks need the constants of the bounds (columns ``b_<name>`` for the names of
hgbench.problems.bounds.NAMES, attached by ``theory.attach_constants`` from a preset's bounds.csv,
which ``hgbench reproduce`` writes); without them, a row says "constants not computable in closed
form".
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd

from hgbench.analysis.claims.common import CONFIG, ROUNDOFF, TIE, Claim, Verdict, decide, declared, fmt, labels, medians
from hgbench.analysis.theory import MIN_POINTS, bounds_of, floor_for, rate_table
from hgbench.problems.bounds import bound

PAST = 10  # "past the first iterations": t ≥ 10 (the first grid points 0 … 7 are the transient)
GOOD_FIT = 0.9  # R² of a log-linear fit that counts as "linear"
ROLES = ("itd", "fp", "cg")


def _ok(df: pd.DataFrame) -> pd.DataFrame:
    df = declared(df)
    return df[df["status"] == "ok"]


def _floor(df: pd.DataFrame) -> float:
    return floor_for(str(df["dtype"].iloc[0])) if "dtype" in df and len(df) else 1e-12


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
        parts.append(f"{where}: " + ", ".join(f"{r.role} in {r.axis} {r.fitted_rate:.4f} (R² {r.r2:.2f})" for r in rows.itertuples()))
    skipped = len(table) - len(fitted)
    text = "; ".join(parts) + (f"; {skipped} curve(s) with too few points not judged" if skipped else "")
    return text, bool(fitted["linear"].all())


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
    (c₁ + c₂t/q + c₃)qᵗ at every t ≥ 1 of the diag grid, for every λ draw (constants of that draw),
    up to round-off: FP/ITD ≤ 1 + ROUNDOFF (with c₂ = 0 the two bounds are equal by construction,
    and their computed ratio may exceed 1 by a few ulps). Given the constants this follows by
    arithmetic, (1 − qᵗ)/(1 − q) ≤ t ≤ t/q: a check of the formulas and constants, not of the
    estimators. Undecided without constants."""
    have, note = _constants_or_reason(df[df["grid"] == "diag"])
    have = have[have["t"] >= 1].drop_duplicates([*CONFIG, "lam_id", "t"])
    if have.empty:
        return _join(note, "no computable configuration with t ≥ 1") if note else "no diag grid", None
    fp = have.apply(lambda r: _bound(r, "fp", r["t"], r["t"]), axis=1)
    itd = have.apply(lambda r: _bound(r, "itd", r["t"], r["t"]), axis=1)
    have = have.assign(ratio=fp / itd, strict=have["b_c2"] > 0)
    holds = have["ratio"] <= 1 + ROUNDOFF  # equal within round-off (c₂ = 0, or c₂t/q negligible): a tie, not a miss
    per = (
        have.assign(holds=holds)
        .groupby(CONFIG)
        .agg(n=("ratio", "size"), worst=("ratio", "max"), holds=("holds", "all"), strict=("strict", "all"))
    )
    per = per.reset_index()
    text = ", ".join(
        f"{w}: FP/ITD bound ≤ {r.worst:.3g} over {r.n} (draw, t)" + ("" if r.strict else " (c₂ = 0: equal)")
        for w, r in zip(labels(per), per.itertuples())
    )
    return _join(text, note), bool(per["holds"].all())


def _bound(row, role: str, t, k) -> float:
    return bound(role, t, k, {name[2:]: row[name] for name in row.index if name.startswith("b_")})


MATERIAL = 2.0  # two bounds at least this factor apart predict which error is lower
AGREE_HOLDS, AGREE_FAILS = 0.8, 0.5  # shares of the decided comparisons that agree with the bounds


def bound_order(df: pd.DataFrame) -> Verdict:
    """“Methods with lower error bounds have lower error on average” (Grazzi et al.'s slides on their
    hypergradient-error experiments): a link between the order of two methods' bounds and the order
    of their mean errors over the λ draws.

    At every (configuration, grid, t, k) where two of itd, fp, cg both have rows with the bounds'
    constants (ITD's k is its t), the mean over the λ draws of each one's bound (its own draw's
    constants, ``hgbench.problems.bounds.bound``) and of its err_abs (what the bounds bound). Only
    where the two mean bounds differ by at least MATERIAL (2×) do they predict an order; there the
    comparison *agrees* when the method with the lower bound has the lower mean error, *disagrees*
    when it has the higher one, and is a *tie* (not counted) when the two mean errors are within
    a factor TIE or both mean relative errors are below round-off. Per configuration with at least
    one decided comparison: holds when ≥ AGREE_HOLDS of them agree, does not hold when < AGREE_FAILS
    agree (the bounds order the errors worse than a coin), else undecided (also with fewer than
    MIN_POINTS decided comparisons); the claim by ``decide``. Undecided where the constants are not computable, or where no two bounds differ by 2×."""
    have, note = _constants_or_reason(df)
    have = have[have["role"].isin(ROLES) & (have["t"] >= 1)]
    if have.empty:
        return note or "no itd, fp or cg rows", None
    floor = _floor(df)
    k = have["k"].where(have["role"] != "itd", have["t"]).fillna(have["t"])
    have = have.assign(k=k, bound=[_bound(r, r["role"], r["t"], r["k"]) for _, r in have.assign(k=k).iterrows()])
    means = have.groupby([*CONFIG, "grid", "t", "k", "role"])[["bound", "err_abs", "err_rel"]].mean().reset_index()
    keys = [*CONFIG, "grid", "t", "k"]
    pairs = [
        means[means["role"] == a].merge(means[means["role"] == b], on=keys, suffixes=("_a", "_b"))
        for i, a in enumerate(ROLES)
        for b in ROLES[i + 1 :]
    ]
    pairs = pd.concat(pairs, ignore_index=True)
    if pairs.empty:
        return _join(note, "no (t, k) with two of itd, fp, cg"), None
    spread = np.maximum(pairs["bound_a"], pairs["bound_b"]) / np.minimum(pairs["bound_a"], pairs["bound_b"])
    pairs = pairs.assign(material=spread >= MATERIAL)
    lower_a = pairs["bound_a"] < pairs["bound_b"]
    low_err = np.where(lower_a, pairs["err_abs_a"], pairs["err_abs_b"])
    high_err = np.where(lower_a, pairs["err_abs_b"], pairs["err_abs_a"])
    tie = (np.maximum(low_err, high_err) <= TIE * np.minimum(low_err, high_err)) | (
        (pairs["err_rel_a"] < floor) & (pairs["err_rel_b"] < floor)
    )
    pairs = pairs.assign(agree=low_err < high_err, tie=tie)
    table = []
    for key, rows in pairs.groupby(CONFIG):
        material = rows[rows["material"]]
        decided = material[~material["tie"]]
        wrong = decided[~decided["agree"]]
        table.append(
            dict(
                zip(CONFIG, key),
                n=len(rows),
                material=len(material),
                decided=len(decided),
                agree=int(decided["agree"].sum()),
                example=wrong.iloc[0] if len(wrong) else None,
            )
        )
    table = pd.DataFrame(table)
    out, verdicts = [], []
    for where, r in zip(labels(table), table.itertuples()):
        text = f"{where}: bounds ≥ {MATERIAL:g}× apart at {r.material} of {r.n} (pair, t, k)"
        if r.decided < MIN_POINTS:
            out.append(text + f", {r.decided} not tied (< {MIN_POINTS}: undecided)")
            verdicts.append(None)
            continue
        share = r.agree / r.decided
        text += f", {r.material - r.decided} ties; lower bound → lower mean error at {r.agree} of {r.decided} ({share:.0%})"
        if r.example is not None:
            e = r.example
            text += (
                f", e.g. not at {e.role_a}/{e.role_b} t = {e.t:g}, k = {e.k:g}: bounds {e.bound_a:.2g}/{e.bound_b:.2g}, "
                f"mean errors {e.err_abs_a:.2g}/{e.err_abs_b:.2g}"
            )
        out.append(text)
        verdicts.append(True if share >= AGREE_HOLDS else False if share < AGREE_FAILS else None)
    return _join("; ".join(out), note), decide(verdicts)


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
        median=("k_star", "median"), worst=("k_star", "max"), found=("k_star", lambda s: s.notna().all()), limit=("limit", "all")
    )
    per = per.reset_index()
    text = ", ".join(
        f"{w}: CG bound < FP bound from k* = {fmt(r.median)} (median), {fmt(r.worst)} (largest)"
        + ("" if r.found else " — not reached in the sweep for some draw")
        + ("" if r.limit else " — c₂qᵗ/(1−q) ≥ c₃")
        for w, r in zip(labels(per), per.itertuples())
    )
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
        f"{w}: {r.over} of {r.n} rows above the bound, largest error/bound {r.worst:.2g}" for w, r in zip(labels(per), per.itertuples())
    )
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
# was 1.09 in one reproduction and 0.63 in the next (1.7×). Time is therefore reported beside the
# verdict, never deciding it; the verdict rests on VJP-equivalents, which are counted exactly.
COSTS = ("ops", "time_s")


def _versus(rows: pd.DataFrame, cost: str, floor: float) -> Optional[np.ndarray]:
    """At each point of CG's Pareto front in ``cost`` within the cost range every role's front
    covers (at least 3 of them), the best other role's front error at CG's cost over CG's error
    (> 1: CG lower); both errors at round-off: 1. None when CG or a rival has no front there."""
    fronts = {r: f for r, f in _fronts(rows, cost).items() if len(f) >= 2}  # ITD in a k sweep: one point
    if "cg" not in fronts or len(fronts) < 2:
        return None
    low = max(f.index.min() for f in fronts.values())
    high = min(f.index.max() for f in fronts.values())
    levels = fronts["cg"].index.to_numpy(float)
    levels = levels[(levels >= low) & (levels <= high)]
    if len(levels) < 3:
        return None
    cg = fronts["cg"].loc[levels].to_numpy(float)
    others = np.min([_front_at(f, levels, floor) for r, f in fronts.items() if r != "cg"], axis=0)
    return np.where((cg < floor) & (others < floor), 1.0, np.maximum(others, floor) / np.maximum(cg, floor))


def cg_most_efficient(df: pd.DataFrame) -> Verdict:
    """“… conjugate gradient performing best” in efficiency (abstract): error per unit of work.
    Per configuration and grid with roles cg and fp (and itd where it has more than one point):
    the Pareto front of each role (lowest median err_rel at no more cost), and at every point of
    CG's front within the cost range all fronts cover, the best other role's error at equal cost
    (fronts interpolated log-linearly) over CG's: CG *ahead* when it exceeds TIE, *behind* when it
    is below 1/TIE, a *tie* otherwise or when both are at round-off. The work is VJP-equivalents
    (Φ evaluations + VJPs + JVPs, counted exactly); on a k sweep the cost beyond each estimator's
    smallest k (``_beyond_inner``). Per configuration: undecided when ties are at least half the
    levels or fewer than 3 levels are not ties; else holds when CG is ahead at ≥ AGREE_HOLDS of
    them, does not hold when at < AGREE_FAILS; else undecided; the claim by ``decide``. The same
    shares at equal wall time are reported beside, not deciding (timing noise between jobs, above)."""
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
        gains = {cost: _versus(rows, cost, floor) for cost in COSTS}
        if gains["ops"] is None:
            continue
        row = dict(zip([*CONFIG, "grid"], key), roles="/".join(sorted(set(rows["role"]))))
        for cost, gain in gains.items():
            if gain is None:
                row.update({f"{cost}_n": 0})
                continue
            row.update(
                {
                    f"{cost}_n": len(gain),
                    f"{cost}_ahead": int((gain > TIE).sum()),
                    f"{cost}_behind": int((gain < 1 / TIE).sum()),
                    f"{cost}_gain": float(np.exp(np.median(np.log(gain)))),
                }
            )
        out.append(row)
    if not out:
        return "no configuration with cg and fp over at least 3 common cost levels", None
    table = pd.DataFrame(out)
    texts, verdicts = [], []
    for where, r in zip(labels(table), table.itertuples()):
        ties = r.ops_n - r.ops_ahead - r.ops_behind
        decided = r.ops_ahead + r.ops_behind
        text = (
            f"{where} {r.grid} ({r.roles}): in VJP-equivalents CG ahead at {r.ops_ahead}, behind at {r.ops_behind}, "
            f"tied at {ties} of {r.ops_n} levels (median err(best other)/err(CG) {r.ops_gain:.2g})"
        )
        if r.time_s_n:
            text += f"; in wall time, not deciding: ahead {r.time_s_ahead}, behind {r.time_s_behind} of {r.time_s_n} ({r.time_s_gain:.2g})"
        if 2 * ties >= r.ops_n or decided < 3:
            verdict = None
            text += " — a tie"
        else:
            share = r.ops_ahead / decided
            verdict = True if share >= AGREE_HOLDS else False if share < AGREE_FAILS else None
        texts.append(text)
        verdicts.append(verdict)
    return "; ".join(texts), decide(verdicts)


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
        curves.append(
            dict(
                zip([*CONFIG, "estimator"], key),
                peak_t=int(curve.idxmax()),
                peak=curve.max(),
                start=curve[0],
                last_t=int(curve.index[-1]),
                last=curve.iloc[-1],
            )
        )
    if not curves:
        return "no itd curve", None
    table = pd.DataFrame(curves)
    text = "; ".join(
        f"{w}: {fmt(r.start)} at t = 0, peak {fmt(r.peak)} at t = {r.peak_t}, {fmt(r.last)} at t = {r.last_t}"
        for w, r in zip(labels(table, ("estimator",)), table.itertuples())
    )
    rises = (table["peak_t"] > 0) & (table["peak"] > table["start"])
    return text, bool((rises & (table["last"] < 0.01 * table["peak"])).all())


def memory_growth(df: pd.DataFrame) -> Verdict:
    """ITD (reverse mode) stores the t iterates' tape: its memory grows linearly in t; AID (fp, cg)
    keeps one linearization at w_t: its memory does not depend on t or k. Measured by saved_bytes
    (bytes autograd saves for the backward passes through Φ, hgbench.core.cost), median over the λ
    draws, per configuration. ITD: the least-squares line saved = a + b·t over t ≥ PAST (its first
    step, from the constant w₀, saves less); it *grows linearly* when b > 0 with R² ≥ 0.99, and does
    not grow when b ≤ 0 or R² < GOOD_FIT; fewer than MIN_POINTS values of t ≥ PAST (a k sweep): not
    judged. AID: its bytes over every t and k of the configuration are *constant* when
    max/min ≤ 1 + ROUNDOFF, and grow when max ≥ 2·min. Holds when every judged ITD curve grows
    linearly and every AID curve is constant; does not hold when one ITD curve does not grow or one
    AID curve grows; else undecided, as where saved_bytes is not observable (empty: estimators
    built on torch.func) or no ITD curve is judged. Reports b (bytes per inner step) and AID's
    bytes. The d in O(t·d) is not varied within a preset, so it is not tested."""
    ok = _ok(df)
    ok = ok[ok["role"].isin(ROLES)] if "saved_bytes" in ok else ok.iloc[:0]
    ok = ok[ok["saved_bytes"].notna()] if len(ok) else ok
    if ok.empty:
        return "saved_bytes not observable in these rows", None
    med = ok.groupby([*CONFIG, "role", "estimator", "t", "k"], dropna=False)["saved_bytes"].median().reset_index()
    out = []
    for key, rows in med.groupby([*CONFIG, "estimator"]):
        role = rows["role"].iloc[0]
        row = dict(zip([*CONFIG, "estimator"], key), role=role)
        if role == "itd":
            line = rows[rows["t"] >= PAST].groupby("t")["saved_bytes"].median()
            if len(line) < MIN_POINTS:
                row.update(verdict="skip", text=f"itd: {len(line)} t ≥ {PAST}, not judged")
            else:
                t, y = line.index.to_numpy(float), line.to_numpy(float)
                b, a = np.polyfit(t, y, 1)
                spread = ((y - y.mean()) ** 2).sum()
                r2 = 1 - ((y - (a + b * t)) ** 2).sum() / spread if spread > 0 else 0.0
                verdict = True if b > 0 and r2 >= 0.99 else False if b <= 0 or r2 < GOOD_FIT else None
                row.update(verdict=verdict, text=f"itd +{b:.3g} B per step (R² {r2:.3f}; {y[-1]:.3g} B at t = {t[-1]:g})")
        else:
            lo, hi = rows["saved_bytes"].min(), rows["saved_bytes"].max()
            verdict = True if hi <= lo * (1 + ROUNDOFF) else False if hi >= 2 * lo else None
            row.update(verdict=verdict, text=f"{role} {lo:.3g} B" + ("" if verdict else f" to {hi:.3g} B") + f" over {len(rows)} (t, k)")
        out.append(row)
    table = pd.DataFrame(out)
    texts = [
        f"{w}: " + ", ".join(rows["text"]) for w, (_, rows) in zip(labels(table.drop_duplicates(CONFIG)), table.groupby(CONFIG, sort=True))
    ]
    judged = table[table["verdict"] != "skip"]
    if not (judged["role"] == "itd").any():
        return "; ".join(texts) + f"; no ITD curve with {MIN_POINTS} t ≥ {PAST}", None
    return "; ".join(texts), decide(list(judged["verdict"]))


SOURCE = "Grazzi et al. 2020"
SLIDES = f"{SOURCE}, talk slides (ICML 2020)"
THEOREMS = f"{SOURCE}, the theorems bounding the ITD, AID-FP and AID-CG errors"
FORMULAS = "check of the bound formulas (follows by arithmetic from the constants; not evidence about the estimators)"
CLAIMS = [
    Claim(
        "G1",
        f"{SLIDES}, summarizing {THEOREMS[len(SOURCE) + 2 :]}",
        "“ITD, CG and FP converge linearly (in t and k)”",
        ("grazzi2020", "ridge_illcond_cold", "ridge_illcond"),
        f"every itd/fp/cg curve: fitted rate < 1 with R² ≥ {GOOD_FIT} (ITD: fit of log(err/t) vs t; FP, CG: log err vs t and k), "
        f"over its points between round-off and 0.5; undecided when no curve has ≥ {MIN_POINTS} such points",
        linear_convergence,
    ),
    Claim(
        "G2",
        SLIDES,
        f"“FP bound < ITD bound for every t, when k = t” — a {FORMULAS}",
        ("grazzi2020", "ridge_illcond_cold"),
        f"per λ draw, with the bounds' constants in closed form: FP bound ≤ ITD bound·(1 + {ROUNDOFF:g}) at every t ≥ 1 (equal within round-off "
        "where c₂ = 0); undecided where the constants are not computable",
        fp_bound_below_itd,
    ),
    Claim(
        "G3",
        SLIDES,
        f"“CG bound < FP bound for k big enough when ∂₁Φ is symmetric” — a {FORMULAS}",
        ("grazzi2020", "ridge_illcond"),
        "per λ draw at the k sweep's t: CG bound < FP bound at every sweep k ≥ some k*, and c₂qᵗ/(1−q) < c₃ (so for every "
        "larger k); undecided where the constants are not computable",
        cg_bound_below_fp,
    ),
    Claim(
        "G4",
        f"{SLIDES}, on the hypergradient-error experiments",
        "“Methods with lower error bounds have lower error on average”",
        ("grazzi2020", "ridge_illcond_cold", "ridge_illcond"),
        f"at every (t, k) where two of itd/fp/cg have bounds (mean over λ draws, closed-form constants) ≥ {MATERIAL:g}× apart: the one with the "
        f"lower bound has the lower mean err_abs over the draws (errors within {TIE}× or both at round-off: a tie, not counted); per configuration "
        f"≥ {AGREE_HOLDS:.0%} of the decided comparisons agree holds, < {AGREE_FAILS:.0%} does not; else, or with < {MIN_POINTS} decided comparisons, "
        "or without constants (logistic, hyper_rep), undecided",
        bound_order,
    ),
    Claim(
        "G5",
        f"{THEOREMS}: a prediction read from ITD's bound (c₁ + c₂t/q + c₃)qᵗ, not a sentence of the paper",
        "ITD's error follows its bound (c₁ + c₂t/q + c₃)qᵗ: it can rise before it falls linearly",
        ("ridge_illcond_cold",),
        "ITD's median error peaks at some t > 0 above its t = 0 value, then falls below 1% of the peak",
        itd_bound_shape,
    ),
    Claim(
        "G6",
        f"{SOURCE}, abstract",
        "“a hierarchy in terms of computational efficiency … with approximate implicit "
        "differentiation based on conjugate gradient performing best”",
        ("grazzi2020", "ridge_illcond_cold"),
        "per configuration and grid, at every point of CG's Pareto front (median err_rel vs median VJP-equivalents = Φ evaluations + VJPs + "
        "JVPs) in the cost range all roles cover: best other role's front error at equal cost / CG's — ahead > "
        f"{TIE}, behind < 1/{TIE}, else (or both at round-off) a tie; on a k sweep the cost beyond each estimator's smallest k. Holds: ahead at "
        f"≥ {AGREE_HOLDS:.0%} of the levels not tied; does not hold: < {AGREE_FAILS:.0%}; undecided otherwise, or when ties are ≥ half the levels. "
        "Wall time: the same shares reported, not deciding",
        cg_most_efficient,
    ),
    Claim(
        "G7",
        THEOREMS,
        "The hypergradient error is at most the bound, for every λ",
        ("grazzi2020", "ridge_illcond_cold", "ridge_illcond"),
        "every itd/fp/cg row above round-off: err_abs ≤ its bound with that draw's constants; undecided where the constants "
        "are not computable",
        error_within_bound,
    ),
    Claim(
        "G8",
        f"{SOURCE}, the methods' costs (reverse-mode ITD stores the trajectory; AID does not): a paraphrase, not a quotation",
        "ITD's memory grows as O(t·d), AID's is O(d), independent of t and k",
        ("grazzi2020", "ridge_illcond_cold"),
        f"saved_bytes (median over draws) per curve: ITD's line a + b·t over t ≥ {PAST} with b > 0 and R² ≥ 0.99 and AID's bytes constant over "
        f"every t, k (max/min ≤ 1 + {ROUNDOFF:g}) holds; ITD b ≤ 0 or R² < {GOOD_FIT}, or AID max ≥ 2·min, does not; else or not observable undecided",
        memory_growth,
    ),
]
