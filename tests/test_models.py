"""Tests of models/: shapes, gradients, adjacency, determinism, attention, budgets."""
from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch

from models import (VARIANTS, ModelConfig, build_model, compute_loss, cooccurrence_adjacency, count_flops,
                    count_params, region_masks)

torch.set_num_threads(2)

# A smaller position branch keeps the gradient tests fast; the structure is unchanged.
SMALL = dict(img_size=112, vit_depth=1, embed_dim=128, vit_heads=4, gcn_hidden=64)


def inputs(batch: int, size: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, size, size, generator=g), torch.randn(batch, 3, size, size, generator=g)


def some_adjacency(k: int) -> torch.Tensor:
    rng = np.random.default_rng(0)
    return cooccurrence_adjacency((rng.random((40, k)) < 0.4).astype(np.float32), 0.3, 0.2)


@pytest.mark.parametrize("size", [112, 224])
@pytest.mark.parametrize("num_classes", [3, 5])
def test_output_shapes(size: int, num_classes: int) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(num_classes=num_classes, img_size=size)
    model = build_model(cfg).eval()
    with torch.no_grad():
        out = model(*inputs(2, size))
    assert out["logits"].shape == (2, num_classes)
    assert out["au_logits"].shape == (2, len(cfg.aus))
    assert torch.isfinite(out["logits"]).all()


@pytest.mark.parametrize("name", list(VARIANTS))
def test_au_logits_presence(name: str) -> None:
    cfg = ModelConfig(**SMALL, **VARIANTS[name])
    with torch.no_grad():
        out = build_model(cfg).eval()(*inputs(1, 112))
    assert (out["au_logits"] is None) == (name in ("no-gcn", "mmnet", "ststnet"))


@pytest.mark.parametrize("name", list(VARIANTS))
def test_gradients_reach_every_parameter(name: str) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(**SMALL, **VARIANTS[name])
    model = build_model(cfg)
    model.set_adjacency(some_adjacency(len(cfg.aus)))
    motion, face = inputs(2, 112)
    out = model(motion, face)
    au_targets = (torch.arange(2 * len(cfg.aus)).view(2, -1) % 3 == 0).float()
    loss, parts = compute_loss(out, torch.tensor([0, 1]), au_targets, cfg)
    loss.backward()
    assert set(parts) == {"ce", "au", "total"} and all(isinstance(v, float) for v in parts.values())
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: no gradient for {pname}"
        assert p.grad.abs().sum() > 0, f"{name}: zero gradient for {pname}"


def test_learned_adjacency_correction_gets_gradient() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(**SMALL))
    out = model(*inputs(2, 112))
    out["logits"].sum().backward()
    assert model.graph.adj_delta.grad is not None and model.graph.adj_delta.grad.abs().sum() > 0
    frozen = build_model(ModelConfig(**SMALL, learn_adj=False))
    assert frozen.graph.adj_delta is None


def test_compute_loss_terms() -> None:
    cfg = ModelConfig(au_loss_weight=0.5)
    logits = torch.tensor([[2.0, 0.0, -1.0, 0.0, 0.0]])
    au_logits = torch.zeros(1, 9)
    labels = torch.tensor([0])
    targets = torch.ones(1, 9)
    loss, parts = compute_loss({"logits": logits, "au_logits": au_logits}, labels, targets, cfg)
    ce = torch.nn.functional.cross_entropy(logits, labels).item()
    assert parts["ce"] == pytest.approx(ce)
    assert parts["au"] == pytest.approx(np.log(2.0), rel=1e-5)
    assert loss.item() == pytest.approx(ce + 0.5 * np.log(2.0), rel=1e-5)
    loss2, parts2 = compute_loss({"logits": logits, "au_logits": None}, labels, targets, cfg)
    assert parts2["au"] == 0.0 and loss2.item() == pytest.approx(ce)
    _, parts3 = compute_loss({"logits": logits, "au_logits": au_logits}, labels, None, cfg)
    assert parts3["total"] == pytest.approx(ce)


