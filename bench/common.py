"""Helpers shared by the benchmarks."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def git(*args: str) -> str:
    """The output of a git command run in the project root ("" if git is unavailable)."""
    try:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    except OSError:
        return ""
    return done.stdout.strip()


def source_revision() -> str:
    """The commit measured, marked when tracked files have uncommitted changes."""
    revision = git("rev-parse", "--short", "HEAD") or "unknown revision"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return revision + (" with uncommitted changes" if dirty else "")
