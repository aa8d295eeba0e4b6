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
        out=lambda wildcards, output: str(Path(output.metrics).parent),
        song=(
            ["--whole-song"]
            if config["evaluate"]["whole_song"]
            else ["--chunks", str(config["evaluate"]["chunks"])]
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
        "python -m mtt.cli evaluate --threads {threads} --checkpoint {input.checkpoint:q}"
        " --tracks {input.tracks:q} --tags {input.tags:q} --mels {input.mels:q} --out {params.out:q}"
        " {params.song:q} --bootstrap {params.bootstrap:q} --device {params.device:q}"
        " --precision {params.precision:q} > {log:q} 2>&1"


rule summarize:
    input:
        evaluations=expand(f"{RESULTS}/evaluation/{{model}}/metrics.json", model=PLAN.all_models()),
        histories=expand(f"{RESULTS}/models/{{model}}/history.csv", model=PLAN.all_models()),
        checkpoints=expand(f"{RESULTS}/models/{{model}}/best.ckpt", model=PLAN.all_models()),
        predictions=expand(
            f"{RESULTS}/evaluation/{{model}}/predictions.h5", model=PLAN.all_models()
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
        models=model_descriptions(),
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
        "python -m mtt.cli summarize --metrics {input.evaluations:q} --histories {input.histories:q}"
        " --checkpoints {input.checkpoints:q} --predictions {input.predictions:q}"
        " --models {params.models:q} --bootstrap {params.bootstrap:q} --out {output.summary:q}"
        " --comparison {output.comparison:q}"
        " --html {output.summary_html:q} > {log:q} 2>&1"


PLOTS = {
    "per_tag_roc_auc": "Per-tag ROC-AUC",
    "per_tag_pr_auc": "Per-tag PR-AUC",
    "pr_curves": "PR curves",
    "training_curves": "Training curves",
    "split_statistics": "Split statistics",
}


rule report:
    input:
        per_tag=expand(f"{RESULTS}/evaluation/{{model}}/per_tag.tsv", model=PLAN.all_models()),
        predictions=expand(
            f"{RESULTS}/evaluation/{{model}}/predictions.h5", model=PLAN.all_models()
        ),
        histories=expand(f"{RESULTS}/models/{{model}}/history.csv", model=PLAN.all_models()),
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
        split_dir=lambda wildcards, input: str(Path(input.tags).parent),
        out=lambda wildcards, output: str(Path(output.pr_curves).parent),
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
        "python -m mtt.cli plots --per-tag {input.per_tag:q} --predictions {input.predictions:q}"
        " --histories {input.histories:q} --split-dir {params.split_dir:q} --out-dir {params.out:q}"
        " > {log:q} 2>&1"
