"""OCR with Tesseract (Debian: tesseract-ocr + tesseract-ocr-vie) for scanned PDF pages and images.

PDF pages are rendered by `pdftoppm` (poppler-utils) at `dpi` and read by `tesseract` with the
Vietnamese model (plus English), each call a subprocess with a timeout, so a pathological page
costs at most `timeout_s` and never the worker. Output is NFC, so diacritics compare equal to
typed text. Nothing is downloaded: the language data come from Debian packages.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
import tempfile
import unicodedata
from pathlib import Path

log = logging.getLogger(__name__)


class OcrError(Exception):
    """OCR could not run or read a page; `str()` is a reason a person can act on."""


@functools.cache
def available_languages() -> frozenset[str]:
    if shutil.which("tesseract") is None:
        return frozenset()
    try:
        out = subprocess.run(
            ["tesseract", "--list-langs"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    return frozenset(line.strip() for line in out.stdout.splitlines()[1:] if line.strip())


def check_ready(languages: str) -> None:
    """Raise OcrError naming what to install when Tesseract or a language is missing."""
    if shutil.which("tesseract") is None:
        raise OcrError("OCR is not available: install tesseract-ocr and tesseract-ocr-vie")
    missing = [lang for lang in languages.split("+") if lang and lang not in available_languages()]
    if missing:
        packages = " ".join(f"tesseract-ocr-{lang}" for lang in missing)
        raise OcrError(f"OCR language data missing for {'+'.join(missing)}: install {packages}")


def _env() -> dict[str, str]:
    # One thread per tesseract: the embedder already keeps both cores busy while OCR runs.
    return {**os.environ, "OMP_THREAD_LIMIT": "1"}


def ocr_image(path: Path, *, languages: str = "vie+eng", timeout_s: float = 120.0) -> str:
    """Text of an image file (PNG, JPEG, TIFF), NFC."""
    check_ready(languages)
    try:
        out = subprocess.run(
            ["tesseract", str(path), "stdout", "-l", languages, "--psm", "3"],
            capture_output=True,
            timeout=timeout_s,
            check=False,
            env=_env(),
        )
    except subprocess.TimeoutExpired:
        raise OcrError(f"OCR took longer than {timeout_s:g} s") from None
    if out.returncode != 0:
        reason = out.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["unknown error"]
        raise OcrError(f"OCR failed: {reason[0][:200]}")
    return unicodedata.normalize("NFC", out.stdout.decode("utf-8", "replace")).strip()


def ocr_pdf_pages(
    path: Path,
    pages: list[int],
    *,
    languages: str = "vie+eng",
    dpi: int = 300,
    timeout_s: float = 120.0,
) -> dict[int, str]:
    """Text of the given (1-based) pages of a PDF, rendered one at a time."""
    check_ready(languages)
    if shutil.which("pdftoppm") is None:
        raise OcrError("cannot render PDF pages for OCR: install poppler-utils")
    texts: dict[int, str] = {}
    with tempfile.TemporaryDirectory(prefix="kms-ocr-") as tmp:
        for page in pages:
            prefix = Path(tmp) / f"p{page}"
            try:
                command = ["pdftoppm", "-r", str(dpi), "-f", str(page), "-l", str(page), "-gray", "-png"]
                out = subprocess.run(
                    [*command, "-singlefile", str(path), str(prefix)],
                    capture_output=True,
                    timeout=timeout_s,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise OcrError(f"rendering PDF page {page} took longer than {timeout_s:g} s") from None
            image = prefix.with_suffix(".png")
            if out.returncode != 0 or not image.exists():
                raise OcrError(f"cannot render PDF page {page} for OCR")
            texts[page] = ocr_image(image, languages=languages, timeout_s=timeout_s)
            image.unlink(missing_ok=True)
    return texts
