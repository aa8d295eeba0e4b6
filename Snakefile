"""Semi-supervised music tagging: CALS split, Music Tagging Transformer teacher, noisy students.

    snakemake --cores all                          # everything, on the embedded demo data
    snakemake --cores all --configfile config/msd.yaml
    snakemake --profile slurm             # GPU stages as SLURM jobs
    snakemake --cores all --forcerun train_teacher # retrain the teachers and what depends on them
    snakemake --report report.html                 # HTML report of a finished run: give
                                                   # the --configfile it ran with

See docs/WORKFLOW.md.
"""
import shlex
import sys

from snakemake.utils import min_version

min_version("9.0")


# the project's defaults (the demo), also when Snakemake runs in another --directory;
# --configfile FILE replaces any of them
configfile: f"{workflow.basedir}/config.yaml"


report: "workflow/report/workflow.rst"


# Every stage runs `python -m mtt.cli`; the project's sources come first on the path, so the same
# commands work in the project's virtual environment and in the conda env (--sdm conda).
# The folder is quoted for the shell (and its braces doubled for Snakemake's formatting), so a
# project path with spaces or quotes stays one word.
shell.prefix("set -euo pipefail; export PYTHONPATH="
             + shlex.quote(f"{workflow.basedir}/src").replace("{", "{{").replace("}", "}}")
             + "${{PYTHONPATH:+:$PYTHONPATH}}; ")


# The config is read and checked by mtt.config (standard library and PyYAML only), from this
# project's sources, whether or not mtt is installed.
sys.path.insert(0, f"{workflow.basedir}/src")


include: "workflow/rules/common.smk"


scattergather:
    **config["preprocess"]["shards"],


wildcard_constraints:
    split="|".join(SPLITS),
    teacher="[a-z0-9_]+",
    student=one_of(PLAN.student_models()),
    model=r"[a-z0-9_]+",
    scatteritem=r"[0-9]+-of-[0-9]+",


include: "workflow/rules/data.smk"
include: "workflow/rules/training.smk"
include: "workflow/rules/evaluation.smk"
include: "workflow/rules/report_check.smk"


localrules:
    all,
    summarize,
    report,


rule all:
    default_target: True
    input:
        rules.summarize.output,
        rules.report.output,
