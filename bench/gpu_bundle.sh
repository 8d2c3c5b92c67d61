#!/usr/bin/env bash
# Pack the Python packages a GPU machine without network needs to run the app and train on it,
# in pieces small enough to carry over one at a time (bench/gpu_run.sh unpacks them there).
#
#   bash bench/gpu_bundle.sh
#
# The GPU machine: x86-64, CPython 3.12, with torch, transformers, accelerate, peft, pyarrow,
# protobuf, the CUDA libraries (nvidia-*, cuda-*) and their common dependencies already there
# (EXCLUDE below). This script, run where PyPI can be reached:
#   1. resolves the app's run-time requirements (pyproject.toml's `dependencies`) and those for
#      training (its `train` extra, with `build`), for CPython 3.12 manylinux x86_64 wheels only,
#      against the GPU machine's own versions of torch, transformers, accelerate and
#      huggingface_hub (HOST_PINS), with the GPU builds swapped in: onnxruntime-gpu for
#      onnxruntime, onnxruntime-genai-cuda for onnxruntime-genai, and numpy 1.26.4 (the Triton
#      Python-backend stub needs numpy<2; it shadows the machine's numpy 2 there);
#   2. keeps what the machine lacks: every resolved package reachable from those requirements
#      without passing through an excluded one (what only an excluded package needs is already
#      there with it), and downloads those wheels (one version each) into $WORK/wheels;
#   3. installs them with `pip install --target $WORK/site --no-deps`, then trims the tree
#      (TensorRT execution provider, the Triton Python-backend stubs and libpython of other
#      Python versions, __pycache__);
#   4. packs `site/` as one `tar | xz -9 -T2` stream cut by `split -b 55M -d` into
#      .gpu/bundle.tar.xz.00, .01, ..., and writes .gpu/SHA256SUMS (each piece; the whole stream
#      as a comment line, which `sha256sum --check` skips), .gpu/stream.sha256 (the whole stream,
#      to check from standard input), .gpu/packages.txt (name==version in the tree) and
#      .gpu/host-requirements.txt (what the bundled packages ask of the machine's own packages).
#
# On the GPU machine:
#   (cd .gpu && sha256sum --check SHA256SUMS && cat bundle.tar.xz.* | sha256sum --check stream.sha256)
#   cat .gpu/bundle.tar.xz.* | xz -d | tar -x -C /somewhere --strip-components=1
# and put /somewhere ahead of the machine's site-packages (site.addsitedir, or PYTHONPATH).
#
# Environment: WORK (default /tmp/gpu_bundle: the resolver's venv, the wheels, the tree; kept,
# so a second run downloads nothing new), PIECE_SIZE (55M), XZ_THREADS (2), MAX_GLIBC (35:
# manylinux_2_5 .. manylinux_2_MAX_GLIBC wheels are accepted), RESOLVER_PYTHON (a 3.12
# interpreter to resolve with, so that dependency markers are read as on the GPU machine;
# found on PATH or under pyenv, else this machine's python3 with a warning), TARGET_PYTHON
# (/opt/torch/.venv/bin/python3: the shebang given to the tree's bin/ scripts), BUNDLE_ALSO
# (names to bundle although EXCLUDE has them, e.g. "pandas": pandas 3.1 and later require
# numpy>=2, which the bundle's numpy 1.26.4 shadows), OUT_DIR (default .gpu).
set -euo pipefail

began=$(date +%s)
say() { echo "[gpu_bundle $(($(date +%s) - began)) s] $*"; }

REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT_DIR=${OUT_DIR:-$REPO/.gpu}
WORK=${WORK:-/tmp/gpu_bundle}
PIECE_SIZE=${PIECE_SIZE:-55M}
XZ_THREADS=${XZ_THREADS:-2}
MAX_GLIBC=${MAX_GLIBC:-35}
TARGET_PYTHON=${TARGET_PYTHON:-/opt/torch/.venv/bin/python3}

