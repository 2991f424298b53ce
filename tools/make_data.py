#!/usr/bin/env python3
"""Regenerate the data files of the training examples (`data/`).

    python3 tools/make_data.py               # writes data/sunspots.csv and data/kjv.txt
    python3 tools/make_data.py --out DIR     # writes them into DIR instead
    python3 tools/make_data.py --check       # regenerate into a temporary folder and
                                             # compare byte for byte with data/

Sources (both public domain; see data/README.md):

* data/sunspots.csv -- yearly mean sunspot numbers 1700-2008 from the PyPI package
  `statsmodels` (`statsmodels.datasets.sunspots`, whose COPYRIGHT reads
  "This data is public domain."; the data come from NOAA's National Geophysical
  Data Center). Needs `pip install statsmodels`.

* data/kjv.txt -- the King James Version of the Bible (1611, public domain), as
  shipped by the Debian package `bible-kjv-text` (compressed in
  /usr/lib/bible.data) and printed by the `bible` program of the package
  `bible-kjv`. Needs `apt-get install -y bible-kjv-text` (pulls in `bible-kjv`).
  The script keeps whole books from Genesis onward while the file stays within
  MAX_BYTES, strips the verse references ("Ge1:1 ") so that the text reads
  naturally, and lays it out as:

      <Book name>           one line, the book's full name
      <blank line>
      <verse>               one verse per line, references removed
      <verse>
      <blank line>          between chapters (and before the next book's name)

  The output is plain 7-bit ASCII with "\\n" line ends.

The script prints, and data/README.md records, each file's size and, for the
text, its character count, number of distinct characters and unigram (order-0)
character entropy in bits per character.
"""

import argparse
import collections
import filecmp
import math
import os
import re
import subprocess
import sys
import tempfile

MAX_BYTES = 1_000_000

# Book abbreviations as printed by `bible -f`, in canonical order, with full names.
BOOKS = [
    ("Ge", "Genesis"), ("Exo", "Exodus"), ("Lev", "Leviticus"), ("Num", "Numbers"),
    ("Deu", "Deuteronomy"), ("Josh", "Joshua"), ("Jdgs", "Judges"), ("Ruth", "Ruth"),
    ("1Sm", "1 Samuel"), ("2Sm", "2 Samuel"), ("1Ki", "1 Kings"), ("2Ki", "2 Kings"),
    ("1Chr", "1 Chronicles"), ("2Chr", "2 Chronicles"), ("Ezra", "Ezra"),
    ("Neh", "Nehemiah"), ("Est", "Esther"), ("Job", "Job"), ("Psa", "Psalms"),
    ("Prv", "Proverbs"), ("Eccl", "Ecclesiastes"), ("SSol", "Song of Solomon"),
    ("Isa", "Isaiah"), ("Jer", "Jeremiah"), ("Lam", "Lamentations"),
    ("Eze", "Ezekiel"), ("Dan", "Daniel"), ("Hos", "Hosea"), ("Joel", "Joel"),
    ("Amos", "Amos"), ("Obad", "Obadiah"), ("Jonah", "Jonah"), ("Mic", "Micah"),
    ("Nahum", "Nahum"), ("Hab", "Habakkuk"), ("Zep", "Zephaniah"), ("Hag", "Haggai"),
    ("Zec", "Zechariah"), ("Mal", "Malachi"), ("Mat", "Matthew"), ("Mark", "Mark"),
    ("Luke", "Luke"), ("John", "John"), ("Acts", "Acts"), ("Rom", "Romans"),
    ("1Cor", "1 Corinthians"), ("2Cor", "2 Corinthians"), ("Gal", "Galatians"),
    ("Eph", "Ephesians"), ("Phi", "Philippians"), ("Col", "Colossians"),
    ("1Th", "1 Thessalonians"), ("2Th", "2 Thessalonians"), ("1Tim", "1 Timothy"),
    ("2Tim", "2 Timothy"), ("Titus", "Titus"), ("Phmn", "Philemon"),
    ("Heb", "Hebrews"), ("Jas", "James"), ("1Pet", "1 Peter"), ("2Pet", "2 Peter"),
    ("1Jn", "1 John"), ("2Jn", "2 John"), ("3Jn", "3 John"), ("Jude", "Jude"),
    ("Rev", "Revelation"),
]

