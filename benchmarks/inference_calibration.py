"""How honest is each test? Simulated null studies with seed and question variance
(engine.parent.calibration): the false-positive rate of the crossed test (questions × seeds)
beside the old test (paired t over per-question scores averaged over seeds), at 2, 3 and 5
seeds per arm, and the power of each for a known effect. The README quotes this table.

    python benchmarks/inference_calibration.py [--studies 2000] [--effect 0.03]
    python benchmarks/inference_calibration.py --from-report docs/study/report.json

With --from-report the scenario's standard deviations come from a real study's variance
decomposition (the reference arm's multilingual macro units), so the simulation looks like
the runs it stands for.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.parent.calibration import Scenario, monte_carlo_error, rates  # noqa: E402


def scenario_from_report(path: Path) -> Scenario:
    """The reference arm's components in the multilingual setting of the first dataset."""
    report = json.loads(path.read_text())
    section = next(iter(report["datasets"].values()))
    metric = section["metrics"][0]
    parts = section["decomposition"][metric][report["reference"]]["multi"]
    interaction = [item["components"]["interaction"] for item in report["hypotheses"]["items"]
                   if item.get("components")]
    arm_question = (sorted(interaction)[len(interaction) // 2] / 2) ** 0.5 if interaction else 0.0
    return Scenario(question=parts["question_sd"], arm_question=arm_question, seed=parts["seed_sd"],
                    noise=parts["residual_sd"], units=parts["units"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=5000, help="simulated null studies per seed count")
    parser.add_argument("--effect", type=float, default=0.03, help="the known effect for the power column")
    parser.add_argument("--from-report", type=Path, help="take the scenario from a report.json")
    args = parser.parse_args()
    scenario = scenario_from_report(args.from_report) if args.from_report else Scenario()
    print(f"scenario (sd): question {scenario.question:.4f}, arm × question {scenario.arm_question:.4f}, "
          f"seed {scenario.seed:.4f}, seed × question {scenario.noise:.4f}; {scenario.units} question ids")
    print(f"{args.studies} null studies per row (Monte-Carlo error of a 5 % rate: "
          f"±{monte_carlo_error(0.05, args.studies):.3f}); power from {args.studies // 4} studies at Δ = {args.effect:g}")
    print(f"{'seeds/arm':>9}  {'false pos. crossed':>18}  {'false pos. seed-averaged t':>26}  "
          f"{'power crossed':>13}  {'power seed-averaged t':>21}")
    started = time.perf_counter()
    for seeds in (2, 3, 5):
        null = rates(scenario, seeds, args.studies, seed=seeds)
        found = rates(scenario, seeds, args.studies // 4, effect=args.effect, seed=1000 + seeds)
        print(f"{seeds:>9}  {null['crossed']:>18.3f}  {null['seed-averaged t']:>26.3f}  {found['crossed']:>13.2f}  "
              f"{found['seed-averaged t']:>21.2f}")
    wide = Scenario(question=scenario.question, arm_question=0.1, seed=0.03, noise=scenario.noise,
                    units=scenario.units)
    for seeds in (2, 3):
        null = rates(wide, seeds, args.studies, seed=500 + seeds)
        print(f"with arm × question sd 0.1 and seed sd 0.03, {seeds} seeds/arm: false positives crossed "
              f"{null['crossed']:.3f}; with Satterthwaite's df even at 2 seeds "
              f"{null['crossed, Satterthwaite df throughout']:.3f}; seed-averaged t {null['seed-averaged t']:.3f}")
    print(f"({time.perf_counter() - started:.1f} s; the old test's power is bought with its false positives)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
