process OMNICELL_INDEX {
    tag "$meta.id"
    label 'process_medium'

    conda "${moduleDir}/environment.yml"
    container "${ workflow.containerEngine in ['singularity', 'apptainer'] && !task.ext.singularity_pull_docker_container ?
        'https://depot.galaxyproject.org/singularity/omnicell:0.1.0--pyhdfd78af_0' :
        'quay.io/biocontainers/omnicell:0.1.0--pyhdfd78af_0' }"

    input:
    tuple val(meta), path(h5ad)

    output:
    tuple val(meta), path("${prefix}"), emit: index
    tuple val("${task.process}"), val('omnicell'), eval("omnicell --version | sed 's/^omnicell //'"), emit: versions_omnicell, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    prefix = task.ext.prefix ?: "${meta.id}_index"
    if ("${h5ad}" == "${prefix}") error "Input and output names are the same, set prefix in module configuration to disambiguate!"
    """
    # matplotlib and numba write caches: in the task folder, writable whatever user the container runs as;
    # the approximate index builds with numba's threads, as many as the task's CPUs
    export MPLCONFIGDIR=./tmp/mpl NUMBA_CACHE_DIR=./tmp/numba NUMBA_NUM_THREADS=${task.cpus}

    omnicell index \\
        ${h5ad} \\
        -o ${prefix} \\
        ${args}
    """

    stub:
    prefix = task.ext.prefix ?: "${meta.id}_index"
    """
    mkdir ${prefix}
    touch ${prefix}/manifest.json ${prefix}/embeddings.npy ${prefix}/obs.h5ad
    """
}
