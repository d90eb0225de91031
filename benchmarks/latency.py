"""Click-to-"saved" latency with a team on one server.

Five users, each logged in (Panel basic auth) in their own headless-Chromium context, label queued
items through the page (class buttons and number keys in turn) while a sixth presses Retrain in a
loop, all against one real ``panel serve dashboard`` over a 2,400-item project. The latency of a
label is measured in the page, from the pointer-down or key-down to the moment the page shows the
label store's commit (the ``data-saved`` counter). One user alone is measured too, as a baseline.

Each user pauses ``--think`` seconds after every "saved" (an expert reading the next item; 1 s is
brisk), and the same team is measured once more without any pause (a stress test: every user
clicks again the moment the last click is acknowledged).

Targets (issue 10): p50 <= 0.3 s and p95 <= 1 s with five sessions, browsers included, on the
2-core development machine. Writes the ``Team server: click-to-saved latency`` section of
docs/benchmarks.md (``--no-write`` only prints).

    python benchmarks/latency.py [--labels 60] [--users 5] [--think 1.0] [--no-write]
                                 [--settings one,team,stress]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from _common import DOC, ROOT, load_average, machine_summary, run_header, write_section

sys.path.insert(0, str(ROOT / "tests" / "browser"))

from browser_support import basic_auth_args, make_team_project, serve_dashboard  # noqa: E402
from team_driver import team_session  # noqa: E402

SECTION = "Team server: click-to-saved latency"
TARGET_P50_S, TARGET_P95_S = 0.3, 1.0
STALL_MS = 150  # the server logs event-loop stalls longer than this (dashboard.loopwatch)
SETTINGS = ("one", "team", "stress")  # one user alone; the team with 1 s pauses; without pauses
_STALL = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+ event loop blocked (\d+) ms from \S+: "
                    r"\d+%: (.*?)(?: \|\| |$)")


def choose(item: str, k: int) -> str:
    """Labels cycle through the six classes (the answer does not matter for latency)."""
    return str(k % 6)


def stalls_while_labelling(log: str, since: float) -> list[tuple[int, str]]:
    """``(ms, where)`` of the event-loop stalls the server logged after ``since`` (epoch s):
    the labelling itself, not the pages' first build."""
    out = []
    for line in log.splitlines():
        match = _STALL.match(line)
        if match and time.mktime(time.strptime(match[1], "%Y-%m-%d %H:%M:%S")) >= int(since):
            out.append((int(match[2]), match[3]))
    return out


ROLES = ("server", "training process", "Chromium pages", "Chromium GPU process", "Chromium other",
         "Playwright", "other")


def _role(pid: int, cmdline: list[str]) -> str:
    joined = " ".join(cmdline)
    if "core.worker" in joined:
        return "training process"
    if "panel" in joined and "serve" in cmdline:
        return "server"
    if "chrom" in (cmdline[0] if cmdline else ""):
        kind = next((a.split("=", 1)[1] for a in cmdline if a.startswith("--type=")), "")
        return {"renderer": "Chromium pages", "gpu-process": "Chromium GPU process"}.get(
            kind, "Chromium other")
    if pid == os.getpid() or "playwright" in joined:
        return "Playwright"
    return "other"


