"""Regenerate docs/empg_research.md: EMPG's open questions at the ``study`` preset's size, on CPU (issues #16, #22).

Every bench is an ``empg-gym bench --preset study`` command on EMPG-KeyRooms-v0 (the tiny action-token policy, 30
updates of 8 tasks × 8 trajectories, every task of both eval splits played greedily and 4 times sampled), and every
comparison is scored as the bench report and ``scripts/headline.py`` score it: one sampled-success score per run
and eval split, at the last update and at the matched env-step budget; ``P(X > Y)`` with its stratified-bootstrap
95% CI; "X > Y" only when the CI excludes 1/2, else unresolved with the seeds per algorithm the observed difference
and spread would need at 80% power.

1. ``ablation``: which half of EMPG matters: GRPO, EMPG with the confidence scale only (``empg-g``: ``zeta = 0``),
   with the future-clarity bonus only (``empg-f``: ``k = 0``), and both (``empg``). Seeds 0-59, the headline's.
2. ``uncertainty``: EMPG with Shannon entropy (the paper's) against Rényi-2 entropy as the step uncertainty.
3. ``dense``: sparse outcome against dense potential-based rewards (per-step returns), for GRPO and EMPG.
4. ``grid``: EMPG's ``k`` (the confidence scale's sharpness) × ``zeta`` (the bonus weight): k = 0.5, 1, 2 ×
   zeta = 0, 0.05 (the default), 0.2.

The ablation bench holds the baseline runs (``grpo``, ``empg``, ``empg-g``) that the other questions compare
against, on the same seeds, so a setting equal to a default is trained once: the other benches train only what
differs (``renyi2``; the dense rewards; the grid cells other than k = 1 with zeta = 0 or 0.05), 300 runs. Measured
on this project's 2 cores, 2 runs at a time, from scratch: the benches printed 53.3 min for the ablation's 240 runs,
6.2, 13.5, 41.2 and 6.2 min for the other 300 (30, 60, 180 and 30 runs), and 6.5-6.7 min per 30 held-out runs of a
confirmation (140 min in all, with three confirmations). With ``--reuse`` of the headline's ``keyrooms`` bench the
ablation trains none.

    python scripts/empg_research.py --out runs/research --reuse runs/headline/keyrooms   # all, then the report
    python scripts/empg_research.py --out runs/research --only grid                      # one question
    python scripts/empg_research.py --out runs/research --report-only --doc docs/empg_research.md

Confirmation on held-out seeds: a question compares many pairs on two splits and at two budgets, so at 95% each a
few verdicts would resolve by chance where there is no difference. Every pair that resolves on the question's seeds
is trained again on seeds 30-59, which that question did not look at (``OUT/confirm/<setting>``, the baseline runs
are the ablation's), and the report states whether the verdict holds there.

A finished run is never trained again, so an interrupted call continues where it stopped.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from empg_gym.bench.questions import (
    METRIC,
    SPLITS,
    PairRow,
    bench_seeds,
    every_env_steps,
    pair_table,
    resolved,
    reuse_runs,
    span,
    table_markdown,
)
from empg_gym.bench.records import by_algo, final_scores, read_results
from empg_gym.cli import bench_config, build_parser, main

ENV = "EMPG-KeyRooms-v0"
BASELINE = "ablation"  # the bench whose grpo / empg / empg-g runs the other questions compare against
DENSE = "[env.reward_mode=dense,reward_signal=return]"
K_VALUES, ZETA_VALUES = (0.5, 1, 2), (0, 0.05, 0.2)
CONFIRM_SEEDS = tuple(range(30, 60))  # held out from every question but the ablation, whose runs have them all


def grid_label(k: float, zeta: float) -> str:
    """The bench label of the grid cell ``(k, zeta)``: the defaults' cells are the ablation's runs.

    Example:
        >>> grid_label(1, 0.05), grid_label(1, 0), grid_label(1, 0.2), grid_label(2, 0)
        ('empg', 'empg-g', 'empg[zeta=0.2]', 'empg[k=2,zeta=0]')
    """
    if k == 1:
        return {0.05: "empg", 0: "empg-g"}.get(zeta, f"empg[zeta={zeta:g}]")
    return f"empg[k={k:g},zeta={zeta:g}]"


@dataclass(frozen=True)
class Experiment:
    """A question: its benches (folder name -> extra ``empg-gym bench`` arguments) and the pairs it compares."""

    question: str
    benches: dict[str, tuple[str, ...]]
    pairs: tuple[tuple[str, str], ...]
    seeds: tuple[int, ...] = tuple(range(30))
    note: str = ""


EXPERIMENTS: dict[str, Experiment] = {
    "ablation": Experiment(
        "Which half of EMPG matters: the confidence scale g, the future-clarity bonus f, or both?",
        {"ablation": ("--algos", "grpo,empg-g,empg-f,empg")},
        (("empg", "grpo"), ("empg-g", "grpo"), ("empg-f", "grpo"), ("empg", "empg-g"), ("empg", "empg-f")),
        seeds=tuple(range(60)),
        note="These are the headline's runs (docs/headline.md, question 1), with the halves also compared to "
             "the whole."),
    "uncertainty": Experiment(
        "Does another step-uncertainty signal serve EMPG better than Shannon entropy?",
        {"uncertainty": ("--algos", "empg", "--sweep", "uncertainty=renyi2")},
        (("empg[uncertainty=renyi2]", "empg"),),
        note="`empg` is EMPG with Shannon entropy (the default), from the ablation bench."),
    "dense": Experiment(
        "Does EMPG still help when the reward is dense?",
        {"dense": ("--algos", "grpo,empg", "--sweep", "env.reward_mode=dense", "reward_signal=return",
                   "--sweep-mode", "zip")},
        ((f"empg{DENSE}", f"grpo{DENSE}"), (f"grpo{DENSE}", "grpo"), (f"empg{DENSE}", "empg")),
        note="`grpo` and `empg` (sparse outcome reward, the default) are the ablation bench's."),
    "grid": Experiment(
        "How do k and zeta trade in-distribution against out-of-distribution success?",
        {"grid": ("--algos", "empg", "--sweep", "k=0.5,2", "zeta=0,0.05,0.2"),
         "grid-k1": ("--algos", "empg", "--sweep", "zeta=0.2")},
        tuple((grid_label(k, z), "empg") for k in K_VALUES for z in ZETA_VALUES if grid_label(k, z) != "empg"),
        note="Each cell against the default (k = 1, zeta = 0.05: `empg`). The k = 1 cells with zeta = 0 and 0.05 "
             "are the ablation's `empg-g` and `empg`; `grid-k1` trains the third."),
}


def command(bench: str, out: Path, seeds: str) -> list[str]:
    """The ``empg-gym bench`` arguments of the bench folder ``bench``."""
    args = next(e.benches[bench] for e in EXPERIMENTS.values() if bench in e.benches)
    return ["bench", "--preset", "study", "--envs", ENV, *args, "--seeds", seeds, "--out", str(out / bench)]


def confirm_folder(label: str) -> str:
    """The folder (under ``OUT/confirm``) of one setting's held-out runs.

    Example:
        >>> confirm_folder("empg[k=2,zeta=0.2]")
        'empg_k-2_zeta-0.2'
    """
    return re.sub(r"[^\w.-]+", "_", label.replace("=", "-")).strip("_")


def confirm_command(label: str, out: Path, seeds: str) -> list[str]:
    """The ``empg-gym bench`` arguments that train setting ``label`` alone (``empg[k=2,zeta=0.2]``: ``--algos empg
    --sweep k=2 zeta=0.2``) into ``OUT/confirm``."""  # noqa: D205
    algo, _, rest = label.partition("[")
    sweep = rest.rstrip("]").split(",") if rest else []
    return ["bench", "--preset", "study", "--envs", ENV, "--algos", algo, *(["--sweep", *sweep] if sweep else []),
            "--seeds", seeds, "--out", str(out / "confirm" / confirm_folder(label))]


def rows_of(folders: list[Path], seeds: tuple[int, ...]) -> list[dict]:
    """The ``results.csv`` rows of the finished benches among ``folders``, on ``seeds``."""
    rows = []
    for folder in folders:
        if (folder / "results.csv").is_file():
            rows += [r for r in read_results(folder) if int(r["seed"]) in set(seeds)]
    return rows


def question_rows(out: Path, name: str) -> list[dict]:
    """The ``results.csv`` rows question ``name`` reads: its own benches' and the baseline's, on its seeds."""
    exp = EXPERIMENTS[name]
    return rows_of([out / f for f in sorted({*exp.benches, BASELINE})], exp.seeds)


def answer(out: Path, name: str) -> tuple[list[PairRow], int | None]:
    """Return ``(table rows, matched budget)`` of question ``name`` on its seeds (:func:`pair_table`)."""
    return pair_table(question_rows(out, name), ENV, EXPERIMENTS[name].pairs, every_env_steps(out / BASELINE))


def to_confirm(name: str, table: list[PairRow]) -> list[tuple[str, str]]:
    """The pairs of question ``name`` that resolve in its :func:`answer` rows (either split, either budget), when
    its seeds leave the held-out ones out (the ablation's include them: nothing is held out there)."""  # noqa: D205
    exp = EXPERIMENTS[name]
    if set(exp.seeds) & set(CONFIRM_SEEDS):
        return []
    won = {(row.x, row.y) for row in table if row.verdicts()}
    return [p for p in exp.pairs if p in won]


def confirm_labels(pairs: list[tuple[str, str]]) -> list[str]:
    """The settings of ``pairs`` a confirmation trains: all but the baseline's (whose runs have seeds 30-59)."""
    baseline = set(EXPERIMENTS[BASELINE].benches[BASELINE][1].split(","))
    return sorted({a for pair in pairs for a in pair} - baseline)


def held_verdicts(won: list[str], held: list[str]) -> tuple[list[str], list[str]]:
    """Split the held-out seeds' verdicts ``held`` into those repeating one of ``won`` (the question's own: same
    pair, direction, split and budget) and the others, which the question's seeds did not resolve."""  # noqa: D205
    return [v for v in won if v in held], [v for v in held if v not in won]


def held_summary(kept: list[str], other: list[str]) -> str:
    """The summary line's account of a question's held-out confirmation."""
    return (f"; on held-out seeds {span(CONFIRM_SEEDS)} " + (f"these hold: {'; '.join(kept)}" if kept else
                                                           "none of them holds")
            + (f" (the held-out seeds resolve another instead: {'; '.join(other)})" if other else ""))


def confirmation(out: Path, pairs: list[tuple[str, str]], won: list[str]) -> tuple[list[str], list[str] | None]:
    """Return ``(markdown, verdicts)``: ``pairs`` on the held-out seeds and the verdicts that resolve there
    (``None`` when there is nothing to confirm or its runs are not there yet); ``won`` are the question's own."""  # noqa: D205
    if not pairs:
        return [], None
    labels = confirm_labels(pairs)
    folders = [out / "confirm" / confirm_folder(a) for a in labels]
    if not all((f / "results.csv").is_file() for f in folders):
        return ["Held-out confirmation (seeds 30-59): not run yet.", ""], None
    rows = rows_of([*folders, out / BASELINE], CONFIRM_SEEDS)
    table, budget = pair_table(rows, ENV, pairs, every_env_steps(out / BASELINE))
    held = resolved(table)
    kept, other = held_verdicts(won, held)
    cmds = [f"empg-gym {' '.join(confirm_command(a, Path('runs/research'), _seeds(CONFIRM_SEEDS)))}" for a in labels]
    return [f"**Held-out confirmation.** The resolved pairs again, on seeds {span(CONFIRM_SEEDS)} (not looked at "
            "above):", "", "```bash", *cmds, "```", "", *table_markdown(table, budget), "",
            "Resolved on the held-out seeds (computed): " + ("; ".join(held) if held else "none") + ". Verdicts of "
            "the question's seeds that hold again: " + ("; ".join(kept) if kept else "none") + "."
            + (" What resolves on the held-out seeds only is no verdict either: a third set of seeds would have to "
               "repeat it." if other else ""), ""], held


def _seeds(seeds: tuple[int, ...]) -> str:
    return ",".join(map(str, seeds))


def grid_table(rows: list[dict]) -> list[str]:
    """k × zeta: mean sampled success at the last update, ID / OOD, with the runs behind each cell."""
    means = {split: {a: (sum(v) / len(v), len(v)) for a, v in by_algo(final_scores(rows, split, METRIC),
                                                                     ENV).items()} for split in SPLITS}
    md = ["| k \\ zeta | " + " | ".join(f"{z:g}" for z in ZETA_VALUES) + " |", "|---" * (len(ZETA_VALUES) + 1) + "|"]
    for k in K_VALUES:
        cells = []
        for z in ZETA_VALUES:
            label = grid_label(k, z)
            got = [means[s].get(label) for s in SPLITS]
            cells.append(" / ".join(f"{m:.3f}" for m, _ in got) + f" ({got[0][1]} runs)" if all(got) else "–")
        md.append(f"| {k:g} | " + " | ".join(cells) + " |")
    return md


def write_doc(out: Path, doc: Path) -> None:
    """Assemble the report from the finished benches; copy their plots next to it."""
    img = doc.parent / "img" / "empg_research"
    if img.is_dir():
        shutil.rmtree(img)  # plots of an earlier layout must not linger
    img.mkdir(parents=True)
    md = ["# EMPG research kit: ablations, uncertainty signals, dense rewards, a k/ζ grid", "",
          "<!-- Written by scripts/empg_research.py; every number comes from the benches' results.csv. -->", "",
          "Regenerate (resumable): `python scripts/empg_research.py --out runs/research --reuse runs/headline/keyrooms "
          "--doc docs/empg_research.md`; each section's commands rerun its benches alone. The README's "
          "[research kit](../README.md#research-kit-empgs-open-questions-as-switches) lists the switches.", "",
          "All runs: the `study` preset on EMPG-KeyRooms-v0 (the tiny action-token policy, 30 updates of 8 tasks × 8 "
          "trajectories; every one of the 100 tasks of each eval split played 4 times with sampling at update 0, "
          "every 15 updates, after the last and at every 20,000 training env steps). One score per run and split: "
          "sampled success. *Final*: at the run's last update; *at N env steps*: at the largest multiple of 20,000 "
          "that at least half the runs of every setting in the table reached (a run that finished below it counts "
          "with its last evaluation). P(X > Y): the chance that a random run of X scores above a random run of Y, "
          "with its stratified-bootstrap 95% CI; the verdict says X > Y only when the CI lies above 1/2, and "
          "otherwise how many seeds per setting the observed difference and spread would need at 80% power. "
          "ID = `eval_in_distribution` (1–3 doors), OOD = `eval_out_of_distribution` (4–6 doors).", ""]
    summary: list[str] = []
    counts = [0, 0]  # comparisons, resolved
    head = len(md)
    for name, exp in EXPERIMENTS.items():
        md += [f"## {name}: {exp.question}", ""]
        if not all((out / b / "results.csv").is_file() for b in (*exp.benches, BASELINE)):
            md += ["Not run yet.", ""]
            continue
        seeds = sorted(set(exp.seeds) & set(bench_seeds(out / BASELINE)))
        cmds = [f"empg-gym {' '.join(command(b, Path('runs/research'), _seeds(exp.seeds)))}" for b in exp.benches]
        md += [f"Seeds {span(seeds)}. {exp.note}", "", "```bash", *cmds, "```", ""]
        table, budget = answer(out, name)
        md += [*table_markdown(table, budget), ""]
        won = resolved(table)
        tests = 2 * len(table)  # each row: at the last update and at the matched budget
        md += ["Resolved (computed): " + ("; ".join(won) if won else
                                           f"none: every difference is inside the noise of {len(seeds)} seeds") +
               f". Of {tests} comparisons at 95% each, about {tests / 20:.1f} would resolve by chance if no setting "
               "differed.", ""]
        confirm_md, held = confirmation(out, to_confirm(name, table), won)
        md += confirm_md
        counts = [counts[0] + tests, counts[1] + len(won)]
        summary.append(f"- **{name}** ({len(seeds)} seeds): {len(won)} of {tests} comparisons resolve"
                       + (f" ({'; '.join(won)})" if won else "")
                       + ("" if held is None else held_summary(*held_verdicts(won, held))) + ".")
        if name == "grid":
            md += ["Mean sampled success at the last update, ID / OOD:", "", *grid_table(question_rows(out, name)), ""]
        for bench in exp.benches:
            several = len(bench_config(build_parser().parse_args(command(bench, out, "0"))).labels) > 1
            for plot in ("sample_efficiency_env_steps.png", "sweep_tradeoff.png")[: 1 + several]:
                if (out / bench / plot).is_file():
                    shutil.copyfile(out / bench / plot, img / f"{bench}_{plot}")
                    md.append(f"![{bench} {plot[:-4]}](img/empg_research/{bench}_{plot})")
        md.append("")
    md[head:head] = ["## Summary (computed from the tables below)", "", *summary, "",
                     f"In all, {counts[1]} of {counts[0]} comparisons resolve at 95%, where about {counts[0] / 20:.1f} "
                     "would by chance if no setting differed; a verdict counts only if it holds again on the held-out "
                     "seeds.", ""]
    doc.write_text("\n".join(md), encoding="utf-8")
    print(f"wrote {doc}")


def run() -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/research", help="folder of the benches")
    parser.add_argument("--seeds", default=None,
                        help="comma-separated seeds for every bench (default: each question's own, ablation 0-59, "
                             "the rest 0-29)")
    parser.add_argument("--only", default=None, help=f"comma-separated subset of {list(EXPERIMENTS)}")
    parser.add_argument("--reuse", type=Path, action="append", default=[],
                        help="a finished bench folder to take runs of the same settings from (repeatable), e.g. "
                             "the headline's keyrooms bench")
    parser.add_argument("--report-only", action="store_true", help="do not train; assemble what is finished")
    parser.add_argument("--doc", default=None, help="write the report here (default OUT/empg_research.md)")
    args = parser.parse_args()
    out = Path(args.out)
    names = args.only.split(",") if args.only else list(EXPERIMENTS)
    unknown = sorted(set(names) - set(EXPERIMENTS))
    if unknown:
        parser.error(f"unknown question(s) {unknown}; choose from {list(EXPERIMENTS)}")
    if not args.report_only:
        for name in names:
            exp = EXPERIMENTS[name]
            seeds = args.seeds or _seeds(exp.seeds)
            for bench in exp.benches:
                cmd = command(bench, out, seeds)
                for source in args.reuse:
                    n = reuse_runs(source, out / bench, bench_config(build_parser().parse_args(cmd)))
                    print(f"== {bench}: reused {n} finished runs from {source}")
                print(f"== {bench}: empg-gym {' '.join(cmd)}", flush=True)
                main(cmd)
            for label in confirm_labels(to_confirm(name, answer(out, name)[0])):
                cmd = confirm_command(label, out, _seeds(CONFIRM_SEEDS))
                print(f"== {name}: confirm {label} on held-out seeds: empg-gym {' '.join(cmd)}", flush=True)
                main(cmd)
    write_doc(out, Path(args.doc) if args.doc else out / "empg_research.md")
    return 0


if __name__ == "__main__":
    sys.exit(run())
