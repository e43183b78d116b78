"""The run folder: the one package that knows where every file of an experiment lives and how it is written.

A run is a plain folder anyone can open (layout after MLflow's file store). Everything else in the project
(training, generation, scoring, the dashboard, the model card) reads and writes through `Run`; nothing else
builds paths into it. Writes are atomic (temp file + rename); metric and index logs are append-only CSV (JSONL
for logs of JSON objects), appended under a lock, with a torn last line cut off, never merged.

    core/runfolder/
      __init__.py   this reference; re-exports every public name (`from core.runfolder import Run, ...`)
      layout.py     `Run`: each file read and written, the record, the writer lock, `Run.stage`, staleness
      paths.py      `RunPaths`: where each file lives, containment, name rules, CSV columns, reports_dir & co.
      records.py    run.json's typed record: RunRecord (TokenInfo, WeightsProvenance, Timings), JsonFields
      stage_records.py  scores.json's ScoresRecord and audit.json's AuditRecord (each parses and writes its file)
      fileio.py     atomic writes, locked CSV/JSONL appends, torn-line repair, sha256_file
      lock.py       the writer lock (flock; one writing command per run)
      embedding.py  reading and validating a checkpoint's safetensors embedding

    RUN/
      run.json                     metadata: schema, status, full resolved config, weights provenance,
                                   token(s), timings, package versions, hardware (see `Run.record`)
      metrics.csv                  step,loss,lr,seconds           one line per optimisation step, append-only
      dataset.csv                  file,sha256,bytes,width,height,license,source,author   training images
      embeddings/step-NNNNNN.safetensors   {token: float32[n_vectors, 768]}; step 0 is the initializer
      checkpoints/step-NNNNNN.npz  optimizer state + step for --resume (embedding lives in embeddings/)
      neighbors.csv                step,vector,rank,token,token_id,cosine,distance_from_init  (token explorer)
      images/step-NNNNNN/*.png     generated images (PNG text chunks hold their full provenance)
      images.csv                   one row per generated image (IMAGE_COLUMNS), append-only
      grids/*.png                  labelled prompt x seed and checkpoint x seed grids
      scores.csv                   one row per scored image (SCORE_COLUMNS)
      scores.json                  CLIP model + provenance, baselines (reference ceiling), summaries, the
                                   checkpoint advice drawn from them (core.advice)
      audit.csv                    one row per audited image (AUDIT_COLUMNS): nearest training image per measure
      audit.json                   copy-audit thresholds with their calibration, copy rates, misuse transfer
      audit/pairs/*.png            the closest generated/training pairs side by side (written by `audit`)
      review/annotations.jsonl     reviewers' flags on images, checkpoints or the run, and retractions (JSONL,
                                   append-only, locked; core.review.records says what a line holds)
      review/findings.jsonl        the review's findings and their updates (JSONL, append-only, locked)
      card.yaml                    model-card overrides the user fills (owner, intended use, ethics checklist)
      .writer.lock                 held (flock) by the one command writing the run; holds its pid + command
      logs/<command>.log           tracebacks of failed commands (the terminal shows one line unless --debug)

Every path read from a run goes through `Run.resolve_inside` (no file outside the run, or its declared
references folder, is ever read through a run); one writer at a time holds `Run.writer(command)`. Every writing
command runs as `with run.stage(command, hint=...) as record:`: run.json validated first, the writer lock held,
an unexpected failure saved in logs/<command>.log and reported in one line (train, which owns the run's status,
passes owns_status=True: the run then ends `failed` or `interrupted`, never `running`).

`weights.source` in run.json is "kerascv", "local" or "random"; a "random" run is a pipeline check and
every consumer must label it so (`Run.record.is_pipeline_check`).

Typed records own both directions: each JSON file is validated once, here, where it is read (`parse`), and
written only through its record (`RunRecord.new` / `Run.create`, `Run.update(**typed fields)`, `to_json`,
`Run.write_record`); consumers use the records, never the JSON keys (tests/test_boundaries.py enforces it for
run.json, scores.json, audit.json and sweep.json). A missing or damaged key is a one-line UserError naming the
file and the key. Keys older versions did not write get the value stated in the record's docstring.

    Run.record          -> RunRecord: name, kind (train/import), status, property, token (TokenInfo: placeholder,
                           initializer, vectors, tokens), weights (WeightsProvenance: source, files, is_pipeline_check,
                           describe()), config (the saved dict) and resolution, weights_arg, weights_seed,
                           allow_unverified, mixed_precision, steps (budget), final_step, last_checkpoint,
                           timings (Timings), versions, hardware, message, created, updated, source_file, pid,
                           heartbeat.
                           Read once per `Run` instance; `Run.reload()` reads again; `Run.update` keeps it current.
    Run.final_step()    -> the one rule for the final step: recorded when finished, else the last checkpoint.
    Run.scores_record() -> ScoresRecord (scores.json): clip provenance and label, pipeline-check flag and reasons,
                           n_boot, references, baselines, the summaries `score` computed (by_step / by_prompt,
                           also as DataFrames), the checkpoint `advice`, `inputs` (sha256 of images.csv and
                           scores.csv), and issue 21's measures (token_similarity + provenance, identity,
                           identity_labels with the zero-shot settings, leakage, memorisation, protocol, provenance
                           per measure; docs/identity.md).
    Run.audit_record()  -> AuditRecord (audit.json): thresholds with their calibration, copy_rates, pairs, misuse,
                           references / held_out (n_references, n_held_out), final_copy, inputs.
    Run.scores_stale()  -> None, or "stale: ... rerun `python -m core score ...`" when scoring did not finish or
                           those inputs changed (`Run.audit_stale()` the same for audit.json: one rule,
                           `Run.inputs_stale`).
    pipeline_check_reasons(record, clip) -> why a result is a pipeline check (score, audit, compare share it).
    core.compare.read_comparison(folder) -> ComparisonRecord (a folder written by `compare`), with stale_reason().
`Run.meta` (the raw dict) and `read_/write_scores_meta`, `read_/write_audit_meta` (plain JSON, for test fixtures)
are for this package and tests only.

Where report folders live (one place): `reports_dir(runs_dir)` = RUNS_DIR/reports; `comparison_dir(a, b)` =
RUNS_DIR/reports/A-vs-B; `card_dir(run)` = RUNS_DIR/reports/RUN.
"""

