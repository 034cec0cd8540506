from __future__ import annotations

import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.management.base import BaseCommand


def password_file() -> Path:
    return settings.VAR_DIR / "admin_password"


def stored_or_new_password(path: Path) -> tuple[str, bool]:
    """The password kept in `path`, or a new one written there (mode 0600); and whether it is new."""
    if path.exists():
        return path.read_text().strip(), False
    path.parent.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(18)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password + "\n")
    return password, True


def grant_admin_rights(user: AbstractBaseUser) -> bool:
    changed = not (user.is_active and user.is_staff and user.is_superuser)
    user.is_active = user.is_staff = user.is_superuser = True
    return changed


class Command(BaseCommand):
    help = (
        "Create or update the superuser COMFYROUTER_ADMIN_USERNAME. Its password comes from "
        "COMFYROUTER_ADMIN_PASSWORD, or is generated once, printed once and kept in var/admin_password."
    )

    def handle(self, *args: object, **options: object) -> None:
        username = settings.COMFYROUTER_ADMIN_USERNAME
        user_model = get_user_model()
        user = user_model.objects.filter(**{user_model.USERNAME_FIELD: username}).first()
        created = user is None
        if created:
            user = user_model(**{user_model.USERNAME_FIELD: username})
        changed = grant_admin_rights(user) or created
        if settings.COMFYROUTER_ADMIN_PASSWORD:
            if created or not user.check_password(settings.COMFYROUTER_ADMIN_PASSWORD):
                user.set_password(settings.COMFYROUTER_ADMIN_PASSWORD)
                changed = True
                self.stdout.write(f"Admin user '{username}': password set from COMFYROUTER_ADMIN_PASSWORD")
        elif created:
            self.set_generated_password(user)
        if changed:
            user.save()

    def set_generated_password(self, user: AbstractBaseUser) -> None:
        password, new = stored_or_new_password(password_file())
        user.set_password(password)
        if new:
            shown = f"password: {password} (stored in {password_file()})"
        else:
            shown = f"password as stored in {password_file()}"
        self.stdout.write(f"Admin user '{user.get_username()}' created; {shown}")
