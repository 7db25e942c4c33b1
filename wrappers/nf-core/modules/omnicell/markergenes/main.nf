process OMNICELL_MARKERGENES {
    tag "$meta.id"
    label 'process_gpu'

    conda "${moduleDir}/environment.yml"
    container "${ workflow.containerEngine == 'singularity' && !task.ext.singularity_pull_docker_container ?
        'docker://ghcr.io/omnicell/omnicell:0.1.0' :
        'ghcr.io/omnicell/omnicell:0.1.0' }"

    input:
    tuple val(meta), path(h5ad)
    path(model)
    val(groupby)

    output:
    tuple val(meta), path("${prefix}.${suffix}"), emit: h5ad
    tuple val(meta), path("${prefix}.tsv")        , emit: tsv
    path "versions.yml"                        , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    prefix = task.ext.prefix ?: "${meta.id}"
    suffix = h5ad.extension
    def model_arg = model ? "--model ${model}" : ''
    def device = task.accelerator ? 'cuda' : 'cpu'
    if ("${h5ad}" == "${prefix}.${suffix}") error "Input and output names are the same, set prefix in module configuration to disambiguate!"
    """
    omnicell marker-genes \\
        ${h5ad} \\
        -o ${prefix}.${suffix} \\
        --groupby ${groupby} \\
        ${model_arg} \\
        --device ${device} \\
        --table ${prefix}.tsv \\
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
    touch ${prefix}.tsv

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        omnicell: \$(omnicell --version | sed 's/^omnicell //')
    END_VERSIONS
    """
}
