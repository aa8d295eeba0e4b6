rule demo_data:
    output:
        # one folder: audio/, track_metadata.db, lastfm_tags.db, tags.txt (the MSD layout)
        directory(f"{RESULTS}/data/demo"),
    params:
        size=cli_options(
            {
                key.removeprefix("demo_"): value
                for key, value in config["dataset"].items()
                if key in {option.name for option in FORMATS["demo"].options}
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
        "python -m mtt.cli demo-data --out {output:q} {params.size:q} --part labeled"
        " --workers {threads} > {log:q} 2>&1"


# The unlabeled songs' audio, rendered on one core while the teacher trains on the other: only
# the student set's preprocessing reads it (its folder links the labeled songs' files too).
rule demo_unlabeled_audio:
    input:
        demo_dir(),
    output:
        directory(demo_rest_dir()),
    log:
        log_path("demo_unlabeled_audio"),
    benchmark:
        benchmark_path("demo_unlabeled_audio")
    threads: 1
    resources:
        **stage_resources("demo_data"),
    retries: config["retries"]
    conda:
        "../../envs/mtt.yaml"
    shell:
        "python -m mtt.cli demo-data --rest-of {input:q} --out {output:q} --workers {threads}"
        " > {log:q} 2>&1"


rule build_splits:
    input:
        unpack(split_inputs),
    output:
        **{split: f"{RESULTS}/split/{split}.tsv" for split in SPLITS},
        tags=f"{RESULTS}/split/tags.txt",
        report=f"{RESULTS}/split/report.json",
    params:
        # the dataset's options and the vocabulary's (when given: a run without them is not
        # redone for a change of its command); functions of the config only (see split_options)
        dataset=split_options,
        out=lambda wildcards, output: str(Path(output.tags).parent),
        fractions=[str(f) for f in config["split"]["fractions"]],
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
        "python -m mtt.cli split {params.dataset:q} --out {params.out:q}"
        " --fractions {params.fractions:q} --seed {params.seed:q}"
        " --exclude-artists {params.exclude_artists:q} > {log:q} 2>&1"


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
    priority: 1  # before the demo's unlabeled audio, so the teacher starts as early as it can
    resources:
        **stage_resources("preprocess_mel"),
    retries: config["retries"]
    conda:
        "../../envs/mtt.yaml"
    shell:
        "OMP_NUM_THREADS={threads} python -m mtt.cli preprocess --audio-root {params.audio_root:q}"
        " --tracks {input.tracks:q} --out {output.mels:q} --failures {output.failures:q}"
        " --shard-index {params.shard_index:q} --num-shards {params.num_shards:q}"
        " --workers {threads} {params.min_seconds:q} > {log:q} 2>&1"
