"""Adapters added from outside: no-op when fresh, authors' keys and shapes, only they train."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from sansa.model.adapters import adapter_state_dict, freeze_all_but_adapters
from sansa.model.build import build_sam2, build_sansa
from sansa.model.variants import get_variant
from tests.conftest import golden_path


def test_fresh_adapters_leave_sam2_image_encoder_bit_identical():
    torch.manual_seed(0)
    sansa = build_sansa("test_tiny")
    plain = build_sam2(get_variant("test_tiny")).eval()
    plain.load_state_dict({k.removeprefix("sam."): v for k, v in sansa.state_dict().items() if ".adapter." not in k})
    image = torch.randn(2, 3, 256, 256)
    with torch.no_grad():
        ours = sansa.sam.forward_image(image)
        theirs = plain.forward_image(image)
    for a, b in zip(
        ours["backbone_fpn"] + ours["vision_pos_enc"], theirs["backbone_fpn"] + theirs["vision_pos_enc"], strict=True
    ):
        assert torch.equal(a, b)


def test_trained_adapters_change_the_features_and_survive_deepcopy(tiny_model):
    image = torch.randn(1, 3, 256, 256)
    clone = copy.deepcopy(tiny_model)
    with torch.no_grad():
        for name, param in clone.named_parameters():
            if ".adapter.up_proj" in name:
                param.zero_()
        adapted = tiny_model.encode_images(image).top
        fresh = clone.encode_images(image).top
        again = tiny_model.encode_images(image).top
    assert not torch.allclose(adapted, fresh)  # the copy uses its own (zeroed) adapters
    assert torch.equal(adapted, again)


@pytest.mark.parametrize(
    "backbone, json_name",
    [
        ("hiera_tiny", "sam2_hiera_t"),
        ("hiera_base_plus", "sam2_hiera_b+"),
        ("hiera_large", "sam2_hiera_l"),
    ],
)
@pytest.mark.parametrize("factor", [0.3, 0.8])
def test_adapter_keys_and_shapes_match_the_authors_files(backbone, json_name, factor):
    expected = json.loads(golden_path("adapter_keys.json").read_text())[f"{json_name}/factor_{factor}"]
    model = build_sansa(backbone, channel_factor=factor, device="meta")
    got = {k: list(v.shape) for k, v in adapter_state_dict(model).items()}
    assert got == expected


def test_only_adapters_receive_gradients(tiny_model):
    model = copy.deepcopy(tiny_model).train()
    trainable = freeze_all_but_adapters(model)
    assert trainable and all(".adapter." in n for n in trainable)
    feats = model.encode_images(torch.randn(1, 3, 256, 256))
    feats.top.square().mean().backward()
    for name, param in model.named_parameters():
        if ".adapter." in name:
            assert param.grad is not None, name
        else:
            assert param.grad is None, name
