#!/bin/sh
# The container's role, from its command. Every role reads its settings from the environment
# (docs/deploy.md) and checks the shared volume before it starts (manage.py check_volume).
set -eu
cd "${SHAPING_HOME:-/app}"
role="${1:-web}"
[ "$#" -gt 0 ] && shift
case "$role" in
  migrate)
    python manage.py migrate --noinput
    exec python manage.py collectstatic --noinput
    ;;
  web)
    python manage.py check_volume
    exec python -m daphne -b 0.0.0.0 -p "${PORT:-8000}" "$@" shaping_web.asgi:application
    ;;
  pipeline)
    python manage.py check_volume
    exec python manage.py run_huey "$@"
    ;;
  train)
    python manage.py check_volume
    exec python manage.py run_train_worker "$@"
    ;;
  triton)
    python manage.py check_volume
    exec python manage.py triton --address 0.0.0.0 --grpc-port "${TRITON_PORT:-8001}" "$@"
    ;;
  manage)
    exec python manage.py "$@"
    ;;
  *)
    echo "shaping-role: unknown role '$role' (web, pipeline, train, triton, migrate, manage)" >&2
    exit 64
    ;;
esac
