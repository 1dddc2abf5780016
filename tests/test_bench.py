"""The speed benchmark keeps working as the engine changes (tiny sizes; figures are not checked)."""
from __future__ import annotations

import json
from pathlib import Path

from benchmarks import bench


def test_bench_reports_every_section(tmp_path: Path, capsys) -> None:
    out = tmp_path / "bench.json"
    assert bench.main(["--quick", "--device", "cpu", "--img-sizes", "32", "--batch-size", "4",
                       "--repeats", "1", "--no-epoch", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    for section in ("== environment", "== fp32 GEMM peak", "== training step", "== evaluation",
                    "== projected full 5-class LOSO"):
        assert section in printed
    report = json.loads(out.read_text())
    assert report["env"]["device"] == "cpu"
    assert report["gemm"]["peak"] > 0
    rows = {r["arch"]: r for r in report["train"]}
    assert set(rows) == {"amgcn", "mmnet"}
    for r in rows.values():
        assert r["img_size"] == 32 and r["batch"] == 4
        assert r["step_s"] > 0 and r["of_peak"] > 0
        assert abs(r["samples_per_s"] - 4 / r["step_s"]) < 1e-9
    assert rows["mmnet"]["vs_mmnet"] == 1.0
    assert {e["arch"] for e in report["eval"]} == {"amgcn", "mmnet"}
    # no 224 px step and no epoch measured: nothing to project from
    assert report["loso_projection"] == {}


def test_contiguous_memory_format_reaches_the_model() -> None:
    import torch
    from models import ModelConfig

    cfg = ModelConfig(img_size=32)
    data = bench.random_release(2, 32, cfg, torch.device("cpu"), memory_format=torch.contiguous_format)
    model, _ = bench.fresh_model(cfg, torch.device("cpu"), memory_format=torch.contiguous_format)
    assert data.motion.is_contiguous()
    assert model.motion.stem[0].weight.is_contiguous()
    data = bench.random_release(2, 32, cfg, torch.device("cpu"))
    model, _ = bench.fresh_model(cfg, torch.device("cpu"))
    assert data.motion.is_contiguous(memory_format=torch.channels_last) and not data.motion.is_contiguous()
    assert not model.motion.stem[0].weight.is_contiguous()
