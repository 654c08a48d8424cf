"""The dual-attention network against paper.md §2: shapes, parameter counts, attention, dropout."""

import pytest
import torch

from hfrisk.model.network.attention import DualAttention
from hfrisk.model.contract.card import InputSpec, ModelCard, default_card
from hfrisk.model.contract.errors import ECGInputError
from hfrisk.model.network.layers import BatchwiseDropout, ResidualBlock2d
from hfrisk.model.network.hfrisk_net import (
    AlignmentHeads,
    HFRiskNet,
    ServingModule,
    build_encoder,
    count_parameters,
)
from hfrisk.model.network.xresnet1d import xresnet1d101

# One thread: on a shared, oversubscribed CPU, OpenMP threads that wait on each other cost 100x.
torch.set_num_threads(1)

# paper.md §2.2, counted from the authors' code at T=608.
PAPER_ENCODER = 1_274_536


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return HFRiskNet.from_card(default_card()).eval()


def _ecg(batch: int, length: int = 608, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 12, length, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("batch", [1, 7])
def test_shapes(net, batch):
    x = _ecg(batch)
    with torch.no_grad():
        log_risk, lead_map, temporal_maps = net(x, return_attention=True)
        assert net(x).shape == (batch, 1)
        assert net.embed(x).shape == (batch, 512)
        assert net.reconstruct(x).shape == (batch, 12, 608)
        served = ServingModule(net)(x)
    assert log_risk.shape == (batch, 1)
    assert lead_map.shape == (batch, 12, 12)
    assert temporal_maps.shape == (batch, 12, 19, 19)
    card = default_card()
    assert len(served) == len(card.outputs)
    for tensor, spec in zip(served, card.outputs):
        assert tensor.shape == (batch, *spec.shape[1:]), spec.name


def test_attention_maps_are_distributions(net):
    with torch.no_grad():
        log_risk, lead_attention, lead_map, temporal = ServingModule(net)(_ecg(4))
        _, _, temporal_maps = net(_ecg(4), return_attention=True)
    for probs in (lead_map, temporal_maps, lead_attention, temporal):
        assert (probs >= 0).all()
        torch.testing.assert_close(probs.sum(-1), torch.ones(probs.shape[:-1]), atol=1e-5, rtol=0)
    # Untrained attention over real-valued features is not uniform: the maps carry information.
    assert lead_map.std(dim=-1).max() > 1e-3


def test_serving_outputs_are_reductions_of_the_maps(net):
    x = _ecg(3)
    with torch.no_grad():
        log_risk, lead_map, temporal_maps = net(x, return_attention=True)
        served = ServingModule(net)(x)
    torch.testing.assert_close(served[0], log_risk)
    torch.testing.assert_close(net(x), log_risk)  # asking for the maps does not change the score
    torch.testing.assert_close(served[1], lead_map.mean(dim=1))  # attention received: column mean
    torch.testing.assert_close(served[2], lead_map)
    torch.testing.assert_close(served[3], temporal_maps.mean(dim=2))  # mean over query steps


def test_batchwise_dropout_shares_one_mask_per_batch():
    torch.manual_seed(1)
    drop = BatchwiseDropout(0.25).train()
    y = drop(torch.ones(16, 2000))
    assert (y == y[0]).all()
    torch.testing.assert_close(y.unique(), torch.tensor([0.0, 1 / 0.75]))
    assert 0.2 < (y[0] == 0).float().mean() < 0.3
    assert not torch.equal(drop(torch.ones(16, 2000)), y)  # a fresh mask per call
    # Sequence-first layout: the mask is shared along dim 1.
    seq_first = BatchwiseDropout(0.5, batch_dim=1).train()(torch.ones(5, 8, 30))
    assert (seq_first == seq_first[:, :1]).all()
    x = torch.randn(4, 10)
    assert torch.equal(drop.eval()(x), x)


def test_network_dropout_is_batchwise(net):
    """In train mode, identical ECGs in one batch get identical embeddings; plain dropout would differ."""
    encoder = net.encoder.train()
    try:
        x = _ecg(1).repeat(6, 1, 1)
        with torch.no_grad():
            first, second = encoder(x)[0], encoder(x)[0]
    finally:
        encoder.eval()
    torch.testing.assert_close(first, first[:1].expand_as(first))
    assert not torch.allclose(first, second)  # dropout is active in train mode


def test_eval_mode_is_deterministic(net):
    x = _ecg(2)
    with torch.no_grad():
        torch.testing.assert_close(net(x), net(x), atol=0, rtol=0)


def test_encoder_parameter_count_matches_paper(net):
    encoder = net.encoder
    assert abs(count_parameters(encoder) - PAPER_ENCODER) / PAPER_ENCODER < 0.02
    # Component by component (paper.md §2.2 table).
    assert count_parameters(encoder.stem) == 12_048
    assert count_parameters(encoder.blocks) == 11_368
    assert count_parameters(encoder.attention.temporal) == 39_360
    assert count_parameters(encoder.avg_head) + count_parameters(encoder.max_head) == 98_816
    assert count_parameters(net.decoder) == 110_570
    assert count_parameters(net.risk_head) == 2_573
    assert count_parameters(net) == 1_387_679
    assert count_parameters(AlignmentHeads(text_dim=768)) == 393_984
    assert count_parameters(AlignmentHeads(text_dim=384)) == 393_984 - 384 * 256


def test_ablation_switches_remove_their_branch():
    full = count_parameters(build_encoder())
    no_temporal = count_parameters(build_encoder(temporal_attention=False))
    no_lead = count_parameters(build_encoder(lead_attention=False))
    neither = count_parameters(build_encoder(lead_attention=False, temporal_attention=False))
    assert full - no_temporal == 39_360
    assert no_temporal == 1_235_176  # paper.md §2.2
    # The paper's 162,200 / 122,840 include a 608-parameter LayerNorm that the authors' code keeps
    # (unused) when lead attention is off; here the branch goes with all its parameters.
    assert no_lead == 162_200 - 608
    assert neither == 122_840 - 608
    assert full - no_lead == no_temporal - neither


def test_ablated_networks_run_and_report_missing_maps():
    x = _ecg(2)
    for flags, lead_none, temporal_none in (
        ({"lead_attention": False}, True, False),
        ({"temporal_attention": False}, False, True),
        ({"lead_attention": False, "temporal_attention": False}, True, True),
    ):
        net = HFRiskNet(**flags).eval()
        with torch.no_grad():
            log_risk, lead_map, temporal_maps = net(x, return_attention=True)
        assert log_risk.shape == (2, 1)
        assert (lead_map is None) == lead_none and (temporal_maps is None) == temporal_none
        with pytest.raises(ValueError, match="attention"):
            ServingModule(net)


def test_train_step_reaches_every_parameter():
    torch.manual_seed(0)
    net = HFRiskNet().train()
    x = _ecg(8, seed=3)
    out = net.forward_train(x)
    # Cox-like pairwise ranking term plus the reconstruction term of fine-tuning.
    loss = torch.logsumexp(out.log_risk.squeeze(1), 0) - out.log_risk[0, 0] + (out.reconstruction - x).pow(2).mean()
    loss.backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []
    assert all(torch.isfinite(p.grad).all() for p in net.parameters())
    before = net.encoder.attention.lead.block.attn.in_proj_weight.detach().clone()
    torch.optim.AdamW(net.parameters(), lr=1e-3).step()
    assert not torch.equal(before, net.encoder.attention.lead.block.attn.in_proj_weight)


def test_forward_train_matches_separate_calls(net):
    x = _ecg(3)
    with torch.no_grad():
        out = net.forward_train(x)
        torch.testing.assert_close(out.log_risk, net(x))
        torch.testing.assert_close(out.reconstruction, net.reconstruct(x))
        torch.testing.assert_close(out.embedding, net.embed(x))


def test_reconstruction_is_instance_normalised_per_lead(net):
    with torch.no_grad():
        recon = net.reconstruct(_ecg(2))
    torch.testing.assert_close(recon.mean(-1), torch.zeros(2, 12), atol=1e-4, rtol=0)
    torch.testing.assert_close(recon.std(-1, unbiased=False), torch.ones(2, 12), atol=1e-2, rtol=0)


def test_from_card_takes_length_from_card():
    card = ModelCard(input=InputSpec(length_samples=640))
    net = HFRiskNet.from_card(card).eval()
    with torch.no_grad():
        log_risk, lead_map, temporal_maps = net(_ecg(2, length=640), return_attention=True)
    assert log_risk.shape == (2, 1)
    assert temporal_maps.shape == (2, 12, 20, 20)  # 640 / 32 steps
    # Wider lead tokens (16 × 20 = 320): the cross-lead block grows, as paper.md notes for 1024.
    assert count_parameters(net.encoder) > PAPER_ENCODER
    with pytest.raises(ValueError, match="multiple of 32"):
        HFRiskNet(length_samples=600)


def test_wrong_input_shape_is_refused(net):
    with pytest.raises(ECGInputError, match="bad_shape"):
        net(torch.zeros(2, 8, 608))
    with pytest.raises(ECGInputError, match="bad_shape"):
        net(torch.zeros(12, 608))


def test_residual_blocks_resample_time_only():
    x = torch.randn(2, 4, 12, 38)
    assert ResidualBlock2d(4, 8, "down")(x).shape == (2, 8, 12, 19)
    assert ResidualBlock2d(4, 4, "up")(x).shape == (2, 4, 12, 76)
    assert ResidualBlock2d(4, 1, "same")(x).shape == (2, 1, 12, 38)
    # Kernels span time only: changing one lead leaves the other leads' outputs untouched.
    block = ResidualBlock2d(4, 8, "down").eval()
    y = x.clone()
    y[:, :, 5] += 1.0
    with torch.no_grad():
        a, b = block(x), block(y)
    others = [i for i in range(12) if i != 5]
    torch.testing.assert_close(a[:, :, others], b[:, :, others])
    assert not torch.allclose(a[:, :, 5], b[:, :, 5])


def test_cross_lead_attention_mixes_leads_and_temporal_does_not():
    torch.manual_seed(0)
    h = torch.randn(2, 16, 12, 19)
    bumped = h.clone()
    bumped[:, :, 3] += 1.0
    temporal_only = DualAttention(12, 16, 19, lead_attention=False).eval()
    lead_only = DualAttention(12, 16, 19, temporal_attention=False).eval()

    def lead_rows(out):  # lead 0, untouched in the input
        return out.reshape(2, 16, 12, 19)[:, :, 0]

    with torch.no_grad():
        torch.testing.assert_close(lead_rows(temporal_only(h)[0]), lead_rows(temporal_only(bumped)[0]))
        assert not torch.allclose(lead_rows(lead_only(h)[0]), lead_rows(lead_only(bumped)[0]))


def test_xresnet1d101_is_a_drop_in_encoder():
    torch.manual_seed(0)
    net = HFRiskNet(encoder="xresnet1d101").eval()
    x = _ecg(2)
    with torch.no_grad():
        assert net(x).shape == (2, 1)
        assert net.embed(x).shape == (2, 512)
        assert net.reconstruct(x).shape == (2, 12, 608)
    assert not net.has_attention
    with pytest.raises(ValueError):
        ServingModule(net)
    # 1,804,672 in the backbone (paper.md: "about 1.80 M") + 262,656 in the linear layer to 512.
    assert count_parameters(net.encoder) == 2_067_328
    assert count_parameters(xresnet1d101(embedding_dim=None)) == 1_804_672
    assert 1.5e6 < count_parameters(net.encoder) < 2.5e6
    assert sum(len(stage) for stage in net.encoder.stages) == 33  # [3, 4, 23, 3] bottlenecks
    with pytest.raises(ValueError, match="no attention"):
        HFRiskNet(encoder="xresnet1d101", temporal_attention=False)
    with pytest.raises(ValueError, match="unknown encoder"):
        build_encoder("resnet9000")
