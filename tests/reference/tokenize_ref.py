"""The reference for core/text/tokenizer.cpp: Hugging Face `tokenizers` (PyPI, the Rust
library's own Python binding, pinned in requirements.txt) run on the same tokenizer.json
and the same texts, writing what the C++ test compares against.

    python tokenize_ref.py encode TOKENIZER_JSON TEXTS.jsonl[.gz] OUT.bin
    python tokenize_ref.py decode TOKENIZER_JSON IDS.bin OUT.bin [--skip-special]

TEXTS: one JSON object a line; each line gives its "text", or for GSM8K its "question"
then its "answer" as two texts. Every text is encoded without special tokens added
(add_special_tokens=False).

Binary formats, little-endian, one record per text in input order:
    ids  (encode output, decode input): uint32 count, then count int32 ids
    text (decode output):               uint32 byte length, then the UTF-8 bytes
"""
import gzip
import json
import struct
import sys

from tokenizers import Tokenizer

# Texts go to the Rust side in batches: few round trips without holding every Encoding
# of a 20 MB corpus at once.
BATCH = 512


def die(message):
    sys.stderr.write(f"tokenize_ref.py: {message}\n")
    sys.exit(2)


def read_texts(path):
    opener = gzip.open if path.endswith(".gz") else open
    texts = []
    with opener(path, "rb") as f:
        # Split on "\n" only, as the C++ reader does (str.splitlines would also split on
        # U+2028 and friends inside a JSON string's raw UTF-8).
        for number, line in enumerate(f.read().decode("utf-8").split("\n"), start=1):
            if line.strip() == "":
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                die(f"{path}: line {number}: {e}")
            if not isinstance(record, dict):
                die(f"{path}: line {number}: not a JSON object")
            if isinstance(record.get("text"), str):
                texts.append(record["text"])
            elif isinstance(record.get("question"), str) and isinstance(record.get("answer"), str):
                texts.extend([record["question"], record["answer"]])
            else:
                die(f'{path}: line {number}: needs a string "text", or "question" and "answer"')
    return texts


def write_ids(path, id_lists):
    with open(path, "wb") as f:
        for ids in id_lists:
            f.write(struct.pack(f"<I{len(ids)}i", len(ids), *ids))


def read_ids(path):
    with open(path, "rb") as f:
        raw = f.read()
    id_lists, at = [], 0
    while at < len(raw):
        (count,) = struct.unpack_from("<I", raw, at)
        at += 4
        if at + 4 * count > len(raw):
            die(f"{path}: truncated at byte {at}")
        id_lists.append(list(struct.unpack_from(f"<{count}i", raw, at)))
        at += 4 * count
    return id_lists


def write_strings(path, strings):
    with open(path, "wb") as f:
        for s in strings:
            data = s.encode("utf-8")
            f.write(struct.pack("<I", len(data)))
            f.write(data)


def encode_all(tokenizer, texts):
    id_lists = []
    for i in range(0, len(texts), BATCH):
        encodings = tokenizer.encode_batch(texts[i:i + BATCH], add_special_tokens=False)
        id_lists.extend(encoding.ids for encoding in encodings)
    return id_lists


def decode_all(tokenizer, id_lists, skip_special):
    strings = []
    for i in range(0, len(id_lists), BATCH):
        strings.extend(tokenizer.decode_batch(id_lists[i:i + BATCH],
                                              skip_special_tokens=skip_special))
    return strings


def main(argv):
    usage = ("usage: tokenize_ref.py encode TOKENIZER_JSON TEXTS.jsonl[.gz] OUT.bin\n"
             "       tokenize_ref.py decode TOKENIZER_JSON IDS.bin OUT.bin [--skip-special]")
    if len(argv) not in (4, 5) or argv[0] not in ("encode", "decode"):
        die(usage)
    mode, tokenizer_file, source, output = argv[:4]
    flag = argv[4] if len(argv) == 5 else None
    if flag is not None and flag != "--skip-special":
        die(f"unknown option {flag}")
    try:
        tokenizer = Tokenizer.from_file(tokenizer_file)
    except Exception as e:  # the binding raises a plain Exception with the serde message
        die(f"{tokenizer_file}: {e}")
    if mode == "encode":
        write_ids(output, encode_all(tokenizer, read_texts(source)))
    else:
        write_strings(output, decode_all(tokenizer, read_ids(source), flag == "--skip-special"))


if __name__ == "__main__":
    main(sys.argv[1:])
