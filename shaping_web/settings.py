"""Settings for Shaping: one module, driven by environment variables.

Defaults run the whole app on one machine with nothing to set up (SQLite in WAL
mode, huey on SQLite, an in-process channel layer, the bundled CPU Triton).
DATABASE_URL switches to PostgreSQL; REDIS_URL switches huey and the channel
layer to Redis. With DEBUG off the app refuses to start without SECRET_KEY.

One module (over 400 lines): Django reads its settings from one module, and each setting
sits beside the comment that says what it does and why its default is what it is; README's
settings table points here.
"""

import os
import sys
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from inference.endpoints import EndpointConfigError, endpoints_from_env
from shaping_web.safety import debug_hosts_problem, production_problem

BASE_DIR = Path(__file__).resolve().parent.parent

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def envbool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r}: expected one of 1/0, true/false, yes/no, on/off")


def envint(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r}: expected an integer") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value}: must be at least {minimum}")
    return value


def envfloat(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r}: expected a number") from None


def envlist(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def envpath(name: str, default: Path) -> Path:
    raw = os.environ.get(name)
    path = Path(raw) if raw else default
    return path if path.is_absolute() else BASE_DIR / path


DEBUG = envbool("DEBUG", True)
DATA_DIR = envpath("DATA_DIR", BASE_DIR / "data")
DATA_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = "django-insecure-embedded-default-for-local-use-only-" + "x" * 16  # noqa: S105

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"] if DEBUG else [])
# DEBUG shows tracebacks and settings, and allows the demo's public password: it serves this
# machine only (`manage.py serve` and the ASGI application check the address they listen on).
if _debug_exposed := debug_hosts_problem(DEBUG, ALLOWED_HOSTS):
    raise ImproperlyConfigured(_debug_exposed)
if _unsafe := production_problem(DEBUG, SECRET_KEY, ALLOWED_HOSTS):
    raise ImproperlyConfigured(_unsafe)
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "ninja",  # the API docs page from its own static files, not a CDN
    "channels",
    "huey.contrib.djhuey",
    "shaping_web",
    "labelling",
    "inference",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "shaping_web.middleware.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Every page needs a signed-in user unless a view opts out explicitly.
    "shaping_web.middleware.LoginRequiredMiddleware",
    # No NUL character in a page's URL, query or form (PostgreSQL stores none: a 500 otherwise).
    "shaping_web.middleware.NulRefusedMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]


# Behind escaping, a second line of defence: scripts only from this site's own files (no inline
# script, no eval; WebAssembly may compile: model-viewer's mesh decoder, for the 3D figures),
# styles from them plus style attributes (a sheet's colour swatches; htmx's indicator style),
# pictures also from data: and blob: URLs (the figures' textures), and connections to this
# site and its websockets on the hosts it serves (ALLOWED_HOSTS; any port): a page may open
# no socket elsewhere. ('self' covers same-origin sockets in CSP 3 browsers; the host list
# covers the others. IPv6 literals are not valid CSP sources: 'self' alone covers them.)
def socket_sources(hosts: list[str]) -> list[str]:
    if "*" in hosts:
        return ["ws:", "wss:"]
    named = ["*" + h if h.startswith(".") else h for h in hosts if not h.startswith("[")]
    return [f"{scheme}://{host}:*" for host in named for scheme in ("ws", "wss")]


CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self' 'wasm-unsafe-eval'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        " ".join(["connect-src 'self'", *socket_sources(ALLOWED_HOSTS)]),
        "object-src 'none'",
        "base-uri 'self'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    )
)

ROOT_URLCONF = "shaping_web.urls"
WSGI_APPLICATION = "shaping_web.wsgi.application"
ASGI_APPLICATION = "shaping_web.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "shaping_web.navigation.section",
            ],
            "builtins": ["template_partials.templatetags.partials"],
        },
    },
]