class CpuSampler:
    """CPU seconds of every process on the machine by role, sampled from ``/proc`` twice a
    second, so that a window (the users labelling) can be cut out of a longer run afterwards."""

    def __init__(self, period_s: float = 0.5) -> None:
        self.period_s = period_s
        self.samples: list[tuple[float, dict[int, tuple[str, float]]]] = []
        self._roles: dict[tuple[int, str], str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)
        self._tick = os.sysconf("SC_CLK_TCK")

    def __enter__(self) -> CpuSampler:
        self.samples.append(self._sample())
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(self._sample())

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            self.samples.append(self._sample())

    def _sample(self) -> tuple[float, dict[int, tuple[str, float]]]:
        now, seen = time.time(), {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                fields = stat[stat.rindex(")") + 2:].split()
                start = fields[19]  # starttime: a pid reused by a new process is another key
                key = (int(entry.name), start)
                if key not in self._roles:
                    # Chromium rewrites its children's command lines as one string: split both.
                    cmdline = (entry / "cmdline").read_bytes().decode(errors="replace").replace("\0", " ").split()
                    self._roles[key] = _role(key[0], cmdline)
                seen[key] = (self._roles[key], (int(fields[11]) + int(fields[12])) / self._tick)
            except (OSError, ValueError, IndexError):  # the process ended meanwhile
                continue
        return now, seen

    def between(self, t0: float, t1: float) -> dict[str, float]:
        """CPU seconds per role from ``t0`` to ``t1`` (epoch seconds)."""
        before = next((s for t, s in reversed(self.samples) if t <= t0), self.samples[0][1])
        last: dict = {}
        for t, sample in self.samples:
            if t > t1:
                break
            last.update(sample)  # a process that ended keeps its last figure
        used: dict[str, float] = defaultdict(float)
        for key, (role, cpu) in last.items():
            used[role] += cpu - before.get(key, (role, 0.0))[1]
        return dict(used)


def _innermost_own(stack: str) -> str:
    """The last frame of this project's code in a logged stack (else its last frame)."""
    frames = stack.split(" [")[0].split(" > ")  # the loop thread's frames, not the others'
    own = [f for f in frames if f.split(":")[0] in _OWN_FILES]
    return (own or frames)[-1].split(" [")[0]


_OWN_FILES = {p.name for folder in ("core", "dashboard") for p in (ROOT / folder).rglob("*.py")}


def measure(n_users: int, n_labels: int, think_s: float, retrain: bool, folder: Path) -> dict:
    """Serve a fresh team project and run ``n_users`` labellers (+ a retrainer)."""
    project = make_team_project(folder)
    users = {f"expert{i + 1}": f"pw-{i + 1}" for i in range(n_users)}
    if retrain:
        users["trainer"] = "pw-trainer"
    load_before = load_average()
    artifacts = ROOT / "artifacts"
    with serve_dashboard(project, extra_args=basic_auth_args(folder, users)) as server, \
            CpuSampler() as cpu:
        try:
            runs, trainer, elapsed = asyncio.run(team_session(
                server, users, n_labels, choose, trainer="trainer" if retrain else None,
                think_s=think_s))
            ended = time.time()
        except BaseException:
            # Kept under a name of its own: the rerun that follows a failure overwrote the log
            # of the one-user run that stopped (issue 10), and with it the server's side.
            kept = artifacts / f"latency-server-{folder.name}-failed-{time.strftime('%Y%m%d-%H%M%S')}.log"
            artifacts.mkdir(exist_ok=True)
            kept.write_text(server.log.read_text(errors="replace"), encoding="utf-8")
            print(f"{folder.name}: failed; server log {kept}, page state in "
                  f"{artifacts / 'screenshots'}/team-failure-*.txt", file=sys.stderr)
            raise
        finally:
            log = server.log.read_text(errors="replace")
            artifacts.mkdir(exist_ok=True)
            (artifacts / f"latency-server-{folder.name}.log").write_text(log, encoding="utf-8")
    latencies = np.array([x for run in runs for x in run.latencies_s])
    began = min(run.started for run in runs)
    stalls = stalls_while_labelling(log, began)
    longest = max(stalls, default=(0, ""))
    top = sorted(stalls, reverse=True)[:3]
    errors = [e for run in runs + ([trainer] if trainer else []) for e in run.page_errors]
    return {
        "users": n_users, "labels": int(sum(len(r.acknowledged) for r in runs)),
        "measured": len(latencies), "p50": float(np.percentile(latencies, 50)),
        "p95": float(np.percentile(latencies, 95)), "max": float(latencies.max()),
        "over_5s": float((latencies > 5).mean()), "retrains": trainer.retrains if trainer else 0,
        "seconds": elapsed, "page_errors": len(errors),
        "locked": log.lower().count("database is locked"),
        "load": f"{load_before} -> {load_average()}",
        "stalls": len(stalls), "longest_stall": longest[0],
        "longest_where": _innermost_own(longest[1]) if longest[1] else "",
        "top_stalls": [(ms, _innermost_own(stack)) for ms, stack in top],
        "cpu": cpu.between(began, ended), "window_s": ended - began,
    }


def cpu_table(rows: list[tuple[str, dict]]) -> str:
    """Where the machine's CPU went while the users labelled: seconds and share of all cores."""
    cores = os.cpu_count() or 1
    lines = [f"CPU while the users labelled, by process (share of the {cores} cores' time in the "
             "window; the machine's other processes under *other*):", "",
             "| setting | window (s) | " + " | ".join(ROLES) + " | idle |",
             "| --- | --- | " + " | ".join("---" for _ in ROLES) + " | --- |"]
    for name, r in rows:
        capacity = cores * r["window_s"]
        shares = [r["cpu"].get(role, 0.0) / capacity for role in ROLES]
        lines.append(f"| {name} | {r['window_s']:.0f} | "
                     + " | ".join(f"{share:.0%}" for share in shares)
                     + f" | {max(0.0, 1 - sum(shares)):.0%} |")
    return "\n".join(lines)


def _settings(text: str) -> list[str]:
    """``--settings one,team``: the named settings, in the benchmark's order."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = sorted(set(names) - set(SETTINGS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown setting(s) {', '.join(unknown) or '(none)'}; "
                                         f"choose from {', '.join(SETTINGS)}")
    return [n for n in SETTINGS if n in names]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", type=int, default=60, help="labels per user")
    parser.add_argument("--users", type=int, default=5)
    parser.add_argument("--think", type=float, default=1.0, help="pause after each label (s)")
    parser.add_argument("--settings", default=",".join(SETTINGS), type=_settings,
                        help="comma-separated settings to run, of " + ", ".join(SETTINGS)
                        + " (docs/benchmarks.md is written only when all run)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    os.environ["TAILWISE_LOOP_WATCH"] = str(STALL_MS)  # the servers log their event-loop stalls
    t0 = time.time()
    rows = []
    runs = {
        "one": (f"1 user, no retraining, {args.think:g} s pause", 1, args.think, False),
        "team": (f"{args.users} users + 1 retraining in a loop, {args.think:g} s pause",
                 args.users, args.think, True),
        "stress": (f"{args.users} users + 1 retraining in a loop, no pause (stress)",
                   args.users, 0.0, True),
    }
    with tempfile.TemporaryDirectory(prefix="tailwise-latency-") as tmp:
        for setting in args.settings:
            name, users, think, retrain = runs[setting]
            rows.append((name, measure(users, args.labels, think, retrain, Path(tmp) / setting)))
    lines = ["| setting | labels | p50 (s) | p95 (s) | max (s) | > 5 s | retrains | page errors | "
             f"'database is locked' | loop stalls > {STALL_MS} ms (longest) | "
             "load average (before -> after) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in rows:
        longest = f" ({r['longest_stall']} ms)" if r["stalls"] else ""
        lines.append(f"| {name} | {r['labels']} | {r['p50']:.3f} | {r['p95']:.3f} | {r['max']:.2f} | "
                     f"{r['over_5s']:.0%} | {r['retrains']} | {r['page_errors']} | {r['locked']} | "
                     f"{r['stalls']}{longest} | {r['load']} |")
    lines += ["", cpu_table(rows)]
    if args.settings != list(SETTINGS):  # a part of the benchmark: printed, never written
        print("\n".join(lines))
        return 0
    where = "; ".join(f"{name}: " + ", ".join(f"{w} ({ms} ms)" for ms, w in r["top_stalls"])
                      for name, r in rows if r["stalls"])
    team = rows[1][1]
    met50, met95 = team["p50"] <= TARGET_P50_S, team["p95"] <= TARGET_P95_S
    verdict = (f"Target with {args.users} users: p50 <= {TARGET_P50_S} s **{'met' if met50 else 'missed'}** "
               f"({team['p50']:.3f} s), p95 <= {TARGET_P95_S} s **{'met' if met95 else 'missed'}** "
               f"({team['p95']:.3f} s).")
    stress = rows[2][1]
    body = "\n".join([
        f"Each user labels {args.labels} queued items through the page (buttons and number keys in "
        f"turn, a pause after each 'saved' as stated), all users at once, logged in with Panel's "
        "basic auth; a sixth user presses Retrain again 0.5 s after each retrain ends. The browsers "
        "(headless Chromium, one context per user) run on the same machine as the server. "
        "Latency = pointer-down/key-down to the page showing the label store's commit. Timings on "
        "this shared 2-core machine are noisy: see the load average beside each row.", "",
        *lines, "", verdict,
        f"Without pauses (stress): p50 {stress['p50']:.3f} s, p95 {stress['p95']:.3f} s.", "",
        "The browsers' rendering is most of the machine's work (the CPU table): the pages "
        "repaint their map and tables for their own and the other users' labels on the same "
        "2 cores as the server. Since 2026-12-04 the driver waits for each 'saved' in the page "
        "(`page.wait_for_function`); before, Playwright's `expect` polled for it and built the "
        "page's accessibility tree at every miss (for its failure message): 2.8 s of a labelling "
        "page's 25 s in a DevTools profile, a tenth of its renderer's CPU, on the cores the timed "
        "clicks needed, so the earlier figures include that load of the test harness. On "
        "2026-12-04 03:36-03:52 UTC (AMD EPYC host, nice -15), the five users with 1 s pauses: "
        "0.898 s / 2.898 s (p50 / p95) with the old driver and other tabs' labels patched every "
        "0.5 s; 0.280 s / 1.870 s with the new driver alone; 0.234 s / 1.576 s with both changes "
        "(one run each: the pacing's share is within the noise of one run).", "",
        f"Loop stalls: the server ran with `TAILWISE_LOOP_WATCH={STALL_MS}` (`dashboard.loopwatch`), "
        "which logs every stretch over that many milliseconds in which its event loop (shared by "
        "every tab) served nothing, with the stack it was busy in; counted here while the users "
        "labelled. The longest (up to three), by where the project's code was: "
        + (where or "none") + ".", "",
        "What the server does since issue 10's latency work: training runs in a process of its "
        "own (`core.worker`: `os.nice(10)`, one torch thread, results back as safetensors and "
        "JSON), so the event loop only writes the label and updates the labelling tab; other tabs "
        "look for the store's new events every 0.5 s and patch other tabs' labels into their map "
        "at most every 2 s (`OTHERS_MIN_INTERVAL_S`: the first at once, all that came meanwhile "
        "in one patch; the Refresh button and an undo at once), just the changed points "
        "(the map's star and selection layers too, without a HoloViews refresh of the overlay, "
        "and without Bokeh re-validating the whole point source), and redraw summaries only once "
        "labelling pauses; Panel's busy spinner (one flag for the whole server, re-sent to every "
        "tab on every callback) is off; after a new model the tabs renew their queues one at a "
        "time and move the map's queue rings in place (all at once they held the clicks of every "
        "tab behind them), and a tab shows another tab's newer model at most every 5 s "
        "(`MODEL_MIN_INTERVAL_S`; the Refresh button at once): with a retrain every few seconds, "
        "each model redrawn in every tab was work all clicks waited behind. A page opening no longer holds the loop for a second: its sidebar "
        "is built at once, then one view of the main area per turn of the loop (other tabs' "
        "clicks in between), a hidden tab's view only when the tab is first shown, and the "
        "views' modules are imported while the project is prepared; the new model's clusters "
        "are computed only if no newer model replaced it meanwhile, on a thread 10 nice steps "
        "below the server. The map draws up to 10,000 points on a plain canvas instead of "
        "HoloViews' default WebGL: without a GPU (here: headless Chromium) the browser emulates "
        "WebGL and copies its canvas onto the page at every repaint, which was 60 % of each "
        "labelling browser's CPU time (Chrome DevTools profile of one page) while five tabs "
        "followed each other's labels. "
        "Before (2026-12-02 21:52 UTC, load average ~10, training "
        "in the server process): p50 9.763 s and p95 30.529 s with five users and 1 s pauses; "
        "one user alone 0.072 s.",
    ])
    print(body)
    if not args.no_write:
        command = "python benchmarks/latency.py " + " ".join(argv if argv is not None else sys.argv[1:])
        write_section(DOC, SECTION, body, command=command.strip(), elapsed_s=time.time() - t0,
                      machine=machine_summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
