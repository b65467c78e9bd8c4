"""A tiny BGE-M3 layout (XLM-R encoder + colbert/sparse heads) through FlagEmbedding's BGEM3FlagModel."""

from __future__ import annotations

import pytest

from tests.models_helpers import SQLITE_ONLY, build_bge_m3_layout

pytestmark = [pytest.mark.ml, pytest.mark.bge, SQLITE_ONLY]


@pytest.fixture(scope="module")
def bge_dir(tmp_path_factory):
    return build_bge_m3_layout(tmp_path_factory.mktemp("bge") / "bge-m3-tiny")


def test_bge_m3_registers_with_all_three_outputs(reg, cli, bge_dir):
    added = cli("add", bge_dir, "--name", "acme/bge-m3-tiny", "--json")
    assert added.exit_code == 0 and added.json()["family"] == "bge-m3"  # inferred: both heads present
    r = cli("register", "acme/bge-m3-tiny", "--json")
    assert r.exit_code == 0, r.stderr
    smoke = r.json()["smoke"]
    shapes = smoke["output_shapes"]
    assert shapes["dense_vecs"] == [1, 32] and shapes["colbert_vecs"][1] == 32 and shapes["lexical_weights"][1] == 2
    assert "colbert and sparse heads equal their files" in smoke["checks"]
    assert cli("load", "acme/bge-m3-tiny", "--check").exit_code == 0


def test_bge_m3_head_of_the_wrong_shape_is_refused(reg, cli, tmp_path, bge_dir):
    import shutil

    import torch

    folder = tmp_path / "bad"
    shutil.copytree(bge_dir, folder)
    torch.save(torch.nn.Linear(32, 7).state_dict(), folder / "colbert_linear.pt")
    assert cli("add", folder, "--name", "acme/bge-m3-bad").exit_code == 0
    r = cli("register", "acme/bge-m3-bad")
    assert r.exit_code == 11 and "loading with the bge-m3 family's library failed" in r.stderr
    assert cli("show", "acme/bge-m3-bad", "--json").json()["summary"]["state"] == "quarantined"
