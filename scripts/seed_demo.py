#!/usr/bin/python3
"""Creates the demo repository on a local lakeFS gateway (idempotent).

Repository "demo": branch main with two commits and a tag v1 on the first,
a branch "experiment", a few MB of CSV and Parquet-like sample data and a
SQLite database (weather.db) to query and change in place. The refs as
they were at set-up are written to .demo/commits.txt.
"""
import argparse
import base64
import io
import json
import os
import pathlib
import random
import sqlite3
import sys
import tempfile
import urllib.error
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from conftest import boto_config  # noqa: E402


def api(endpoint, method, path, body=None):
    ak, sk = os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]
    req = urllib.request.Request(endpoint + "/api/v1" + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None)
    req.add_header("Authorization", "Basic " + base64.b64encode(f"{ak}:{sk}".encode()).decode())
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            raw = r.read()
            # Most answers are JSON; creating a branch answers its commit ID as text.
            try:
                return r.status, json.loads(raw) if raw else None
            except ValueError:
                return r.status, raw.decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def csv_rows(n, seed):
    rnd = random.Random(seed)
    out = io.StringIO()
    out.write("id,city,temperature,humidity,recorded_at\n")
    cities = ["Lisbon", "Oslo", "Nairobi", "Lima", "Osaka", "Perth", "Quebec"]
    for i in range(n):
        out.write(f"{i},{rnd.choice(cities)},{rnd.uniform(-10, 40):.2f},"
                  f"{rnd.uniform(5, 95):.1f},2024-{1 + i % 12:02d}-{1 + i % 28:02d}T12:00:00Z\n")
    return out.getvalue().encode()


def parquet_like(size, seed):
    """Bytes shaped like a Parquet file (magic at both ends, binary body)."""
    rnd = random.Random(seed)
    body = bytes(rnd.getrandbits(8) for _ in range(size - 8))
    return b"PAR1" + body[:-4] + len(body).to_bytes(4, "little") + b"PAR1"


CITIES = [("Lisbon", 38.7, -9.1), ("Oslo", 59.9, 10.7), ("Nairobi", -1.3, 36.8),
          ("Lima", -12.0, -77.0), ("Osaka", 34.7, 135.5), ("Perth", -31.9, 115.9),
          ("Quebec", 46.8, -71.2)]


def weather_db(years):
    """A SQLite database of stations and daily readings for the given years,
    made with python's sqlite3 module; returns its bytes."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "weather.db")
        db = sqlite3.connect(path)
        db.executescript("""
            CREATE TABLE stations (city TEXT PRIMARY KEY, lat REAL, lon REAL);
            CREATE TABLE readings (id INTEGER PRIMARY KEY, city TEXT REFERENCES stations,
                                   day TEXT, temperature REAL, humidity REAL);
            CREATE INDEX readings_city_day ON readings (city, day);
        """)
        db.executemany("INSERT INTO stations VALUES (?, ?, ?)", CITIES)
        rows = []
        for y in years:  # one seed a year: 2024 reads the same in every commit
            rnd = random.Random(y)
            rows += [(city, f"{y}-{m:02d}-{d:02d}", round(rnd.uniform(-10, 40), 1),
                      round(rnd.uniform(5, 95), 1))
                     for m in range(1, 13) for d in range(1, 29) for city, _, _ in CITIES]
        db.executemany("INSERT INTO readings (city, day, temperature, humidity) "
                       "VALUES (?, ?, ?, ?)", rows)
        db.commit()
        db.close()
        with open(path, "rb") as f:
            return f.read()


def commits_file(c1, c2):
    """What each ref of the demo is, for a reader who has not met lakeFS."""
    return (
        "# The demo repository as scripts/seed_demo.py left it. Under the mount:\n"
        "#   demo/v1/           tag v1, a name for the first commit: read-only\n"
        "#   demo/<commit ID>/  any commit: read-only, and it never changes\n"
        "#   demo/main/         branch main: read-write, and it moves with every\n"
        "#                      commit made on it\n"
        f"tag     v1    {c1}\n"
        f"commit  {c1}  Initial readings (tagged v1)\n"
        f"commit  {c2}  Add 2025 readings, drop stations\n"
        f"branch  main  {c2}  (at set-up: main moves, so this line goes stale)\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--state", default=str(ROOT / ".demo"),
                    help="directory for commits.txt (default .demo)")
    args = ap.parse_args()
    import boto3
    s3 = boto3.client("s3", endpoint_url=args.endpoint, region_name="us-east-1",
                      aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
                      config=boto_config())
    status, _ = api(args.endpoint, "GET", "/repositories/demo")
    state = pathlib.Path(args.state) / "commits.txt"
    if status == 200 and state.exists():
        print("demo repository exists")
        return
    if status == 200:
        # A seed interrupted half way: start it again from nothing.
        api(args.endpoint, "DELETE", "/repositories/demo")
    api(args.endpoint, "POST", "/repositories",
        {"name": "demo", "storage_namespace": "local://demo", "default_branch": "main"})
    s3.put_object(Bucket="demo", Key="main/README.txt",
                  Body=b"lakefuse demo repository: weather readings by city.\n")
    s3.put_object(Bucket="demo", Key="main/data/readings-2024.csv", Body=csv_rows(40000, 1))
    s3.put_object(Bucket="demo", Key="main/data/stations.csv",
                  Body=b"city,lat,lon\nLisbon,38.7,-9.1\nOslo,59.9,10.7\n")
    s3.put_object(Bucket="demo", Key="main/warehouse/readings.parquet",
                  Body=parquet_like(1 << 20, 2))
    s3.put_object(Bucket="demo", Key="main/weather.db", Body=weather_db([2024]))
    _, c1 = api(args.endpoint, "POST", "/repositories/demo/branches/main/commits",
                {"message": "Initial readings"})
    api(args.endpoint, "POST", "/repositories/demo/tags", {"id": "v1", "ref": c1["id"]})
    s3.put_object(Bucket="demo", Key="main/data/readings-2025.csv", Body=csv_rows(30000, 3))
    s3.delete_object(Bucket="demo", Key="main/data/stations.csv")
    s3.put_object(Bucket="demo", Key="main/weather.db", Body=weather_db([2024, 2025]))
    _, c2 = api(args.endpoint, "POST", "/repositories/demo/branches/main/commits",
                {"message": "Add 2025 readings, drop stations"})
    api(args.endpoint, "POST", "/repositories/demo/branches",
        {"name": "experiment", "source": "main"})
    state.write_text(commits_file(c1["id"], c2["id"]))
    print(f"demo repository created: commits {c1['id'][:12]} (tag v1), {c2['id'][:12]}")


if __name__ == "__main__":
    main()
