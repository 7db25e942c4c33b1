process OMNICELL_FINETUNE {
    tag "$meta.id"
    label 'process_gpu'

    conda "${moduleDir}/environment.yml"
    container "${ workflow.containerEngine == 'singularity' && !task.ext.singularity_pull_docker_container ?
        'docker://ghcr.io/omnicell/omnicell:0.1.0' :
        'ghcr.io/omnicell/omnicell:0.1.0' }"

    input:
    tuple val(meta), path(h5ad)
    path(model)

    output:
    tuple val(meta), path("${prefix}")             , emit: model
    tuple val(meta), path("${prefix}.loss_log.csv"), emit: log
    path "versions.yml"                            , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    prefix = task.ext.prefix ?: "${meta.id}"
    def model_arg = model ? "--model ${model}" : ''
    def device = task.accelerator ? 'cuda' : 'cpu'
    if ("${model}" == "${prefix}") error "The base model's folder and the output have the same name, set prefix in module configuration to disambiguate!"
    """
    omnicell fine-tune \\
        ${h5ad} \\
        -o ${prefix} \\
        ${model_arg} \\
        --device ${device} \\
        --log ${prefix}.loss_log.csv \\
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
    mkdir ${prefix}
    touch ${prefix}/config.json ${prefix}/model.safetensors ${prefix}/vocab.json ${prefix}/MODEL_CARD.md
    touch ${prefix}.loss_log.csv

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        omnicell: \$(omnicell --version | sed 's/^omnicell //')
    END_VERSIONS
    """
}
