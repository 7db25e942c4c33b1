//
// Embed AnnData files in parallel: scatter `omnicell embed --shard I/N` over N tasks, gather with `omnicell merge`.
// The merged result equals the unsharded embedding (same cell order, identical float32 values on CPU).
//
include { OMNICELL_EMBED } from '../../../modules/nf-core/omnicell/embed/main'
include { OMNICELL_MERGE } from '../../../modules/nf-core/omnicell/merge/main'

workflow H5AD_EMBED_OMNICELL {

    take:
    ch_h5ad     // channel: [ val(meta), path(h5ad) ]
    ch_model    // value channel: path(model folder), or [] for the bundled model
    val_shards  // integer: number of shards N per file (1: no scatter)

    main:
    // One task per shard: the shard index and count are module inputs, meta stays the sample's for the gather.
    ch_scattered = ch_h5ad.flatMap { meta, h5ad ->
        (0..<val_shards).collect { index -> [ meta, h5ad, index, val_shards ] }
    }
    OMNICELL_EMBED ( ch_scattered, ch_model )

    // Gather the N shards of each file (groupKey: groupTuple emits as soon as all N have arrived).
    // omnicell merge puts the shards back in order from their provenance, whatever order they arrive in.
    ch_grouped = OMNICELL_EMBED.out.h5ad
        .map { meta, h5ad -> [ groupKey(meta, val_shards), h5ad ] }
        .groupTuple()
        .map { key, files -> [ key.getGroupTarget(), files ] }
    OMNICELL_MERGE ( ch_grouped )

    emit:
    h5ad = OMNICELL_MERGE.out.h5ad // channel: [ val(meta), path(h5ad) ]
    // software versions: the modules' `versions` topic channel (channel.topic('versions'))
}
