//
// Embed a large AnnData in parallel: scatter `omnicell embed --shard I/N` over N tasks, gather with `omnicell merge`.
// The merged result equals the unsharded embedding (same cell order, identical float32 values on CPU).
//
include { OMNICELL_EMBED } from '../../../modules/omnicell/embed/main'
include { OMNICELL_MERGE } from '../../../modules/omnicell/merge/main'

workflow OMNICELL_EMBED_SCATTER {

    take:
    ch_h5ad     // channel: [ val(meta), path(h5ad) ]
    ch_model    // channel: path(model folder), or [] for the bundled model
    val_shards  // integer: number of shards N (1: no scatter)

    main:
    ch_versions = Channel.empty()

    // One task per shard: meta.shard = 'I/N' selects the cells, meta.id stays the sample's for the gather.
    ch_scattered = ch_h5ad.flatMap { meta, h5ad ->
        (0..<val_shards).collect { index ->
            [ meta + [ shard: "${index}/${val_shards}", shard_index: index, shard_count: val_shards ], h5ad ]
        }
    }
    OMNICELL_EMBED ( ch_scattered, ch_model )
    ch_versions = ch_versions.mix(OMNICELL_EMBED.out.versions.first())

    // Gather the N shards of each sample (groupTuple emits as soon as all N have arrived).
    ch_grouped = OMNICELL_EMBED.out.h5ad
        .map { meta, h5ad ->
            def key = meta.findAll { k, v -> !(k in [ 'shard', 'shard_index', 'shard_count' ]) }
            [ groupKey(key, meta.shard_count), meta.shard_index, h5ad ]
        }
        .groupTuple()
        .map { key, indices, files -> [ key.getGroupTarget(), files ] }
    OMNICELL_MERGE ( ch_grouped )
    ch_versions = ch_versions.mix(OMNICELL_MERGE.out.versions.first())

    emit:
    h5ad     = OMNICELL_MERGE.out.h5ad // channel: [ val(meta), path(h5ad) ]
    versions = ch_versions             // channel: [ path(versions.yml) ]
}
