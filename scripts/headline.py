"""The headline answer (issue #25): does EMPG beat its base on the CPU testbed, at matched budgets, with how many seeds?

The paper's two questions, each an ``empg-gym bench`` on the ``study`` preset's settings (the tiny action-token
policy, updates of 8 tasks × 8 trajectories, every task of both eval splits played greedily and 4 times sampled,
at update 0, every 15 updates, after the last and at every 20,000 training env steps):

1. ``keyrooms``: EMPG vs GRPO on EMPG-KeyRooms-v0 (paper: ALFWorld 65.6 → 73.7 with Qwen2.5-1.5B), with EMPG's two
   halves beside it (``empg-g``: the confidence scale only; ``empg-f``: the future-clarity bonus only) so that the
   answer says which half carries any effect. Seeds 0-59 by default: at 30 seeds the difference was far inside the
   noise, and 60 seeds narrow P's confidence interval by about √2 (issue #25 expected 50-60 to be needed).
2. ``hard``: EMPG over DAPO vs DAPO (paper: 80.8 → 88.1) on EMPG-KeyRoomsHard-v0, where every training layout has 2
   or 3 doors. DAPO is at the ceiling on KeyRooms, and with the study's 30 updates it reaches it on KeyRoomsHard too
   (measured, seeds 0-19: final sampled success 1.000 in distribution, EMPG-DAPO 0.990), so a gain could not show.
   This question stops at 10 updates, where DAPO is still learning (about 0.5 at 20,000 env steps and 0.9 at
   40,000 in that run): both the final score and the matched env-step budget are below the ceiling.

Each comparison is scored as the bench report scores it: one sampled-success score per run and eval split, at the
last update and at the largest env-step budget at least half of every algorithm's runs reached (DAPO plays up to 3
rollout batches per update); ``P(X > Y)`` with its stratified-bootstrap 95% CI; "X > Y" only when the CI excludes
1/2, else unresolved with the seeds per algorithm the observed difference and spread would need at 80% power.

    python scripts/headline.py --out runs/headline                    # both, then OUT/headline.md (resumable)
    python scripts/headline.py --out runs/headline --reuse runs/study  # take finished GRPO/EMPG runs from a study
    python scripts/headline.py --out runs/headline --report-only --doc docs/headline.md

A finished run is never trained again, so an interrupted call continues where it stopped. ``--reuse DIR`` (which
may be given more than once) copies finished runs of the same env, algorithm and seed from a bench folder whose
settings match the question's exactly (``bench.json``), e.g. the ``study`` preset's GRPO and EMPG runs.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from empg_gym.bench.questions import (
    PairRow,
    bench_seeds,
    every_env_steps,
    pair_table,
    reuse_runs,
    span,
    table_markdown,
)
from empg_gym.bench.records import read_results
from empg_gym.cli import bench_config, build_parser, main


@dataclass(frozen=True)
class Question:
    """One comparison: an env, the algorithms trained on it and the pairs ``(X, Y)`` asked about."""

    title: str
    env: str
    algos: tuple[str, ...]
    pairs: tuple[tuple[str, str], ...]
    seeds: tuple[int, ...] = tuple(range(30))
    updates: int | None = None  # None: the study preset's


QUESTIONS = {
    "keyrooms": Question("EMPG vs GRPO, and which half of EMPG carries the effect", "EMPG-KeyRooms-v0",
                         ("grpo", "empg", "empg-g", "empg-f"),
                         (("empg", "grpo"), ("empg-g", "grpo"), ("empg-f", "grpo")), seeds=tuple(range(60))),
    "hard": Question("EMPG over DAPO vs DAPO on the harder KeyRooms, 10 updates", "EMPG-KeyRoomsHard-v0",
                     ("dapo", "empg-dapo"), (("empg-dapo", "dapo"),), updates=10),
}


def command(name: str, out: Path, seeds: str) -> list[str]:
    """The ``empg-gym bench`` arguments of question ``name``."""
    q = QUESTIONS[name]
    steps = ["--steps", str(q.updates)] if q.updates is not None else []
    return ["bench", "--preset", "study", "--envs", q.env, "--algos", ",".join(q.algos), "--seeds", seeds, *steps,
            "--out", str(out / name)]


def answer(folder: Path, q: Question) -> tuple[list[PairRow], int | None]:
    """Return ``(table rows, matched budget)`` of question ``q`` from its finished bench in ``folder``."""
    return pair_table(read_results(folder), q.env, q.pairs, every_env_steps(folder))


def write_doc(out: Path, doc: Path) -> None:
    """Assemble the answer from the finished benches."""
    md = ["# The headline answer: does EMPG beat its base on the CPU testbed?", "",
          "<!-- Written by scripts/headline.py; every number comes from the benches' results.csv. -->", "",
          "Scores are sampled success (each of the 100 tasks of a split played 4 times with sampling), "
          "one per run and split. *Final*: at the run's last update; *at N env steps*: at the largest multiple of "
          "the evaluation's env-step interval that at least half of every algorithm's runs reached (a run that "
          "finished below it counts with its last evaluation). P(X > Y): the chance that a random run of X scores "
          "above a random run of Y, "
          "with its stratified-bootstrap 95% CI; the verdict says X > Y only when the CI lies above 1/2.", ""]
    for name, q in QUESTIONS.items():
        folder = out / name
        if not (folder / "results.csv").is_file():
            md += [f"## {name}: {q.title}", "", "Not run yet.", ""]
            continue
        ran = bench_seeds(folder)
        ran_seeds = ",".join(map(str, ran))
        md += [f"## {name}: {q.title}", "", f"Seeds {span(ran)}:", "",
               f"```bash\nempg-gym {' '.join(command(name, Path('runs/headline'), ran_seeds))}\n```", ""]
        table, budget = answer(folder, q)
        md += [*table_markdown(table, budget), "",
               f"The bench's full report: `{folder.name}/report.md` (IQM, curves, per-type tables).", ""]
    doc.write_text("\n".join(md), encoding="utf-8")
    print(f"wrote {doc}")


def run() -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/headline", help="folder of the two benches")
    parser.add_argument("--seeds", default=None,
                        help="comma-separated seeds for every question run (default: each question's own, "
                             + "; ".join(f"{n} {span(q.seeds)}" for n, q in QUESTIONS.items()) + ")")
    parser.add_argument("--only", default=None, help=f"comma-separated subset of {list(QUESTIONS)}")
    parser.add_argument("--reuse", type=Path, action="append", default=[],
                        help="a finished bench folder to take matching runs from (repeatable)")
    parser.add_argument("--report-only", action="store_true", help="do not train; assemble what is finished")
    parser.add_argument("--doc", default=None, help="write the answer here (default OUT/headline.md)")
    args = parser.parse_args()
    out = Path(args.out)
    names = args.only.split(",") if args.only else list(QUESTIONS)
    unknown = sorted(set(names) - set(QUESTIONS))
    if unknown:
        parser.error(f"unknown question(s) {unknown}; choose from {list(QUESTIONS)}")
    if not args.report_only:
        for name in names:
            seeds = [int(s) for s in args.seeds.split(",") if s.strip()] if args.seeds else list(QUESTIONS[name].seeds)
            cmd = command(name, out, ",".join(map(str, seeds)))
            for source in args.reuse:
                n = reuse_runs(source, out / name, bench_config(build_parser().parse_args(cmd)))
                print(f"== {name}: reused {n} finished runs from {source}")
            print(f"== {name}: empg-gym {' '.join(cmd)}", flush=True)
            main(cmd)
    write_doc(out, Path(args.doc) if args.doc else out / "headline.md")
    return 0


if __name__ == "__main__":
    sys.exit(run())
