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
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from empg_gym.bench.presets import RUN_SETTINGS, run_settings
from empg_gym.bench.records import (
    RESULT,
    by_algo,
    final_scores,
    matched_budget,
    read_results,
    run_dir,
    scores_at_budget,
)
from empg_gym.bench.stats import compare, verdict
from empg_gym.cli import bench_config, build_parser, main

SPLITS = {"eval_in_distribution": "ID", "eval_out_of_distribution": "OOD"}
METRIC = "success_sampled"


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


def reuse(name: str, out: Path, source: Path, seeds: list[int]) -> int:
    """Copy finished runs of question ``name`` from the bench folder ``source`` where its settings match; return
    how many were copied."""  # noqa: D205
    meta = source / "bench.json"
    if not meta.is_file():
        raise SystemExit(f"--reuse {source}: no bench.json there (not a bench folder).")
    q = QUESTIONS[name]
    wanted = run_settings(bench_config(build_parser().parse_args(command(name, out, "0"))))  # the question's bench
    have = run_settings(json.loads(meta.read_text(encoding="utf-8"))["config"])
    if have != wanted:
        diff = [k for k in RUN_SETTINGS if have[k] != wanted[k]]
        print(f"--reuse {source}: its settings differ from question {name}'s ({', '.join(diff)}); nothing reused.")
        return 0
    copied = 0
    for algo in q.algos:
        for seed in seeds:
            src, dst = run_dir(source, q.env, algo, seed), run_dir(out / name, q.env, algo, seed)
            if (src / RESULT).is_file() and not (dst / RESULT).is_file():
                if dst.exists():
                    shutil.rmtree(dst)
                shutil.copytree(src, dst)
                copied += 1
    return copied


def answer(folder: Path, q: Question) -> tuple[list[str], int | None]:
    """Return ``(markdown rows, matched budget)``: per pair and split, the mean scores, P(X > Y) [95% CI] and the
    verdict at the last update and at the matched env-step budget."""  # noqa: D205
    rows = [r for r in read_results(folder) if r["env"] == q.env]
    cfg = json.loads((folder / "bench.json").read_text(encoding="utf-8"))["config"]
    budget = matched_budget(rows, int(cfg.get("eval_every_env_steps") or 0)).get(q.env)
    lines = []
    for split, short in SPLITS.items():
        final = by_algo(final_scores(rows, split, METRIC), q.env)
        matched = by_algo({k: v[0] for k, v in scores_at_budget(rows, split, METRIC, budget).items()}, q.env) \
            if budget else {}
        for x, y in q.pairs:
            runs = f"{len(final.get(x, []))} / {len(final.get(y, []))}"
            cells = [f"`{x}` vs `{y}`", short, runs]
            for scores in (final, matched):
                if not scores.get(x) or not scores.get(y):
                    cells += ["–", "–", "–"]
                    continue
                c = compare(x, scores[x], y, scores[y])
                cells += [f"{sum(scores[x]) / len(scores[x]):.3f} vs {sum(scores[y]) / len(scores[y]):.3f}",
                          f"{c.p:.2f} [{c.low:.2f}, {c.high:.2f}]", verdict(c)]
            lines.append("| " + " | ".join(cells) + " |")
    return lines, budget


def _span(seeds: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2, 5"``.

    Example:
        >>> _span([0, 1, 2, 5])
        '0-2, 5'
    """
    parts, start = [], None
    for i, s in enumerate(seeds):
        if start is None:
            start = s
        if i + 1 == len(seeds) or seeds[i + 1] != s + 1:
            parts.append(f"{start}-{s}" if s != start else f"{s}")
            start = None
    return ", ".join(parts)


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
        ran = json.loads((folder / "bench.json").read_text(encoding="utf-8"))["config"]["seeds"]
        ran_seeds = ",".join(map(str, ran))
        md += [f"## {name}: {q.title}", "", f"Seeds {_span(ran)}:", "",
               f"```bash\nempg-gym {' '.join(command(name, Path('runs/headline'), ran_seeds))}\n```", ""]
        lines, budget = answer(folder, q)
        md += ["| pair | split | runs | final: mean X vs Y | final: P(X > Y) [95% CI] | final: verdict | "
               f"at {budget} env steps: mean X vs Y | P(X > Y) [95% CI] | verdict |",
               "|---|---|---|---|---|---|---|---|---|", *lines, "",
               f"The bench's full report: `{folder.name}/report.md` (IQM, curves, per-type tables).", ""]
    doc.write_text("\n".join(md), encoding="utf-8")
    print(f"wrote {doc}")


def run() -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/headline", help="folder of the two benches")
    parser.add_argument("--seeds", default=None,
                        help="comma-separated seeds for every question run (default: each question's own, "
                             + "; ".join(f"{n} {_span(list(q.seeds))}" for n, q in QUESTIONS.items()) + ")")
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
            for source in args.reuse:
                print(f"== {name}: reused {reuse(name, out, source, seeds)} finished runs from {source}")
            cmd = command(name, out, ",".join(map(str, seeds)))
            print(f"== {name}: empg-gym {' '.join(cmd)}", flush=True)
            main(cmd)
    write_doc(out, Path(args.doc) if args.doc else out / "headline.md")
    return 0


if __name__ == "__main__":
    sys.exit(run())
