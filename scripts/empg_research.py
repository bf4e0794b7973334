"""Regenerate docs/empg_research.md: EMPG's open questions on the quick preset's task, on CPU (issue #16).

Four benches, each an ``empg-gym bench`` command on the ``quick`` preset's settings (EMPG-KeyRooms-v0, the tiny
action-token policy; see ``empg_gym/bench/presets.py``), with the seeds of ``--seeds``:

1. ``ablation``: which half of EMPG matters: GRPO, EMPG with the confidence scale only (``empg-g``), with the
   future-clarity bonus only (``empg-f``), and both (``empg``).
2. ``uncertainty``: EMPG with Shannon entropy (the paper's) against Rényi-2 entropy as the step uncertainty.
3. ``dense``: sparse outcome against dense potential-based rewards (per-step returns), for GRPO and EMPG.
4. ``grid``: EMPG's ``k`` (the confidence scale's sharpness) × ``zeta`` (the bonus weight).

    python scripts/empg_research.py --out runs/research              # all four, then the report (resumable)
    python scripts/empg_research.py --out runs/research --only grid  # one of them
    python scripts/empg_research.py --out runs/research --report-only --doc docs/empg_research.md

A bench folder that is already finished is not rerun, so an interrupted run continues where it stopped. The report
states every number as measured, from each bench's ``results.csv``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from empg_gym.bench.records import read_jsonl, run_dir
from empg_gym.bench.report import fmt, read_results, summary_table
from empg_gym.cli import main

#: name -> (question, extra ``empg-gym bench`` arguments)
EXPERIMENTS: dict[str, tuple[str, list[str]]] = {
    "ablation": ("Which half of EMPG matters: the confidence scale g, the future-clarity bonus f, or both?",
                 ["--algos", "grpo,empg-g,empg-f,empg"]),
    "uncertainty": ("Does another step-uncertainty signal serve EMPG better than Shannon entropy?",
                    ["--algos", "empg", "--sweep", "uncertainty=entropy,renyi2"]),
    "dense": ("Does EMPG still help when the reward is dense?",
              ["--algos", "grpo,empg", "--sweep", "env.reward_mode=sparse,dense", "reward_signal=outcome,return",
               "--sweep-mode", "zip"]),
    "grid": ("How do k and zeta trade in-distribution against out-of-distribution success?",
             ["--algos", "empg", "--sweep", "k=0.5,1,2", "zeta=0,0.1"]),
}
SPLITS = ("eval_in_distribution", "eval_out_of_distribution")


def command(name: str, out: Path, seeds: str, processes: int | None) -> list[str]:
    """The ``empg-gym bench`` arguments of experiment ``name``."""
    args = ["bench", "--preset", "quick", "--no-pipeline-check", "--seeds", seeds, *EXPERIMENTS[name][1],
            "--out", str(out / name)]
    return args + (["--processes", str(processes)] if processes is not None else [])


def table(folder: Path) -> list[str]:
    """Per setting: the bench report's greedy success after training and change from update 0 on each split
    (mean ± 95% CI), with the sampled training success of the last 5 updates beside it."""
    rows = read_results(folder)
    header, lines = summary_table(rows, list(SPLITS))
    keep = [header.index(c) for c in ("algo", "seeds", "ID after", "ID Δ", "OOD after", "OOD Δ")]
    md = ["| setting | seeds | ID after | ID Δ | OOD after | OOD Δ | sampled training success, last 5 updates | "
          "updates applied |", "|---|---|---|---|---|---|---|---|"]
    for line in lines:
        env, algo = line[0], line[1]
        sampled = []
        for seed in sorted({int(r["seed"]) for r in rows if r["algo"] == algo}):
            metrics = read_jsonl(run_dir(folder, env, algo, seed) / "metrics.jsonl")
            tail = [m["rollout/success_rate"] for m in metrics if "rollout/success_rate" in m][-5:]
            if tail:
                sampled.append(sum(tail) / len(tail))
        cells = [line[i] for i in keep] + [fmt(sampled) if sampled else "–", line[header.index("updates applied")]]
        md.append("| " + " | ".join(cells) + " |")
    return md


def reading(folder: Path) -> str:
    """One sentence per split: the best setting by mean success after training, and whether its 95% CI clears the
    others' (a difference the seeds resolve) or overlaps them."""
    from empg_gym.bench.report import final_success, mean_ci

    rows = read_results(folder)
    parts = []
    for split, short in zip(SPLITS, ("ID", "OOD"), strict=True):
        stats = {algo: mean_ci(v) for (_, algo), v in final_success(rows, split).items()}
        if len(stats) < 2:
            continue
        best = max(stats, key=lambda a: stats[a][0])
        lo = stats[best][0] - stats[best][1]
        beaten = [a for a in stats if a != best and stats[a][0] + stats[a][1] < lo]
        others = len(stats) - 1
        parts.append(f"{short}: highest mean `{best}` ({stats[best][0]:.3f}); its CI "
                     + ("clears every other setting's" if len(beaten) == others else
                        f"clears {len(beaten)} of the {others} others'" if beaten else "overlaps every other setting's"))
    return "Reading (computed): " + "; ".join(parts) + "." if parts else ""


