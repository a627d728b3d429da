"""Refreshes the GraphiQL files rendertrack serves itself (app/static/graphiql/), so that the
page at /graphql loads nothing from a CDN: `make graphiql-assets`.

It fetches, with `npm pack`, exactly the packages and versions Strawberry's own GraphiQL page
(strawberry/static/graphiql.html) loads from unpkg, checks every file against the SRI hash that
page gives it, then rewrites `vendor/`, `LICENSES/` and `README.md` there. `page.js`, the
page's own script, and `favicon.svg` are not touched.

Each package's files land flat in `vendor/<package>-<version>/`: the repository's .gitignore
ignores every `dist/` folder, and two of the packages keep their files in one.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

REPO = Path(__file__).resolve().parent.parent
DESTINATION = REPO / "app" / "static" / "graphiql"
NPM_TIMEOUT_SECONDS = 300
LICENSE_NAMES = ("LICENSE", "LICENSE.md", "LICENSE.txt", "LICENCE", "license")


@dataclass(frozen=True)
class Asset:
    path: str  # inside the package, as unpkg serves it
    sha384: str  # the SRI hash of Strawberry's page, base64

    @property
    def integrity(self) -> str:
        return f"sha384-{self.sha384}"


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    assets: tuple[Asset, ...] = ()
    # For a tarball without a license file: the package whose license file covers it.
    license_from: str | None = None
    # Why the package is listed when it has no asset of its own.
    note: str = ""

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def slug(self) -> str:
        """`@graphiql/plugin-explorer` -> `graphiql-plugin-explorer`."""
        return self.name.removeprefix("@").replace("/", "-")

    @property
    def folder(self) -> str:
        return f"vendor/{self.slug}-{self.version}"

    def served_path(self, asset: Asset) -> str:
        return f"{self.folder}/{PurePosixPath(asset.path).name}"


PACKAGES: tuple[Package, ...] = (
    Package(
        "react",
        "18.2.0",
        (
            Asset(
                "umd/react.production.min.js",
                "tMH8h3BGESGckSAVGZ82T9n90ztNXxvdwvdM6UoR56cYcf+0iGXBliJ29D+wZ/x8",
            ),
        ),
    ),
    Package(
        "react-dom",
        "18.2.0",
        (
            Asset(
                "umd/react-dom.production.min.js",
                "bm7MnzvK++ykSwVJ2tynSE5TRdN+xL418osEVF2DE/L/gfWHj91J2Sphe582B1Bh",
            ),
        ),
    ),
    Package(
        "js-cookie",
        "3.0.5",
        (
            Asset(
                "dist/js.cookie.min.js",
                "/vxhYfM1LENRhdpZ8dwEsQn/X4VhpbEZSiU4m/FwR+PVpzar4fkEOw8FP9Y+OfQN",
            ),
        ),
    ),
    Package(
        "graphiql",
        "3.8.3",
        (
            Asset(
                "graphiql.min.js",
                "HbRVEFG0JGJZeAHCJ9Xm2+tpknBQ7QZmNlO/DgZtkZ0aJSypT96YYGRNod99l9Ie",
            ),
            Asset(
                "graphiql.min.css",
                "Mq3vbRBY71jfjQAt/DcjxUIYY33ksal4cgdRt9U/hNPvHBCaT2JfJ/PTRiPKf0aM",
            ),
        ),
    ),
    Package(
        "@graphiql/plugin-explorer",
        "1.0.2",
        (
            Asset(
                "dist/index.umd.js",
                "2oonKe47vfHIZnmB6ZZ10vl7T0Y+qrHQF2cmNTaFDuPshpKqpUMGMc9jgj9MLDZ9",
            ),
            Asset(
                "dist/style.css",
                "5DFJlDPW2tSATRbM8kzoP1j194jexLswuNmClWoRr2Q0x7R68JIQzPHZ02Faktwi",
            ),
        ),
        # Its tarball has no license file; it is MIT (package.json) and lives in the
        # graphql/graphiql repository, whose license file graphiql ships.
        license_from="graphiql@3.8.3",
    ),
    Package(
        "graphiql-explorer",
        "0.9.0",
        note="bundled inside @graphiql/plugin-explorer's index.umd.js",
    ),
)


def npm_pack(spec: str, into: Path) -> Path:
    """The registry's tarball of `spec`; npm checks it against the registry's integrity."""
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm is not on PATH: install Node.js (20+) to refresh the assets.")
    command = [npm, "pack", spec, "--json", "--ignore-scripts", "--pack-destination", str(into)]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=NPM_TIMEOUT_SECONDS, check=False
        )
    except subprocess.TimeoutExpired:
        raise SystemExit(f"npm pack {spec} took longer than {NPM_TIMEOUT_SECONDS} s") from None
    if done.returncode != 0:
        raise SystemExit(f"npm pack {spec} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    filename = json.loads(done.stdout)[0]["filename"]
    return into / filename


def member(tarball: tarfile.TarFile, path: str) -> bytes | None:
    try:
        extracted = tarball.extractfile(f"package/{path}")
    except KeyError:
        return None
    return extracted.read() if extracted is not None else None


def sha384(data: bytes) -> str:
    return base64.b64encode(hashlib.sha384(data).digest()).decode()


def license_of(tarball: tarfile.TarFile) -> bytes | None:
    for name in LICENSE_NAMES:
        text = member(tarball, name)
        if text is not None:
            return text
    return None


def fetch(packages: tuple[Package, ...], workdir: Path) -> dict[str, bytes]:
    """Every file to write, by its path under the destination, after every check passed."""
    files: dict[str, bytes] = {}
    licenses: dict[str, bytes] = {}
    for package in packages:
        print(f"npm pack {package.spec}", file=sys.stderr)
        with tarfile.open(npm_pack(package.spec, workdir), "r:gz") as tarball:
            for asset in package.assets:
                data = member(tarball, asset.path)
                if data is None:
                    raise SystemExit(f"{package.spec} has no {asset.path}")
                if sha384(data) != asset.sha384:
                    raise SystemExit(
                        f"{package.spec}/{asset.path} is not the file Strawberry's page pins: "
                        f"sha384-{sha384(data)}, expected {asset.integrity}"
                    )
                files[package.served_path(asset)] = data
            found = license_of(tarball)
        if found is not None:
            licenses[package.spec] = found
    for package in packages:
        text = licenses.get(package.license_from or package.spec)
        if text is None:
            raise SystemExit(f"no license file for {package.spec}")
        if package.license_from:
            preface = (
                f"{package.spec} ships no license file; its package.json declares MIT. It is "
                f"published from the same repository as {package.license_from}, whose license "
                "file follows.\n\n"
            )
            text = preface.encode() + text
        files[f"LICENSES/{package.slug}.txt"] = text
    files["README.md"] = readme(packages).encode()
    return files


def readme(packages: tuple[Package, ...]) -> str:
    rows = []
    for package in packages:
        served = ", ".join(f"`{package.served_path(asset)}`" for asset in package.assets)
        rows.append(
            f"| {package.name} | {package.version} | {served or package.note} "
            f"| `LICENSES/{package.slug}.txt` |"
        )
    table = "\n".join(rows)
    return f"""\
