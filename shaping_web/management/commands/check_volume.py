"""`manage.py check_volume`: is DATA_DIR the deployment's shared volume, writable, at the path
every host mounts it at? Run before each role starts (the container's entrypoint does);
exits 1 saying what to mount where (shaping_web.volume)."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from shaping_web.volume import VolumeProblem, volume_check


class Command(BaseCommand):
    help = "Check that DATA_DIR is the shared volume every host of the deployment uses."

    def handle(self, *args, **options):
        try:
            volume = volume_check(settings.DATA_DIR)
        except VolumeProblem as exc:
            raise CommandError(str(exc)) from None
        except DatabaseError as exc:
            raise CommandError(
                f"cannot read the shared volume's record ({exc}): run `manage.py migrate` first"
            ) from None
        self.stdout.write(f"shared volume {volume} at {settings.DATA_DIR}")
