"""`dataset: official_split`, the dataset's own split: its checks and the inputs of `mtt split`
(functions only, as the linter wants; every other dataset's inputs come from common.smk)."""


def build_split_inputs(wildcards):
    """Files `mtt split` reads: with an official split, its folder (+ the MTAT annotations);
    split_options turns each into its `--official-split`, `--metadata`, `--tag-list` option."""
    dataset = config["dataset"]
    if "official_split" not in dataset:
        return split_inputs(wildcards)
    files = {"official_split": dataset["official_split"]}
    for key in ("metadata", "tag_list"):
        if key in dataset:
            files[key] = dataset[key]
    return files


def check_official_split():
    """What the schema cannot say in one clear line, at plan time."""
    dataset = config["dataset"]
    if "official_split" not in dataset:
        return
    if dataset["format"] not in ("mtg-jamendo", "mtat"):
        raise WorkflowError("Invalid configuration at dataset > official_split: it is for "
                            f"format mtg-jamendo or mtat, not {dataset['format']}")
    if "min_positives" in dataset:
        raise WorkflowError("Invalid configuration at dataset > min_positives: it is for our "
                            "split, not an official_split")


check_official_split()
