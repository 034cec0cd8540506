from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from comfyrouter.services import api_key_create


class Command(BaseCommand):
    help = "Create an API key for USERNAME and print it (only the key, on stdout; it is shown once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="A label for the key, e.g. the program using it.")

    def handle(self, *args, username: str, name: str, **options) -> None:
        user_model = get_user_model()
        try:
            owner = user_model.objects.get(**{user_model.USERNAME_FIELD: username})
        except user_model.DoesNotExist:
            raise CommandError(f"User {username!r} does not exist.") from None
        if not owner.is_active:
            raise CommandError(f"User {username!r} is inactive; its keys would not authenticate.")
        key, raw = api_key_create(owner=owner, name=name)
        self.stderr.write(
            f"Created API key {key.prefix}… for {username}; it is not shown again.", self.style.WARNING
        )
        self.stdout.write(raw)
