"""The last stage: `mtt summarize` (`summarize`: summary.tsv, the paper's comparison.tsv with
paired intervals) and `mtt plots` (`plots`: the report's figures)."""
