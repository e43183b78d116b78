"""Module boundaries that a grep can check: only the core/runfolder/ package reads run.json's keys (everyone else
uses the typed `Run.record`), so no consumer re-guesses a key or falls back to a default of its own."""

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


def offences(root: Path) -> list[str]:
    found = []
    for path in sorted(list((root / "core").rglob("*.py")) + list((root / "dashboard").rglob("*.py"))):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(OWNER) or rel.startswith(EXEMPT):
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0] if not line.lstrip().startswith(("\"", "'")) else line
            for pattern, why in RAW_RUN_JSON:
                if pattern.search(code):
                    found.append(f"{rel}:{n}: {why}: {line.strip()}")
    return found


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
