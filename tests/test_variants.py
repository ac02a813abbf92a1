"""Plain-Python backbones equal Meta's release-1.0 YAML configs, tensor for tensor."""

from __future__ import annotations

from importlib.resources import files

import pytest

from sansa.model.build import build_sam2_from_config, build_sansa
from sansa.model.variants import VARIANTS, get_variant
from tests.conftest import golden_path


def _shapes(model) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", ["hiera_tiny", "hiera_small", "hiera_base_plus", "hiera_large"])
def test_named_variant_matches_sam2_packaged_config(name):
    config = files("sam2").joinpath(VARIANTS[name].sam2_config)
    from_yaml = build_sansa(str(config), device="meta")
    plain = build_sansa(name, device="meta")
    assert _shapes(plain) == _shapes(from_yaml)
    assert plain.stage_sizes == from_yaml.stage_sizes == VARIANTS[name].stages


def test_test_tiny_matches_the_golden_fixture_config():
    assert _shapes(build_sansa("test_tiny", device="meta")) == _shapes(
        build_sansa(str(golden_path("sam2_config.yaml")), device="meta")
    )


def test_config_turns_the_object_score_head_off():
    sam, _ = build_sam2_from_config(golden_path("sam2_config.yaml"))
    assert not sam.pred_obj_scores and not sam.pred_obj_scores_mlp and not sam.fixed_no_obj_ptr


@pytest.mark.parametrize("alias, name", [("large", "hiera_large"), ("t", "hiera_tiny"), ("b+", "hiera_base_plus")])
def test_aliases(alias, name):
    assert get_variant(alias).name == name
    assert build_sansa(alias, device="meta").stage_sizes == VARIANTS[name].stages
