#!/usr/bin/env python3
"""Write train.tsv and test.tsv (FORM<TAB>UPOS) from the UD English EWT
CoNLL-U files; see data/README.md, section `ud_english/`.

    python3 data/ud_english/make_subset.py EWT_DIR            # writes data/ud_english/{train,test}.tsv
    python3 data/ud_english/make_subset.py EWT_DIR --check    # regenerates into a temporary folder, compares byte for byte

EWT_DIR is a checkout of https://github.com/UniversalDependencies/UD_English-EWT
(tag r2.16, commit 4c89b5833a70aa5ed3a00bad2f23f57992cc7df8) holding
en_ewt-ud-train.conllu and en_ewt-ud-test.conllu.
"""
import argparse
import filecmp
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SPLITS = (
    # (source file, output file, number of sentences)
    ("en_ewt-ud-train.conllu", "train.tsv", 4000),
    ("en_ewt-ud-test.conllu", "test.tsv", 800),
)


def read_sentences(path, limit):
    """The first `limit` sentences of a CoNLL-U file, each a list of (FORM, UPOS).

    Comment lines, multiword-token lines (ID `3-4`) and empty nodes (ID `8.1`)
    are skipped."""
    sentences, current = [], []
    with open(path, encoding="utf-8", newline="") as f:
        for line in f:
            line = line.rstrip("\n")
            if line == "":
                if current:
                    sentences.append(current)
                    current = []
                    if len(sentences) == limit:
                        break
                continue
            if line.startswith("#"):
                continue
            cols = line.split("\t")
            if len(cols) != 10:
                sys.exit(f"{path}: not a CoNLL-U token line: {line!r}")
            tid, form, upos = cols[0], cols[1], cols[3]
            if "-" in tid or "." in tid:
                continue
            current.append((form, upos))
    if current and len(sentences) < limit:
        sentences.append(current)
    if len(sentences) < limit:
        sys.exit(f"{path}: only {len(sentences)} sentences, {limit} wanted")
    return sentences


def write_tsv(sentences, path):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join("".join(f"{form}\t{upos}\n" for form, upos in s) for s in sentences))


def make(ewt_dir, out_dir):
    for src, dst, n in SPLITS:
        sentences = read_sentences(os.path.join(ewt_dir, src), n)
        write_tsv(sentences, os.path.join(out_dir, dst))
        tokens = sum(len(s) for s in sentences)
        print(f"{dst}: {len(sentences)} sentences, {tokens} tokens")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ewt_dir")
    p.add_argument("--check", action="store_true")
    a = p.parse_args()
    if not a.check:
        make(a.ewt_dir, HERE)
        return
    with tempfile.TemporaryDirectory() as tmp:
        make(a.ewt_dir, tmp)
        bad = [dst for _, dst, _ in SPLITS
               if not filecmp.cmp(os.path.join(tmp, dst), os.path.join(HERE, dst), shallow=False)]
    if bad:
        sys.exit("differ: " + ", ".join(bad))
    print("identical")


if __name__ == "__main__":
    main()
