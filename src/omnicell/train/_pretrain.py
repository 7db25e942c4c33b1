"""``pretrain``: run a recipe (curriculum of stages) alone or under ``torchrun``, resumably."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from omnicell._core.settings import settings
from omnicell.data import Vocabulary
from omnicell.nn import OmniCell, OmniCellConfig
from omnicell.train._build_vocab import build_vocabulary
from omnicell.train._distributed import DistributedContext, init_distributed
from omnicell.train._loop import LossLog, StepPosition, train_loop
from omnicell.train._masking import MaskedBatch, MaskingConfig, mask_batch
from omnicell.train._recipe import Recipe, StageSpec, read_recipe
from omnicell.train._stream import CellStream, close_training_cells, open_h5ad_source, open_training_cells
from omnicell.train._trainer import StepResult, Trainer
from omnicell.train._training_state import (
    find_latest,
    get_rng_state,
    load_training_state,
    prune_checkpoints,
    save_checkpoint,
    set_rng_state,
    weights_sha256,
)

__all__ = ["pretrain", "step_batches"]

logger = logging.getLogger("omnicell")


def step_batches(
    stream: CellStream,
    masking: MaskingConfig,
    *,
    seed: int,
    stage_index: int,
    stage_step: int,
    cells_per_step: int,
    micro_batch_size: int,
    rank: int = 0,
    world_size: int = 1,
) -> tuple[list[MaskedBatch], list[int], int]:
    """Masked micro-batches of one global batch that fall to process ``rank``.

    The global batch of step ``stage_step`` is stream positions ``stage_step * cells_per_step`` onward;
    micro-batch ``j`` (``micro_batch_size`` consecutive cells) belongs to process ``j % world_size``
    and is masked with a generator seeded by ``(seed, stage_index, stage_step, j)``. Returns the
    micro-batches, their ids ``j`` and the number of micro-batches in the global batch.
    """
    n_micro = cells_per_step // micro_batch_size
    if n_micro % world_size:
        raise ValueError(
            f"cells_per_step / micro_batch_size = {n_micro} micro-batches per step cannot be shared evenly by "
            f"{world_size} processes; make it a multiple of the number of processes."
        )
    pairs = stream.take(stage_step * cells_per_step, cells_per_step)
    ids = list(range(rank, n_micro, world_size))
    batches = []
    for j in ids:
        batch = stream.batch(pairs[j * micro_batch_size : (j + 1) * micro_batch_size])
        rng = np.random.default_rng([seed, stage_index, stage_step, j])
        batches.append(mask_batch(batch, masking, rng))
    return batches, ids, n_micro


def pretrain(
    recipe: Recipe | str | os.PathLike,
    *,
    output: str | os.PathLike | None = None,
    resume: bool | str | os.PathLike = False,
    max_steps: int | None = None,
):
    """Run a pretraining recipe; the entry point of ``omnicell pretrain`` (also under ``torchrun``).

    Parameters
    ----------
    recipe
        A :class:`Recipe` or the path of a YAML/TOML recipe file.
    output
        Output folder, overriding the recipe's.
    resume
        True: continue from the newest checkpoint in ``OUTPUT/checkpoints`` (start afresh if there
        is none). A path: continue from that checkpoint. The result is bit-identical to a run that
        was never interrupted (on the same hardware and number of processes).
    max_steps
        Stop after this many optimiser steps in all (counted from the start of the run, not of
        this call) and write a checkpoint, e.g. to split a run across jobs.

    Returns
    -------
    The trained :class:`~omnicell.models.OmniCellModel`. Writes into the output folder

    ``loss_log.csv``
        One row per step: stage, learning rate, total/regression/load-balance loss, adaptive
        weight, gradient norm, masked positions, sequences, tokens, seconds and throughput.
    ``checkpoints/step-NNNNNNNN/``
        Model in omnicell's format plus ``training_state.pt`` (optimiser, scheduler, RNG states,
        data position); ``checkpoints/latest`` names the newest.
    ``model/``
        The final model in omnicell's format (when the last step was reached).
    ``vocab.json``, ``recipe.json``
        The vocabulary and the parsed recipe.
    """
    if not isinstance(recipe, Recipe):
        recipe = read_recipe(recipe)
    if output is not None:
        recipe = dataclasses.replace(recipe, output=Path(output))
    context = init_distributed(recipe.device)
    try:
        return _Run(recipe, context).run(resume=resume, max_steps=max_steps)
    finally:
        context.close()


def _fingerprint(recipe: Recipe) -> dict[str, Any]:
    """What must not change between a run and its resumption."""
    return {
        "seed": recipe.seed,
        "stages": [
            [s.name, s.kind, [str(f.path) + (f" [{f.obs_filter}]" if f.obs_filter else "") for f in s.files],
             s.steps, s.n_genes, s.strategy, s.n_neighbors, list(recipe.batch_shape(s)), dataclasses.asdict(s.masking)]
            for s in recipe.stages
        ],
        "optimizer": dataclasses.asdict(recipe.optimizer),
    }  # fmt: skip


class _Run:
    def __init__(self, recipe: Recipe, context: DistributedContext) -> None:
        self.recipe = recipe
        self.context = context
        self.output = Path(recipe.output)
        self.checkpoints = self.output / "checkpoints"
        self.stream: CellStream | None = None
        self.stream_stage = -1

    # ------------------------------------------------------------------ set-up
    def tokenization(self):
        """How the trained model reads cells: the recipe's last single-cell and last spatial stage.

        ``neighbor_distance`` is measured on the spatial training files, after their ``coord_scale``
        (written to every checkpoint as ``tokenization.json``; ``oc.pp.tokenize`` uses it).
        """
        if getattr(self, "_tokenization", None) is not None:
            return self._tokenization
        from omnicell.data import (
            ModelTokenization,
            SingleCellTokenization,
            SpatialTokenization,
            median_neighbor_distance,
        )

        single = [stage for stage in self.recipe.stages if not stage.spatial]
        spatial = [stage for stage in self.recipe.stages if stage.spatial]
        last = single[-1] if single else spatial[-1]
        spatial_section = None
        if spatial:
            stage = spatial[-1]
            distances = []
            for spec in stage.files:
                # The same reader as training: a backed h5ad or a SOMA experiment (only obs/obsm are read).
                data = open_training_cells(spec, spatial=True)
                try:
                    coordinates = np.asarray(data.obsm[spec.spatial_key], dtype=np.float64)[:, :2] * spec.coord_scale
                    libraries = (
                        data.obs[spec.library_key].astype(str).to_numpy()
                        if spec.library_key is not None and spec.library_key in data.obs
                        else None
                    )
                finally:
                    close_training_cells(data)
                distance = median_neighbor_distance(coordinates, libraries=libraries)
                if distance:
                    distances.append(distance)
            spatial_section = SpatialTokenization(
                strategy=stage.strategy, n_genes=int(stage.n_genes), n_neighbors=int(stage.n_neighbors),
                neighbor_distance=round(float(np.median(distances)), 6) if distances else None,
            )  # fmt: skip
        self._tokenization = ModelTokenization(
            single_cell=SingleCellTokenization(strategy=last.strategy, n_genes=int(last.n_genes)),
            spatial=spatial_section,
        )
        return self._tokenization

    def _initial_model(self):
        from omnicell.models import OmniCellModel, load

        section = self.recipe.model
        if section.init is not None:
            base = load(section.init, device="cpu")
            if section.config:
                logger.warning("pretrain: model.config is ignored when model.init is given (%s).", section.init)
            network, vocab = base.network, base.vocab
            network.train()
        else:
            if section.vocabulary in (None, "data"):
                files = [f for stage in self.recipe.stages for f in stage.files]
                vocab = build_vocabulary(files, min_cells=section.vocabulary_min_cells, species=section.species)
            else:
                vocab = Vocabulary.from_json(section.vocabulary)
            values = dict(section.config)
            needed = vocab.max_token_id + 1
            if int(values.get("num_gene", needed)) < needed:
                raise ValueError(
                    f"model.config.num_gene ({values['num_gene']}) is smaller than the vocabulary ({needed})."
                )
            values["num_gene"] = max(int(values.get("num_gene", needed)), needed)
            config = OmniCellConfig.from_dict(values)
            torch.manual_seed(self.recipe.seed)
            network = OmniCell(config, attention_backend=settings.attention_backend)
            if section.init_std is not None:
                network.initialize_weights(float(section.init_std))
        return OmniCellModel(
            network,
            vocab,
            name=self.recipe.name,
            sha256=weights_sha256(network),
            source="pretrain",
            tokenization=self.tokenization(),
        )

    def _stream_for(self, stage_index: int, model) -> CellStream:
        if self.stream_stage != stage_index:
            if self.stream is not None:
                self.stream.close()
            stage: StageSpec = self.recipe.stages[stage_index]
            sources = [
                open_h5ad_source(
                    spec, model, spatial=stage.spatial, n_genes=stage.n_genes, strategy=stage.strategy,
                    n_neighbors=stage.n_neighbors, layer=spec.layer, use_raw=spec.use_raw, gene_key=spec.gene_key,
                    species=spec.species, spatial_key=spec.spatial_key, library_key=spec.library_key,
                    coord_scale=spec.coord_scale,
                )
                for spec in stage.files
            ]  # fmt: skip
            self.stream = CellStream(
                sources,
                seed=int(np.random.SeedSequence([self.recipe.seed, stage_index]).generate_state(1)[0]),
                chunk_size=self.recipe.chunk_size,
                window_chunks=self.recipe.window_chunks,
            )
            self.stream_stage = stage_index
            logger.info("pretrain: stage %r: %d files, %d cells", stage.name, len(sources), self.stream.n_cells)
        return self.stream

    def _batches(self, step: int, model):
        stage_index, stage_step = self.recipe.stage_at(step)
        stage = self.recipe.stages[stage_index]
        cells, micro = self.recipe.batch_shape(stage)
        stream = self._stream_for(stage_index, model)
        return step_batches(
            stream, stage.masking, seed=self.recipe.seed, stage_index=stage_index, stage_step=stage_step,
            cells_per_step=cells, micro_batch_size=micro, rank=self.context.rank, world_size=self.context.world_size,
        )  # fmt: skip

    def _locate(self, step: int) -> StepPosition:
        stage_index, stage_step = self.recipe.stage_at(step)
        stage = self.recipe.stages[stage_index]
        cells, _ = self.recipe.batch_shape(stage)
        # The stage's stream exists once the step's batches were built (train_loop calls this after).
        n_cells = self.stream.n_cells if self.stream is not None and self.stream_stage == stage_index else 0
        return StepPosition(step, stage.name, stage_index, stage_step, (stage_step * cells) / max(n_cells, 1))

    # ------------------------------------------------------------------ run
    def run(self, *, resume: bool | str | os.PathLike, max_steps: int | None):
        from omnicell.models import OmniCellModel, load

        recipe, context = self.recipe, self.context
        state = None
        folder = None
        if resume is not False and resume is not None:
            folder = find_latest(self.checkpoints) if resume is True else Path(resume)
            if folder is None:
                logger.warning("pretrain: no checkpoint in %s; starting from the beginning.", self.checkpoints)
        elif find_latest(self.checkpoints) is not None:
            raise FileExistsError(
                f"{self.checkpoints} holds checkpoints of an earlier run; resume it (--resume / resume=True) or "
                "choose another output folder."
            )
        if folder is not None:
            state = load_training_state(folder)
            if state["fingerprint"] != json.loads(json.dumps(_fingerprint(recipe))):
                raise ValueError(
                    f"checkpoint {folder} was written by a run with a different recipe (seed, stages, batches or "
                    "optimiser); resume it with the recipe it was started with."
                )
            if int(state["world_size"]) != context.world_size:
                logger.warning(
                    "pretrain: resuming a %d-process run on %d processes; results equal the uninterrupted run up to "
                    "floating-point summation order.", int(state["world_size"]), context.world_size,
                )  # fmt: skip
            loaded = load(folder, device="cpu")
            model = OmniCellModel(
                loaded.network,
                loaded.vocab,
                name=recipe.name,
                sha256=loaded.sha256,
                source="pretrain",
                tokenization=self.tokenization(),
            )
            model.network.train()
        else:
            model = self._initial_model()
        total = recipe.total_steps
        end = total if max_steps is None else max(0, min(total, int(max_steps)))
        trainer = Trainer(
            model.network, recipe.optimizer, total_steps=total, context=context, precision=recipe.precision
        )
        start = 0
        if state is not None:
            trainer.load_state_dict(state["trainer"])
            set_rng_state(state["rng"])
            start = int(state["step"])
        if context.is_main:
            self.output.mkdir(parents=True, exist_ok=True)
            model.vocab.to_json(self.output / "vocab.json")
            (self.output / "recipe.json").write_text(
                json.dumps(recipe.source, indent=2, default=str) + "\n", encoding="utf-8"
            )
        log = LossLog(self.output / "loss_log.csv", keep_before=start) if context.is_main else None
        model.network.checkpoint_activations = recipe.activation_checkpointing
        last: StepResult | None = None

        def after_step(position: StepPosition, result: StepResult) -> None:
            nonlocal last
            last = result
            done = position.step + 1
            stage_end = position.stage_step + 1 == recipe.stages[position.stage_index].steps
            periodic = recipe.checkpoint_every > 0 and done % recipe.checkpoint_every == 0
            if periodic or stage_end or done == end:
                self._checkpoint(model, trainer, done, result)

        try:
            train_loop(
                trainer, start=start, end=end, seed=recipe.seed, locate=self._locate,
                batches=lambda step: self._batches(step, model), log=log, after_step=after_step,
                prefetch=recipe.prefetch, description=recipe.name, progress=context.is_main,
            )  # fmt: skip
        finally:
            if log is not None:
                log.close()
            if self.stream is not None:
                self.stream.close()
        model.network.eval()
        if end == total and context.is_main:
            final = OmniCellModel(
                model.network, model.vocab, name=recipe.name, sha256=weights_sha256(model.network),
                source=f"omnicell pretrain ({total} steps)", tokenization=self.tokenization(),
            )  # fmt: skip
            final.save(self.output / "model", overwrite=True, card=_card(recipe, total, last))
        context.barrier()
        return OmniCellModel(
            model.network,
            model.vocab,
            name=recipe.name,
            sha256=weights_sha256(model.network),
            source=str(self.output),
            tokenization=self.tokenization(),
        )

    def _checkpoint(self, model, trainer: Trainer, done: int, last: StepResult | None) -> None:
        from omnicell.models import OmniCellModel

        if self.context.is_main:
            stage_index, stage_step = self.recipe.stage_at(done - 1)
            state = {
                "step": done,
                "stage": stage_index,
                "stage_step": stage_step + 1,
                "trainer": trainer.state_dict(),
                "rng": get_rng_state(),
                "fingerprint": json.loads(json.dumps(_fingerprint(self.recipe))),
                "world_size": self.context.world_size,
                "recipe": json.loads(json.dumps(self.recipe.source, default=str)),
            }
            snapshot = OmniCellModel(
                model.network, model.vocab, name=self.recipe.name, sha256=weights_sha256(model.network),
                source=f"omnicell pretrain, step {done}", tokenization=self.tokenization(),
            )  # fmt: skip
            save_checkpoint(self.checkpoints / f"step-{done:08d}", snapshot, state, card=_card(self.recipe, done, last))
            prune_checkpoints(self.checkpoints, self.recipe.keep_checkpoints)
        self.context.barrier()


def _card(recipe: Recipe, step: int, last: StepResult | None) -> str:
    lines = [f"Trained by `omnicell pretrain` (recipe {recipe.name!r}), {step} of {recipe.total_steps} steps."]
    for stage in recipe.stages:
        cells, _ = recipe.batch_shape(stage)
        lines.append(
            f"- stage {stage.name} ({stage.kind}): {stage.steps} steps x {cells} cells, {stage.n_genes} genes per "
            f"cell ({stage.strategy}), {len(stage.files)} file(s)"
        )
    if last is not None:
        lines.append(
            f"- last step: loss {last.loss:.4f}, regression (Huber) {last.mlm:.4f}, load balance {last.balance:.4f}"
        )
    return "\n".join(lines)
