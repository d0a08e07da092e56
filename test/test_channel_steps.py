"""Relative per-channel steps for a detector with folded BatchNorms (training/channel_steps.py)."""
import copy

import pytest
import torch
from torch import nn

from fusion_ros.checkpoint import load_model
from training.channel_steps import fold, scale_conv_weights


def _folded_like_net() -> nn.Sequential:
    """Two convs whose output channels have weights of very different scales, as after BN folding."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 2, 1))
    with torch.no_grad():
        net[0].weight.mul_(torch.tensor([1e-4, 1e-2, 1.0, 30.0]).view(4, 1, 1, 1))
    return net


def test_scaling_changes_nothing_until_trained_and_folds_back_to_plain_weights():
    net = _folded_like_net()
    x = torch.randn(2, 3, 8, 8)
    before = net(x)
    assert scale_conv_weights(net) == 2 and scale_conv_weights(net) == 0  # idempotent
    torch.testing.assert_close(net(x), before)
    folded = fold(copy.deepcopy(net))
    torch.testing.assert_close(folded(x), before)
    assert set(folded.state_dict()) == {"0.weight", "0.bias", "2.weight", "2.bias"}


def test_an_adam_step_moves_every_channel_by_the_same_fraction():
    """Plain Adam moves a 1e-4-scale channel by ~100 % and a 30-scale one by ~0 %; scaled, both by ~lr."""
    lr = 1e-3

    def relative_change(scaled: bool) -> torch.Tensor:
        net = _folded_like_net()
        if scaled:
            scale_conv_weights(net)
        w0 = net[0].weight.detach().clone()
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        net(torch.randn(2, 3, 8, 8)).square().mean().backward()
        opt.step()
        step = (net[0].weight.detach() - w0).flatten(1).abs().max(1).values
        return step / w0.flatten(1).pow(2).mean(1).sqrt()

    plain, scaled = relative_change(False), relative_change(True)
    assert float(plain.max() / plain.min()) > 1e4
    assert torch.allclose(scaled, torch.full_like(scaled, lr), rtol=0.05)


def test_trainer_ships_a_plain_model_and_resumes_exactly(tmp_path):
    from test_train import TINY, _write
    from training.train import main

    cfg = copy.deepcopy(TINY)
    cfg["schedule"].update(channel_relative_steps=True, ema_decay=0.5)
    path = _write(tmp_path, cfg)
    assert main(["--config", str(path), "--out", str(tmp_path / "full")]) == 0
    assert main(["--config", str(path), "--out", str(tmp_path / "cut"), "--stop-after", "5"]) == 0
    assert main(["--config", str(path), "--out", str(tmp_path / "cut"), "--resume"]) == 0
    full, _ = load_model(tmp_path / "full" / "model.pt")  # plain keys: loads as any model does
    cut, _ = load_model(tmp_path / "cut" / "model.pt")
    assert not any("parametrizations" in k for k in full.state_dict())
    for (name, a), (_, b) in zip(full.state_dict().items(), cut.state_dict().items()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), name
