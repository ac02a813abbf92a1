"""The web app's view of SANSA's features: the PCA layer of an image and the targets' margins,
against a real uvicorn server on 127.0.0.1 with the tiny model."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from tests.test_web_api import SIZE, add_box, client, folder, propagate  # noqa: E402, F401


@pytest.fixture()
def two_classes(client) -> str:  # noqa: F811
    sid = client.post("/api/sessions").json()["session_id"]
    for name in ("shape", "ground"):
        assert client.post(f"/api/sessions/{sid}/classes", json={"name": name}).status_code == 201
    return sid


def features_png(client, sid: str, name: str, **params) -> Image.Image:  # noqa: F811
    response = client.get(f"/api/sessions/{sid}/targets/{name}/features.png", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return Image.open(io.BytesIO(response.content))


def test_feature_layer_is_the_image_size_and_fitted_on_the_references(client, two_classes):  # noqa: F811
    sid = two_classes
    alone = features_png(client, sid, "im2.png")  # no reference yet: fitted on the image itself
    assert alone.size == (SIZE[1], SIZE[0]) and alone.mode == "RGB"
    assert features_png(client, sid, "im2.png", max_side=32).size == (32, 24)
    add_box(client, sid, "im0.png", "shape")
    layer = np.asarray(features_png(client, sid, "im2.png"))
    again = np.asarray(features_png(client, sid, "im2.png"))
    np.testing.assert_array_equal(layer, again)
    assert not np.array_equal(layer, np.asarray(alone))  # now on the reference's components
    assert len(np.unique(layer.reshape(-1, 3), axis=0)) > 1


def test_margins_come_with_current_results(client, two_classes):  # noqa: F811
    sid = two_classes
    add_box(client, sid, "im0.png", "shape")
    before = client.get(f"/api/sessions/{sid}/margins").json()["margins"]
    assert before == {"im1.png": None, "im2.png": None, "im3.png": None}  # not propagated yet
    client.put(
        f"/api/sessions/{sid}/references",
        json={"image": "im1.png", "label": "ground", "prompt": {"box": [0, 32, 64, 48]}},
    )
    assert propagate(client, sid)["state"] == "done"
    after = client.get(f"/api/sessions/{sid}/margins").json()["margins"]
    assert sorted(after) == ["im2.png", "im3.png"]  # im1 is a reference now
    assert all(isinstance(v, float) and -2 <= v <= 2 for v in after.values())


def test_feature_layer_of_an_unknown_image_is_one_line(client, two_classes):  # noqa: F811
    response = client.get(f"/api/sessions/{two_classes}/targets/nope.png/features.png")
    assert response.status_code == 404 and "nope.png" in response.json()["detail"]
