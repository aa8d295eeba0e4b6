# Training jobs resume from last.ckpt (not a declared output, so a failed or killed job leaves
# it), e.g. after a SLURM time limit or a killed Snakemake; --fresh-unless-interrupted makes them
# start over when rerun after a finished training, or on other inputs or settings.

# Every enabled entry of `teachers`, whatever its family.
rule train_teacher:
    wildcard_constraints:
        teacher=one_of(PLAN.supervised_models()),
    input:
        train=f"{RESULTS}/split/train.tsv",
        valid=f"{RESULTS}/split/valid.tsv",
        tags=f"{RESULTS}/split/tags.txt",
        mels=mel_shards("train", "valid"),
    output:
        best=f"{RESULTS}/models/{{teacher}}/best.ckpt",
        history=f"{RESULTS}/models/{{teacher}}/history.csv",
    params:
        out=lambda wildcards, output: str(Path(output.best).parent),
        options=teacher_train_options,
        device=config["device"],
        precision=config["precision"],
        command=train_command(),
        threads=config["resources"]["train"]["threads"],
    log:
        log_path("train_teacher", "{teacher}"),
    benchmark:
        benchmark_path("train_teacher", "{teacher}")
    threads: train_threads()
    priority: 1  # before the demo's unlabeled audio (the students need both)
    resources:
        **stage_resources("train", gpu=True),
    retries: config["retries"]
    conda:
        "../../envs/mtt.yaml"
    shell:
        "{params.command:q} --fresh-unless-interrupted --threads {params.threads:q}"
        " --train {input.train:q} --valid {input.valid:q} --tags {input.tags:q} --mels {input.mels:q}"
        " --out {params.out:q} {params.options:q} --device {params.device:q}"
        " --precision {params.precision:q} > {log:q} 2>&1"


rule pseudo_label:
    input:
        checkpoint=f"{RESULTS}/models/{{teacher}}/best.ckpt",
        mels=f"{RESULTS}/mels/student/{{scatteritem}}.h5",
    output:
        f"{RESULTS}/pseudo_labels/{{teacher}}/{{scatteritem}}.h5",
    params:
        chunks=config["pseudo_label"]["chunks"],
        batch_size=config["pseudo_label"]["batch_size"],
        device=config["device"],
        precision=config["precision"],
    log:
        log_path("pseudo_label", "{teacher}/{scatteritem}"),
    benchmark:
        benchmark_path("pseudo_label", "{teacher}/{scatteritem}")
    threads: config["resources"]["pseudo_label"]["threads"]
    resources:
        **stage_resources("pseudo_label", gpu=True),
    retries: config["retries"]
    conda:
        "../../envs/mtt.yaml"
    shell:
        "python -m mtt.cli pseudo-label --threads {threads} --checkpoint {input.checkpoint:q}"
        " --mels {input.mels:q} --out {output:q} --chunks {params.chunks}"
        " --batch-size {params.batch_size:q}"
        " --device {params.device:q} --precision {params.precision:q} > {log:q} 2>&1"


# A student's label_blend: its teacher's predictions for the labeled training songs, one job per
# training shard (planned only for a student whose label_blend is above 0).
use rule pseudo_label as pseudo_label_train with:
    input:
        checkpoint=f"{RESULTS}/models/{{teacher}}/best.ckpt",
        mels=f"{RESULTS}/mels/train/{{scatteritem}}.h5",
    output:
        f"{RESULTS}/labeled_pseudo_labels/{{teacher}}/{{scatteritem}}.h5",
    log:
        log_path("pseudo_label_train", "{teacher}/{scatteritem}"),
    benchmark:
        benchmark_path("pseudo_label_train", "{teacher}/{scatteritem}")


rule train_student:
    input:
        train=f"{RESULTS}/split/train.tsv",
        valid=f"{RESULTS}/split/valid.tsv",
        tags=f"{RESULTS}/split/tags.txt",
        mels=mel_shards("train", "valid"),
        unlabeled=mel_shards("student"),
        pseudo_labels=lambda wildcards: pseudo_label_shards(PLAN.teacher_of(wildcards.student)),
        teacher_checkpoint=teacher_checkpoint,  # only for the options that read them
        labeled_pseudo_labels=labeled_pseudo_labels,
    output:
        best=f"{RESULTS}/models/{{student}}/best.ckpt",
        history=f"{RESULTS}/models/{{student}}/history.csv",
    params:
        out=lambda wildcards, output: str(Path(output.best).parent),
        options=student_train_options,
        device=config["device"],
        precision=config["precision"],
        command=train_command(),
        threads=config["resources"]["train"]["threads"],
    log:
        log_path("train_student", "{student}"),
    benchmark:
        benchmark_path("train_student", "{student}")
    threads: train_threads()
    resources:
        **stage_resources("train", gpu=True),
    retries: config["retries"]
    conda:
        "../../envs/mtt.yaml"
    shell:
        "{params.command:q} --fresh-unless-interrupted --threads {params.threads:q}"
        " --train {input.train:q} --valid {input.valid:q} --tags {input.tags:q} --mels {input.mels:q}"
        " --unlabeled-mels {input.unlabeled:q} --pseudo-labels {input.pseudo_labels:q}"
        " --out {params.out:q} {params.options:q} --device {params.device:q}"
        " --precision {params.precision:q} > {log:q} 2>&1"