# Substitutions and additions to pyproject.toml's requirements (by normalized name).
GPU_SWAPS='onnxruntime=onnxruntime-gpu==1.31.1 onnxruntime-genai=onnxruntime-genai-cuda==0.18.0 numpy=numpy==1.26.4'
EXTRA_REQS='nvidia-pytriton==0.7.0'
# The GPU machine's versions of packages the resolution depends on (constraints, not installed).
HOST_PINS=${HOST_PINS:-'torch==2.11.0 transformers==5.17.0 accelerate==1.15.0 huggingface-hub==1.33.0'}
# Already on the GPU machine (any version): never bundled. Globs on normalized names.
# onnxruntime and onnxruntime-genai are the CPU builds: the -gpu / -cuda ones bundled instead
# provide the same modules.
EXCLUDE='absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs
certifi charset-normalizer click cloudpickle filelock frozenlist fsspec grpcio h11 hf-xet httpcore
httpx huggingface-hub idna jinja2 markupsafe mpmath msgpack multidict networkx onnx onnx-ir
onnxscript packaging pandas peft pillow pip protobuf psutil pyarrow pygments python-dateutil
pyyaml regex requests rich safetensors sentencepiece setuptools six sympy tokenizers torch tqdm
transformers typing-extensions typing-inspect urllib3 xxhash yarl zipp wrapt typer shellingham
mdurl markdown-it-py tiktoken triton nvidia-* cuda-* scipy onnxruntime onnxruntime-genai'
# ... except these, which match a glob above, and BUNDLE_ALSO's.
KEEP="nvidia-pytriton ${BUNDLE_ALSO:-}"

PLATFORMS=(--platform manylinux2014_x86_64)  # pip widens this one to manylinux2010 and manylinux1
for ((i = 5; i <= MAX_GLIBC; i++)); do PLATFORMS+=(--platform "manylinux_2_${i}_x86_64"); done
TARGET=(--only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 "${PLATFORMS[@]}")

mkdir -p "$WORK" "$WORK/wheels" "$OUT_DIR"
exclude_file=$REPO/.git/info/exclude
mkdir -p "$(dirname "$exclude_file")"
if ! grep -qxF '/.gpu/' "$exclude_file" 2>/dev/null; then
    if [ -s "$exclude_file" ] && [ -n "$(tail -c 1 "$exclude_file")" ]; then echo >>"$exclude_file"; fi
    echo '/.gpu/' >>"$exclude_file"
fi

# --- the resolver: a venv of a 3.12 interpreter (pip reads dependency markers with the
# interpreter it runs on, whatever --python-version says), with a current pip.
resolver_python=${RESOLVER_PYTHON:-}
if [ -z "$resolver_python" ]; then
    for candidate in "$(command -v python3.12 || true)" "$HOME"/.pyenv/versions/3.12*/bin/python3; do
        if [ -n "$candidate" ] && [ -x "$candidate" ] &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null; then
            resolver_python=$candidate
            break
        fi
    done
fi
if [ -z "$resolver_python" ]; then
    resolver_python=$(command -v python3)
    say "WARNING: no Python 3.12 here; resolving with $("$resolver_python" -V): markers on python_version are read for it"