# GraphiQL, served by rendertrack

The page at `/graphql` (`gql/graphiql.html`, with its script `page.js` here) loads every file
from this folder, at `/static/graphiql/...`, never from a CDN: it works on a network without
internet. The files are the ones Strawberry's own GraphiQL page loads from unpkg, byte for byte;
the page keeps Strawberry's SRI hashes.

| Package | Version | Files | License |
| --- | --- | --- | --- |
{table}

Refresh with `make graphiql-assets` (`tools/vendor_graphiql.py`: `npm pack` of each version,
each file checked against its SRI hash). It rewrites `vendor/`, `LICENSES/` and this file, and
leaves `page.js` and `favicon.svg` alone. New versions need new paths and hashes in
`tools/vendor_graphiql.py` and `gql/graphiql.html`. The source maps are not vendored: the
browser's developer tools report them missing.
"""


def write(files: dict[str, bytes], destination: Path) -> None:
    for managed in ("vendor", "LICENSES"):
        shutil.rmtree(destination / managed, ignore_errors=True)
    for relative, data in sorted(files.items()):
        path = destination / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        print(f"wrote {path.relative_to(destination)} ({len(data):,} bytes)", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--destination",
        type=Path,
        default=DESTINATION,
        help=f"the folder to write (default: {DESTINATION.relative_to(REPO)})",
    )
    arguments = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="graphiql-assets-") as workdir:
        files = fetch(PACKAGES, Path(workdir))
    arguments.destination.mkdir(parents=True, exist_ok=True)
    write(files, arguments.destination)


if __name__ == "__main__":
    main()
