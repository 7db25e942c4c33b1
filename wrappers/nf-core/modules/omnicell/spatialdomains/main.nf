process OMNICELL_SPATIALDOMAINS {
    tag "$meta.id"
    label 'process_medium'

    conda "${moduleDir}/environment.yml"
    container "${ workflow.containerEngine == 'singularity' && !task.ext.singularity_pull_docker_container ?
        'docker://ghcr.io/omnicell/omnicell:0.1.0' :
        'ghcr.io/omnicell/omnicell:0.1.0' }"

    input:
    tuple val(meta), path(h5ad)

    output:
    tuple val(meta), path("${prefix}.${suffix}"), emit: h5ad
    path "versions.yml"                        , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    prefix = task.ext.prefix ?: "${meta.id}"
    suffix = h5ad.extension
    if ("${h5ad}" == "${prefix}.${suffix}") error "Input and output names are the same, set prefix in module configuration to disambiguate!"
    """
    omnicell spatial-domains \\
        ${h5ad} \\
        -o ${prefix}.${suffix} \\
        --threads ${task.cpus} \\
        ${args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        omnicell: \$(omnicell --version | sed 's/^omnicell //')
    END_VERSIONS
    """

    stub:
    prefix = task.ext.prefix ?: "${meta.id}"
    suffix = h5ad.extension
    """
    touch ${prefix}.${suffix}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        omnicell: \$(omnicell --version | sed 's/^omnicell //')
    END_VERSIONS
    """
}
