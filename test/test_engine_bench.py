"""benchmarks/engine_bench.py's bookkeeping: the median round kept, and the baseline ratio in its table."""
import importlib.util
from pathlib import Path

SPEC = importlib.util.spec_from_file_location("engine_bench", Path(__file__).resolve().parents[1] / "benchmarks" / "engine_bench.py")
engine_bench = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(engine_bench)


def _result(role, pairs_per_s, backend="onnxruntime"):
    return {"model_role": role, "requested_backend": backend, "backend": f"{backend}-cpu", "size": "640x480",
            "camera_size": None, "fused_resolution": "camera", "batch": 1, "throughput_pairs_per_s": pairs_per_s,
            "latency_ms_median": 1e3 / pairs_per_s, "latency_ms_p95": 1e3 / pairs_per_s,
            "per_pair_ms": {"pre": 1.0, "infer": 2.0, "post": 1.0}, "peak_rss_mb": 100.0}


def test_the_median_round_is_kept_with_every_rounds_throughput():
    chosen = engine_bench._median_round([_result("model", 10.0), _result("model", 12.0), _result("model", 11.0)])
    assert chosen["throughput_pairs_per_s"] == 11.0 and chosen["rounds_pairs_per_s"] == [10.0, 12.0, 11.0]
    assert engine_bench._median_round([_result("model", 9.0), _result("model", 7.0)])["throughput_pairs_per_s"] == 7.0
    model = _result("model", 11.0)
    assert engine_bench._key(model, role="baseline") == engine_bench._key(_result("baseline", 3.0))
    assert engine_bench._key(model, backend="torch") == engine_bench._key(_result("model", 3.0, backend="torch"))


def test_the_table_gives_the_models_throughput_over_the_baselines():
    model, baseline = _result("model", 10.0), _result("baseline", 12.5)
    model["vs_baseline"], baseline["vs_baseline"] = 0.8, None
    table = engine_bench._table([model, baseline]).splitlines()
    assert table[0].startswith("| model | backend |") and table[0].endswith("| vs baseline |")
    assert table[2].startswith("| model | onnxruntime-cpu |") and table[2].endswith("| 0.800x |")
    assert table[3].startswith("| baseline |") and table[3].endswith("| |")
    assert all(line.count("|") == table[0].count("|") for line in table)


def test_bad_rounds_and_a_missing_baseline_are_clear_errors(tmp_path, capsys):
    for argv, message in ((["--rounds", "0"], "--rounds must be >= 1, got 0"),
                          (["--baseline-model", str(tmp_path / "none.onnx")], "none.onnx: no such file")):
        try:
            engine_bench.main([str(tmp_path / "out"), *argv])
        except SystemExit as exc:
            assert exc.code == 2
        else:
            raise AssertionError(f"{argv} was accepted")
        assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing measured, nothing written


def test_engine_ab_alternates_the_models_in_one_process_and_rates_them_against_the_baseline(capsys):
    """benchmarks/engine_ab.py on the bundled ONNX model as both model and baseline: one row each, the model's
    ratio over the baseline's throughput (the same file: near 1x), the baseline's row without a ratio."""
    spec = importlib.util.spec_from_file_location("engine_ab", Path(__file__).resolve().parents[1] / "benchmarks" / "engine_ab.py")
    engine_ab = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(engine_ab)
    model = str(Path(__file__).resolve().parents[1] / "fusion_ros" / "models" / "default.onnx")
    engine_ab.main([model, "--baseline", model, "--calls", "3", "--frame", "320x240", "--threads", "1"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith(f"| {model} |")]
    assert len(rows) == 2
    ratio = float(rows[0].split("|")[-2].strip().rstrip("x"))
    assert 0.3 < ratio < 3.0 and rows[1].split("|")[-2].strip() == ""