# --- database -----------------------------------------------------------------
DATABASE_URL = os.environ.get("DATABASE_URL", "")
# Each web thread (WEB_THREADS, shaping_web/handlers.py) and huey worker keeps its connection
# between requests and tasks, checked before it is reused: opening one costs more than most
# pages (about 1 ms for SQLite, which reads the schema again, several for PostgreSQL).
CONN_MAX_AGE = envint("CONN_MAX_AGE", 60, minimum=0)
# Requests served at once by a web process; more wait for a thread, in arrival order. SQLite
# takes one writer at a time: a few threads keep the queue in the app, fair, rather than at
# the database's lock, whose waiters give up after busy_timeout (a 500).
WEB_THREADS = envint("WEB_THREADS", 16 if DATABASE_URL else 4, minimum=1)
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=CONN_MAX_AGE, conn_health_checks=True)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": envpath("SQLITE_PATH", DATA_DIR / "shaping.sqlite3"),
            "OPTIONS": {
                # WAL lets the web server read while the huey consumer writes;
                # IMMEDIATE takes the write lock at BEGIN so writers queue on
                # busy_timeout instead of failing with "database is locked".
                "init_command": (
                    "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
                    "PRAGMA foreign_keys=ON; PRAGMA busy_timeout=10000;"
                ),
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
            "CONN_MAX_AGE": CONN_MAX_AGE,
            "CONN_HEALTH_CHECKS": True,
        }
    }
    if DATABASES["default"]["NAME"] != ":memory:":
        DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- task queue and channel layer ---------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
HUEY_IMMEDIATE = envbool("HUEY_IMMEDIATE", False)
HUEY_WORKERS = envint("HUEY_WORKERS", 2, minimum=1)
if REDIS_URL:
    HUEY = {
        "huey_class": "huey.RedisHuey",
        "name": os.environ.get("HUEY_NAME", "shaping"),
        "url": REDIS_URL,
        "immediate": HUEY_IMMEDIATE,
        "consumer": {"workers": HUEY_WORKERS, "worker_type": "thread"},
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": os.environ.get("HUEY_NAME", "shaping")},
        }
    }
else:
    HUEY = {
        "huey_class": "huey.SqliteHuey",
        "name": os.environ.get("HUEY_NAME", "shaping"),
        "filename": str(envpath("HUEY_SQLITE_PATH", DATA_DIR / "huey.sqlite3")),
        "immediate": HUEY_IMMEDIATE,
        "consumer": {"workers": HUEY_WORKERS, "worker_type": "thread"},
    }
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- inference ----------------------------------------------------------------
# "triton" talks to TRITON_URL (the bundled CPU server by default, or NVIDIA's
# container on a GPU host); "inprocess" runs the same onnxruntime-genai engine
# inside the worker, for hosts where the bundled server cannot run.
INFERENCE_BACKEND = os.environ.get("INFERENCE_BACKEND", "triton")
if INFERENCE_BACKEND not in {"triton", "inprocess"}:
    raise ImproperlyConfigured(f"INFERENCE_BACKEND={INFERENCE_BACKEND!r}: expected triton or inprocess")
TRITON_URL = os.environ.get("TRITON_URL", "127.0.0.1:8001")
# `manage.py serve` starts the bundled CPU tritonserver unless TRITON_URL points elsewhere.
TRITON_MANAGED = envbool("TRITON_MANAGED", INFERENCE_BACKEND == "triton" and "TRITON_URL" not in os.environ)
INFERENCE_TIMEOUT_S = envfloat("INFERENCE_TIMEOUT_S", 120.0)
# Which weights serve is a row's business (GeneratorVersion.onnx_dir): version 1 is the tiny model
# shipped in the repository until `manage.py prepare_model` (run by `make run`) registers the demo
# model. GENERATOR_MODEL_DIR makes version 1 serve another ONNX folder (a GPU host's export);
# JUDGE_MODEL_DIR gives the judge its own weights (unset: the base version's, or
# GENERATOR_MODEL_DIR's). labelling.versions.generators.selectors resolves both.
GENERATOR_MODEL_DIR = envpath("GENERATOR_MODEL_DIR", None) if os.environ.get("GENERATOR_MODEL_DIR") else None
JUDGE_MODEL_DIR = envpath("JUDGE_MODEL_DIR", None) if os.environ.get("JUDGE_MODEL_DIR") else None
# Where `manage.py prepare_model` puts the demo model (inference/demo_model.py).
MODELS_DIR = envpath("MODELS_DIR", DATA_DIR / "models")
# The model repository Triton serves: generated from triton_models/ and the ready generator
# versions (one version folder each, so version N and its parent are served side by side).
# A Triton that runs elsewhere must see the same folder (a shared models volume) to load the
# versions trained here.
TRITON_REPOSITORY = envpath("TRITON_REPOSITORY", DATA_DIR / "triton" / "repository")
# OpenAI-compatible servers (vLLM, TGI, transformers serve, a hosted API) by name: a run may
# generate through one and judge through another (inference/endpoints.py names the variables).
try:
    OPENAI_ENDPOINTS = endpoints_from_env(os.environ, default_timeout_s=INFERENCE_TIMEOUT_S)
