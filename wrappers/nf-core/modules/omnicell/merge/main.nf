process OMNICELL_MERGE {
    tag "$meta.id"
    label 'process_medium'

    conda "${moduleDir}/environment.yml"
    container "${ workflow.containerEngine == 'singularity' && !task.ext.singularity_pull_docker_container ?
        'docker://ghcr.io/omnicell/omnicell:0.1.0' :
        'ghcr.io/omnicell/omnicell:0.1.0' }"

    input:
    tuple val(meta), path(shards, stageAs: 'shards/*')

    output:
    tuple val(meta), path("${prefix}.h5ad"), emit: h5ad
    path "versions.yml"                   , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    omnicell merge \\
        ${shards} \\
        -o ${prefix}.h5ad \\
        --threads ${task.cpus} \\
        ${args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        omnicell: \$(omnicell --version | sed 's/^omnicell //')
    END_VERSIONS
    """

    stub:
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    touch ${prefix}.h5ad

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        omnicell: \$(omnicell --version | sed 's/^omnicell //')
    END_VERSIONS
    """
}
