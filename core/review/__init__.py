"""The human review of a run: reviewers' flags and findings, stored in the run folder, added up with confidence
intervals and agreement, and carried into the dashboard, the model card and a one-file review pack.

    records.py    the lines of RUN/review/annotations.jsonl and findings.jsonl (parse + to_json, field checks)
    store.py      ReviewStore(run): state() folds the history; add_flag / add_finding / update_finding / retract
    agreement.py  Cohen's and Fleiss' kappa with n
    summary.py    summarize(run) -> ReviewSummary: flags per checkpoint and category with Wilson 95% CIs
    cli.py        python -m core review RUN ...
    pack.py       python -m core review-pack RUN [--compare RUN2] --out FILE.html (pack_html.py renders it)

Nothing here imports TensorFlow, keras or torch: the dashboard writes flags through this package in review mode.
Reference: docs/review.md.
"""
