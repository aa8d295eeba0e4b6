rule demo_data:
    output:
        # one folder: audio/, track_metadata.db, lastfm_tags.db, tags.txt (the MSD layout)
        directory(f"{RESULTS}/data/demo"),
    params:
        size=cli_options(
            {
                key.removeprefix("demo_"): value
                for key, value in config["dataset"].items()
                if key in ("demo_size", "demo_seed", "demo_songs", "demo_seconds")
            }
        ),
    log:
        log_path("demo_data"),
    benchmark:
        benchmark_path("demo_data")
    threads: config["resources"]["demo_data"]["threads"]
    resources:
        **stage_resources("demo_data"),
    retries: config["retries"]
    conda:
        "../../envs/mtt.yaml"
    shell:
        "python -m mtt.cli demo-data --out {output} {params.size} --workers {threads}"
        " > {log} 2>&1"


rule build_splits:
    input:
        unpack(build_split_inputs),
    output:
        **{split: f"{RESULTS}/split/{split}.tsv" for split in SPLITS},
        tags=f"{RESULTS}/split/tags.txt",
        report=f"{RESULTS}/split/report.json",
    params:
        # the dataset's options and the vocabulary's (when given: a run without them is not
        # redone for a change of its command)
        dataset=lambda wildcards, input: " ".join(
            [split_options(wildcards, input)]
            + [
                cli_options({key: value})
                for key, value in config["dataset"].items()
                if key in ("top_tags", "min_positives")
            ]
        ),
        out=lambda wildcards, output: Path(output.tags).parent,
        fractions=" ".join(str(f) for f in config["split"]["fractions"]),
        seed=config["split"]["seed"],
        exclude_artists=config["split"]["exclude_artists"],
    log:
        log_path("build_splits"),
    benchmark:
        benchmark_path("build_splits")
    threads: config["resources"]["build_splits"]["threads"]
    resources:
        **stage_resources("build_splits"),
    retries: config["retries"]
    conda:
        "../../envs/mtt.yaml"
    shell:
        "python -m mtt.cli split {params.dataset} --out {params.out}"
        " --fractions {params.fractions} --seed {params.seed}"
        " --exclude-artists {params.exclude_artists} > {log} 2>&1"


rule preprocess_mel:
    input:
        unpack(audio_inputs),
        tracks=f"{RESULTS}/split/{{split}}.tsv",
    output:
        mels=f"{RESULTS}/mels/{{split}}/{{scatteritem}}.h5",
        failures=f"{RESULTS}/mels/{{split}}/{{scatteritem}}.failed.tsv",
    params:
        audio_root=audio_root,
        shard_index=shard_index,
        num_shards=lambda wildcards: int(wildcards.scatteritem.split("-of-")[1]),
        min_seconds=cli_options(
            {k: v for k, v in config["preprocess"].items() if k == "min_seconds"}
        ),
    log:
        log_path("preprocess_mel", "{split}/{scatteritem}"),
    benchmark:
        benchmark_path("preprocess_mel", "{split}/{scatteritem}")
    threads: config["resources"]["preprocess_mel"]["threads"]
    resources:
        **stage_resources("preprocess_mel"),
    retries: config["retries"]
    conda:
        "../../envs/mtt.yaml"
    shell:
        "OMP_NUM_THREADS={threads} python -m mtt.cli preprocess --audio-root {params.audio_root}"
        " --tracks {input.tracks} --out {output.mels} --failures {output.failures}"
        " --shard-index {params.shard_index} --num-shards {params.num_shards}"
        " --workers {threads} {params.min_seconds} > {log} 2>&1"
