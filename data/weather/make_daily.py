#!/usr/bin/env python3
"""Make data/weather/daily.csv from NOAA NCEI's GHCN-Daily export for
Worcester, MA (station GHCND:USW00094746).

Input: the file `worcesterWeatherData.csv` (a Climate Data Online "Custom
GHCN-Daily CSV" order in standard units), as kept in the GitHub repository
CraftingGamerTom/wsu-computer-science, path
CS-483_Big-Data-Analytics-Capstone_2020-Spring/original-datasets/weather/worcesterWeatherData.csv
(commit 9d62cc5111f19111c90e01fb6ad0c0d7268cb9f6; see data/README.md).

    python3 data/weather/make_daily.py SOURCE.csv           # writes data/weather/daily.csv
    python3 data/weather/make_daily.py SOURCE.csv --check   # compares with the committed file

Keeps the days 2004-01-01 to 2010-12-31 and the columns DATE, TMAX, TMIN,
PRCP, values written exactly as in the source (TMAX/TMIN whole degrees
Fahrenheit, PRCP inches with two decimals; a trace of precipitation is 0.00
in the source and stays so). Fails if a day is missing, a value is empty, or
a value carries a NOAA quality flag.
"""

import csv
import datetime as dt
import hashlib
import io
import pathlib
import sys

SOURCE_SHA256 = "699b4357f320f87e874ccdd1d06cd1a343be0030ad415014cad073ad84781793"
STATION = "USW00094746"
FIRST = dt.date(2004, 1, 1)
LAST = dt.date(2010, 12, 31)
COLUMNS = [("TMAX", "tmax"), ("TMIN", "tmin"), ("PRCP", "prcp")]
OUT = pathlib.Path(__file__).resolve().parent / "daily.csv"


def build(source: pathlib.Path) -> str:
    raw = source.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SOURCE_SHA256:
        sys.exit(f"{source}: SHA-256 {digest}, expected {SOURCE_SHA256}")
    out = io.StringIO()
    out.write("date," + ",".join(name for _, name in COLUMNS) + "\n")
    expected = FIRST
    for row in csv.DictReader(io.StringIO(raw.decode("ascii"), newline="")):
        day = dt.date.fromisoformat(row["DATE"])
        if not FIRST <= day <= LAST:
            continue
        if row["STATION"] != STATION:
            sys.exit(f"{day}: station {row['STATION']}")
        if day != expected:
            sys.exit(f"expected {expected}, found {day}")
        values = []
        for key, _ in COLUMNS:
            value = row[key].strip()
            qflag = row[key + "_ATTRIBUTES"].split(",")[1].strip()
            if value == "" or qflag:
                sys.exit(f"{day}: {key} is {value!r} with quality flag {qflag!r}")
            float(value)
            values.append(value)
        out.write(day.isoformat() + "," + ",".join(values) + "\n")
        expected += dt.timedelta(days=1)
    if expected != LAST + dt.timedelta(days=1):
        sys.exit(f"the source ends before {LAST}")
    return out.getvalue()


def main() -> None:
    args = sys.argv[1:]
    check = "--check" in args
    paths = [a for a in args if a != "--check"]
    if len(paths) != 1:
        sys.exit(__doc__)
    text = build(pathlib.Path(paths[0]))
    if check:
        if OUT.read_text() != text:
            sys.exit(f"{OUT} differs from what the source gives")
        print(f"{OUT}: matches ({text.count(chr(10)) - 1} days)")
    else:
        OUT.write_text(text)
        print(f"wrote {OUT} ({text.count(chr(10)) - 1} days)")


if __name__ == "__main__":
    main()
