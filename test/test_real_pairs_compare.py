"""benchmarks/real_pairs_compare.py: the seed-mean rows that the fusion modes are compared on."""
import importlib.util
from pathlib import Path

import pytest

SPEC = importlib.util.spec_from_file_location(
    "real_pairs_compare", Path(__file__).resolve().parents[1] / "benchmarks" / "real_pairs_compare.py")
compare = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(compare)
CLASSES = ["person", "car"]


def _row(title, seed, overall, night, person=0.8, car=0.6, boxes=1.5):
    return {"input": title, "seed": seed,
            "all": {"mAP50": overall, "mAP50_95": overall / 2, "at_default_threshold": {"boxes_per_object": boxes},
                    "per_class": {"person": {"AP50": person}, "car": {"AP50": car}}},
            "day": {"mAP50": overall + 0.01}, "night": {"mAP50": night}}


def test_each_input_with_several_seeds_gets_the_mean_of_its_seeds_only():
    rows = [_row("bi-level", 0, 0.70, 0.60, boxes=1.4), _row("bi-level", 1, 0.76, None, person=0.9, boxes=1.6),
            _row("bi-level", "0, 1 averaged", 0.99, 0.99),  # a model of its own: not one of the seeds
            _row("two-stage", 0, 0.72, 0.70), _row("two-stage", 1, 0.74, 0.74), _row("two-stage", 2, 0.70, 0.66),
            _row("thermal only", 0, 0.30, 0.35), _row("zero-shot", "-", 0.4, 0.1)]
    means = {m["input"]: m for m in compare.seed_means(rows, CLASSES)}
    assert set(means) == {"bi-level", "two-stage"}  # one seed (or none) is no mean
    bilevel, two_stage = means["bi-level"], means["two-stage"]
    assert bilevel["seed"] == "mean of 2 seeds" and two_stage["seed"] == "mean of 3 seeds"
    assert bilevel["all"]["mAP50"] == pytest.approx(0.73) and two_stage["all"]["mAP50"] == pytest.approx(0.72)
    assert bilevel["day"]["mAP50"] == pytest.approx(0.74) and two_stage["night"]["mAP50"] == pytest.approx(0.70)
    assert bilevel["night"]["mAP50"] is None  # a seed without a night score leaves no night mean
    assert bilevel["all"]["per_class"]["person"]["AP50"] == pytest.approx(0.85)
    assert bilevel["all"]["at_default_threshold"]["boxes_per_object"] == pytest.approx(1.5)
    lines = compare.markdown(rows + list(means.values()), CLASSES).splitlines()
    assert lines[-2].startswith("| bi-level | mean of 2 seeds | 0.730 | 0.740 | n/a | 0.365 | 0.850 | 0.600 | 1.50 |")
    assert lines[-1].startswith("| two-stage | mean of 3 seeds | 0.720 | 0.730 | 0.700 |")
