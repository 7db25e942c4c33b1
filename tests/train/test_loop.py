"""The training loop: two-stage curriculum, checkpoints, bit-identical resume, recipes and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import omnicell as oc
from omnicell.cli import main
from omnicell.train import LOG_COLUMNS, Recipe, find_latest, load_training_state, pretrain, read_recipe


def _weights(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def test_resume_is_bit_identical(recipe_factory, tmp_path):
    straight = tmp_path / "straight"
    pretrain(Recipe.from_dict(recipe_factory(straight)))
    interrupted = tmp_path / "interrupted"
    recipe = Recipe.from_dict(recipe_factory(interrupted))
    pretrain(recipe, max_steps=2)  # stops inside the spatial stage
    assert find_latest(interrupted / "checkpoints").name == "step-00000002"
    assert not (interrupted / "model").exists()
    pretrain(recipe, resume=True, max_steps=4)  # crosses into the single-cell stage, stops again
    pretrain(recipe, resume=True)

    a, b = _weights(straight / "model"), _weights(interrupted / "model")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    state_a = load_training_state(find_latest(straight / "checkpoints"))
    state_b = load_training_state(find_latest(interrupted / "checkpoints"))
    assert state_a["step"] == state_b["step"] == 6
    for key, value in state_a["trainer"]["optimizer"]["state"].items():
        assert torch.equal(value["exp_avg_sq"], state_b["trainer"]["optimizer"]["state"][key]["exp_avg_sq"])
    log_a, log_b = pd.read_csv(straight / "loss_log.csv"), pd.read_csv(interrupted / "loss_log.csv")
    assert list(log_a.columns) == list(LOG_COLUMNS)
    assert list(log_b["step"]) == list(range(6))
    np.testing.assert_array_equal(log_a["loss"].to_numpy(), log_b["loss"].to_numpy())
    assert list(log_a["stage"]) == ["spatial"] * 3 + ["single_cell"] * 3
    assert log_a["lr"].iloc[2] == pytest.approx(3e-3, rel=1e-3)  # end of warm-up ... then cosine
    assert log_a["lr"].iloc[5] == pytest.approx(1e-5, rel=1e-3)


def test_run_outputs_and_loadable_checkpoints(recipe_factory, tmp_path, tiny_dir):
    output = tmp_path / "run"
    model = pretrain(Recipe.from_dict(recipe_factory(output, checkpoint={"every": 2, "keep": 2})))
    assert {p.name for p in (output / "checkpoints").glob("step-*")} == {"step-00000004", "step-00000006"}
    checkpoint = oc.models.load(find_latest(output / "checkpoints"))
    final = oc.models.load(output / "model")
    assert final.name == "tiny-test" and final.config.d_model == 16 and final.config.dropout == pytest.approx(0.1)
    assert final.vocab == oc.models.load(tiny_dir).vocab
    for key, value in final.network.state_dict().items():
        assert torch.equal(value, checkpoint.network.state_dict()[key])
        assert torch.equal(value, model.network.state_dict()[key].cpu())
    assert "single_cell" in (output / "model" / "MODEL_CARD.md").read_text()
    # the checkpoints carry how the model reads cells: the last single-cell and the last spatial stage
    stages = recipe_factory(output)["stages"]
    single = [s for s in stages if s["kind"] == "single_cell"][-1]
    spatial = [s for s in stages if s["kind"] == "spatial"][-1]
    for folder in (output / "model", find_latest(output / "checkpoints")):
        saved = json.loads((folder / "tokenization.json").read_text())
        assert saved["single_cell"]["n_genes"] == single.get("n_genes", 2000)
        assert saved["spatial"]["n_neighbors"] == spatial["n_neighbors"]
        assert saved["spatial"]["neighbor_distance"] > 0
    assert final.tokenization.spatial.n_neighbors == spatial["n_neighbors"]
    assert json.loads((output / "recipe.json").read_text())["name"] == "tiny-test"
    # a finished output folder is not silently overwritten
    with pytest.raises(FileExistsError, match="resume"):
        pretrain(Recipe.from_dict(recipe_factory(output)))


def test_resume_with_another_recipe_is_refused(recipe_factory, tmp_path):
    output = tmp_path / "run"
    pretrain(Recipe.from_dict(recipe_factory(output)), max_steps=1)
    changed = recipe_factory(output, seed=4)
    with pytest.raises(ValueError, match="different recipe"):
        pretrain(Recipe.from_dict(changed), resume=True)


def test_yaml_and_toml_recipes(recipe_factory, tmp_path, tiny_files):
    values = recipe_factory(tmp_path / "out")
    values["stages"][1]["masking"] = {"zero": 0.2, "mask_value": -2.0}
    values["stages"][1]["files"] = [{"path": tiny_files[0].name}, tiny_files[1].name]  # relative to the recipe
    (tiny_files[0].parent / "recipe.yaml").write_text(yaml.safe_dump(values))
    recipe = read_recipe(tiny_files[0].parent / "recipe.yaml")
    assert recipe.total_steps == 6 and recipe.stage_at(3) == (1, 0)
    assert recipe.stages[0].masking.neighbor_nonzero == 0.05 and recipe.stages[0].masking.zero == 0.0
    assert recipe.stages[1].masking.zero == 0.2 and recipe.stages[1].masking.mask_value == -2.0
    assert recipe.stages[1].files[0].path == tiny_files[0]
    toml = tmp_path / "recipe.toml"
    toml.write_text(
        """name = "t"