except EndpointConfigError as exc:
    raise ImproperlyConfigured(str(exc)) from None

# --- training -----------------------------------------------------------------
# Train runs at once per training consumer (`manage.py run_train_worker`; their own queue).
TRAIN_WORKERS = envint("TRAIN_WORKERS", 1, minimum=1)
# A train run's trainer runs as a child process of the worker, with this interpreter: the
# project's own by default (`pip install -e '.[train]'`), or a separate training environment.
TRAIN_PYTHON = os.environ.get("TRAIN_PYTHON", sys.executable)
# A launcher for the trainer instead, e.g. "accelerate launch --multi_gpu --num_processes 4"
# on a host with 4 GPUs (its arguments, then `-m inference.versions.training CONFIG` are appended).
TRAIN_LAUNCH = os.environ.get("TRAIN_LAUNCH", "")
# Where the trainer runs: "auto" (a GPU when torch sees one, else the CPU), "cpu" or "cuda"
# (refused by the trainer when torch sees no GPU). On a GPU it trains in bf16 mixed precision.
TRAIN_DEVICE = os.environ.get("TRAIN_DEVICE", "auto").strip().lower() or "auto"
if TRAIN_DEVICE not in {"auto", "cpu", "cuda"}:
    raise ImproperlyConfigured(f"TRAIN_DEVICE={TRAIN_DEVICE!r}: expected auto, cpu or cuda")
# Seconds a converted version may take to load in Triton and answer its check generation.
VERSION_LOAD_TIMEOUT_S = envfloat("VERSION_LOAD_TIMEOUT_S", 300.0)
# The fewest prompts a verdict rests on (docs/loop.md); 6: the fewest a sign test can pass at 5%.
EVALUATION_MIN_PROMPTS = envint("EVALUATION_MIN_PROMPTS", 6, minimum=1)
# Seconds between looks at a campaign whose round waits (for a run, reviewers, a verdict).
CAMPAIGN_POLL_S = envfloat("CAMPAIGN_POLL_S", 2.0)

# --- review -------------------------------------------------------------------
# How long a reviewer holds a group before it returns to the queue, and how long
# after submitting they may still undo it.
REVIEW_LEASE_MINUTES = envint("REVIEW_LEASE_MINUTES", 30, minimum=1)
REVIEW_UNDO_MINUTES = envint("REVIEW_UNDO_MINUTES", 30, minimum=0)

# --- limits on what a user sends (each refusal names its setting) ----------------
# A reviewer's critique of one completion, and a reviewer's rewrite of one, in characters.
REVIEW_CRITIQUE_MAX_CHARS = envint("REVIEW_CRITIQUE_MAX_CHARS", 5_000, minimum=1)
REVIEW_REWRITE_MAX_CHARS = envint("REVIEW_REWRITE_MAX_CHARS", 50_000, minimum=1)
# A character's portrait: its file, and its pixels (read from the header before decoding).
PORTRAIT_MAX_BYTES = envint("PORTRAIT_MAX_BYTES", 5 * 1024 * 1024, minimum=1)
PORTRAIT_MAX_PIXELS = envint("PORTRAIT_MAX_PIXELS", 25_000_000, minimum=1)
# One import file (admin, API, CLI; puzzle files too). YAML imports refuse anchors and aliases.
IMPORT_MAX_BYTES = envint("IMPORT_MAX_BYTES", 10 * 1024 * 1024, minimum=1)
# The login throttle (labelling.access.throttle): failed sign-ins allowed per account and per
# address within the window; past either, sign-in is refused until the window has moved on.
LOGIN_FAILURES_PER_ACCOUNT = envint("LOGIN_FAILURES_PER_ACCOUNT", 10, minimum=1)
LOGIN_FAILURES_PER_ADDRESS = envint("LOGIN_FAILURES_PER_ADDRESS", 50, minimum=1)
LOGIN_FAILURE_WINDOW_S = envint("LOGIN_FAILURE_WINDOW_S", 900, minimum=1)
# The live socket (labelling.live.consumers): its right to stay open (a signed-in session, an
# active user, the role it connected with) is checked again before a push at most every
# RECHECK_S and while idle every RECHECK_IDLE_S; it is closed after MAX_AGE_S, and the page
# connects again (signing in afresh).
LIVE_SOCKET_RECHECK_S = envfloat("LIVE_SOCKET_RECHECK_S", 1.0)
LIVE_SOCKET_RECHECK_IDLE_S = envfloat("LIVE_SOCKET_RECHECK_IDLE_S", 30.0)
LIVE_SOCKET_MAX_AGE_S = envfloat("LIVE_SOCKET_MAX_AGE_S", 3600.0)
# Live sockets one user may hold open on one web process (a page each: tabs, the dashboard,
# review); one more is refused with close code 4429.
LIVE_SOCKETS_PER_USER = envint("LIVE_SOCKETS_PER_USER", 20, minimum=1)
# /readyz: a queue's consumer is alive if it wrote its heartbeat (at start and each minute), or
# one of its runs beat, within this many seconds.
CONSUMER_HEARTBEAT_MAX_AGE_S = envint("CONSUMER_HEARTBEAT_MAX_AGE_S", 150, minimum=1)
# The queues /readyz wants a live consumer on (a deployment that trains elsewhere, or not at
# all, leaves out "train"); at least one, each of "pipeline" and "train".
READY_QUEUES = [q.strip() for q in os.environ.get("READY_QUEUES", "pipeline,train").split(",") if q.strip()]
if not READY_QUEUES or set(READY_QUEUES) - {"pipeline", "train"}:
    raise ImproperlyConfigured(f"READY_QUEUES={os.environ.get('READY_QUEUES')!r}: name pipeline, train or both")
