"""Module boundaries that a grep can check: only the core/runfolder/ package reads the keys of run.json, scores.json
and audit.json (everyone else uses the typed `Run.record`, `Run.scores_record()`, `Run.audit_record()`), and only
core/sweeprecord.py the keys of sweep.json (`SweepRecord.state()`), so no consumer re-guesses a key or falls back
to a default of its own."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OWNER = "core/runfolder/"  # the package that owns the run folder's files
EXEMPT: tuple[str, ...] = ()  # none: every module, the card package included, reads Run.record
RAW_RUN_JSON = [
    (re.compile(r"(?<=\w)\.meta\b(?!_path)"), "Run.meta (run.json as a raw dict): read Run.record"),
    (re.compile(r"\bmeta\s*\[\s*[\"'](?:config|token|weights|property|status|kind|final_step|timings|versions|"
                r"hardware|last_checkpoint|message)[\"']"), "indexes a run.json key"),
    (re.compile(r"\.weights\s*(?:\.get\(|\[)"), "indexes run.json's weights dict: read Run.record.weights"),
    (re.compile(r"meta_path\s*\)?\s*\.(?:read_text|read_bytes|open)\b|open\([^)]*meta_path"), "reads run.json"),
    (re.compile(r"(?<![\"'])[\"']run\.json[\"'](?!\w)(?![^\n]*#\s*name only)"),
     "spells run.json's file name (Run.meta_path)"),
]


# audit.json's top-level keys that are not also config or folder names (held_out and misuse are AuditConfig fields)
RAW_AUDIT_JSON = [
    (re.compile(r"\b(?:read|write)_audit_meta\s*\("), "reads or writes audit.json raw: use Run.audit_record()"),
    (re.compile(r"""(?:\[\s*|\.get\(\s*)["'](?:thresholds|copy_rates|pairs|misuse_scores|n_audited_now)["']"""),
     "indexes an audit.json key: read Run.audit_record()"),
    (re.compile(r"audit_meta_path\s*\)?\s*\.(?:read_text|read_bytes|open)\b"), "reads audit.json"),
]
RAW_SWEEP_JSON = [
    (re.compile(r"\.trials\(\)|SweepRecord\([^)]*\)\.read\(|\brecord\.read\(\)"),
     "reads sweep.json raw: use SweepRecord.state()"),
    (re.compile(r"""(?:\[\s*|\.get\(\s*)["'](?:trials|varied|engine|fingerprint|attempts)["']"""),
     "indexes a sweep.json key: read SweepRecord.state()"),
    (re.compile(r"record_path\s*\)?\s*\.(?:read_text|read_bytes|open)\b"), "reads sweep.json"),
]
SWEEP_OWNER = "core/sweeprecord.py"


def _scan(root: Path, patterns, owners: tuple[str, ...]) -> list[str]:
    found = []
    for path in sorted(list((root / "core").rglob("*.py")) + list((root / "dashboard").rglob("*.py"))):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(owners) or rel.startswith(EXEMPT):
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0] if not line.lstrip().startswith(("\"", "'")) else line
            for pattern, why in patterns:
                if pattern.search(code):
                    found.append(f"{rel}:{n}: {why}: {line.strip()}")
    return found


def offences(root: Path) -> list[str]:
    return _scan(root, RAW_RUN_JSON, (OWNER,))


def audit_offences(root: Path) -> list[str]:
    return _scan(root, RAW_AUDIT_JSON, (OWNER,))


def sweep_offences(root: Path) -> list[str]:
    return _scan(root, RAW_SWEEP_JSON, (SWEEP_OWNER,))


def test_only_runfolder_reads_run_json_keys():
    found = offences(ROOT)
    assert not found, "\n".join(found)