def test_cooccurrence_adjacency_by_hand() -> None:
    # AUs a, b, c, d over 4 samples. counts: a=3, b=2, c=1, d=0
    # a&b = 2, a&c = 1, b&c = 0
    y = np.array([[1, 1, 0, 0],
                  [1, 1, 0, 0],
                  [1, 0, 1, 0],
                  [0, 0, 0, 0]], dtype=np.float32)
    # P(j|i): row a: b 2/3, c 1/3; row b: a 1; row c: a 1; row d: 0 (never occurs)
    # threshold 0.5 -> edges a->b, b->a, c->a; d has none
    r = 0.2
    expected = torch.tensor([
        [1 - r, r, 0, 0],     # a: one neighbour (b)
        [r, 1 - r, 0, 0],     # b: one neighbour (a)
        [r, 0, 1 - r, 0],     # c: one neighbour (a)
        [0, 0, 0, 1.0],       # d: isolated -> keeps itself only
    ])
    adj = cooccurrence_adjacency(y, threshold=0.5, reweight=r)
    assert adj.dtype == torch.float32
    torch.testing.assert_close(adj, expected)
    # Lower threshold: a also links to c (1/3 >= 0.3) -> a spreads r over two neighbours.
    adj2 = cooccurrence_adjacency(torch.from_numpy(y), threshold=0.3, reweight=r)
    torch.testing.assert_close(adj2[0], torch.tensor([1 - r, r / 2, r / 2, 0]))
    torch.testing.assert_close(adj2.sum(1), torch.ones(4))


def test_set_adjacency_changes_output() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(**SMALL)).eval()
    x = inputs(2, 112)
    with torch.no_grad():
        before = model(*x)["logits"]
        model.set_adjacency(some_adjacency(9))
        after = model(*x)["logits"]
    assert torch.equal(model.graph.adjacency, some_adjacency(9))
    assert not torch.allclose(before, after)
    with pytest.raises(ValueError):
        model.set_adjacency(torch.eye(4))
    build_model(ModelConfig(**SMALL, arch="mmnet")).set_adjacency(torch.eye(9))  # no-op, no error


def test_forward_is_deterministic() -> None:
    x = inputs(2, 112)
    outs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = build_model(ModelConfig(img_size=112))
        with torch.no_grad():
            outs.append(model(*x))
    assert torch.equal(outs[0]["logits"], outs[1]["logits"])
    assert torch.equal(outs[0]["au_logits"], outs[1]["au_logits"])


@pytest.mark.parametrize("module", ["aa", "sa"])
def test_attention_modules_are_not_identities(module: str) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(**SMALL)).eval()
    bypassed = copy.deepcopy(model)
    setattr(bypassed, module, None)  # same weights, module skipped
    x = inputs(2, 112)
    with torch.no_grad():
        assert not torch.allclose(model(*x)["logits"], bypassed(*x)["logits"])


def test_region_masks() -> None:
    masks = region_masks((4, 12, 17), 14, 14)
    assert masks.shape == (3, 196)
    assert (masks >= 0).all() and (masks <= 1).all() and (masks.sum(1) > 0).all()
    m = masks.view(3, 14, 14)
    # AU4 (brows) sits above AU17 (chin): compare the mask-weighted mean row.
    rows = torch.arange(14.0)[:, None]
    centre = [(mk * rows).sum() / mk.sum() for mk in m]
    assert centre[0] < centre[1] < centre[2]
    assert region_masks((12,), 7, 7).sum() > 0  # small grids still cover every AU


def test_parameter_counts() -> None:
    base = ModelConfig()
    full = count_params(build_model(base))["total"]
    counts = {n: count_params(build_model(replace(base, **kw)))["total"] for n, kw in VARIANTS.items() if kw}
    for name, n in counts.items():
        if name not in ("node-readout", "linear-path"):  # the ablations remove parts
            assert n < full, name
    # every node's state reaches the classifier: K - 1 more read-out blocks of gcn_hidden inputs per class
    assert counts["node-readout"] - full == (len(base.aus) - 1) * base.gcn_hidden * base.num_classes
    # the linear path is one weight per motion-map value and class, plus one bias per class
    assert counts["linear-path"] - full == (3 * 224 * 224 + 1) * base.num_classes
    assert counts["mmnet"] < full
    assert 8e6 < counts["mmnet"] < 14e6  # reference MMNet: about 10M


def test_flops_budget() -> None:
    amgcn = count_flops(build_model(ModelConfig()), 224)
    mmnet = count_flops(build_model(ModelConfig(arch="mmnet")), 224)
    assert amgcn["total"] <= 1.5 * mmnet["total"]
    branches = ("position", "motion", "graph", "aa", "sa", "head")
    assert sum(amgcn[b] for b in branches) == amgcn["total"]
    assert mmnet["graph"] == mmnet["aa"] == mmnet["sa"] == 0 and amgcn["graph"] > 0


