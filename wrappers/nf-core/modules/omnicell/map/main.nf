process OMNICELL_MAP {
    tag "$meta.id"
    label 'process_medium'

    conda "${moduleDir}/environment.yml"
    container "${ workflow.containerEngine in ['singularity', 'apptainer'] && !task.ext.singularity_pull_docker_container ?
        'https://depot.galaxyproject.org/singularity/omnicell:0.1.0--pyhdfd78af_0' :
        'quay.io/biocontainers/omnicell:0.1.0--pyhdfd78af_0' }"

    input:
    tuple val(meta), path(h5ad)
    tuple val(meta2), path(reference)
    val(label_key)

    output:
    tuple val(meta), path("${prefix}.${suffix}"), emit: h5ad
    tuple val(meta), path("${prefix}.tsv")        , emit: tsv
    tuple val("${task.process}"), val('omnicell'), eval("omnicell --version | sed 's/^omnicell //'"), emit: versions_omnicell, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    prefix = task.ext.prefix ?: "${meta.id}"
    suffix = h5ad.extension
    if ("${h5ad}" == "${prefix}.${suffix}") error "Input and output names are the same, set prefix in module configuration to disambiguate!"
    """
    # matplotlib and numba write caches: in the task folder, writable whatever user the container runs as
    export MPLCONFIGDIR=./tmp/mpl NUMBA_CACHE_DIR=./tmp/numba

    omnicell map \\
        ${h5ad} \\
        -o ${prefix}.${suffix} \\
        --reference ${reference} \\
        --label-key ${label_key} \\
        --table ${prefix}.tsv \\
        --threads ${task.cpus} \\
        ${args}
    """

    stub:
    prefix = task.ext.prefix ?: "${meta.id}"
    suffix = h5ad.extension
    """
    touch ${prefix}.${suffix}
    touch ${prefix}.tsv
    """
}