VERSE_RE = re.compile(r"^(\d?[A-Za-z]+)(\d+):(\d+) (.*)$")


def make_sunspots(path):
    import statsmodels
    from statsmodels.datasets import sunspots

    assert "public domain" in sunspots.COPYRIGHT, sunspots.COPYRIGHT
    df = sunspots.load_pandas().data
    lines = ["year,sunspots"]
    for year, value in zip(df["YEAR"], df["SUNACTIVITY"]):
        lines.append(f"{int(year)},{float(value):g}")
    text = "\n".join(lines) + "\n"
    with open(path, "w", newline="\n") as f:
        f.write(text)
    n = len(lines) - 1
    print(f"{path}: {n} years {int(df['YEAR'].iloc[0])}-{int(df['YEAR'].iloc[-1])}, "
          f"{len(text.encode())} bytes (statsmodels {statsmodels.__version__}; "
          f"COPYRIGHT: {sunspots.COPYRIGHT!r})")


def kjv_books():
    """Returns [(full book name, [[verse text per verse] per chapter])] for the whole KJV."""
    raw = subprocess.run(
        ["bible", "-f", "Gen1:1-Rev22:21"], check=True, capture_output=True
    ).stdout.decode("ascii")
    names = dict(BOOKS)
    books = []  # [(abbr, name, chapters)]
    last = None
    for line in raw.splitlines():
        m = VERSE_RE.match(line)
        if not m:
            raise ValueError(f"unexpected line from `bible`: {line!r}")
        abbr, chapter, verse, text = m.group(1), int(m.group(2)), int(m.group(3)), m.group(4)
        if not books or books[-1][0] != abbr:
            books.append((abbr, names[abbr], []))
            last = None
        if chapter != last:
            books[-1][2].append([])
            last = chapter
        books[-1][2][-1].append(" ".join(text.split()))
    assert [b[0] for b in books] == [b[0] for b in BOOKS], [b[0] for b in books]
    return [(name, chapters) for _, name, chapters in books]


def book_text(name, chapters):
    return name + "\n\n" + "\n\n".join("\n".join(verses) for verses in chapters) + "\n"


def entropy_bits(text):
    counts = collections.Counter(text)
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def make_kjv(path):
    parts = []
    size = 0
    kept = []
    for name, chapters in kjv_books():
        part = ("\n" if parts else "") + book_text(name, chapters)
        if size + len(part) > MAX_BYTES:
            break
        parts.append(part)
        kept.append(name)
        size += len(part)
    text = "".join(parts)
    assert text.isascii() and "\r" not in text and len(text) <= MAX_BYTES
    with open(path, "w", newline="\n") as f:
        f.write(text)
    vocab = sorted(set(text))
    print(f"{path}: books {kept[0]}..{kept[-1]} ({len(kept)} books), "
          f"{len(text.encode())} bytes, {len(text)} characters, {text.count(chr(10))} lines")
    print(f"  vocabulary: {len(vocab)} distinct characters: {''.join(vocab)!r}")
    print(f"  unigram entropy: {entropy_bits(text):.4f} bits/char")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    root = os.path.relpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data"))
    ap.add_argument("--out", default=root, help="output folder (default: data/)")
    ap.add_argument("--check", action="store_true",
                    help="regenerate into a temporary folder and compare with data/")
    args = ap.parse_args()
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            make_sunspots(os.path.join(tmp, "sunspots.csv"))
            make_kjv(os.path.join(tmp, "kjv.txt"))
            bad = [f for f in ("sunspots.csv", "kjv.txt")
                   if not filecmp.cmp(os.path.join(tmp, f), os.path.join(root, f), shallow=False)]
            if bad:
                print("DIFFERS:", ", ".join(bad))
                sys.exit(1)
            print("data/ is up to date")
        return
    os.makedirs(args.out, exist_ok=True)
    make_sunspots(os.path.join(args.out, "sunspots.csv"))
    make_kjv(os.path.join(args.out, "kjv.txt"))


if __name__ == "__main__":
    main()
