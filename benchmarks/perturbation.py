"""In-silico perturbation with the bundled omnicell-tiny on pbmc68k_reduced: speed, marker checks, calibration.

Sections (all on CPU by default, from the repository root)::

    python benchmarks/perturbation.py                      # speed: perturbations per second
    python benchmarks/perturbation.py --markers            # + marker knockout / overexpression vs the null
    python benchmarks/perturbation.py --calibration        # + uniformity of random-gene p-values

*Speed.* ``oc.tl.perturb_genes`` knocks one gene out of ``--cells`` cells with ``--n-null`` null draws. The
forward passes are counted (sequences through the network): the unperturbed cells are encoded once
(``1 + 4`` passes each: the embedding and 4 decoding folds) and each state (the perturbation and every
null draw) re-encodes only the cells whose input it changes. Printed: wall time, sequences run against
those a tool re-encoding every cell for every state would run, the share of cells re-encoded per state,
sequences per second of a plain ``oc.tl.embed_cells`` pass over the same cells, and cell perturbations
(cells x states) per second.

*Markers* (the issue's checks). Each ``bulk_labels`` type's top 5 markers among the tokenised genes
(``sc.tl.rank_genes_groups``, Wilcoxon, on log-normalised counts) are knocked out of up to ``--per-type``
cells of the type; the mean increase of the cells' cosine distance to their type's centroid
(``X_omnicell``) is compared with the same for ``--draws`` level-matched random gene sets (the tool's null
draws). A type passes when the markers move its cells further than every random set. Then the markers of
type B are overexpressed in cells of type A (each type A with the next type as B): a pair passes when its
cells move closer to B's centroid than with every random set.

*Calibration.* ``--repeats`` knockouts of random level-matched genes; the p-values of all decoded genes,
with the fraction below 0.05 and a Kolmogorov-Smirnov test against uniform.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or os.curdir) != _here] + [_here]
sys.path.insert(0, os.path.join(os.path.dirname(_here), "src"))

import numpy as np

MODEL = "omnicell-tiny"


class PassCounter:
    """Counts the sequences every forward pass of a plan runs (wraps ``InferencePlan.forward``)."""

    def __init__(self) -> None:
        from omnicell._engine.plan import InferencePlan

        self.sequences = 0
        self.plan_class = InferencePlan
        self.original = InferencePlan.forward
        counter = self

        def forward(plan, tensors, **kwargs):
            counter.sequences += int(tensors["tokens"].shape[0])
            return counter.original(plan, tensors, **kwargs)

        InferencePlan.forward = forward

    def close(self) -> None:
        self.plan_class.forward = self.original


def _data():
    import omnicell as oc

    adata = oc.datasets.pbmc68k_reduced()
    oc.pp.tokenize(adata, MODEL)
    return adata


def speed(args) -> None:
    import omnicell as oc

    adata = _data()
    cells = np.arange(0, adata.n_obs, max(1, adata.n_obs // args.cells))[: args.cells]
    subset = adata[cells].copy()
    started = time.perf_counter()
    oc.tl.embed_cells(subset, MODEL, device=args.device, batch_size=args.batch_size)
    embed_seconds = time.perf_counter() - started
    genes = np.asarray(adata.uns["omnicell"]["tokenize"]["genes"]).astype(str)
    values = oc.get.token_batch(adata, cells, MODEL).values[:, 1:-1]
    expressed = (values > 0).mean(0)
    gene = genes[np.argmin(np.abs(expressed - args.expressed))]
    counter = PassCounter()
    try:
        started = time.perf_counter()
        oc.tl.perturb_genes(adata, gene, cells=adata.obs_names[cells], n_null=args.n_null, model=MODEL,
                            device=args.device, batch_size=args.batch_size)  # fmt: skip
        seconds = time.perf_counter() - started
    finally:
        counter.close()
    states = 1 + args.n_null
    folds = 1 + 4
    unperturbed = len(cells) * folds
    re_encoded = (counter.sequences - unperturbed) / folds
    naive = len(cells) * folds * (1 + states)
    print(f"perturb_genes: knockout of {gene} (expressed in {expressed[list(genes).index(gene)]:.0%} of the cells), "
          f"{len(cells)} cells, {args.n_null} null draws, batch {args.batch_size}, device {args.device}")  # fmt: skip
    print(f"  wall time {seconds:.1f} s; {counter.sequences} sequences through the network")
    print(f"  unperturbed pass: {unperturbed} sequences, run once for all {states} states")
    print(f"  re-encoded: {re_encoded / (states * len(cells)):.1%} of the cells per state on average")
    print(
        f"  re-encoding every cell for every state would run {naive} sequences: {naive / counter.sequences:.1f}x more"
    )
    print(f"  embed_cells on the same cells: {len(cells) / embed_seconds:.0f} sequences/s")
    print(f"  network throughput here: {counter.sequences / seconds:.0f} sequences/s")
    print(f"  cell perturbations (cells x states): {len(cells) * states / seconds:.1f}/s; "
          f"{seconds / states:.2f} s per state vs {embed_seconds:.2f} s to embed the cells once")  # fmt: skip


def _markers(adata, n_genes: int) -> dict[str, list[str]]:
    import scanpy as sc

    lognorm = adata.copy()
    sc.pp.normalize_total(lognorm, target_sum=1e4)
    sc.pp.log1p(lognorm)
    sc.tl.rank_genes_groups(lognorm, "cell_type", method="wilcoxon")
    table = sc.get.rank_genes_groups_df(lognorm, None)
    tokenised = set(np.asarray(adata.uns["omnicell"]["tokenize"]["genes"]).astype(str))
    table = table[table["names"].isin(tokenised) & (table["logfoldchanges"] > 0)]
    return {group: list(part["names"][:n_genes]) for group, part in table.groupby("group", observed=True)}


def _distance(embedding, centroid):
    unit = embedding / np.linalg.norm(embedding, axis=1, keepdims=True)
    return 1 - unit @ (centroid / np.linalg.norm(centroid))


def markers(args) -> None:
    import omnicell as oc
    from omnicell._engine.perturb import level_matched_draws

    adata = _data()
    oc.tl.embed_cells(adata, MODEL, device=args.device)
    genes = np.asarray(adata.uns["omnicell"]["tokenize"]["genes"]).astype(str)
    values = oc.get.token_batch(adata, None, MODEL).values[:, 1:-1]
    top = _markers(adata, 5)
    types = [t for t in adata.obs["cell_type"].cat.categories if t in top]
    rng = np.random.default_rng(args.seed)

    def moved(gene_set, cells, centroid, mode):
        oc.tl.perturb_genes(adata, list(gene_set), cells=adata.obs_names[cells], mode=mode, n_null=2, model=MODEL,
                            device=args.device, batch_size=args.batch_size)  # fmt: skip
        return float((_distance(adata.obsm["omnicell_perturb"][cells], centroid)
                      - _distance(adata.obsm["X_omnicell"][cells], centroid)).mean())  # fmt: skip

    def null_sets(gene_set, cells):
        targets = np.flatnonzero(np.isin(genes, gene_set))
        return [genes[d] for d in level_matched_draws(values[cells].mean(0), targets, args.draws, rng)]

    passed = 0
    print(f"knockout of each type's top 5 markers in up to {args.per_type} cells; {args.draws} random sets each")
    for group in types:
        members = (adata.obs["cell_type"] == group).to_numpy()
        cells = np.flatnonzero(members)[: args.per_type]
        centroid = adata.obsm["X_omnicell"][members].mean(0)
        observed = moved(top[group], cells, centroid, "knockout")
        null = [moved(s, cells, centroid, "knockout") for s in null_sets(top[group], cells)]
        ok = observed > max(null)
        passed += ok
        print(f"  {group:30s} markers {observed:+.4f}  null mean {np.mean(null):+.4f} max {max(null):+.4f}  "
              f"{'away' if ok else 'NOT further than the null'}")  # fmt: skip
    print(f"  types moved away from their centroid more than every random set: {passed} of {len(types)}")
    passed = 0
    print("overexpression of type B's top 5 markers in cells of type A")
    for a, b in zip(types, types[1:] + types[:1], strict=True):
        cells = np.flatnonzero((adata.obs["cell_type"] == a).to_numpy())[: args.per_type]
        centroid = adata.obsm["X_omnicell"][(adata.obs["cell_type"] == b).to_numpy()].mean(0)
        observed = moved(top[b], cells, centroid, "overexpress")
        null = [moved(s, cells, centroid, "overexpress") for s in null_sets(top[b], cells)]
        ok = observed < min(null)
        passed += ok
        print(f"  {a:30s} -> {b:30s} markers {observed:+.4f}  null mean {np.mean(null):+.4f} min {min(null):+.4f}  "
              f"{'toward' if ok else 'NOT closer than the null'}")  # fmt: skip
    print(f"  pairs moved toward B more than every random set: {passed} of {len(types)}")


def calibration(args) -> None:
    from scipy import stats

    import omnicell as oc
    from omnicell._engine.perturb import level_matched_draws

    adata = _data()
    genes = np.asarray(adata.uns["omnicell"]["tokenize"]["genes"]).astype(str)
    values = oc.get.token_batch(adata, None, MODEL).values[:, 1:-1]
    rng = np.random.default_rng(args.seed)
    pvals, shift_pvals = [], []
    for repeat in range(args.repeats):
        cells = np.sort(rng.choice(adata.n_obs, args.cells_per_repeat, replace=False))
        levels = values[cells].mean(0)
        common = np.argsort(levels)[-60:]
        chosen = level_matched_draws(levels, rng.choice(common, 2, replace=False), 1, rng)[0]
        oc.tl.perturb_genes(adata, list(genes[chosen]), cells=adata.obs_names[cells], n_null=args.n_null, model=MODEL,
                            device=args.device, batch_size=args.batch_size, random_state=repeat)  # fmt: skip
        effects = adata.uns["omnicell_perturb"]["effects"]
        pvals.append(effects.loc[~effects["perturbed"], "pval"].to_numpy())
        shift_pvals.append(float(adata.uns["omnicell_perturb"]["shift"]["pval"].iloc[0]))
    pooled = np.concatenate(pvals)
    per_repeat = np.array([(p < 0.05).mean() for p in pvals])
    print(f"random-gene knockouts: {args.repeats} repeats x {args.cells_per_repeat} cells, {args.n_null} null draws")
    print(f"  gene p-values: {len(pooled)}; below 0.05: {(pooled < 0.05).mean():.3f} (per repeat: "
          f"{per_repeat.mean():.3f} +- {per_repeat.std(ddof=1):.3f}); median {np.median(pooled):.3f}; "
          f"KS vs uniform D = {stats.kstest(pooled, 'uniform').statistic:.3f}")  # fmt: skip
    print(f"  embedding-shift p-values: below 0.05 in {np.mean(np.array(shift_pvals) < 0.05):.2f} of the repeats; "
          f"KS p = {stats.kstest(shift_pvals, 'uniform').pvalue:.3f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--cells", type=int, default=100, help="cells perturbed in the speed section")
    parser.add_argument("--n-null", type=int, default=10)
    parser.add_argument("--expressed", type=float, default=0.3, help="share of the cells expressing the gene")
    parser.add_argument("--markers", action="store_true", help="run the marker checks")
    parser.add_argument("--per-type", type=int, default=20)
    parser.add_argument("--draws", type=int, default=5, help="random gene sets per marker check")
    parser.add_argument("--calibration", action="store_true", help="run the calibration check")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--cells-per-repeat", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    import torch

    import omnicell as oc

    if args.threads:
        torch.set_num_threads(args.threads)
    oc.settings.progress_bar = False
    print(f"omnicell {oc.__version__} from {os.path.dirname(oc.__file__)}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; python {' '.join(sys.argv)}")  # fmt: skip
    speed(args)
    if args.markers:
        markers(args)
    if args.calibration:
        calibration(args)


if __name__ == "__main__":
    main()