# The API's docs page and OpenAPI document: public, or for signed-in users with a role (the
# default with DEBUG off: they list every operation).
API_DOCS_PUBLIC = envbool("API_DOCS_PUBLIC", DEBUG)

# --- auth ---------------------------------------------------------------------
# `seed_demo` may create users with the public demo password only where this is on: a DEBUG
# run, which serves this machine alone (above). ALLOW_DEMO_PASSWORD=0 turns it off there too.
ALLOW_DEMO_PASSWORD = envbool("ALLOW_DEMO_PASSWORD", DEBUG)
if ALLOW_DEMO_PASSWORD and not DEBUG:
    raise ImproperlyConfigured(
        "ALLOW_DEMO_PASSWORD=1 with DEBUG off: the demo's password is public, so it is only for a "
        "DEBUG run serving this machine; seed_demo --password sets another"
    )
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)
# Under daphne there is no runserver to serve static files: whitenoise does,
# straight from static/ while developing, from collectstatic's output in production.
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG
MEDIA_URL = "media/"
MEDIA_ROOT = envpath("MEDIA_ROOT", DATA_DIR / "media")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
# Large uploads (JSONL imports) stream to disk rather than memory.
DATA_UPLOAD_MAX_MEMORY_SIZE = envint("DATA_UPLOAD_MAX_MEMORY_SIZE", 20 * 1024 * 1024)

# --- production hardening (checked by `manage.py check --deploy`) --------------
if not DEBUG:
    SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", True)
    # Probes answer over plain HTTP: one that follows a redirect, or counts 3xx as success, is
    # misled; one that does not would see the site as down.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_CONTENT_TYPE_NOSNIFF = True
    X_FRAME_OPTIONS = "DENY"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        # The openai client's HTTP library logs every request at INFO: one line per completion.
        **{name: {"level": "WARNING"} for name in ("django.db.backends", "httpx", "httpx2")},
        # Given a handler of its own, so `run_huey` adds none (it adds one to a handler-less
        # "huey" logger, and every line of a consumer's then came out twice).
        "huey": {"handlers": ["console"], "propagate": False},
    },
}

# --- pipelines ------------------------------------------------------------------
# Concurrent items per run, and how long a running run may go without a heartbeat
# before another worker takes it over (its worker is presumed dead). The batching engine
# decodes a run's items in flight together, so more of them fill its batch (16: a
# generate + judge run 1.38x faster than with 4 on the 0.6B shape, 1.44x on the tiny
# model; docs/benchmarks.md).
PIPELINE_WORKERS = envint("PIPELINE_WORKERS", 16, minimum=1)
# Parts a new generate, judge or revise run is split into, each taken by whichever pipeline
# consumer is free (several hosts work on one run); 1: one consumer runs it whole. Recorded on
# the run when it starts, so a resume splits it the same way.
PIPELINE_SHARDS = envint("PIPELINE_SHARDS", 1, minimum=1)
RUN_STALE_AFTER_S = envint("RUN_STALE_AFTER_S", 60, minimum=2)
RUN_HEARTBEAT_S = max(1, RUN_STALE_AFTER_S // 6)
