"""``lorkd evaluate --models DIR --data MANIFEST --out REPORT.md``: teacher vs. experts vs. baseline."""

from __future__ import annotations

import argparse

from lorkd_core.commands.segment import progress_printer


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("evaluate", help="compare teacher, region experts and baseline on held-out cases",
                              description="Dice and NSD per region and structure (or accuracy/AUC), parameters, "
                                          "file size and CPU latency; writes Markdown + CSV and updates the cards.")
    p.add_argument("--models", required=True, help="decomposition output folder (teacher/, experts/, baseline/)")
    p.add_argument("--data", required=True, help="manifest (.jsonl); cases with split 'test' are evaluated")
    p.add_argument("--out", help="report path (.md; the .csv goes beside it); default DIR/evaluation.md")
    p.add_argument("--split", default="test", help="manifest split to evaluate (default: test)")
    p.add_argument("--tolerance-mm", type=float, default=2.0, help="NSD tolerance in mm (default 2)")
    p.add_argument("--latency-runs", type=int, default=3, help="runs per model for the median latency (default 3)")
    p.add_argument("--device", default="cpu", help="device for the predictions (latency is reported for it)")
    p.add_argument("--no-record", action="store_true", help="do not write the metrics into the model cards")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from lorkd_core.engine.evaluate import evaluate_models

    result = evaluate_models(args.models, args.data, args.out, tolerance_mm=args.tolerance_mm,
                             latency_runs=args.latency_runs, device=args.device, split=args.split,
                             record=not args.no_record, progress=progress_printer(args.quiet))
    metric = "dice" if result.task == "segmentation" else "accuracy"
    for model in result.models:
        print(f"{model:<9} mean {metric}: {result.mean(model, metric):.3f} over {len(result.regions)} region(s)")
    for warning in result.warnings:
        print(f"warning: {warning}")
    print(f"wrote {result.markdown_path} and {result.csv_path}")
    return 0
