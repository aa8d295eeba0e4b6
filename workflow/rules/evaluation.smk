rule evaluate:
    input:
        checkpoint=f"{RESULTS}/models/{{model}}/best.ckpt",
        tracks=f"{RESULTS}/split/test.tsv",
        tags=f"{RESULTS}/split/tags.txt",
        mels=mel_shards("test"),
    output:
        metrics=f"{RESULTS}/evaluation/{{model}}/metrics.json",
        per_tag=f"{RESULTS}/evaluation/{{model}}/per_tag.tsv",
        predictions=f"{RESULTS}/evaluation/{{model}}/predictions.h5",
    params:
        out=lambda wildcards, output: Path(output.metrics).parent,
        song=(
            "--whole-song"
            if config["evaluate"]["whole_song"]
            else f"--chunks {config['evaluate']['chunks']}"
        ),
        bootstrap=config["evaluate"]["bootstrap"],
        device=config["device"],
        precision=config["precision"],
    log:
        log_path("evaluate", "{model}"),
    benchmark:
        benchmark_path("evaluate", "{model}")
    threads: config["resources"]["evaluate"]["threads"]
    resources:
        **stage_resources("evaluate", gpu=True),
    retries: config["retries"]
    conda:
        "../../envs/mtt.yaml"
    shell:
        "python -m mtt.cli evaluate --threads {threads} --checkpoint {input.checkpoint}"
        " --tracks {input.tracks} --tags {input.tags} --mels {input.mels} --out {params.out}"
        " {params.song} --bootstrap {params.bootstrap} --device {params.device} --precision {params.precision} > {log} 2>&1"


rule summarize:
    input:
        evaluations=expand(f"{RESULTS}/evaluation/{{model}}/metrics.json", model=all_models()),
        histories=expand(f"{RESULTS}/models/{{model}}/history.csv", model=all_models()),
        checkpoints=expand(f"{RESULTS}/models/{{model}}/best.ckpt", model=all_models()),
        predictions=expand(
            f"{RESULTS}/evaluation/{{model}}/predictions.h5", model=all_models()
        ),
    output:
        summary=report(
            f"{RESULTS}/evaluation/summary.tsv",
            caption="../report/summary.rst",
            category="Results",
            labels={"table": "all models (TSV)"},
        ),
        summary_html=report(
            f"{RESULTS}/evaluation/summary.html",
            caption="../report/summary.rst",
            category="Results",
            labels={"table": "all models"},
        ),
        comparison=report(
            f"{RESULTS}/evaluation/comparison.tsv",
            caption="../report/comparison.rst",
            category="Results",
            labels={"table": "supervised vs noisy student"},
        ),
    params:
        bootstrap=config["evaluate"]["bootstrap"],
    log:
        log_path("summarize"),
    benchmark:
        benchmark_path("summarize")
    threads: config["resources"]["report"]["threads"]
    resources:
        **stage_resources("report"),
    conda:
        "../../envs/mtt.yaml"
    shell:
        "python -m mtt.cli summarize --metrics {input.evaluations} --histories {input.histories}"
        " --checkpoints {input.checkpoints} --predictions {input.predictions}"
        " --bootstrap {params.bootstrap} --out {output.summary} --comparison {output.comparison}"
        " --html {output.summary_html} > {log} 2>&1"


PLOTS = {
    "per_tag_roc_auc": "Per-tag ROC-AUC",
    "per_tag_pr_auc": "Per-tag PR-AUC",
    "pr_curves": "PR curves",
    "training_curves": "Training curves",
    "split_statistics": "Split statistics",
}


rule report:
    input:
        per_tag=expand(f"{RESULTS}/evaluation/{{model}}/per_tag.tsv", model=all_models()),
        predictions=expand(
            f"{RESULTS}/evaluation/{{model}}/predictions.h5", model=all_models()
        ),
        histories=expand(f"{RESULTS}/models/{{model}}/history.csv", model=all_models()),
        splits=expand(f"{RESULTS}/split/{{split}}.tsv", split=SPLITS),
        tags=f"{RESULTS}/split/tags.txt",
    output:
        **{
            name: report(
                f"{RESULTS}/report/{name}.png",
                caption=f"../report/{name}.rst",
                category="Figures",
                labels={"figure": title},
            )
            for name, title in PLOTS.items()
        },
    params:
        split_dir=lambda wildcards, input: Path(input.tags).parent,
        out=lambda wildcards, output: Path(output.pr_curves).parent,
    log:
        log_path("report"),
    benchmark:
        benchmark_path("report")
    threads: config["resources"]["report"]["threads"]
    resources:
        **stage_resources("report"),
    conda:
        "../../envs/mtt.yaml"
    shell:
        "python -m mtt.cli plots --per-tag {input.per_tag} --predictions {input.predictions}"
        " --histories {input.histories} --split-dir {params.split_dir} --out-dir {params.out}"
        " > {log} 2>&1"