def test_the_check_catches_each_pattern(tmp_path):
    (tmp_path / "core").mkdir()
    (tmp_path / "dashboard").mkdir()
    (tmp_path / "core" / "runfolder").mkdir()
    (tmp_path / "core" / "runfolder" / "layout.py").write_text("meta = run.meta\nmeta['token']\n")
    (tmp_path / "core" / "bad.py").write_text(
        "m = run.meta\n"
        "p = m.get('property')\n"
        "x = meta['config']['steps']\n"
        "s = run.weights.get('source')\n"
        "d = json.loads(run.meta_path.read_text())\n"
        "f = open(root / 'run.json')\n"
        "ok = run.meta_path.exists()\n"
        "css = '.tomcat-card .meta{font-size:.85rem}'\n"
        "def f():\n    \"\"\"run.json's hardware.devices\"\"\"\n")
    found = offences(tmp_path)
    assert [f.split(":")[1] for f in found] == ["1", "3", "4", "5", "6"], found


def test_only_runfolder_reads_audit_json_keys():
    found = audit_offences(ROOT)
    assert not found, "\n".join(found)


def test_only_sweeprecord_reads_sweep_json_keys():
    found = sweep_offences(ROOT)
    assert not found, "\n".join(found)


def test_the_audit_and_sweep_checks_catch_each_pattern(tmp_path):
    (tmp_path / "core" / "runfolder").mkdir(parents=True)
    (tmp_path / "dashboard").mkdir()
    (tmp_path / "core" / "runfolder" / "layout.py").write_text("m = run.read_audit_meta()\nm['thresholds']\n")
    (tmp_path / "core" / "sweeprecord.py").write_text("data = self.read()\ndata['trials']\n")
    (tmp_path / "core" / "bad.py").write_text(
        "m = run.read_audit_meta()\n"
        "t = m['thresholds']\n"
        "r = meta.get('copy_rates') or []\n"
        "run.write_audit_meta(m)\n"
        "d = json.loads(run.audit_meta_path.read_text())\n"
        "ok = record.thresholds and record.copy_rates\n"
        "ts = SweepRecord(runs, name).trials()\n"
        "raw = SweepRecord(runs, name).read()\n"
        "v = data.get('varied')\n"
        "e = data['engine']['ray']\n"
        "j = json.loads(rec.record_path.read_text())\n"
        "fine = state.varied\n")
    assert [f.split(":")[1] for f in audit_offences(tmp_path)] == ["1", "2", "3", "4", "5"]
    assert [f.split(":")[1] for f in sweep_offences(tmp_path)] == ["7", "8", "9", "10", "11"]


# ------------------------------------------------------------------------------------------------- budgets
MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 600


def size_offences(root: Path) -> list[str]:
    """Functions over 80 lines and modules over 600 in core/ and dashboard/ (issue 18: split by phase into named
    helpers with numbered steps instead)."""
    import ast

    found = []
    for path in sorted(list((root / "core").rglob("*.py")) + list((root / "dashboard").rglob("*.py"))):
        rel = path.relative_to(root).as_posix()
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > MAX_MODULE_LINES:
            found.append(f"{rel}: {len(text.splitlines())} lines (at most {MAX_MODULE_LINES})")
        for node in ast.walk(ast.parse(text, filename=rel)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                n = node.end_lineno - first + 1
                if n > MAX_FUNCTION_LINES:
                    found.append(f"{rel}:{node.lineno}: {node.name} is {n} lines (at most {MAX_FUNCTION_LINES})")
    return found


def test_no_function_over_80_lines_and_no_module_over_600():
    found = size_offences(ROOT)
    assert not found, "\n".join(found)


def test_the_size_check_catches_long_functions_and_modules(tmp_path):
    (tmp_path / "core").mkdir()
    (tmp_path / "dashboard").mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(79))
    (tmp_path / "core" / "ok.py").write_text(f"def fits():\n{body}\n")  # 80 lines
    (tmp_path / "core" / "long.py").write_text(f"@decorated\ndef too_long():\n{body}\n")  # 81 with its decorator
    (tmp_path / "dashboard" / "big.py").write_text("x = 1\n" * 601)
    found = size_offences(tmp_path)
    assert found == ["core/long.py:2: too_long is 81 lines (at most 80)", "dashboard/big.py: 601 lines (at most 600)"]
