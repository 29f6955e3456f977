#!/usr/bin/env bash
# Install the Debian packages kms's tests use, only those missing. Needs root (CI runs as root).
set -euo pipefail
# tesseract-ocr + tesseract-ocr-vie: OCR of scanned pages; poppler-utils: renders PDF pages for it;
# postgresql: the queue tests start a throwaway server (initdb/pg_ctl) on loopback.
packages=(fonts-dejavu-core chromium tesseract-ocr tesseract-ocr-vie poppler-utils postgresql)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${missing[*]} (run: sudo apt-get install -y ${missing[*]})" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
