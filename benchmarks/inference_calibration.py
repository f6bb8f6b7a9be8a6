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
    parser.add_argument("--studies", type=int, default=5000, help="simulated null studies per row")
    parser.add_argument("--effect", type=float, default=0.03, help="the known effect for the power columns")
    parser.add_argument("--from-report", type=Path, help="add a scenario taken from a report.json")
    args = parser.parse_args()
    scenarios = {"default": Scenario(), "large arm × question": Scenario(arm_question=0.1, seed=0.03)}
    if args.from_report:
        scenarios = {f"from {args.from_report}": scenario_from_report(args.from_report), **scenarios}
    print(f"{args.studies} null studies per row (Monte-Carlo error of a 5 % rate: "
          f"±{monte_carlo_error(0.05, args.studies):.3f}); power from {args.studies // 4} studies at "
          f"Δ = {args.effect:g}; level 0.05")
    started = time.perf_counter()
    for name, scenario in scenarios.items():
        print(f"\n{name}: sd question {scenario.question:.4f}, arm × question {scenario.arm_question:.4f}, "
              f"seed {scenario.seed:.4f}, seed × question {scenario.noise:.4f}; {scenario.units} question ids")
        print(f"{'seeds':>5}  {'false positives: crossed':>24}  {'Satterthwaite df':>16}  {'run df':>6}  "
              f"{'seed-averaged t':>15}  {'power: crossed':>14}  {'seed-averaged t':>15}")
        for seeds in (2, 3, 5):
            null = rates(scenario, seeds, args.studies, seed=seeds)
            found = rates(scenario, seeds, args.studies // 4, effect=args.effect, seed=1000 + seeds)
            print(f"{seeds:>5}  {null['crossed']:>24.3f}  {null['crossed, Satterthwaite df']:>16.3f}  "
                  f"{null['crossed, run df']:>6.3f}  {null['seed-averaged t']:>15.3f}  {found['crossed']:>14.2f}  "
                  f"{found['seed-averaged t']:>15.2f}")
    print(f"\n({time.perf_counter() - started:.0f} s. The old test's power is bought with its false positives.)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
