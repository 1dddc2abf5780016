"""Training augmentations: --shift moves whole maps, --erase blanks one square, --mixup mixes
inputs and targets alike."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from augment import Batch, random_erase, random_shift, training_batches
from engine import batch_loss
from models import ModelConfig, compute_loss
from tests.test_fold_group import tensors

CPU = torch.device("cpu")


def test_shift_moves_each_map_by_its_own_offset():
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).view(2, 3, 6, 6) + 1  # no zero inside
    moved = random_shift(x, 2, torch.Generator().manual_seed(3))
    for b in range(2):
        # recover the offset from where the map's first value went, then check every pixel
        found = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                 if torch.equal(moved[b], torch.roll(torch.nn.functional.pad(x[b], (2,) * 4), (-dy, -dx), (1, 2))
                                [:, 2:8, 2:8])]
        assert len(found) == 1, b
    assert (moved == 0).any()                     # something moved in from the border ...
    assert set(moved.unique().tolist()) - {0.0} <= set(x.unique().tolist())  # ... and nothing else is new


def test_shift_offsets_cover_the_range():
    x = torch.ones(400, 1, 5, 5)
    moved = random_shift(x, 1, torch.Generator().manual_seed(0))
    zero_rows = (moved[:, 0].sum(2) == 0).float()   # (B, S): a shifted map has an empty border row
    assert 0.2 < zero_rows[:, 0].mean() < 0.45 and 0.2 < zero_rows[:, -1].mean() < 0.45


def test_erase_blanks_one_square_per_hit_map_and_nothing_else():
    x = torch.rand(300, 3, 12, 12) + 1                     # no zero inside
    erased = random_erase(x, 1.0, torch.Generator().manual_seed(0))
    sides = set()
    for b in range(len(x)):
        blank = erased[b] == 0                              # (3, 12, 12)
        assert torch.equal(blank[0], blank[1]) and torch.equal(blank[0], blank[2])  # every channel alike
        rows, cols = blank[0].any(1).nonzero().flatten(), blank[0].any(0).nonzero().flatten()
        side = len(rows)
        assert side == len(cols) and 3 <= side <= 6                    # a square, a quarter to half of 12
        assert rows[-1] - rows[0] + 1 == side and cols[-1] - cols[0] + 1 == side   # in one piece
        assert blank[0].sum() == side * side                           # the whole square, nothing more
        assert torch.equal(erased[b][~blank], x[b][~blank])            # the rest untouched
        sides.add(side)
    assert sides == {3, 4, 5, 6}


def test_erase_probability_and_off():
    x = torch.rand(2000, 1, 8, 8) + 1
    erased = random_erase(x, 0.3, torch.Generator().manual_seed(1))
    hit = (erased == 0).flatten(1).any(1).float().mean().item()
    assert 0.26 < hit < 0.34
    assert torch.equal(random_erase(x, 0.0, torch.Generator().manual_seed(1)), x)


def test_erase_in_training_batches_keeps_order_and_flips():
    cfg = ModelConfig(num_classes=3, img_size=16)
    data = tensors(cfg, {"a": 8, "b": 8})
    idx, scale = torch.arange(16), torch.ones(1, 3, 1, 1)
    plain = list(training_batches(data, idx, scale, 8, torch.Generator().manual_seed(1), CPU))
    erased = list(training_batches(data, idx, scale, 8, torch.Generator().manual_seed(1), CPU, erase=1.0))
    for p, e in zip(plain, erased):
        assert torch.equal(p.idx, e.idx)
        kept = e.motion != 0
        assert torch.equal(e.motion[kept], p.motion[kept])   # the same maps, mirrored alike, minus a square
        assert (~kept).flatten(1).any(1).all()


def test_mixup_batches_mix_inputs_and_name_their_partners():
    cfg = ModelConfig(num_classes=3, img_size=16)
    data = tensors(cfg, {"a": 8, "b": 8})
    idx = torch.arange(16)
    scale = torch.ones(1, 3, 1, 1)
    plain = list(training_batches(data, idx, scale, 8, torch.Generator().manual_seed(1), CPU))
    mixed = list(training_batches(data, idx, scale, 8, torch.Generator().manual_seed(1), CPU, mixup=0.4))
    for p, m in zip(plain, mixed):
        assert torch.equal(p.idx, m.idx)          # the options draw after the order and the flips
        partner_rows = torch.stack([torch.nonzero(p.idx == r)[0, 0] for r in m.partner])
        assert 0.0 <= m.lam <= 1.0
        assert torch.allclose(m.motion, m.lam * p.motion + (1 - m.lam) * p.motion[partner_rows], atol=1e-6)
    assert any(0.05 < m.lam < 0.95 for m in mixed)


def test_mixed_loss_is_the_mix_of_the_two_targets_losses():
    cfg = ModelConfig(num_classes=3, img_size=16)
    data = tensors(cfg, {"a": 6})
    idx, partner = torch.tensor([0, 1, 2]), torch.tensor([3, 4, 5])
    outputs = {"logits": torch.randn(3, 3), "au_logits": torch.randn(3, len(cfg.aus))}
    batch = Batch(idx, torch.zeros(3, 3, 16, 16), torch.zeros(3, 3, 7, 7), partner, lam=0.3)
    loss, parts = batch_loss(outputs, batch, data, cfg, None)
    one, _ = compute_loss(outputs, data.labels[idx], data.au[idx], cfg, None, data.au_known[idx])
    two, _ = compute_loss(outputs, data.labels[partner], data.au[partner], cfg, None, data.au_known[partner])
    assert loss.item() == pytest.approx(0.3 * one.item() + 0.7 * two.item(), rel=1e-6)
    assert parts["total"] == pytest.approx(loss.item(), rel=1e-6)
    plain, _ = batch_loss(outputs, Batch(idx, batch.motion, batch.face), data, cfg, None)
    assert plain.item() == pytest.approx(one.item(), rel=1e-6)


@pytest.mark.parametrize("arch", ["amgcn", "mmnet", "linear"])
def test_tta_flip_averages_the_map_and_its_mirror_and_is_mirror_invariant(arch):
    from dataclasses import replace

    from augment import mirror
    from engine import TrainSettings, evaluate, fresh_model

    cfg = ModelConfig(num_classes=3, img_size=16, width=0.0625, vit_depth=1, arch=arch)
    data = tensors(cfg, {"a": 5, "b": 5})
    data.flip_signs = torch.tensor([-1.0, 1.0, 1.0]).view(1, 3, 1, 1)     # a flow map: u changes sign
    settings = TrainSettings(epochs=1, batch_size=4, lr=1e-3, weight_decay=0.0, optimizer="adam", eval_batch_size=4)
    model = fresh_model(cfg, settings, torch.eye(len(cfg.aus)), seed=0, device=CPU)
    idx, scale = torch.arange(10), torch.full((1, 3, 1, 1), 2.0)
    plain = evaluate(model, data, idx, scale, settings, CPU)
    mirrored_data = replace(data, motion=mirror(data.motion, data.flip_signs), face=mirror(data.face))
    of_mirrors = evaluate(model, mirrored_data, idx, scale, settings, CPU)
    assert not torch.allclose(plain, of_mirrors, atol=1e-4)                # the network alone is not invariant
    tta = replace(settings, tta_flip=True)
    both = evaluate(model, data, idx, scale, tta, CPU)
    assert torch.allclose(both, (plain + of_mirrors) / 2, atol=1e-6)
    assert torch.allclose(evaluate(model, mirrored_data, idx, scale, tta, CPU), both, atol=1e-6)
