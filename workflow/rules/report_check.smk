"""`snakemake --report` reports the results folder of the config it is given: a warning when
that is not the run the user means (functions only, as the linter wants)."""
import json
import sys


def split_differences(report_json):
    """Settings of the split in `report_json` that differ from this config's, as text."""
    try:
        recorded = json.loads(Path(report_json).read_text())
    except (OSError, ValueError):
        return []  # not readable: the report itself will say what is missing
    recorded_format = DEMO_SPLIT["format"] if DEMO else config["dataset"]["format"]
    expected = {"format": recorded_format, **config["split"]}
    differences = [f"{key} {recorded[key]} (this config: {value})"
                   for key, value in expected.items() if key in recorded and recorded[key] != value]
    official = config["dataset"].get("official_split")
    if recorded.get("official_split") != (None if official is None else str(official)):
        differences.append(f"official_split {recorded.get('official_split')} (this config: "
                           f"{official})")
    return differences


def warn_if_reporting_another_run():
    """`snakemake --report` reports the results folder of the config it is given (config.yaml
    unless --configfile says otherwise): say so when that folder holds no finished run or one
    split otherwise, or when other runs lie beside it."""
    if not any(arg.startswith("--report") for arg in sys.argv):
        return
    ours = Path(RESULTS)
    others = sorted(
        str(found.parents[1])
        for pattern in ("*/split/report.json", "*/*/split/report.json")
        for found in Path().glob(pattern)
        if found.parents[1].resolve() != ours.resolve()
    )
    differences = []
    if (ours / "split" / "report.json").exists():
        differences = split_differences(ours / "split" / "report.json")
    if differences:
        message = f"the run in {RESULTS}/ was split with {', '.join(differences)}"
    elif (ours / "evaluation" / "summary.tsv").exists():
        if not others:
            return
        message = f"reporting the run in {RESULTS}/ (dataset {config['dataset']['format']})"
    else:
        message = f"{RESULTS}/, the results folder of this config, holds no finished run"
    if others:
        message += (f"; runs found in {', '.join(others)}: for the report of one, give the config"
                    " it ran with, snakemake --report report.html --configfile <that config>")
    print(f"Warning: {message}", file=sys.stderr)


warn_if_reporting_another_run()