def write_doc(out: Path, doc: Path, seeds: str) -> None:
    """Assemble the report from the finished benches; copy their plots next to it."""
    from empg_gym.bench import get_preset

    quick = get_preset("quick")
    img = doc.parent / "img" / "empg_research"
    img.mkdir(parents=True, exist_ok=True)
    md = ["# EMPG research kit: ablations, uncertainty signals, dense rewards, a k/ζ grid", "",
          "<!-- Written by scripts/empg_research.py; every number comes from the benches' results.csv. -->", "",
          "Regenerate (about an hour on 2 CPU cores, resumable): `python scripts/empg_research.py --out runs/research "
          "--doc docs/empg_research.md`; each section's command reruns one bench alone. The README's "
          "[research kit](../README.md#research-kit-empgs-open-questions-as-switches) lists the switches.", "",
          f"All runs: the `quick` preset's task and training (EMPG-KeyRooms-v0, the tiny action-token policy, "
          f"{quick.updates} updates of {quick.train['tasks_per_update']} tasks × {quick.train['group_size']} "
          f"trajectories, greedy evaluation on the first {quick.eval_tasks} tasks of each eval split before "
          f"and after training), seeds {seeds}. Cells are mean ± 95% CI over seeds (Student's t); Δ is each seed's "
          "change from the untrained policy (update 0). ID = `eval_in_distribution` (1–3 doors), OOD = "
          "`eval_out_of_distribution` (4–6 doors).", "",
          "How to read it: greedy success of this memoryless policy is brittle. While its entropy is still high, the "
          "most likely action can be wrong in one state, and a greedy episode then loops there until its step budget "
          "runs out, where sampling would have moved on: a seed can sample its way to 0.9 training success and score "
          "0 greedily. The sampled training success (mean of the last 5 updates, the same seeds) is shown beside it "
          "for that reason. With 5 seeds the CIs are wide; a difference is resolved only where they do not overlap.",
          ""]
    for name, (question, _) in EXPERIMENTS.items():
        folder = out / name
        if not (folder / "results.csv").is_file():
            md += [f"## {name}", "", f"{question}", "", "Not run yet.", ""]
            continue
        args = command(name, Path("runs/research"), seeds, None)
        md += [f"## {name}: {question}", "", f"```bash\nempg-gym {' '.join(args)}\n```", ""] + table(folder)
        md += ["", reading(folder), ""]
        for plot in ("sample_efficiency_update.png", "sweep_tradeoff.png", "empg_diagnostics.png"):
            if (folder / plot).is_file():
                shutil.copyfile(folder / plot, img / f"{name}_{plot}")
                md.append(f"![{name} {plot[:-4]}](img/empg_research/{name}_{plot})")
        md.append("")
    doc.write_text("\n".join(md), encoding="utf-8")
    print(f"wrote {doc}")


def run() -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/research", help="folder of the four benches")
    parser.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated seeds of every bench")
    parser.add_argument("--only", default=None, help=f"comma-separated subset of {list(EXPERIMENTS)}")
    parser.add_argument("--processes", type=int, default=None, help="runs at a time (default: the preset's 2)")
    parser.add_argument("--report-only", action="store_true", help="do not train; assemble what is finished")
    parser.add_argument("--doc", default=None, help="write the report here (default OUT/empg_research.md)")
    args = parser.parse_args()
    out = Path(args.out)
    names = args.only.split(",") if args.only else list(EXPERIMENTS)
    unknown = sorted(set(names) - set(EXPERIMENTS))
    if unknown:
        parser.error(f"unknown experiment(s) {unknown}; choose from {list(EXPERIMENTS)}")
    if not args.report_only:
        for name in names:
            print(f"== {name}: empg-gym {' '.join(command(name, out, args.seeds, args.processes))}", flush=True)
            main(command(name, out, args.seeds, args.processes))
    write_doc(out, Path(args.doc) if args.doc else out / "empg_research.md", args.seeds)
    return 0


if __name__ == "__main__":
    sys.exit(run())
