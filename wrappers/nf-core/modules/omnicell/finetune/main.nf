process OMNICELL_FINETUNE {
    tag "$meta.id"
    label 'process_medium'

    conda "${moduleDir}/environment.yml"
    container "${ workflow.containerEngine in ['singularity', 'apptainer'] && !task.ext.singularity_pull_docker_container ?
        (task.accelerator ?
            'docker://quay.io/omnicell/omnicell:0.1.0-cuda' :
            'https://depot.galaxyproject.org/singularity/omnicell:0.1.0--pyhdfd78af_0') :
        (task.accelerator ?
            'quay.io/omnicell/omnicell:0.1.0-cuda' :
            'quay.io/biocontainers/omnicell:0.1.0--pyhdfd78af_0') }"

    input:
    tuple val(meta), path(h5ad)
    path(model)

    output:
    tuple val(meta), path("${prefix}")             , emit: model
    tuple val(meta), path("${prefix}.loss_log.csv"), emit: log
    tuple val("${task.process}"), val('omnicell'), eval("omnicell --version | sed 's/^omnicell //'"), emit: versions_omnicell, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    prefix = task.ext.prefix ?: "${meta.id}"
    def model_arg = model ? "--model ${model}" : ''
    def device = task.accelerator ? 'auto' : 'cpu'
    if ("${model}" == "${prefix}") error "The base model's folder and the output have the same name, set prefix in module configuration to disambiguate!"
    """
    # matplotlib and numba write caches: in the task folder, writable whatever user the container runs as
    export MPLCONFIGDIR=./tmp/mpl NUMBA_CACHE_DIR=./tmp/numba

    omnicell fine-tune \\
        ${h5ad} \\
        -o ${prefix} \\
        ${model_arg} \\
        --device ${device} \\
        --log ${prefix}.loss_log.csv \\
        --threads ${task.cpus} \\
        ${args}
    """

    stub:
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    mkdir ${prefix}
    touch ${prefix}/config.json ${prefix}/model.safetensors ${prefix}/vocab.json ${prefix}/MODEL_CARD.md
    touch ${prefix}.loss_log.csv
    """
}