[batch]
cells_per_step = 4
micro_batch_size = 2
[[stages]]
kind = "single_cell"
steps = 2
files = ["a.h5ad"]
"""
    )
    parsed = read_recipe(toml)
    assert parsed.stages[0].files[0].path == tmp_path / "a.h5ad"
    assert parsed.batch_shape(parsed.stages[0]) == (4, 2)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"stages": [{"kind": "bulk", "steps": 1, "files": ["a.h5ad"]}]}, "kind"),
        ({"stages": [{"kind": "spatial", "steps": 1, "files": ["a.h5ad"], "n_gene": 3}]}, "unknown key"),
        ({"optimiser": {}}, "unknown key"),
        ({"batch": {"cells_per_step": 6, "micro_batch_size": 4}}, "multiple"),
        ({"stages": []}, "non-empty"),
        ({"optimizer": {"lr": "fast"}}, r"optimizer\.lr must be a number > 0, got 'fast'"),
        ({"optimizer": {"lr": -1e-3}}, r"optimizer\.lr must be a number > 0"),
        ({"optimizer": {"lr": 1e-5, "min_lr": 1e-3}}, r"optimizer\.min_lr .* larger than optimizer\.lr"),
        ({"optimizer": {"warmup_steps": 2.5}}, r"optimizer\.warmup_steps must be an integer"),
        ({"optimizer": {"betas": [0.9]}}, r"optimizer\.betas"),
        ({"batch": {"cells_per_step": "many"}}, r"batch\.cells_per_step must be an integer"),
        ({"checkpoint": {"keep": 0}}, r"checkpoint\.keep must be an integer >= 1"),
        ({"seed": -1}, r"seed must be an integer >= 0"),
        (
            {"stages": [{"kind": "spatial", "steps": "ten", "files": ["a.h5ad"]}]},
            r"stages\[0\]\.steps must be an integer",
        ),
        ({"stages": [{"kind": "spatial", "steps": 1, "n_genes": 0, "files": ["a.h5ad"]}]}, r"stages\[0\]\.n_genes"),
        (
            {"stages": [{"kind": "spatial", "steps": 1, "files": [{"path": "a.h5ad", "coord_scale": "x"}]}]},
            r"stages\[0\]\.files\[0\]\.coord_scale",
        ),
        (
            {"stages": [{"kind": "spatial", "steps": 1, "files": ["a.h5ad"], "masking": {"nonzero": 1.5}}]},
            r"stages\[0\]\.masking\.nonzero",
        ),
        ({"stages": ["a.h5ad"]}, r"stages\[0\] must be a mapping"),
    ],
)
def test_bad_recipes(recipe_factory, tmp_path, change, message):
    values = recipe_factory(tmp_path / "out")
    values.update(change)
    with pytest.raises(ValueError, match=message):
        Recipe.from_dict(values)


def test_numbers_written_as_yaml_strings(recipe_factory, tmp_path):
    """PyYAML reads ``1e-5`` (no dot) as a string: such numbers are accepted."""
    text = yaml.safe_dump(recipe_factory(tmp_path / "out")) + "optimizer:\n  lr: 1e-3\n  min_lr: 1e-5\n"
    values = yaml.safe_load(text)
    assert values["optimizer"]["min_lr"] == "1e-5"  # what YAML gives
    recipe = Recipe.from_dict(values)
    assert recipe.optimizer.min_lr == pytest.approx(1e-5) and recipe.optimizer.lr == pytest.approx(1e-3)


def test_cli_pretrain(recipe_factory, tmp_path, capsys):
    values = recipe_factory(tmp_path / "ignored")
    values["stages"] = values["stages"][1:]
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(values))
    output = tmp_path / "cli"
    assert main(["pretrain", str(path), "--output", str(output), "--quiet", "--max-steps", "2"]) == 0
    assert main(["pretrain", str(path), "--output", str(output), "--quiet", "--resume"]) == 0
    assert "trained tiny-test" in capsys.readouterr().out
    log = pd.read_csv(output / "loss_log.csv")
    assert list(log["step"]) == [0, 1, 2] and np.isfinite(log["loss"]).all()
    assert (output / "model" / "model.safetensors").exists()
    assert main(["pretrain", str(path), "--output", str(output), "--quiet"]) == 1
    assert "earlier run" in capsys.readouterr().err
    assert main(["pretrain", str(tmp_path / "missing.yaml")]) == 1


def test_continue_pretraining_from_a_checkpoint(recipe_factory, tmp_path, tiny_dir, tiny_model):
    values = recipe_factory(tmp_path / "continued")
    values["model"] = {"init": str(tiny_dir)}
    values["stages"] = values["stages"][1:]
    model = pretrain(Recipe.from_dict(values))
    assert model.config == tiny_model.config and model.vocab == tiny_model.vocab
    changed = [
        key
        for key, value in model.network.state_dict().items()
        if not torch.equal(value, tiny_model.network.state_dict()[key])
    ]
    assert "output.W" in changed and len(changed) > 10
