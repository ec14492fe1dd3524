"""The tables: one row per run (INVALID with its reasons, never a number), then min/median."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence

from capacity.run import DEFAULT_VARIANTS, VARIANTS, Run, pct

RUN_HEADER = (
    f"{'variant':<14} {'rep':>3} {'N':>3} {'CPU%':>5} {'%/sess':>6} {'sess/core':>9} "
    f"{'up p50/p95/p99 ms':>18} {'down p50/p95/p99 ms':>20} {'RSS MB':>6} {'KB/idle':>7} "
    f"{'KB/active':>9} {'turns':>5} {'upst%':>5} {'gen%':>5} {'noise%':>6}  status"
)


def _lat(values: list[float]) -> str:
    if not values:
        return "-"
    return "/".join(f"{pct(values, p):.1f}" for p in (50, 95, 99))


def run_row(r: Run) -> str:
    status = "ok" if not r.invalid else "INVALID: " + "; ".join(r.invalid)
    if r.invalid:  # a run that is not valid shows why, not numbers that look like results
        return f"{r.variant:<14} {r.repeat:>3} {r.sessions:>3} " + f"{'':>96}  {status}"
    return (
        f"{r.variant:<14} {r.repeat:>3} {r.sessions:>3} {r.cpu:>5.1f} {r.per_session:>6.2f} "
        f"{r.per_core:>9.0f} {_lat(r.up_ms):>18} {_lat(r.down_ms):>20} {r.rss_base:>6.0f} "
        f"{r.kb_per_session(r.rss_idle):>7.0f} {r.kb_per_session(r.rss_active):>9.0f} "
        f"{r.turns_ok:>5} {r.upstream_cpu:>5.1f} {r.clients_cpu:>5.1f} {r.noise_cpu:>6.1f}"
        f"  {status}"
    )


SUMMARY_HEADER = (
    f"{'variant':<14} {'valid':>5} {'%/sess min/med':>14} {'sess/core max/med':>17} "
    f"{'up p99 min/med':>14} {'down p99 min/med':>16} {'KB idle/active':>14}"
)


def _mm(values: list[float], fmt: str, best: Callable[[list[float]], float] = min) -> str:
    if not values:
        return "-"
    return f"{best(values):{fmt}}/{statistics.median(values):{fmt}}"


def summary(runs: Sequence[Run]) -> tuple[list[str], dict[str, dict[str, float]]]:
    """Per variant over its valid runs; the medians also come back for the targets."""
    lines, medians = [], {}
    for variant in VARIANTS:
        valid = [r for r in runs if r.variant == variant and not r.invalid]
        total = sum(1 for r in runs if r.variant == variant)
        if not total:
            continue
        per = [r.per_session for r in valid]
        core = [r.per_core for r in valid]
        up = [pct(r.up_ms, 99) for r in valid]
        down = [pct(r.down_ms, 99) for r in valid]
        idle = [r.kb_per_session(r.rss_idle) for r in valid]
        active = [r.kb_per_session(r.rss_active) for r in valid]
        kb = f"{statistics.median(idle):.0f}/{statistics.median(active):.0f}" if valid else "-"
        lines.append(
            f"{variant:<14} {len(valid):>2}/{total:<2} {_mm(per, '.2f'):>14} "
            f"{_mm(core, '.0f', max):>17} {_mm(up, '.1f'):>14} {_mm(down, '.1f'):>16} {kb:>14}"
        )
        if valid:
            medians[variant] = {
                "per_session": statistics.median(per),
                "per_core": statistics.median(core),
                "up_p99": statistics.median(up),
                "down_p99": statistics.median(down),
            }
    return lines, medians


def targets(medians: dict[str, dict[str, float]], ran: Sequence[str]) -> list[str]:
    """The issue's targets, judged on medians; a target without valid runs says so."""
    on, off, bare = (medians.get(v) for v in DEFAULT_VARIANTS)
    out = []
    if on and bare:
        ratio = on["per_core"] / bare["per_core"]
        out.append(
            f"telemetry on / bare relay sessions per core: {ratio:.0%} (target ≥ 80 %) "
            + ("MET" if ratio >= 0.8 else "MISSED")
        )
    if on:
        worst = max(on["up_p99"], on["down_p99"])
        out.append(
            f"telemetry on p99 relay latency: up {on['up_p99']:.1f} ms, "
            f"down {on['down_p99']:.1f} ms "
            f"(target < 10 ms) " + ("MET" if worst < 10 else "MISSED")
        )
    if on and off:
        delta = on["per_session"] / off["per_session"] - 1
        out.append(
            f"telemetry on vs off CPU per session: {delta:+.1%} (target within 5 %) "
            + ("MET" if abs(delta) <= 0.05 else "MISSED")
        )
    nodeflate = medians.get("no deflate")
    if nodeflate and bare:
        ratio = nodeflate["per_core"] / bare["per_core"]
        out.append(
            f"no deflate / bare relay sessions per core: {ratio:.0%} (what switching it off gives)"
        )
    missing = [v for v in ran if v not in medians]
    if missing:
        out.append(f"no valid run of: {', '.join(missing)} — targets involving them not judged")
    return out


def noise_note(runs: Sequence[Run]) -> str:
    noise = [r.noise_cpu for r in runs if not math.isnan(r.noise_cpu)]
    if not noise:
        return "noise: service not pinned, other load on its CPU unknown"
    return (
        f"noise: other processes used {min(noise):.0f}-{max(noise):.0f} % "
        f"(median {statistics.median(noise):.0f} %) of the service's core during the runs"
    )