def test_node_readout_keeps_which_region_each_state_came_from() -> None:
    from models.graph import AUGraph

    torch.manual_seed(0)
    mean_graph = AUGraph((1, 4, 12), grid=7, in_channels=8, hidden=4)
    node_graph = AUGraph((1, 4, 12), grid=7, in_channels=8, hidden=4, readout="nodes")
    node_graph.load_state_dict(mean_graph.state_dict())
    feat = torch.randn(2, 8, 7, 7)
    states, mean_readout, _ = mean_graph(feat)
    _, node_readout, _ = node_graph(feat)
    assert node_graph.out_dim == 3 * 4 and node_readout.shape == (2, 12)
    assert torch.equal(node_readout, states.flatten(1))           # AU 1's state, then AU 4's, then AU 12's
    assert torch.allclose(mean_readout, node_readout.view(2, 3, 4).mean(1))
    # the mean cannot tell which region moved; the side-by-side states can
    swapped = states[:, [1, 0, 2]]
    assert torch.allclose(swapped.mean(1), mean_readout) and not torch.allclose(swapped.flatten(1), node_readout)


@pytest.mark.parametrize("arch", ["amgcn", "mmnet"])
def test_linear_path_adds_the_floor_to_the_logits(arch: str) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(arch=arch, num_classes=3, img_size=28, width=0.25, vit_depth=1, linear_path=True)
    model = build_model(cfg).eval()
    floor = build_model(replace(cfg, arch="linear")).eval()
    floor.head.load_state_dict(model.head.linear_path.state_dict())
    motion, face = inputs(4, 28)
    with torch.no_grad():
        full = model(motion, face)["logits"]
        model.head.linear_path.weight.zero_()
        model.head.linear_path.bias.zero_()
        pooled_only = model(motion, face)["logits"]
        expected = floor(motion, face)["logits"]
    # the model's logits are the pooled features' logits plus exactly the linear floor's logits
    assert torch.allclose(full - pooled_only, expected, atol=1e-5)
    assert not torch.allclose(full, pooled_only)


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        ModelConfig(readout="max")
    with pytest.raises(ValueError):
        ModelConfig(arch="resnet")
    with pytest.raises(ValueError):
        ModelConfig(img_size=8)


@pytest.mark.parametrize("size", [40, 64])
def test_small_and_odd_input_sizes(size: int) -> None:
    model = build_model(ModelConfig(**{**SMALL, "img_size": size})).eval()
    with torch.no_grad():
        out = model(*inputs(1, size))
    assert out["logits"].shape == (1, 5) and out["au_logits"].shape == (1, 9)


@pytest.mark.parametrize("size, grid", [(224, 14), (112, 7), (64, 8), (48, 12), (28, 7), (16, 8)])
def test_feature_grid_follows_the_input(size: int, grid: int) -> None:
    cfg = ModelConfig(img_size=size, width=0.25, vit_depth=1)
    model = build_model(cfg)
    assert cfg.grid == grid and model.position.pos_embed.shape[1] == grid * grid
    fmap = model.motion(torch.zeros(1, 3, size, size))
    assert fmap.shape == (1, cfg.motion_channels, grid, grid)
    # the AU regions stay apart: every node pools over cells of its own
    assert (model.graph.masks > 0).sum(1).min() >= 1


@pytest.mark.parametrize("size", [28, 48, 112])
def test_position_branch_is_a_small_share_below_224(size: int) -> None:
    flops = count_flops(build_model(ModelConfig(img_size=size)), size)
    assert flops["position"] <= 0.25 * flops["total"]


def test_224_keeps_the_mmnet_layout() -> None:
    cfg = ModelConfig()
    model = build_model(cfg)
    assert cfg.grid == 14 and cfg.embed_dim == 512 and model.motion.out_channels == 512


def test_width_scales_the_motion_branch() -> None:
    narrow, full = ModelConfig(img_size=28, width=0.25), ModelConfig(img_size=28)
    assert narrow.motion_channels == 128 and full.motion_channels == 512
    assert count_params(build_model(narrow))["motion"] < count_params(build_model(full))["motion"] / 10