from core.runfolder.embedding import MAX_EMBEDDING_BYTES, read_step_embedding, validate_step_embedding
from core.runfolder.fileio import (
    append_csv,
    append_jsonl,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    one_line,
    read_csv_rows,
    read_document,
    read_json,
    read_jsonl,
    sha256_file,
    write_csv,
)
from core.runfolder.layout import Run, changed_inputs, counterpart_run, list_runs
from core.runfolder.lock import lock_holder, writer_lock
from core.runfolder.paths import (
    AUDIT_COLUMNS,
    IMAGE_COLUMNS,
    MANIFEST_COLUMNS,
    MAX_NAME_CHARS,
    METRIC_COLUMNS,
    NEIGHBOR_COLUMNS,
    SCORE_COLUMNS,
    RunPaths,
    card_dir,
    check_run_name,
    check_runs_dir,
    comparison_dir,
    reports_dir,
)
from core.runfolder.records import (
    KINDS,
    PIPELINE_CHECK_LABEL,
    PROPERTIES,
    REAL_WEIGHT_SOURCES,
    SCHEMA_VERSION,
    STATUSES,
    CheckpointInfo,
    JsonFields,
    RunRecord,
    Timings,
    TokenInfo,
    WeightsProvenance,
)
from core.runfolder.stage_records import (
    AUDIT_SCHEMA,
    SCORES_SCHEMA,
    SUMMARY_KEYS,
    AuditRecord,
    ScoresRecord,
    StageHeader,
    pipeline_check_reasons,
)

__all__ = [
    "AUDIT_SCHEMA", "SCORES_SCHEMA", "AuditRecord", "StageHeader", "pipeline_check_reasons", "RunPaths",
    "AUDIT_COLUMNS", "IMAGE_COLUMNS", "KINDS", "MANIFEST_COLUMNS", "MAX_EMBEDDING_BYTES", "MAX_NAME_CHARS",
    "METRIC_COLUMNS", "NEIGHBOR_COLUMNS", "PIPELINE_CHECK_LABEL", "PROPERTIES", "REAL_WEIGHT_SOURCES",
    "SCHEMA_VERSION", "SCORE_COLUMNS", "STATUSES", "SUMMARY_KEYS", "JsonFields", "Run", "RunRecord", "ScoresRecord",
    "Timings", "TokenInfo", "WeightsProvenance", "CheckpointInfo", "append_csv", "append_jsonl", "atomic_write_bytes",
    "atomic_write_json", "atomic_write_text", "card_dir", "changed_inputs", "check_run_name", "check_runs_dir",
    "comparison_dir", "counterpart_run", "list_runs", "lock_holder", "one_line", "read_csv_rows", "read_jsonl",
    "read_step_embedding", "read_document", "read_json", "reports_dir", "sha256_file", "validate_step_embedding",
    "write_csv", "writer_lock",
]