fi
VENV=$WORK/resolver-$("$resolver_python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ ! -x "$VENV/bin/python" ]; then
    "$resolver_python" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip packaging
fi
PY=$VENV/bin/python
PIP=("$PY" -m pip --disable-pip-version-check)
say "resolver: $("$PY" -V), $("${PIP[@]}" --version | cut -d' ' -f1-2)"

# --- 1. the requirements, from pyproject.toml
"$PY" - "$REPO/pyproject.toml" "$WORK" "$GPU_SWAPS" "$EXTRA_REQS" "$HOST_PINS" <<'EOF'
import re
import sys
import tomllib

from packaging.requirements import Requirement

pyproject, work, swaps, extra, pins = sys.argv[1:]
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
swaps = dict(s.split("=", 1) for s in swaps.split())

project = tomllib.load(open(pyproject, "rb"))["project"]
self_name = norm(project["name"])
extras = project.get("optional-dependencies", {})

def expand(reqs, seen):
    for r in reqs:
        req = Requirement(r)
        if norm(req.name) == self_name:
            for e in sorted(req.extras - seen):
                seen.add(e)
                yield from expand(extras[e], seen)
        else:
            yield req

reqs, notes = [], []
for req in [*expand(project["dependencies"], set()), *expand(["%s[train]" % self_name], set()),
            *map(Requirement, extra.split())]:
    name = norm(req.name)
    if name in swaps:
        new = Requirement(swaps[name])
        notes.append(f"{req} -> {new}")
        req, name = new, norm(new.name)
    pin = next((Requirement(p) for p in pins.split() if norm(Requirement(p).name) == name), None)
    if pin and not req.specifier.contains(next(iter(pin.specifier)).version, prereleases=True):
        # e.g. build's torch pin: the host's own version stands, the bundle does not carry it.
        notes.append(f"{req}: CONFLICT with the GPU machine's {pin}; resolved against the latter")
        continue
    reqs.append(req)

# One line per name (pyproject may name a package twice, e.g. tokenizers in base and build).
merged = {}
for r in reqs:
    merged.setdefault(norm(r.name), []).append(r)
lines = []
for name, rs in merged.items():
    first = rs[0]
    ex = sorted(set().union(*(r.extras for r in rs)))
    spec = ",".join(dict.fromkeys(str(s) for r in rs for s in r.specifier))
    lines.append(first.name + (f"[{','.join(ex)}]" if ex else "") + spec)
open(f"{work}/requirements.in", "w").write("\n".join(lines) + "\n")
open(f"{work}/host-pins.txt", "w").write("\n".join(pins.split()) + "\n")
for n in notes:
    print("  requirement:", n)
EOF
say "requirements: $(paste -sd' ' "$WORK/requirements.in")"

# --- 2. resolve (metadata only: nothing the host has is downloaded), select, download
say "resolving for cp312 manylinux x86_64 (wheels only)"
rm -f "$WORK/report.json"
if ! "${PIP[@]}" install --quiet --dry-run --ignore-installed --report "$WORK/report.json" "${TARGET[@]}" \
    -r "$WORK/requirements.in" -c "$WORK/host-pins.txt" 2>"$WORK/resolve.log"; then
    grep -v "^WARNING: Location" "$WORK/resolve.log" >&2 || true
    say "FAILED: the requirements do not resolve to cp312 wheels (an sdist-only package? a conflict?)"
    exit 1
fi

"$PY" - "$WORK" "$EXCLUDE" "$KEEP" "$OUT_DIR" <<'EOF'
import json
import re
import sys
from fnmatch import fnmatch

from packaging.requirements import Requirement

work, exclude, keep, out_dir = sys.argv[1:]
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
excluded = lambda n: norm(n) not in keep.split() and any(fnmatch(norm(n), g) for g in exclude.split())
env = {"implementation_name": "cpython", "implementation_version": "3.12.3", "os_name": "posix",
       "platform_machine": "x86_64", "platform_python_implementation": "CPython", "platform_release": "",
       "platform_system": "Linux", "platform_version": "", "python_full_version": "3.12.3",
       "python_version": "3.12", "sys_platform": "linux"}

report = json.load(open(f"{work}/report.json"))
dists = {norm(i["metadata"]["name"]): i for i in report["install"]}

def deps(name, extras):
    for r in dists[name]["metadata"].get("requires_dist", []):
        req = Requirement(r)
        if req.marker is None or any(req.marker.evaluate({**env, "extra": e}) for e in ("", *extras)):
            yield req

# What the bundle has to bring: the requirements and, through packages that are not excluded, theirs.
roots = [Requirement(line.strip()) for line in open(f"{work}/requirements.in") if line.strip()]
selected, queue, host_reqs = {}, [(r, "requirements.in") for r in roots], {}
while queue:
    req, by = queue.pop()
    name = norm(req.name)
    if excluded(name):
        host_reqs.setdefault(name, set()).add((str(req.specifier) or "(any)", by))
        continue
    extras = set(req.extras)
    if name in selected and extras <= selected[name]:
        continue
    selected[name] = selected.get(name, set()) | extras
    queue.extend((d, f"{dists[name]['metadata']['name']} {dists[name]['metadata']['version']}")
                 for d in deps(name, selected[name]))

for name in selected:
    if excluded(name) or name not in dists:
        sys.exit(f"internal error: {name}")
pins = [f"{dists[n]['metadata']['name']}=={dists[n]['metadata']['version']}" for n in sorted(selected)]
open(f"{work}/selected.txt", "w").write("\n".join(pins) + "\n")
left = sorted(f"{dists[n]['metadata']['name']}=={dists[n]['metadata']['version']}"
              for n in dists if n not in selected and not excluded(n))
print("  resolved %d packages; bundling %d" % (len(dists), len(pins)))
if left:
    print("  left out (needed only by packages the GPU machine has):", " ".join(left))
with open(f"{out_dir}/host-requirements.txt", "w") as f:
    f.write("# What the bundled packages require of packages the GPU machine is expected to have\n"
            "# (name: specifier <- who asks). Resolved here against them:\n")
    for name in sorted(host_reqs):
        resolved = dists[name]["metadata"]["version"] if name in dists else "not resolved"
        f.write(f"{name} (resolved here: {resolved})\n")
        for spec, by in sorted(host_reqs[name]):
            f.write(f"    {spec} <- {by}\n")
EOF

say "downloading $(wc -l <"$WORK/selected.txt") wheels into $WORK/wheels"
"${PIP[@]}" download --quiet --no-deps "${TARGET[@]}" -d "$WORK/wheels" -r "$WORK/selected.txt" \
    2> >(grep -v "^WARNING: Location" >&2)

# The selected wheel files, exactly one per package (the folder may hold others from earlier runs).
mapfile -t wheels < <("$PY" - "$WORK" <<'EOF'
import os
import re
import sys

from packaging.utils import canonicalize_name, canonicalize_version, parse_wheel_filename

work = sys.argv[1]
want = {}
for line in open(f"{work}/selected.txt"):
    name, version = line.strip().split("==")
    want[canonicalize_name(name)] = canonicalize_version(version)
found = {}
for f in sorted(os.listdir(f"{work}/wheels")):
    if not f.endswith(".whl"):
        continue
    name, version, _, _ = parse_wheel_filename(f)
    if want.get(name) == canonicalize_version(version):
        if name in found:
            sys.exit(f"two wheels for {name}: {found[name]} and {f}")
        found[name] = f
missing = sorted(set(want) - set(found))
if missing:
    sys.exit(f"no wheel downloaded for: {missing}")
for name in sorted(found):
    print(f"{work}/wheels/{found[name]}")
EOF
)
[ "${#wheels[@]}" -gt 0 ] || { say "FAILED: no wheels selected"; exit 1; }

# --- 3. the install tree
SITE=$WORK/site
say "installing ${#wheels[@]} wheels into $SITE"
rm -rf "$SITE"
"${PIP[@]}" install --quiet --no-deps --no-index --no-compile --target "$SITE" "${TARGET[@]}" "${wheels[@]}"

say "trimming"
rm -fv "$SITE"/onnxruntime/capi/libonnxruntime_providers_tensorrt.so
stubs=$SITE/pytriton/tritonserver/python_backend_stubs
[ -d "$stubs/3.12" ] || { say "FAILED: no Python 3.12 stub in $stubs"; exit 1; }
for d in "$stubs"/*/; do
    [ "$(basename "$d")" = 3.12 ] || rm -rfv "$d" | tail -1
done
# libpython 3.13 (only the 3.13 stub, removed above, loads it): removed unless a kept ELF file NEEDs it.
for lib in "$SITE"/nvidia_pytriton.libs/libpython3-*.13.so*; do
    [ -e "$lib" ] || continue
    soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
    users=$(find "$SITE" -type f ! -path "$lib" -print0 | xargs -0 -r "$PY" -c '
import subprocess, sys
names = set(sys.argv[1].split())
for f in sys.argv[2:]:
    with open(f, "rb") as fh:
        if fh.read(4) != b"\x7fELF":
            continue
    out = subprocess.run(["readelf", "-d", f], capture_output=True, text=True).stdout
    if any("(NEEDED)" in l and l.rsplit("[", 1)[-1].rstrip("]") in names for l in out.splitlines()):
        print(f)
' "$soname $(basename "$lib")")
    if [ -n "$users" ]; then
        say "WARNING: keeping $(basename "$lib") (soname $soname), NEEDed by: $users"
    else
        say "no kept ELF file NEEDs $(basename "$lib") (soname $soname): removing it"
        rm "$lib"
    fi
done
find "$SITE" -type d -name __pycache__ -prune -exec rm -rf {} +
# bin/ scripts were given this machine's resolver interpreter as shebang: the GPU machine's instead.
if [ -d "$SITE/bin" ]; then
    for f in "$SITE"/bin/*; do
        if [ -f "$f" ] && head -c 2 "$f" | grep -q '^#!' && head -1 "$f" | grep -q "$VENV"; then
            sed -i "1s|^#!.*|#!$TARGET_PYTHON|" "$f"
        fi
    done
fi

# name==version of every distribution in the tree
"$PY" - "$SITE" >"$OUT_DIR/packages.txt" <<'EOF'
import importlib.metadata as md
import sys

for d in sorted(md.distributions(path=[sys.argv[1]]), key=lambda d: d.metadata["Name"].lower()):
    print(f"{d.metadata['Name']}=={d.version}")
EOF
tree_bytes=$(du -sb "$SITE" | cut -f1)
say "tree: $(wc -l <"$OUT_DIR/packages.txt") packages, $((tree_bytes / 1048576)) MiB ($tree_bytes bytes), $(find "$SITE" -type f | wc -l) files"

# --- 4. pack and cut
say "packing (xz -9 -T$XZ_THREADS: minutes)"
rm -f "$OUT_DIR"/bundle.tar.xz.* "$OUT_DIR/SHA256SUMS" "$OUT_DIR/stream.sha256"
tar -C "$WORK" --sort=name --owner=0 --group=0 --numeric-owner -cf - site |
    xz -9 -T"$XZ_THREADS" |
    split -b "$PIECE_SIZE" -d - "$OUT_DIR/bundle.tar.xz."
(
    cd "$OUT_DIR"
    sha256sum bundle.tar.xz.[0-9]* >SHA256SUMS
    # The whole stream: a comment there (`sha256sum --check SHA256SUMS` skips it, as there is no
    # such file), and checkable as `cat bundle.tar.xz.* | sha256sum --check stream.sha256`.
    whole=$(cat bundle.tar.xz.[0-9]* | sha256sum | cut -d' ' -f1)
    echo "# $whole  bundle.tar.xz (the whole stream: cat bundle.tar.xz.* | sha256sum)" >>SHA256SUMS
    echo "$whole  -" >stream.sha256
    # the stream unpacks to the same files
    cat bundle.tar.xz.[0-9]* | xz -d -T"$XZ_THREADS" | tar -t | wc -l >"$WORK/entries"
)
say "pieces in $OUT_DIR (stream: $(cat "$WORK/entries") tar entries):"
for f in "$OUT_DIR"/bundle.tar.xz.[0-9]*; do
    stat -c '%n %s' "$f" | awk '{ n = split($1, p, "/"); printf "  %s  %d bytes (%.1f MiB)\n", p[n], $2, $2 / 1048576 }'
done
say "total $(cat "$OUT_DIR"/bundle.tar.xz.[0-9]* | wc -c) bytes compressed, $tree_bytes bytes unpacked; done in $(($(date +%s) - began)) s"
